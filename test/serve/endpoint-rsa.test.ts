// The access endpoint over real TLS on loopback and a client certificate with a 512-bit RSA key, signed by the fleet
// root: the endpoint refuses it RSA_KEY_SIZE (OpenSSL's own security-level verdict reaches Node only as
// authorizationError 'UNSPECIFIED'), and kinship's requester refuses to present it at all.
import t from 'tap'
import { connect } from 'node:tls'
import { generateKeyPairSync } from 'node:crypto'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { startAccessEndpoint, requestAccess, parseAccessAnswer } from '../../runtime/node/tls-endpoint.ts'
import { isKinError } from '../../agent/errors.ts'
import type { Decision } from '../../agent/access/types.ts'
import { buildLeafCertificate } from '../../agent/pki/leaf-profile.ts'
import { spkiDerFromPublicKeyPem } from '../../agent/pki/keys.ts'
import { makeServeHouse } from './_house.ts'

const house = await makeServeHouse()
const lock = house.cn['L3.3'],
  guest = house.cn['L3.4']
const fleet = house.fleet.fleet

// The guest's CN and parent, a 512-bit key, signed by the real fleet root: only the key is wrong.
const small = generateKeyPairSync('rsa', {
  modulusLength: 512,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
})
const smallCert = await buildLeafCertificate({
  root: fleet.root,
  rootKeyPem: fleet.rootKey.privateKeyPem,
  cn: guest,
  parentCn: house.cn['L2.2'],
  spki: spkiDerFromPublicKeyPem(small.publicKey),
  notBefore: house.now - 60,
  notAfter: house.now + 86400,
  randomBytes: nodeCrypto.randomBytes,
})

const decisions: Decision[] = []
const endpoint = await startAccessEndpoint({
  ...house.identity(lock),
  session: house.session(lock),
  host: '127.0.0.1',
  port: 0,
  onDecision: d => decisions.push(d),
})
t.teardown(() => endpoint.close())

/** One request line over TLS `version` with the 512-bit identity, at the security level that lets OpenSSL load it. */
function askWithSmallKey(version: 'TLSv1.2' | 'TLSv1.3'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port: endpoint.port,
      cert: smallCert.pem,
      key: small.privateKey,
      rejectUnauthorized: false,
      minVersion: version,
      maxVersion: version,
      ciphers: 'DEFAULT:@SECLEVEL=0',
    })
    let got = ''
    socket.setEncoding('utf8')
    socket.on('secureConnect', () => socket.write('{"action":"unlock"}\n'))
    socket.on('data', (d: string) => {
      got += d
    })
    socket.on('end', () => resolve(got))
    socket.on('error', reject)
  })
}

t.test('TLS 1.2: the 512-bit client certificate is refused RSA_KEY_SIZE, not ACCESS_NO_CERTIFICATE', async t => {
  const answer = parseAccessAnswer((await askWithSmallKey('TLSv1.2')).trim())
  t.same([answer.allow, answer.code], [false, 'RSA_KEY_SIZE'], answer.reason)
  t.match(answer.reason, /512 bits/, 'the reason says what happened')
  t.equal(decisions.at(-1)?.code, 'RSA_KEY_SIZE', 'and the endpoint recorded that decision')
})

t.test(
  'TLS 1.3: a 512-bit key cannot sign RSA-PSS, so the client sends no certificate; the refusal says why that may be',
  async t => {
    const answer = parseAccessAnswer((await askWithSmallKey('TLSv1.3')).trim())
    t.same([answer.allow, answer.code], [false, 'ACCESS_NO_CERTIFICATE'], answer.reason)
    t.match(answer.reason, /RSA under 528 bits in TLS 1\.3/)
  },
)

t.test("kinship's requester refuses to present a 512-bit certificate: RSA_KEY_SIZE before any connection", async t => {
  const before = decisions.length
  const session = house.session(guest)
  const err = await requestAccess({
    certPem: smallCert.pem,
    keyPem: small.privateKey,
    rootPem: fleet.root.pem,
    host: '127.0.0.1',
    port: endpoint.port,
    action: 'unlock',
    checkServer: der => session.checkServer(der),
  }).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(isKinError(err, 'RSA_KEY_SIZE'), `refused: ${(err as Error)?.message}`)
  t.equal(decisions.length, before, 'the lock decided nothing: no connection was made')
  const genuine = await requestAccess({
    ...house.identity(guest),
    host: '127.0.0.1',
    port: endpoint.port,
    action: 'unlock',
    checkServer: der => session.checkServer(der),
  })
  t.equal(genuine.answer?.code, 'ALLOW', 'the guest with its real key still gets in')
})
