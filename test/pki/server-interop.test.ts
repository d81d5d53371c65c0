// L0's server certificates before verifiers kinship shares no code with: OpenSSL (-x509_strict, the TLS server
// purpose, the host names and addresses of the SAN) and GnuTLS certtool, under a P-256 and an RSA root, each root
// signing both a P-256 and an RSA leaf; and the portable (forge) builder writes the same iPAddress entries.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { readL0Material } from '../../broker/home.ts'
import { serverCertificates } from '../../broker/server-certificates.ts'
import { serverNames } from '../../broker/server-names.ts'
import { buildLeafCertificate } from '../../agent/pki/leaf-profile.ts'
import { forgeBuilder } from '../../agent/pki/builder.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { makeL0Home, nowSeconds, tempDir } from '../broker/_fleet.ts'

const names = serverNames({ listen: ['127.0.0.1'], names: ['l0.smith.lan'], addresses: ['192.0.2.7', '2001:db8::7'] })

function run(cmd: string, args: string[]): { ok: boolean; out: string; missing: boolean } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 })
  const missing = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, missing }
}

for (const rootType of ['p256', 'rsa2048'] as const) {
  t.test(`a ${rootType} root: both server certificates pass OpenSSL and GnuTLS for their names`, async t => {
    const l0 = await makeL0Home({ keyType: rootType })
    const made = await serverCertificates(readL0Material(l0.dir), names, nowSeconds())
    const dir = tempDir('kin-server-interop-')
    const root = join(dir, 'root.pem')
    writeFileSync(root, l0.rootPem)
    const certtool = !run('certtool', ['--version']).missing
    if (!certtool) t.comment('certtool is not installed (apt-get install gnutls-bin): GnuTLS checks skipped')
    for (const c of made.certificates) {
      const leaf = join(dir, `${c.keyType}.pem`)
      writeFileSync(leaf, c.certPem)
      const strict = ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', root]
      for (const check of [
        ['-verify_hostname', 'l0.smith.lan'],
        ['-verify_hostname', l0.cn],
        ['-verify_ip', '127.0.0.1'],
        ['-verify_ip', '2001:db8::7'],
      ]) {
        const r = run('openssl', [...strict, ...check, leaf])
        t.ok(r.ok, `${c.keyType}: openssl verify ${check.join(' ')}`, { output: r.out })
      }
      for (const check of [
        ['-verify_hostname', 'other.smith.lan'],
        ['-verify_ip', '127.0.0.2'],
      ]) {
        const r = run('openssl', [...strict, ...check, leaf])
        t.notOk(r.ok, `${c.keyType}: openssl refuses ${check.join(' ')}`)
        t.match(r.out, /mismatch/)
      }
      if (certtool) {
        const ok = run('certtool', [
          '--verify',
          '--load-ca-certificate',
          root,
          '--infile',
          leaf,
          '--verify-hostname',
          'l0.smith.lan',
        ])
        t.ok(ok.ok, `${c.keyType}: certtool --verify accepts it for l0.smith.lan`, { output: ok.out })
        const wrong = run('certtool', [
          '--verify',
          '--load-ca-certificate',
          root,
          '--infile',
          leaf,
          '--verify-hostname',
          'other.smith.lan',
        ])
        t.notOk(wrong.ok, `${c.keyType}: certtool refuses it for other.smith.lan`)
      }
    }
  })
}

t.test('the portable builder writes the same iPAddress entries (RSA root, forge)', async t => {
  const l0 = await makeL0Home({ keyType: 'rsa2048' })
  const key = await nodePki.generateTlsKeyPair('rsa2048')
  const now = nowSeconds()
  const cert = await buildLeafCertificate({
    root: DeviceCertificate.from(l0.rootPem, { sha256: nodeCrypto.sha256 }),
    rootKeyPem: l0.fleet.rootKey.privateKeyPem,
    cn: l0.cn,
    parentCn: undefined,
    spki: key.spkiDer,
    serverNames: { dns: ['l0.smith.lan'], ips: ['192.0.2.7', '2001:db8::7'] },
    notBefore: now - 60,
    notAfter: now + 86400,
    randomBytes: n => nodeCrypto.randomBytes(n),
    builder: forgeBuilder,
  })
  const x = new X509Certificate(cert.pem)
  t.equal(x.subjectAltName, `DNS:${l0.cn}, DNS:l0.smith.lan, IP Address:192.0.2.7, IP Address:2001:DB8:0:0:0:0:0:7`)
  t.ok(x.verify(new X509Certificate(l0.rootPem).publicKey))
})
