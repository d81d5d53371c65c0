import t from 'tap'
import fc from 'fast-check'
import { nodePki } from '../../runtime/node/pki.ts'
import { portablePki } from '../../agent/portable/pki.ts'
import { KinError } from '../../agent/errors.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { createCsr, parseCsr } from '../../agent/pki/csr.ts'
import { derToPem, pemToDer } from '../../agent/pki/pem.ts'
import { freshCn, makeFleet, nowSeconds } from './_fleet.ts'

const fleet = await makeFleet(nowSeconds())
const certDer = fleet.l0.cert.der
const csrDer = pemToDer(
  await createCsr({ cn: freshCn(), parentCn: fleet.l0.cn, keyPair: fleet.l0.keys }),
  'CERTIFICATE REQUEST',
  'CSR_PARSE',
)

/** The code of the KinError `parse` throws, 'ok' when it parses; any other exception fails the test. */
function outcome(parse: () => unknown): string {
  try {
    parse()
    return 'ok'
  } catch (e) {
    if (e instanceof KinError) return e.code
    throw new Error(`escaped a non-coded error: ${String(e)}`, { cause: e })
  }
}

const parsers = [
  [
    'DeviceCertificate',
    'CERT_PARSE',
    certDer,
    (b: Uint8Array) => new DeviceCertificate(b),
    (s: string) => new DeviceCertificate(s),
  ],
  ['parseCsr', 'CSR_PARSE', csrDer, (b: Uint8Array) => parseCsr(b), (s: string) => parseCsr(s)],
] as const

for (const [name, code, der, fromDer, fromText] of parsers) {
  t.test(`${name}: random bytes give ${code} only`, async t => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), bytes => outcome(() => fromDer(bytes)) === code),
      { numRuns: 500 },
    )
    // Random bytes behind a plausible SEQUENCE header reach the deeper parsers.
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 120 }), bytes => {
        return outcome(() => fromDer(Uint8Array.of(0x30, bytes.length, ...bytes))) === code
      }),
      { numRuns: 500 },
    )
    t.pass('500 + 500 random inputs refused with the coded error')
  })

  t.test(`${name}: every truncation of real DER gives ${code}`, async t => {
    const codes = new Set<string>()
    for (let n = 0; n < der.length; n++) codes.add(outcome(() => fromDer(der.subarray(0, n))))
    t.same([...codes], [code])
    t.equal(
      outcome(() => fromDer(Uint8Array.of(...der, 0))),
      code,
      'one trailing byte',
    )
  })

  t.test(`${name}: every single bit flip parses or gives a coded error, never a raw exception`, async t => {
    // Exhaustive rather than sampled: a sampled run once missed the one flip (an extension forge left without a value) that escaped.
    // A flip in a name can leave a parseable CSR whose CN is no longer printable: that is a names refusal.
    const allowed = ['ok', code, ...(name === 'parseCsr' ? ['CSR_NAMES'] : [])]
    const escaped: string[] = []
    for (let at = 0; at < der.length; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const bytes = der.slice()
        bytes[at]! ^= 1 << bit
        let result: string
        try {
          result = outcome(() => fromDer(bytes))
        } catch (e) {
          result = String(e)
        }
        if (!allowed.includes(result)) escaped.push(`byte ${at} bit ${bit}: ${result}`)
      }
    }
    t.same(escaped.slice(0, 5), [], `${der.length * 8} flips, each parsed or refused with a code`)
  })

  t.test(`${name}: malformed PEM gives ${code}`, async t => {
    const label = name === 'parseCsr' ? 'CERTIFICATE REQUEST' : 'CERTIFICATE'
    const pem = derToPem(der, label)
    t.equal(
      outcome(() => fromText(pem)),
      'ok',
      'the intact PEM parses',
    )
    const cases = {
      'no PEM block': 'hello',
      'wrong label': derToPem(der, 'PUBLIC KEY'),
      'bad base64 character': pem.replace(/\n[A-Za-z]/, '\n!'),
      'bad padding': pem.replace(/\n-----END/, '=\n-----END'),
      'mismatched END label': pem.replace(/-----END [A-Z ]+-----/, '-----END X509 CRL-----'),
      'empty body': `-----BEGIN ${label}-----\n-----END ${label}-----\n`,
      'base64 of garbage': derToPem(Uint8Array.of(1, 2, 3, 4), label),
    }
    for (const [what, text] of Object.entries(cases))
      t.equal(
        outcome(() => fromText(text)),
        code,
        what,
      )
    t.equal(
      outcome(() => fromDer('not bytes' as unknown as Uint8Array)),
      code,
      'neither PEM nor bytes',
    )
    // A well-formed SEQUENCE header announcing 20000 bytes: refused by size before any parsing.
    const big = new Uint8Array(20004)
    big.set([0x30, 0x82, 0x4e, 0x20])
    t.equal(
      outcome(() => fromDer(big)),
      code,
      'oversize DER',
    )
    t.equal(
      outcome(() => fromText(pem + 'x'.repeat(200000))),
      code,
      'oversize PEM text',
    )
  })
}

t.test('providers return false, never throw, for garbage certificates and issuers', async t => {
  for (const provider of [nodePki, portablePki]) {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), bytes => {
        return (
          provider.verifyCertificateSignature(bytes, fleet.root.der) === false &&
          provider.verifyCertificateSignature(certDer, bytes) === false
        )
      }),
      { numRuns: 200 },
    )
    t.equal(
      provider.verifyCertificateSignature(certDer.subarray(0, 100), fleet.root.der),
      false,
      `${provider.name}: truncated`,
    )
    t.equal(
      provider.verifyCertificateSignature(certDer, fleet.root.der),
      true,
      `${provider.name}: the real one still verifies`,
    )
  }
})
