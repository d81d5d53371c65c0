// L0's server certificates (DESIGN.md "Key types"): a P-256 and an RSA-2048 leaf of the fleet root under L0's CN, whose
// SAN names the hosts and addresses L0 is reached by (RFC 6125 §6.4), re-issued when that set changes; devices still
// check L0 by CN.
import t from 'tap'
import { X509Certificate, createPublicKey } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect as tlsConnect, createServer, type TLSSocket } from 'node:tls'
import type { AddressInfo, Socket } from 'node:net'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { tlsServerPolicy } from '../../runtime/node/tls-policy.ts'
import { readL0Material } from '../../broker/home.ts'
import { IssuedRegistry } from '../../broker/issued.ts'
import { serverCertificatePaths, serverCertificates } from '../../broker/server-certificates.ts'
import { checkServerAddress, checkServerName, serverNames } from '../../broker/server-names.ts'
import { enrollDirect, makeL0Home, nowSeconds, startTestL0, tempDir, withHomeLedger } from './_fleet.ts'

const names = serverNames({ listen: ['127.0.0.1'], names: ['l0.smith.lan'], addresses: ['192.0.2.7', '2001:db8::7'] })

t.test('names and addresses: checked, canonical, defaults included', async t => {
  t.ok(names.dns.includes('localhost') && names.dns.includes('l0.smith.lan'))
  t.ok(names.ips.includes('127.0.0.1') && names.ips.includes('::1') && names.ips.includes('192.0.2.7'))
  t.equal(checkServerAddress('0:0:0:0:0:0:0:1'), '::1', 'one spelling per IPv6 address')
  t.equal(checkServerAddress('[2001:DB8::7]'), '2001:db8::7')
  t.equal(checkServerName('L0.Smith.LAN.'), 'l0.smith.lan')
  for (const bad of ['*.smith.lan', 'under_score.lan', '-x.lan', 'a'.repeat(64) + '.lan', ''])
    t.throws(() => checkServerName(bad), { code: 'SERVER_NAME' }, `"${bad.slice(0, 20)}" is refused`)
  for (const bad of ['300.1.1.1', 'fe80::1%eth0', 'l0.smith.lan', '1.2.3'])
    t.throws(() => checkServerAddress(bad), { code: 'SERVER_ADDRESS' }, `"${bad}" is refused`)
  t.throws(() => serverNames({ listen: ['127.0.0.1'], names: ['ok.lan', 'not ok'] }), { code: 'SERVER_NAME' })
})

t.test(
  'a P-256 fleet: both certificates, strict X.509, the SAN as asked, re-issued only when names change',
  async t => {
    const l0 = await makeL0Home()
    const m = readL0Material(l0.dir)
    const now = nowSeconds()
    const first = await serverCertificates(m, names, now)
    t.same(
      first.reissued.map(r => [r.keyType, r.reason]),
      [
        ['p256', 'missing'],
        ['rsa2048', 'missing'],
      ],
    )
    const rootFile = join(l0.dir, 'root.pem')
    for (const c of first.certificates) {
      const x = new X509Certificate(c.certPem)
      t.equal(x.publicKey.asymmetricKeyType, c.keyType === 'p256' ? 'ec' : 'rsa', `${c.keyType}: key type`)
      t.match(x.subject, `CN=${l0.cn}`)
      t.ok(x.verify(new X509Certificate(l0.rootPem).publicKey), `${c.keyType}: signed by the P-256 fleet root`)
      t.ok(x.checkHost('l0.smith.lan') && x.checkHost('localhost') && x.checkHost(l0.cn), `${c.keyType}: DNS names`)
      t.ok(x.checkIP('127.0.0.1') && x.checkIP('::1') && x.checkIP('2001:db8::7'), `${c.keyType}: addresses`)
      t.notOk(x.checkIP('127.0.0.2'), `${c.keyType}: no address it was not given`)
      const file = join(tempDir(), `${c.keyType}.pem`)
      writeFileSync(file, c.certPem)
      const v = spawnSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', rootFile, file], {
        encoding: 'utf8',
      })
      t.equal(v.status, 0, `${c.keyType}: openssl verify -x509_strict -purpose sslserver: ${v.stdout}${v.stderr}`)
    }
    const recorded = IssuedRegistry.open(l0.dir).list()
    for (const c of first.certificates)
      t.ok(
        recorded.some(
          r => r.certHash === new X509Certificate(c.certPem).fingerprint256.replace(/:/g, '').toLowerCase(),
        ),
        `${c.keyType}: recorded in ca/issued.json (a CRL can name it)`,
      )

    const again = await serverCertificates(m, names, now + 60)
    t.same(again.reissued, [], 'the same names: served as they are')
    t.same(
      again.certificates.map(c => c.certPem),
      first.certificates.map(c => c.certPem),
    )

    const moved = serverNames({ listen: ['127.0.0.1'], names: ['l0.smith.lan'], addresses: ['192.0.2.8'] })
    const changed = await serverCertificates(m, moved, now + 120)
    t.same(
      changed.reissued.map(r => r.reason),
      ['names', 'names'],
      'another address: both issued anew',
    )
    for (const [i, c] of changed.certificates.entries()) {
      const x = new X509Certificate(c.certPem)
      t.ok(x.checkIP('192.0.2.8') && !x.checkIP('192.0.2.7'), `${c.keyType}: the new address, not the old`)
      const spki = (pem: string) => createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('hex')
      t.equal(spki(c.keyPem), spki(first.certificates[i]!.keyPem), `${c.keyType}: the key stays`)
    }
    t.equal(
      readFileSync(serverCertificatePaths(l0.dir, 'rsa2048').cert, 'utf8'),
      changed.certificates[1]!.certPem,
      'written to the home',
    )

    const late = await serverCertificates(m, moved, now + 340 * 86400)
    t.same(
      late.reissued.map(r => r.reason),
      ['expiring', 'expiring'],
      'within the last tenth of its year',
    )
  },
)

t.test('a certificate another root signed, or for another CN, is not served: issued anew (identity)', async t => {
  const l0 = await makeL0Home()
  const other = await makeL0Home()
  const m = readL0Material(l0.dir)
  await serverCertificates(readL0Material(other.dir), names, nowSeconds())
  await serverCertificates(m, names, nowSeconds())
  for (const keyType of ['p256', 'rsa2048'] as const) {
    const from = serverCertificatePaths(other.dir, keyType),
      to = serverCertificatePaths(l0.dir, keyType)
    writeFileSync(to.cert, readFileSync(from.cert))
    writeFileSync(to.key, readFileSync(from.key))
  }
  const fixed = await serverCertificates(m, names, nowSeconds())
  t.same(
    fixed.reissued.map(r => r.reason),
    ['identity', 'identity'],
  )
  for (const c of fixed.certificates) t.match(new X509Certificate(c.certPem).subject, `CN=${l0.cn}`)
})

t.test('devices check L0 by CN: extra SAN entries pass, a fleet-root certificate of another CN is refused', async t => {
  const l0 = await makeL0Home()
  const phone = await withHomeLedger(l0, ledger => enrollDirect(l0, ledger, l0.self, { role: 'member' }))
  const connect = (port: number) =>
    nodeTransport
      .connect({
        url: `mqtts://127.0.0.1:${port}`,
        clientId: phone.cn,
        login: { kind: 'certificate', certPem: phone.certPem, keyPem: phone.keyPem },
        server: { kind: 'fleet', rootPem: l0.rootPem, serverCn: l0.cn },
        connectTimeoutMs: 10_000,
      })
      .then(
        async s => {
          const peer = s.peerCertificate()
          await s.end()
          return { ok: true as const, peer }
        },
        (e: { code?: string }) => ({ ok: false as const, code: e.code }),
      )

  const { services } = await startTestL0(l0)
  t.teardown(() => services.close())
  const logged = await connect(services.port)
  t.ok(logged.ok, "the phone logs in: L0's certificate names more than its CN")
  if (logged.ok) {
    const x = new X509Certificate(Buffer.from(logged.peer!))
    t.ok(x.checkIP('127.0.0.1') && x.checkHost(l0.cn), 'the certificate it saw holds the addresses and the CN')
    t.equal(x.publicKey.asymmetricKeyType, 'ec', "Node's client is offered the ECDSA certificate")
  }

  // A broker presenting a genuine fleet-root certificate of another CN (a device's): the names would pass a host check.
  const impostor = createServer({ ...tlsServerPolicy(), cert: phone.certPem, key: phone.keyPem })
  const sockets = new Set<Socket>()
  impostor.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  impostor.on('secureConnection', (s: TLSSocket) => s.destroy())
  impostor.on('tlsClientError', () => undefined)
  await new Promise<void>(resolve => impostor.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    impostor.close()
  })
  const refused = await connect((impostor.address() as AddressInfo).port)
  t.same(refused, { ok: false, code: 'BROKER_IDENTITY' }, 'a certificate of the fleet root for another CN is refused')
})

t.test('a broker running into the last tenth of the year renews its server certificates in place', async t => {
  const l0 = await makeL0Home()
  let offset = 0
  const { services, logs } = await startTestL0(l0, { now: () => nowSeconds() + offset })
  t.teardown(() => services.close())
  const peer = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: services.port, rejectUnauthorized: false }, () => {
        resolve(s.getPeerCertificate().fingerprint256)
        s.destroy()
      })
      s.on('error', reject)
    })
  const before = await peer()
  services.sweep()
  t.equal(await peer(), before, 'not yet due: the same certificate')
  offset = 340 * 86400
  services.sweep()
  let after = before
  // Bounded: the renewal signs two certificates; a loaded machine gets 30 s.
  for (let i = 0; i < 300 && after === before; i++) {
    await new Promise(r => setTimeout(r, 100))
    after = await peer()
  }
  t.not(after, before, 'new handshakes get the renewed certificate')
  t.same(
    logs.filter(r => r.event === 'server.certificate' && r.reason === 'expiring').map(r => r.keyType),
    ['p256', 'rsa2048'],
    'and the log says why',
  )
})
