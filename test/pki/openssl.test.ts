import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeFleet, nowSeconds } from './_fleet.ts'

// Interop with a tool nobody here wrote: OpenSSL must accept what the fleet CA issues.
const dir = mkdtempSync(join(tmpdir(), 'kin-pki-openssl-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function openssl(args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' })
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` }
}

function write(name: string, text: string): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

t.test('openssl accepts the root, L0 and a child certificate, and the CSR', async t => {
  const fleet = await makeFleet(nowSeconds())
  const child = await fleet.enroll(fleet.l0.cn)
  const rootPem = write('root.pem', fleet.root.pem)
  const leafPem = write('leaf.pem', child.cert.pem)
  const l0Pem = write('l0.pem', fleet.l0.cert.pem)
  const csrPem = write('leaf.csr', child.csrPem)

  // -x509_strict: RFC 5280 rules OpenSSL otherwise relaxes (SAN and key identifier encodings among them).
  const verified = openssl(['verify', '-x509_strict', '-CAfile', rootPem, leafPem, l0Pem])
  t.ok(verified.ok, 'openssl verify -x509_strict exits 0', { output: verified.out })
  t.match(verified.out, `${leafPem}: OK`)
  t.match(verified.out, `${l0Pem}: OK`)
  // RFC 5280 §4.2.1.12: both TLS purposes are usable.
  for (const purpose of ['sslclient', 'sslserver']) {
    const p = openssl(['verify', '-x509_strict', '-purpose', purpose, '-CAfile', rootPem, leafPem])
    t.ok(p.ok, `openssl verify -purpose ${purpose}`, { output: p.out })
  }

  const text = openssl(['x509', '-in', leafPem, '-noout', '-text'])
  t.ok(text.ok)
  t.match(text.out, `Subject: CN = ${child.cn}`)
  t.match(text.out, `Issuer: CN = kinship fleet root ${fleet.domain}`)
  const marker = `URI:kin://${fleet.domain}/parent/${fleet.l0.cn.split('.')[0]}`
  t.match(text.out, `DNS:${child.cn}, ${marker}`)
  t.notMatch(text.out, 'DNS:parent.', 'the parent marker is no DNS name')
  t.match(text.out, /Basic Constraints: critical\s+CA:FALSE/)
  t.match(text.out, /Key Usage: critical\s+Digital Signature, Key Encipherment/)
  t.match(text.out, /TLS Web Server Authentication, TLS Web Client Authentication/)
  t.match(text.out, /Signature Algorithm: sha256WithRSAEncryption/)
  t.match(text.out, /Authority Key Identifier/)

  const rootText = openssl(['x509', '-in', rootPem, '-noout', '-text'])
  t.match(rootText.out, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/)
  t.match(rootText.out, /Key Usage: critical\s+Certificate Sign, CRL Sign/)
  t.match(rootText.out, /Subject Key Identifier/)

  const l0Text = openssl(['x509', '-in', l0Pem, '-noout', '-text'])
  t.match(l0Text.out, `DNS:${fleet.l0.cn}`)
  t.notMatch(l0Text.out, 'URI:', 'L0 carries no parent marker')

  const req = openssl(['req', '-in', csrPem, '-verify', '-noout', '-text'])
  t.ok(req.ok, 'openssl req -verify exits 0', { output: req.out })
  t.match(req.out, /verify OK/i)
  t.match(req.out, `DNS:${child.cn}, ${marker}`)
})

t.test('openssl refuses a leaf under another root and a leaf with a flipped signature byte', async t => {
  const fleet = await makeFleet(nowSeconds())
  const other = await makeFleet(nowSeconds())
  const child = await fleet.enroll(fleet.l0.cn)
  const otherRoot = write('other-root.pem', other.root.pem)
  const foreign = openssl(['verify', '-CAfile', otherRoot, write('leaf2.pem', child.cert.pem)])
  t.notOk(foreign.ok, 'refused under another root')
  t.match(foreign.out, /unable to get local issuer certificate/)
  const der = child.cert.der.slice()
  der[der.length - 10]! ^= 0x01
  const tampered = write('tampered.der', '')
  writeFileSync(tampered, der)
  const tamperedPem = write('tampered.pem', openssl(['x509', '-inform', 'DER', '-in', tampered]).out)
  const bad = openssl(['verify', '-CAfile', write('root2.pem', fleet.root.pem), tamperedPem])
  t.notOk(bad.ok, 'flipped signature refused')
  t.match(bad.out, /signature failure/)
})
