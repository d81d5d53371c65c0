import t from 'tap'
import fc from 'fast-check'
import { constants, createPrivateKey, sign } from 'node:crypto'
import { nodePki } from '../../runtime/node/pki.ts'
import { concatBytes } from '../../agent/codec/bytes.ts'
import { emsaPkcs1Sha256, verifyRsaSha256 } from '../../agent/pki/rsa-verify.ts'

const keys = await nodePki.generateTlsKeyPair()
const privateKey = createPrivateKey(keys.privateKeyPem)
const publicKey = keys.spkiDer
const signWithNode = (m: Uint8Array, padding = constants.RSA_PKCS1_PADDING): Uint8Array =>
  new Uint8Array(sign('sha256', m, { key: privateKey, padding }))

t.test(
  'RFC 8017 §8.2: signatures made by node:crypto verify on the portable path, and only for their message',
  async t => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        (message, other) => {
          const signature = signWithNode(message)
          return (
            verifyRsaSha256(publicKey, message, signature) &&
            !verifyRsaSha256(publicKey, concatBytes(message, other), signature)
          )
        },
      ),
      { numRuns: 40 },
    )
    t.pass('40 random messages')
  },
)

t.test('malformed or foreign signatures are false, never a throw', async t => {
  const message = new Uint8Array([1, 2, 3])
  const signature = signWithNode(message)
  const flipped = signature.slice()
  flipped[100]! ^= 0x10
  t.equal(verifyRsaSha256(publicKey, message, flipped), false, 'one flipped bit')
  t.equal(verifyRsaSha256(publicKey, message, signature.subarray(1)), false, 'k-1 bytes (RFC 8017 §8.2.2 step 1)')
  t.equal(verifyRsaSha256(publicKey, message, concatBytes(new Uint8Array([0]), signature)), false, 'k+1 bytes')
  t.equal(
    verifyRsaSha256(publicKey, message, new Uint8Array(256).fill(0xff)),
    false,
    'signature representative ≥ n (RFC 8017 §5.2.2)',
  )
  t.equal(
    verifyRsaSha256(publicKey, message, signWithNode(message, constants.RSA_PKCS1_PSS_PADDING)),
    false,
    'RSASSA-PSS is not PKCS#1 v1.5',
  )
  t.equal(verifyRsaSha256(new Uint8Array([0x30, 0x00]), message, signature), false, 'garbage key')
})

t.test('RFC 8017 §9.2: EMSA-PKCS1-v1_5 layout 00 01 FF… 00 DigestInfo H', async t => {
  const em = emsaPkcs1Sha256(new Uint8Array(0), 256)
  t.equal(em.length, 256)
  t.same([...em.subarray(0, 3)], [0x00, 0x01, 0xff])
  t.equal(em[256 - 51 - 1], 0x00)
  // SHA-256 of the empty string ends the block.
  t.equal(
    Buffer.from(em.subarray(256 - 32)).toString('hex'),
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  )
})
