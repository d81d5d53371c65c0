// A certificate of the retired form (parent marker DNS:parent.<P>, issued by the real fleet CA for the device's real key)
// over the access endpoint's real mutual TLS on loopback: refused CERT_OLD_PARENT_MARKER as client and as server.
import t from 'tap'
import { createServer } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { startAccessEndpoint, requestAccess } from '../../runtime/node/tls-endpoint.ts'
import type { Decision } from '../../agent/access/types.ts'
import { toBinary } from '../../agent/pki/_forge.ts'
import { derToPem } from '../../agent/pki/pem.ts'
import { oddCertificate } from '../pki/_odd.ts'
import { makeServeHouse } from './_house.ts'

const house = await makeServeHouse()
const { cn } = house
const lock = cn['L3.3'],
  guest = cn['L3.4']
const root = house.fleet.fleet.root

/** `device`'s certificate as the fleet CA wrote it before the URI marker: same CN, key and issuer, DNS:parent.<P>. */
function oldFormCertificate(device: string, parentCn: string): string {
  const d = house.fleet.device(device)
  return derToPem(
    oddCertificate({
      cn: device,
      sanDns: [device, `parent.${parentCn}`],
      notBefore: house.now - 300,
      notAfter: house.now + 86400,
      issuerCn: root.cn,
      issuerKeyPem: house.fleet.fleet.rootKey.privateKeyPem,
      subjectPublicKeyPem: d.certificate.publicKeyPem,
      extraExtensions: [
        { name: 'subjectKeyIdentifier' },
        { name: 'authorityKeyIdentifier', keyIdentifier: toBinary(root.subjectKeyId!) },
      ],
    }),
    'CERTIFICATE',
  )
}

t.test('the lock answers a guest presenting an old-form certificate with CERT_OLD_PARENT_MARKER', async t => {
  const decisions: Decision[] = []
  const endpoint = await startAccessEndpoint({
    ...house.identity(lock),
    session: house.session(lock),
    host: '127.0.0.1',
    port: 0,
    onDecision: (d: Decision) => decisions.push(d),
  })
  t.teardown(() => endpoint.close())
  const ask = (certPem: string) =>
    requestAccess({
      certPem,
      keyPem: house.fleet.device(guest).secrets.tls.privateKeyPem,
      rootPem: root.pem,
      host: '127.0.0.1',
      port: endpoint.port,
      action: 'unlock',
      checkServer: der => house.session(guest).checkServer(der),
    })
  const old = await ask(oldFormCertificate(guest, cn['L2.2']))
  t.equal(old.server.code, 'ALLOW', 'the guest checked the lock first')
  t.equal(old.answer!.code, 'CERT_OLD_PARENT_MARKER', old.answer!.reason)
  t.equal(old.answer!.allow, false)
  t.match(old.answer!.reason, /renew/)
  t.equal(decisions.at(-1)!.code, 'CERT_OLD_PARENT_MARKER', 'the endpoint reported the refusal')
  // The control: the same guest, key and endpoint with its current certificate (the URI marker) is let in.
  const current = await ask(house.identity(guest).certPem)
  t.equal(current.answer!.code, 'ALLOW', current.answer!.reason)
})

t.test('a guest refuses a lock presenting an old-form certificate before sending anything', async t => {
  let received = 0
  const server = createServer(
    {
      cert: oldFormCertificate(lock, cn['L2.1']),
      key: house.fleet.device(lock).secrets.tls.privateKeyPem,
      requestCert: true,
      rejectUnauthorized: false,
    },
    socket => {
      socket.on('data', (d: Buffer) => {
        received += d.length
      })
      socket.on('error', () => undefined)
    },
  )
  server.on('tlsClientError', () => undefined)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  const port = (server.address() as AddressInfo).port
  const outcome = await requestAccess({
    ...house.identity(guest),
    host: '127.0.0.1',
    port,
    action: 'unlock',
    checkServer: der => house.session(guest).checkServer(der),
  })
  t.equal(outcome.server.code, 'CERT_OLD_PARENT_MARKER', outcome.server.reason)
  t.equal(outcome.answer, undefined, 'no request was sent')
  t.equal(received, 0, 'the server received no application data')
})
