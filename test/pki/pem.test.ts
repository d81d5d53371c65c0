// RFC 7468 PEM armour: DER → PEM → DER round-trips for every length, as openssl reads it; malformed base64 refused.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { derToPem, pemToDer } from '../../agent/pki/pem.ts'
import { isKinError } from '../../agent/errors.ts'

t.test('round trip for 1..300 bytes, and the body is the base64 Node writes', async t => {
  let bad = 0
  for (let n = 1; n <= 300; n++) {
    const der = nodeCrypto.randomBytes(n)
    const pem = derToPem(der, 'TEST')
    if (!Buffer.from(pemToDer(pem, 'TEST', 'CERT_PARSE')).equals(Buffer.from(der))) bad++
    if (pem.replace(/-----[A-Z ]+-----|\n/g, '') !== Buffer.from(der).toString('base64')) bad++
  }
  t.equal(bad, 0, 'every length decodes back to its bytes')
})

t.test('a certificate request openssl wrote decodes to the DER openssl gives', async t => {
  const pem = execFileSync(
    'openssl',
    ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=pem.test'],
    { encoding: 'utf8' },
  )
  const der = execFileSync('openssl', ['req', '-outform', 'DER'], { input: pem })
  t.ok(Buffer.from(pemToDer(pem, 'CERTIFICATE REQUEST', 'CSR_PARSE')).equals(der))
})

t.test("malformed base64 is refused with the caller's code", async t => {
  for (const body of ['QUJD=', 'QU=D', 'Q', 'QUJD*A==', '====']) {
    let code = 'none'
    try {
      pemToDer(`-----BEGIN TEST-----\n${body}\n-----END TEST-----\n`, 'TEST', 'CSR_PARSE')
    } catch (e) {
      code = isKinError(e) ? e.code : 'other'
    }
    t.equal(code, 'CSR_PARSE', JSON.stringify(body))
  }
})
