import t from 'tap'
import { DecodeError } from '../../agent/errors.ts'
import { fromHex } from '../../agent/codec/bytes.ts'
import { TAG, childrenOf, readElement, readWhole } from '../../agent/pki/der.ts'
import { derToPem, pemToDer } from '../../agent/pki/pem.ts'
import { signatureAlgorithmOf } from '../../agent/pki/signature-algorithm.ts'

const code = 'CERT_PARSE' as const

t.test('X.690 §10.1: definite, minimal lengths only', async t => {
  t.same(readElement(fromHex('0403010203'), 0, code), { tag: 4, start: 0, contentStart: 2, end: 5 })
  const long = new Uint8Array(3 + 200)
  long.set([0x04, 0x81, 200])
  t.equal(readElement(long, 0, code).end, 203, 'long form for 200 bytes')
  const refused: [string, string][] = [
    ['3080', 'indefinite length (BER only)'],
    ['04810101', 'long form for a length below 128'],
    ['0482000101', 'leading zero length octet'],
    ['0485ffffffffff', 'five length octets'],
    ['1f0100', 'high tag number'],
    ['04030102', 'content runs past the end'],
    ['04', 'no length'],
  ]
  for (const [hex, why] of refused) t.throws(() => readElement(fromHex(hex), 0, code), DecodeError, why)
})

t.test('readWhole refuses trailing bytes and wrong tags; childrenOf must fill the parent exactly', async t => {
  t.equal(readWhole(fromHex('3003020101'), TAG.sequence, code).end, 5)
  t.throws(() => readWhole(fromHex('300302010100'), TAG.sequence, code), { code })
  t.throws(() => readWhole(fromHex('3103020101'), TAG.sequence, code), { code })
  const seq = fromHex('3006020101020102')
  t.same(
    childrenOf(seq, readWhole(seq, TAG.sequence, code), code).map(c => c.start),
    [2, 5],
  )
  const overrun = fromHex('3004020101020102')
  t.throws(() => childrenOf(overrun, readElement(overrun, 0, code), code), { code }, 'child overruns its parent')
  t.throws(
    () => childrenOf(fromHex('0400'), readElement(fromHex('0400'), 0, code), code),
    { code },
    'primitive has no children',
  )
})

t.test(
  'RFC 4055 §5 and RFC 5758 §3.2: sha256WithRSAEncryption (NULL or absent parameters) and ecdsa-with-SHA256, nothing else',
  async t => {
    const codeOf = (hex: string): string => {
      try {
        return signatureAlgorithmOf(fromHex(hex))
      } catch (e) {
        return (e as { code: string }).code
      }
    }
    t.equal(codeOf('300d06092a864886f70d01010b0500'), 'rsa-pkcs1-sha256')
    t.equal(codeOf('300b06092a864886f70d01010b'), 'rsa-pkcs1-sha256', 'parameters absent')
    t.equal(codeOf('300a06082a8648ce3d040302'), 'ecdsa-p256-sha256')
    t.equal(codeOf('300c06082a8648ce3d0403020500'), 'SIGNATURE_ALGORITHM', 'ecdsa-with-SHA256 with NULL parameters')
    t.equal(codeOf('300d06092a864886f70d0101050500'), 'SIGNATURE_SHA1', 'sha1WithRSAEncryption')
    t.equal(codeOf('300906072a8648ce3d0401'), 'SIGNATURE_SHA1', 'ecdsa-with-SHA1')
    t.equal(codeOf('300d06092a864886f70d01010a0500'), 'SIGNATURE_ALGORITHM', 'RSASSA-PSS')
    t.equal(codeOf('300a06082a8648ce3d040303'), 'SIGNATURE_ALGORITHM', 'ecdsa-with-SHA384')
    t.equal(codeOf('3005060365'), 'CERT_PARSE', 'malformed')
  },
)

t.test('RFC 7468: PEM round trip, label selection among several blocks', async t => {
  const a = fromHex('3003020101'),
    b = fromHex('3003020102')
  const text = 'junk before\n' + derToPem(a, 'PUBLIC KEY') + derToPem(b, 'CERTIFICATE')
  t.same(pemToDer(text, 'CERTIFICATE', code), b)
  t.same(pemToDer(text, 'PUBLIC KEY', code), a)
  t.same(pemToDer(derToPem(a, 'CERTIFICATE').replace(/\n/g, '\r\n'), 'CERTIFICATE', code), a, 'CRLF line ends')
  const big = new Uint8Array(1000).map((_, i) => i & 0xff)
  const pem = derToPem(big, 'CERTIFICATE')
  const body = pem.split('\n').slice(1, -2)
  t.ok(body.slice(0, -1).every(l => l.length === 64) && body.at(-1)!.length <= 64, 'RFC 7468 §2: 64-character lines')
  t.same(pemToDer(pem, 'CERTIFICATE', code), big)
})
