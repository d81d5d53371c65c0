// kin init and the fleet domain's length: every CN of the fleet fits X.509's 64 characters (RFC 5280 ub-common-name).
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { MAX_CN_CHARS, MAX_FLEET_DOMAIN_CHARS, cnOf, validateFleetDomain } from '../../agent/ledger/names.ts'
import { fleetDomainOfRootCn, fleetRootCn } from '../../agent/pki/root-name.ts'
import { isKinError } from '../../agent/errors.ts'
import { expectExit, kin, lastJson, tempDir } from './_harness.ts'

/** A valid fleet domain of exactly `length` characters. */
function domainOf(length: number): string {
  const tail = '.home.arpa'
  return 'a'.repeat(length - tail.length) + tail
}

/** The CN of a PEM certificate's subject. */
function subjectCn(pem: string): string {
  return /CN=([^\n]*)/.exec(new X509Certificate(pem).subject)![1]!
}

t.test('the bound is the root CN: "kinship fleet root " + 45 characters is 64', async t => {
  t.equal(MAX_FLEET_DOMAIN_CHARS, 45)
  const longest = domainOf(MAX_FLEET_DOMAIN_CHARS)
  t.equal(fleetRootCn(longest).length, MAX_CN_CHARS, 'the root CN fills the limit exactly')
  t.ok(cnOf(new Uint8Array(10), longest).length <= MAX_CN_CHARS, 'a device CN fits too')
  const over = domainOf(MAX_FLEET_DOMAIN_CHARS + 1)
  t.throws(() => validateFleetDomain(over), { code: 'FLEET_DOMAIN_TOO_LONG' })
  // The length is refused before the syntax is read: a long string of garbage gets the length refusal.
  t.throws(() => validateFleetDomain('X'.repeat(10_000)), { code: 'FLEET_DOMAIN_TOO_LONG' })
  t.throws(() => validateFleetDomain('Smith.home.arpa'), { code: 'FLEET_DOMAIN' })
  // A root certificate naming a longer domain is no kinship fleet root.
  let code: string | undefined
  try {
    fleetDomainOfRootCn(`kinship fleet root ${over}`)
  } catch (e) {
    code = isKinError(e) ? e.code : String(e)
  }
  t.equal(code, 'CERT_CHAIN')
})

t.test('kin init refuses a 46-character domain with FLEET_DOMAIN_TOO_LONG and the limit, writing nothing', async t => {
  const dir = tempDir(t, 'init-long')
  const home = join(dir, 'l0')
  const domain = domainOf(MAX_FLEET_DOMAIN_CHARS + 1)
  const json = await kin(['init', '--home', home, '--fleet', domain, '--json'])
  expectExit(t, json, 2, 'a refused argument exits 2')
  const out = lastJson(json.stdout)
  t.equal(out.code, 'FLEET_DOMAIN_TOO_LONG')
  t.match(String(out.message), /46 characters; at most 45/)
  t.match(String(out.message), /64-character limit/)
  t.same(out.detail, { length: 46, limit: 45 })
  t.notOk(existsSync(home), 'no home is created')
  const human = await kin(['init', '--home', home, '--fleet', domain])
  expectExit(t, human, 2, 'the same without --json')
  t.match(human.stderr, /at most 45 fit.*\[FLEET_DOMAIN_TOO_LONG\]/s)
})

t.test(
  'kin init with a 45-character domain: the root and L0 certificates carry CNs of at most 64 characters',
  async t => {
    const dir = tempDir(t, 'init-longest')
    const home = join(dir, 'l0')
    const domain = domainOf(MAX_FLEET_DOMAIN_CHARS)
    const run = await kin(['init', '--home', home, '--fleet', domain, '--json'])
    expectExit(t, run, 0, 'the longest domain is accepted')
    const out = lastJson(run.stdout)
    const rootCn = subjectCn(readFileSync(join(home, 'root.pem'), 'utf8'))
    const l0Cn = subjectCn(readFileSync(join(home, 'cert.pem'), 'utf8'))
    t.equal(rootCn, `kinship fleet root ${domain}`)
    t.equal(rootCn.length, 64)
    t.equal(l0Cn, out.cn)
    t.ok(l0Cn.length <= 64, `L0's CN has ${l0Cn.length} characters`)
  },
)
