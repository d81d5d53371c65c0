// The parent marker is a URI SAN (DESIGN.md "Names"): standard hostname checks must not accept a child of P for
// `parent.<P>`, as they did while the marker was DNS:parent.<P>; kinship refuses certificates of the old form by code.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkServerIdentity, connect, createServer, type PeerCertificate } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { nodePki } from '../../runtime/node/pki.ts'
import { portablePki } from '../../agent/portable/pki.ts'
import { derToPem } from '../../agent/pki/pem.ts'
import { toBinary } from '../../agent/pki/_forge.ts'
import { verifyChain } from '../../agent/pki/chain.ts'
import { verifyCertificateChain } from '../../agent/core.ts'
import { parentMarker } from '../../agent/ledger/names.ts'
import { oddCertificate } from './_odd.ts'
import { DAY, makeFleet, nowSeconds } from './_fleet.ts'

const dir = mkdtempSync(join(tmpdir(), 'kin-pki-marker-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const now = nowSeconds()
const fleet = await makeFleet(now)
const parent = await fleet.enroll(fleet.l0.cn)
const child = await fleet.enroll(parent.cn)
const parentHost = `parent.${parent.cn}`
// The same child as the fleet CA wrote it before the URI marker: DNS:<CN>, DNS:parent.<P>, signed by the real root.
const oldDer = oddCertificate({
  cn: child.cn,
  sanDns: [child.cn, parentHost],
  notBefore: now - 300,
  notAfter: now + DAY,
  issuerCn: fleet.root.cn,
  issuerKeyPem: fleet.rootKeys.privateKeyPem,
  subjectPublicKeyPem: child.keys.publicKeyPem,
  // Key identifiers as the CA writes them, so -x509_strict judges the names and nothing else.
  extraExtensions: [
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: toBinary(fleet.root.subjectKeyId!) },
  ],
})
const oldPem = derToPem(oldDer, 'CERTIFICATE')

function write(name: string, text: string): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

function run(tool: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(tool, args, { encoding: 'utf8' })
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` }
}

/** Test options that skip when `tool` is not installed. */
function needs(tool: string): { skip: string | false } {
  return { skip: spawnSync(tool, ['--version']).error === undefined ? false : `${tool} is not installed` }
}

const rootPem = write('root.pem', fleet.root.pem)
const leafPem = write('leaf.pem', child.cert.pem)
const oldLeafPem = write('old.pem', oldPem)

t.test('the issued leaf carries the marker as a URI and no DNS name but its CN', async t => {
  t.same(child.cert.sanDns, [child.cn])
  t.same(child.cert.sanUris, [parentMarker(parent.cn)])
  t.equal(parentMarker(parent.cn), `kin://${fleet.domain}/parent/${parent.cn.split('.')[0]}`)
  t.equal(child.cert.parentCn, parent.cn)
})

t.test(
  'openssl verify -x509_strict -verify_hostname: the CN passes, parent.<P> does not (it did with the old marker)',
  needs('openssl'),
  async t => {
    const own = run('openssl', ['verify', '-x509_strict', '-CAfile', rootPem, '-verify_hostname', child.cn, leafPem])
    t.ok(own.ok, 'verifies for its own CN', { output: own.out })
    const asParent = run('openssl', [
      'verify',
      '-x509_strict',
      '-CAfile',
      rootPem,
      '-verify_hostname',
      parentHost,
      leafPem,
    ])
    t.notOk(asParent.ok, `refused for ${parentHost}`)
    t.match(asParent.out, /hostname mismatch/)
    // The URI marker is no host name either: neither the parent's CN nor the URI's host passes.
    for (const host of [parent.cn, fleet.domain])
      t.notOk(
        run('openssl', ['verify', '-x509_strict', '-CAfile', rootPem, '-verify_hostname', host, leafPem]).ok,
        `refused for ${host}`,
      )
    // The control: the certificate of the old form passes OpenSSL's hostname check for parent.<P>, the defect itself.
    const old = run('openssl', [
      'verify',
      '-x509_strict',
      '-CAfile',
      rootPem,
      '-verify_hostname',
      parentHost,
      oldLeafPem,
    ])
    t.ok(old.ok, 'the old DNS:parent. marker passed for parent.<P>', { output: old.out })
  },
)

t.test('GnuTLS certtool --verify-hostname agrees', needs('certtool'), async t => {
  const verify = (host: string, pem: string) =>
    run('certtool', ['--verify', '--load-ca-certificate', rootPem, '--verify-hostname', host, '--infile', pem])
  const own = verify(child.cn, leafPem)
  t.ok(own.ok, 'verifies for its own CN', { output: own.out })
  t.notOk(verify(parentHost, leafPem).ok, `refused for ${parentHost}`)
  t.ok(verify(parentHost, oldLeafPem).ok, 'the old marker passed (control)')
})

t.test("Node's tls.checkServerIdentity refuses parent.<P> for the leaf and accepts its CN", async t => {
  const legacy = (pem: string) => new X509Certificate(pem).toLegacyObject() as unknown as PeerCertificate
  const leaf = legacy(child.cert.pem)
  t.equal(leaf.subjectaltname, `DNS:${child.cn}, URI:${parentMarker(parent.cn)}`)
  t.equal(checkServerIdentity(child.cn, leaf), undefined, 'its own CN')
  const refused = checkServerIdentity(parentHost, leaf)
  t.ok(refused instanceof Error, `refused for ${parentHost}`)
  t.equal((refused as NodeJS.ErrnoException | undefined)?.code, 'ERR_TLS_CERT_ALTNAME_INVALID')
  t.ok(checkServerIdentity(parent.cn, leaf) instanceof Error, "refused for the parent's own CN")
  t.equal(checkServerIdentity(parentHost, legacy(oldPem)), undefined, 'the old marker passed (control)')
})

t.test(
  'over real TLS: a client connecting to parent.<P> refuses a server presenting the child certificate',
  async t => {
    async function handshake(certPem: string, servername: string): Promise<string> {
      const server = createServer({ cert: certPem, key: child.keys.privateKeyPem }, socket => {
        socket.on('error', () => undefined)
        socket.end()
      })
      server.on('tlsClientError', () => undefined)
      await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
      try {
        const port = (server.address() as AddressInfo).port
        return await new Promise<string>(resolve => {
          const socket = connect({ host: '127.0.0.1', port, servername, ca: fleet.root.pem, rejectUnauthorized: true })
          socket.on('secureConnect', () => {
            socket.destroy()
            resolve('connected')
          })
          socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
        })
      } finally {
        await new Promise<void>(resolve => server.close(() => resolve()))
      }
    }
    t.equal(await handshake(child.cert.pem, child.cn), 'connected', 'the child is itself')
    t.equal(await handshake(child.cert.pem, parentHost), 'ERR_TLS_CERT_ALTNAME_INVALID', 'the child is not parent.<P>')
    t.equal(await handshake(oldPem, parentHost), 'connected', 'with the old marker it was (control)')
  },
)

t.test('CERT_OLD_PARENT_MARKER: the old form is refused by its own code on every verifier', async t => {
  for (const provider of [nodePki, portablePki]) {
    t.throws(
      () => verifyChain(oldDer, fleet.root, now, provider),
      { name: 'VerificationError', code: 'CERT_OLD_PARENT_MARKER', message: /renew it/ },
      provider.name,
    )
  }
  t.throws(() => verifyCertificateChain(oldDer, fleet.root.der, now), { code: 'CERT_OLD_PARENT_MARKER' }, 'kin-core')
  t.equal(
    verifyChain(child.cert.der, fleet.root, now, nodePki).parentCn,
    parent.cn,
    'the same child with the URI marker passes',
  )
})
