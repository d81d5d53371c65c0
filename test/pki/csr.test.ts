import t from 'tap'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { portableCrypto } from '../../agent/portable/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { toBinary } from '../../agent/pki/_forge.ts'
import { derToPem, pemToDer } from '../../agent/pki/pem.ts'
import { createCsr, parseCsr } from '../../agent/pki/csr.ts'
import { checkCsrAgainstAuthorization, issueDeviceCertificate } from '../../agent/pki/issue.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import { CLOCK_SKEW_SECONDS } from '../../agent/pki/root.ts'
import { parentMarker } from '../../agent/ledger/names.ts'
import { oddCsr } from './_odd.ts'
import { DAY, freshCn, makeFleet, nowSeconds } from './_fleet.ts'

const now = nowSeconds()
const fleet = await makeFleet(now)
const keys = await nodePki.generateTlsKeyPair()
const otherKeys = await nodePki.generateTlsKeyPair()
const cn = freshCn()
const auth = { cn, parentCn: fleet.l0.cn, spkiHash: nodeCrypto.sha256(keys.spkiDer), notAfter: now + 30 * DAY }
const goodCsr = await createCsr({ cn, parentCn: fleet.l0.cn, keyPair: keys })

t.test('a CSR made by createCsr parses back and passes the checks (both hash providers)', async t => {
  const csr = parseCsr(goodCsr)
  t.equal(csr.cn, cn)
  t.same(csr.sanDns, [cn])
  t.same(csr.sanUris, [`kin://${fleet.domain}/parent/${fleet.l0.cn.split('.')[0]}`])
  t.equal(csr.parentCn, fleet.l0.cn)
  t.equal(csr.signatureValid, true)
  t.same(csr.spkiDer, keys.spkiDer)
  t.equal(csr.publicKeyPem.replace(/\s/g, ''), keys.publicKeyPem.replace(/\s/g, ''))
  for (const crypto of [nodeCrypto, portableCrypto])
    t.equal(checkCsrAgainstAuthorization(goodCsr, auth, crypto).cn, cn, crypto.name)
  const l0Csr = parseCsr(await createCsr({ cn, parentCn: undefined, keyPair: keys }))
  t.same([l0Csr.sanDns, l0Csr.sanUris, l0Csr.parentCn], [[cn], [], undefined], 'L0 requests no parent marker')
})

t.test('CSR_KEY_MISMATCH: a CSR signed by and carrying another key than the authorized one', async t => {
  const csrPem = await createCsr({ cn, parentCn: fleet.l0.cn, keyPair: otherKeys })
  t.equal(parseCsr(csrPem).signatureValid, true, 'its own signature is fine')
  t.throws(() => checkCsrAgainstAuthorization(csrPem, auth, nodeCrypto), {
    name: 'VerificationError',
    code: 'CSR_KEY_MISMATCH',
  })
  await t.rejects(issueDeviceCertificate({ ...fleet.ca, csrPem, auth }), { code: 'CSR_KEY_MISMATCH' })
})

t.test('CSR_NAMES: changed CN, changed or missing SAN parent, extra SAN entry', async t => {
  const variants: [string, string | undefined, string][] = [
    [freshCn(), fleet.l0.cn, 'another CN'],
    [cn, freshCn(), 'another parent'],
    [cn, undefined, 'no parent marker'],
  ]
  for (const [csrCn, parentCn, what] of variants) {
    const csrPem = await createCsr({ cn: csrCn, parentCn, keyPair: keys })
    t.throws(() => checkCsrAgainstAuthorization(csrPem, auth, nodeCrypto), { code: 'CSR_NAMES' }, what)
    await t.rejects(issueDeviceCertificate({ ...fleet.ca, csrPem, auth }), { code: 'CSR_NAMES' }, `${what} (issuance)`)
  }
  // An L0-style authorization (no parent) refuses a CSR that names one.
  t.throws(
    () => checkCsrAgainstAuthorization(goodCsr, { ...auth, parentCn: undefined }, nodeCrypto),
    { code: 'CSR_NAMES' },
    'parent marker where none is authorized',
  )
  // A third SAN entry, as a parsed CSR would report it.
  const parsed = parseCsr(goodCsr)
  t.throws(
    () => checkCsrAgainstAuthorization({ ...parsed, sanDns: [...parsed.sanDns, 'evil.example'] }, auth, nodeCrypto),
    { code: 'CSR_NAMES' },
    'extra SAN entry',
  )
  t.throws(
    () => checkCsrAgainstAuthorization({ ...parsed, sanDns: [cn, cn] }, auth, nodeCrypto),
    { code: 'CSR_NAMES' },
    'repeated CN',
  )
  t.throws(
    () =>
      checkCsrAgainstAuthorization(
        { ...parsed, sanUris: [...parsed.sanUris, 'https://evil.example/'] },
        auth,
        nodeCrypto,
      ),
    { code: 'CSR_NAMES' },
    'extra SAN URI',
  )
  t.throws(
    () =>
      checkCsrAgainstAuthorization({ ...parsed, sanUris: [parsed.sanUris[0]!, parsed.sanUris[0]!] }, auth, nodeCrypto),
    { code: 'CSR_NAMES' },
    'repeated parent marker',
  )
  await t.rejects(
    issueDeviceCertificate({ ...fleet.ca, csrPem: goodCsr, auth: { ...auth, cn: 'x.other.example' } }),
    { code: 'CSR_NAMES' },
    'authorized CN outside the fleet',
  )
})

t.test(
  'CSR_OLD_PARENT_MARKER: a CSR naming its parent as DNS:parent.<CN>, the retired marker, alone or beside the URI',
  async t => {
    const marker = { type: 6, value: parentMarker(fleet.l0.cn) },
      old = { type: 2, value: `parent.${fleet.l0.cn}` }
    for (const [what, altNames] of [
      ['old marker only', [{ type: 2, value: cn }, old]],
      ['old marker beside the URI', [{ type: 2, value: cn }, old, marker]],
    ] as const) {
      const csrPem = oddCsr(cn, [...altNames], keys)
      t.equal(parseCsr(csrPem).signatureValid, true, `${what}: a well-signed request`)
      t.same(parseCsr(csrPem).sanDns, [cn, `parent.${fleet.l0.cn}`], `${what}: the DNS form is read as a DNS name`)
      t.throws(
        () => checkCsrAgainstAuthorization(csrPem, auth, nodeCrypto),
        { name: 'VerificationError', code: 'CSR_OLD_PARENT_MARKER', message: /make the CSR again/ },
        what,
      )
      await t.rejects(
        issueDeviceCertificate({ ...fleet.ca, csrPem, auth }),
        { code: 'CSR_OLD_PARENT_MARKER' },
        `${what} (issuance)`,
      )
    }
    t.equal(
      checkCsrAgainstAuthorization(oddCsr(cn, [{ type: 2, value: cn }, marker], keys), auth, nodeCrypto).parentCn,
      fleet.l0.cn,
      'the same request with the URI marker passes',
    )
  },
)

t.test('CSR_SIGNATURE: one flipped bit in the signature, or in the signed request body', async t => {
  const der = pemToDer(goodCsr, 'CERTIFICATE REQUEST', 'CSR_PARSE')
  const inSignature = der.slice()
  inSignature[der.length - 5]! ^= 0x01
  // The CN sits inside CertificationRequestInfo twice (subject and SAN): flip one letter to another in both, so it
  // still parses and its names still agree with each other (the name check comes before the signature's).
  const body = der.slice()
  for (const at of [toBinary(der).indexOf(cn) + 3, toBinary(der).lastIndexOf(cn) + 3]) body[at]! ^= 0x01
  for (const [what, bytes] of [
    ['signature', inSignature],
    ['request body', body],
  ] as const) {
    const pem = derToPem(bytes, 'CERTIFICATE REQUEST')
    t.equal(parseCsr(pem).signatureValid, false, `${what}: parses, signature invalid`)
    t.throws(
      () => checkCsrAgainstAuthorization(pem, { ...auth, cn: parseCsr(pem).cn }, nodeCrypto),
      { code: 'CSR_SIGNATURE' },
      what,
    )
  }
})

t.test('validity: capped at the authorization notAfter; CA_VALIDITY when it has passed', async t => {
  const capped = await issueDeviceCertificate({ ...fleet.ca, csrPem: goodCsr, auth, validitySeconds: 365 * DAY })
  t.equal(capped.notAfter, auth.notAfter, 'notAfter capped at auth.notAfter')
  t.equal(capped.notBefore, now - CLOCK_SKEW_SECONDS, 'back-dated by the clock skew')
  const short = await issueDeviceCertificate({ ...fleet.ca, csrPem: goodCsr, auth, validitySeconds: DAY })
  t.equal(short.notAfter, now + DAY, 'a shorter requested validity wins')
  t.equal(verifyChain(short, fleet.root, now, nodePki).notAfter, now + DAY)
  for (const notAfter of [now, now - 1, now - DAY]) {
    await t.rejects(
      issueDeviceCertificate({ ...fleet.ca, csrPem: goodCsr, auth: { ...auth, notAfter } }),
      { name: 'VerificationError', code: 'CA_VALIDITY' },
      `notAfter ${notAfter - now}s from now`,
    )
  }
  await t.rejects(issueDeviceCertificate({ ...fleet.ca, csrPem: goodCsr, auth, validitySeconds: 0 }), {
    code: 'BAD_ARGUMENT',
  })
})

t.test('serials: random, positive, 16 bytes, unique over 20 issuances', async t => {
  const serials = new Set<string>()
  for (let i = 0; i < 20; i++) {
    const cert = await issueDeviceCertificate({ ...fleet.ca, csrPem: goodCsr, auth })
    t.equal(cert.serialHex.length, 32, '16 bytes')
    t.ok(parseInt(cert.serialHex.slice(0, 2), 16) < 0x80, 'positive (RFC 5280 §4.1.2.2)')
    serials.add(cert.serialHex)
  }
  t.equal(serials.size, 20)
})

t.test('issuance refuses a root key that does not belong to the root certificate', async t => {
  await t.rejects(issueDeviceCertificate({ ...fleet.ca, rootKeyPem: otherKeys.privateKeyPem, csrPem: goodCsr, auth }), {
    code: 'BAD_ARGUMENT',
  })
})
