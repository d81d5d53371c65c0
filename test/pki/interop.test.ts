import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { makeFleet, nowSeconds } from './_fleet.ts'
import type { TlsKeyType } from '../../agent/ports/pki.ts'

// Three verifiers kinship shares no code with: GnuTLS (certtool), Go's crypto/x509 and OpenSSL. Each must accept every
// certificate the fleet CA issues, for the names and purposes a device uses, and refuse a foreign or tampered one —
// for both key types of the root (ecdsa-with-SHA256 or sha256WithRSAEncryption signatures) and of the devices, mixed.
const KEY_TYPES: readonly { root: TlsKeyType; devices: TlsKeyType; child: TlsKeyType }[] = [
  { root: 'p256', devices: 'p256', child: 'rsa2048' },
  { root: 'rsa2048', devices: 'rsa2048', child: 'p256' },
]
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

/** A fleet of one root key type: L0 and a grandchild with the devices' key type, a child of L0 with the other one. */
async function fleetFiles(keys: (typeof KEY_TYPES)[number]) {
  const fleet = await makeFleet(nowSeconds(), undefined, keys)
  const child = await fleet.enroll(fleet.l0.cn, { keyType: keys.child })
  const grandchild = await fleet.enroll(child.cn)
  const other = await makeFleet(nowSeconds(), undefined, keys)
  const der = grandchild.cert.der.slice()
  der[der.length - 10]! ^= 0x01
  const p = `${keys.root}-`
  const leaves = [
    { name: `L0 (${keys.devices})`, cn: fleet.l0.cn, cert: fleet.l0.cert },
    { name: `a child of L0 (${keys.child})`, cn: child.cn, cert: child.cert },
    { name: `a grandchild (${keys.devices})`, cn: grandchild.cn, cert: grandchild.cert },
  ].map((l, i) => ({
    ...l,
    path: write(`${p}leaf${i}.pem`, l.cert.pem),
    chain: write(`${p}chain${i}.pem`, l.cert.pem + fleet.root.pem),
  }))
  return {
    fleet,
    child,
    grandchild,
    leaves,
    root: write(`${p}root.pem`, fleet.root.pem),
    otherRoot: write(`${p}other-root.pem`, other.root.pem),
    tamperedDer: write(`${p}tampered.der`, der),
  }
}

for (const keys of KEY_TYPES)
  t.test(`GnuTLS certtool verifies every fleet certificate against a ${keys.root} root, with its hostname`, async t => {
    if (run('certtool', ['--version']).missing) {
      t.fail('certtool is not installed: apt-get install gnutls-bin (.ci/run installs it)')
      return
    }
    const f = await fleetFiles(keys)
    for (const leaf of f.leaves) {
      const r = run('certtool', [
        '--verify',
        '--load-ca-certificate',
        f.root,
        '--infile',
        leaf.path,
        '--verify-hostname',
        leaf.cn,
      ])
      t.ok(r.ok, `certtool --verify accepts ${leaf.name}`, { output: r.out })
      t.match(r.out, /Chain verification output: Verified/)
      const chain = run('certtool', ['--verify-chain', '--infile', leaf.chain])
      t.ok(chain.ok, `certtool --verify-chain accepts ${leaf.name} followed by its root`, { output: chain.out })
      t.match(chain.out, /Chain verification output: Verified/)
    }
    const foreign = run('certtool', ['--verify', '--load-ca-certificate', f.otherRoot, '--infile', f.leaves[2]!.path])
    t.notOk(foreign.ok, 'certtool refuses a leaf under another root')
    t.match(foreign.out, /Not verified/)
    const wrongName = run('certtool', [
      '--verify',
      '--load-ca-certificate',
      f.root,
      '--infile',
      f.leaves[2]!.path,
      '--verify-hostname',
      f.leaves[1]!.cn,
    ])
    t.notOk(wrongName.ok, "certtool refuses the grandchild for its parent's name")
  })

for (const keys of KEY_TYPES)
  t.test(
    `Go's crypto/x509 verifies every fleet certificate under a ${keys.root} root for TLS client and server use, and refuses a tampered one`,
    async t => {
      if (run('go', ['version']).missing) {
        t.fail('go is not installed: apt-get install golang-go (.ci/run installs it)')
        return
      }
      const source = fileURLToPath(new URL('../fixtures/pki/go-verify/', import.meta.url))
      const bin = join(dir, `go-verify-${keys.root}`)
      const built = run('go', ['build', '-o', bin, '.'], source)
      t.ok(built.ok, 'the Go verifier builds', { output: built.out })
      if (!built.ok) return
      const f = await fleetFiles(keys)
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
      const tampered = run(bin, [f.root, write(`${keys.root}-tampered.pem`, tamperedPem.out), '-', 'client'])
      t.notOk(tampered.ok, 'Go refuses a leaf with a flipped signature byte')
    },
  )

for (const keys of KEY_TYPES)
  t.test(
    `openssl verify -x509_strict accepts every fleet certificate under a ${keys.root} root, with its hostname and purpose`,
    async t => {
      const f = await fleetFiles(keys)
      const rootText = run('openssl', ['x509', '-noout', '-text', '-in', f.root]).out
      t.match(
        rootText,
        keys.root === 'p256'
          ? /Signature Algorithm: ecdsa-with-SHA256/
          : /Signature Algorithm: sha256WithRSAEncryption/,
        `the ${keys.root} root signs as its key type`,
      )
      for (const leaf of f.leaves) {
        const r = run('openssl', ['verify', '-x509_strict', '-CAfile', f.root, leaf.path])
        t.ok(r.ok, `openssl -x509_strict accepts ${leaf.name}`, { output: r.out })
        for (const purpose of ['sslclient', 'sslserver']) {
          const p = run('openssl', [
            'verify',
            '-x509_strict',
            '-purpose',
            purpose,
            '-verify_hostname',
            leaf.cn,
            '-CAfile',
            f.root,
            leaf.path,
          ])
          t.ok(p.ok, `openssl accepts ${leaf.name} as ${purpose} for its CN`, { output: p.out })
        }
      }
      const foreign = run('openssl', ['verify', '-x509_strict', '-CAfile', f.otherRoot, f.leaves[2]!.path])
      t.notOk(foreign.ok, 'openssl refuses a leaf under another root of the same name')
    },
  )
