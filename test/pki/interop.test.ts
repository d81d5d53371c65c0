import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { makeFleet, nowSeconds } from './_fleet.ts'

// Two verifiers kinship shares no code with: GnuTLS (certtool) and Go's crypto/x509. Each must accept every
// certificate the fleet CA issues, for the names and purposes a device uses, and refuse a foreign or tampered one.
const dir = mkdtempSync(join(tmpdir(), 'kin-pki-interop-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function run(cmd: string, args: string[], cwd?: string): { ok: boolean; out: string; missing: boolean } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd, timeout: 300_000 })
  const missing = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, missing }
}

function write(name: string, text: string | Uint8Array): string {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

async function fleetFiles() {
  const fleet = await makeFleet(nowSeconds())
  const child = await fleet.enroll(fleet.l0.cn)
  const grandchild = await fleet.enroll(child.cn)
  const other = await makeFleet(nowSeconds())
  const der = grandchild.cert.der.slice()
  der[der.length - 10]! ^= 0x01
  return {
    fleet, child, grandchild,
    root: write('root.pem', fleet.root.pem),
    otherRoot: write('other-root.pem', other.root.pem),
    leaves: [
      { name: 'L0', cn: fleet.l0.cn, path: write('l0.pem', fleet.l0.cert.pem) },
      { name: 'a child of L0', cn: child.cn, path: write('child.pem', child.cert.pem) },
      { name: 'a grandchild', cn: grandchild.cn, path: write('grandchild.pem', grandchild.cert.pem) },
    ],
    tamperedDer: write('tampered.der', der),
  }
}

t.test('GnuTLS certtool verifies every fleet certificate against the root, with its hostname', async t => {
  if (run('certtool', ['--version']).missing) {
    t.fail('certtool is not installed: apt-get install gnutls-bin (.ci/run installs it)')
    return
  }
  const f = await fleetFiles()
  for (const leaf of f.leaves) {
    const r = run('certtool', ['--verify', '--load-ca-certificate', f.root, '--infile', leaf.path, '--verify-hostname', leaf.cn])
    t.ok(r.ok, `certtool --verify accepts ${leaf.name}`, { output: r.out })
    t.match(r.out, /Chain verification output: Verified/)
  }
  const foreign = run('certtool', ['--verify', '--load-ca-certificate', f.otherRoot, '--infile', f.leaves[2]!.path])
  t.notOk(foreign.ok, 'certtool refuses a leaf under another root')
  t.match(foreign.out, /Not verified/)
  const wrongName = run('certtool', ['--verify', '--load-ca-certificate', f.root, '--infile', f.leaves[2]!.path, '--verify-hostname', f.leaves[1]!.cn])
  t.notOk(wrongName.ok, "certtool refuses the grandchild for its parent's name")
})

t.test("Go's crypto/x509 verifies every fleet certificate for TLS client and server use, and refuses a tampered one", async t => {
  if (run('go', ['version']).missing) {
    t.fail('go is not installed: apt-get install golang-go (.ci/run installs it)')
    return
  }
  const source = fileURLToPath(new URL('../fixtures/pki/go-verify/', import.meta.url))
  const bin = join(dir, 'go-verify')
  const built = run('go', ['build', '-o', bin, '.'], source)
  t.ok(built.ok, 'the Go verifier builds', { output: built.out })
  if (!built.ok) return
  const f = await fleetFiles()
  for (const leaf of f.leaves) {
    for (const purpose of ['client', 'server']) {
      const r = run(bin, [f.root, leaf.path, leaf.cn, purpose])
      t.ok(r.ok, `Go accepts ${leaf.name} as a TLS ${purpose}`, { output: r.out })
    }
  }
  const foreign = run(bin, [f.otherRoot, f.leaves[2]!.path, f.leaves[2]!.cn, 'client'])
  t.notOk(foreign.ok, 'Go refuses a leaf under another root')
  t.match(foreign.out, /unknown authority/)
  const wrongName = run(bin, [f.root, f.leaves[2]!.path, f.leaves[1]!.cn, 'server'])
  t.notOk(wrongName.ok, "Go refuses the grandchild for its parent's name")
  const tamperedPem = run('openssl', ['x509', '-inform', 'DER', '-in', f.tamperedDer])
  const tampered = run(bin, [f.root, write('tampered.pem', tamperedPem.out), '-', 'client'])
  t.notOk(tampered.ok, 'Go refuses a leaf with a flipped signature byte')
})

t.test('openssl verify -x509_strict accepts every fleet certificate', async t => {
  const f = await fleetFiles()
  for (const leaf of f.leaves) {
    const r = run('openssl', ['verify', '-x509_strict', '-CAfile', f.root, leaf.path])
    t.ok(r.ok, `openssl -x509_strict accepts ${leaf.name}`, { output: r.out })
  }
})
