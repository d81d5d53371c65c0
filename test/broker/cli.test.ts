import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { createEnrollRequest } from '../../agent/enroll/request.ts'
import { authorizeChild } from '../../agent/enroll/parent.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { LOCK_FILE } from '../../broker/home.ts'
import {
  connectDevice,
  end,
  enrollDirect,
  logRecord,
  makeInvite,
  makeL0Home,
  nowSeconds,
  registerInvite,
  submission,
  tryPairing,
  withHomeLedger,
  type BrokerAddress,
} from './_fleet.ts'

const kin = fileURLToPath(new URL('../../bin/kin.mjs', import.meta.url))

interface Running {
  child: ChildProcess
  address: BrokerAddress & { fleet: string; topics: ReturnType<typeof fleetTopics> }
  printed: Record<string, unknown>
  /** Log records from stderr, parsed as they come. */
  logs: Array<Record<string, unknown>>
  /** Lines on stderr that are not JSON. */
  other: string[]
  exited: Promise<number | null>
}

/** Starts `kin broker --json` and waits for its one line on stdout. */
function startBroker(home: string, rootPem: string): Promise<Running> {
  const child = spawn(process.execPath, [kin, 'broker', '--home', home, '--port', '0', '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  // A failed assertion must not leave a broker running.
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const logs: Array<Record<string, unknown>> = []
  const other: string[] = []
  let err = ''
  child.stderr!.on('data', d => {
    err += d
    const lines = err.split('\n')
    err = lines.pop()!
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line))
      } catch {
        other.push(line)
      }
    }
  })
  const exited = new Promise<number | null>(resolve => child.on('close', code => resolve(code)))
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', d => {
      out += d
      const nl = out.indexOf('\n')
      if (nl < 0) return
      const printed = JSON.parse(out.slice(0, nl)) as Record<string, unknown>
      const address = {
        host: String(printed.host),
        port: Number(printed.port),
        cn: String(printed.cn),
        rootPem,
        fleet: String(printed.fleet),
        topics: fleetTopics(String(printed.fleet)),
      }
      resolve({ child, address, printed, logs, other, exited })
    })
    void exited.then(code =>
      reject(new Error(`kin broker exited with ${code} before listening: ${other.join('\n')}${out}`)),
    )
  })
}

function runKin(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise(resolve => {
    const p = spawn(process.execPath, [kin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = '',
      stderr = ''
    p.stdout.on('data', d => {
      stdout += d
    })
    p.stderr.on('data', d => {
      stderr += d
    })
    p.on('close', status => resolve({ status, stdout, stderr }))
  })
}

const l0 = await makeL0Home()
const phone = await withHomeLedger(l0, ledger => enrollDirect(l0, ledger, l0.self, { role: 'member' }))
// The phone's own replica of the ledger, which it signs against; L0's file belongs to the running broker.
const phoneReplica = new Ledger(nodeCrypto)
await withHomeLedger(l0, async ledger => {
  for (const e of ledger.ledger.state.log) phoneReplica.ingest(e)
})

t.test('kin broker --help and a missing --home', async t => {
  const help = await runKin(['broker', '--help'])
  t.equal(help.status, 0)
  t.match(help.stdout, /kin broker --home DIR/)
  const usage = await runKin(['broker', '--json'])
  t.equal(usage.status, 2)
  t.equal(JSON.parse(usage.stdout).code, 'USAGE')
  const device = await runKin(['broker', '--home', phone.dir, '--json'])
  t.equal(device.status, 2, 'a directory that is not a kinship home')
})

t.test(
  'kin broker --json: one line saying where it listens, JSON logs, clean stop on SIGTERM, and a restart resumes',
  async t => {
    const first = await startBroker(l0.dir, l0.rootPem)
    t.same(Object.keys(first.printed).sort(), ['cn', 'fleet', 'host', 'ok', 'port', 'serverNames', 'url'])
    t.equal(first.printed.cn, l0.cn)
    t.equal(first.printed.fleet, l0.domain)
    t.equal(first.printed.host, '127.0.0.1')
    t.ok(Number(first.printed.port) > 0, 'an OS-chosen port')
    t.ok(existsSync(join(l0.dir, LOCK_FILE)), 'the home is locked while it runs')

    // A second broker on the same home refuses to start.
    const second = await runKin(['broker', '--home', l0.dir, '--port', '0', '--json'])
    t.equal(second.status, 2)
    t.equal(JSON.parse(second.stdout).code, 'BROKER_LOCKED')

    const client = await connectDevice(first.address, phone)
    const invite = makeInvite(phone, { role: 'device' })
    t.same(await registerInvite(first.address, client, phone, invite.registration), [
      'invite-ok',
      invite.invite.inviteId,
    ])
    // An event accepted before the stop must be there after it: the phone authorizes a camera and submits it.
    const { request } = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'camera', name: 'garage' })
    const now = nowSeconds()
    const event = authorizeChild(
      nodeCrypto,
      phoneReplica,
      { cn: phone.cn, ledgerSeed: phone.ledgerSeed },
      request,
      { role: 'device', notAfter: now + 86400 },
      now,
    )
    await client.publishAsync(first.address.topics.submit(phone.cn), Buffer.from(submission([event])), { qos: 1 })
    await logRecord(first.logs, r => r.event === 'ledger.accepted' && r.id === event.idHex)
    await end(client)

    first.child.kill('SIGTERM')
    t.equal(await first.exited, 0, 'exit status 0 after SIGTERM')
    t.same(first.other, [], 'stderr holds JSON lines only')
    t.ok(first.logs.some(r => r.event === 'broker.listening'))
    t.ok(
      first.logs.some(r => r.event === 'broker.closed'),
      'it logged its clean stop',
    )
    t.notOk(existsSync(join(l0.dir, LOCK_FILE)), 'the lock is gone')

    const again = await startBroker(l0.dir, l0.rootPem)
    const listening = await logRecord(again.logs, r => r.event === 'broker.listening')
    t.equal(listening.invites, 1, 'the pending invite was read back')
    const login = await tryPairing(again.address, invite.invite.inviteId, invite.secrets.loginProof)
    t.equal(login.returnCode, 0, 'its code logs in after the restart')
    await end(login.client)
    again.child.kill('SIGINT')
    t.equal(await again.exited, 0, 'exit status 0 after SIGINT')
    t.ok(
      await withHomeLedger(l0, async ledger => ledger.ledger.state.has(event.idHex)),
      'the accepted event is in the ledger file',
    )
  },
)

t.test(
  'kin broker --export-mosquitto: writes the configuration and says what it wrote; the modes refuse each other',
  async t => {
    const dir = join(l0.dir, '..', 'mosquitto-export')
    const out = await runKin([
      'broker',
      '--home',
      l0.dir,
      '--export-mosquitto',
      dir,
      '--host',
      '127.0.0.1',
      '--port',
      '18883',
      '--json',
    ])
    t.equal(out.status, 0, out.stderr)
    const printed = JSON.parse(out.stdout) as {
      ok: boolean
      files: Record<string, string>
      port: number
      cn: string
      revoked: unknown[]
      knownCertificates: number
    }
    t.equal(printed.ok, true)
    t.equal(printed.port, 18883)
    t.equal(printed.cn, l0.cn)
    t.same(Object.keys(printed.files).sort(), [
      'acl',
      'cafile',
      'certfile',
      'conf',
      'crl',
      'dhparam',
      'keyfile',
      'rsaCertfile',
      'rsaKeyfile',
    ])
    for (const f of Object.values(printed.files)) t.ok(existsSync(f), f)
    t.same(printed.revoked, [], 'nobody is revoked in this fleet')
    t.ok(printed.knownCertificates >= 2, "the phone's certificate and L0's own")

    for (const [args, what] of [
      [['--no-broker'], '--no-broker without --broker'],
      [['--export-mosquitto', dir, '--port', '0'], 'an export for port 0'],
      [['--no-broker', '--broker', 'http://127.0.0.1:1'], 'a broker URL that is not mqtts'],
    ] as Array<[string[], string]>) {
      const r = await runKin(['broker', '--home', l0.dir, ...args, '--json'])
      t.equal(r.status, 2, what)
      t.match(JSON.parse(r.stdout).code, /^(USAGE|BAD_ARGUMENT)$/, what)
    }
  },
)

t.test(
  'kin broker --no-broker with nothing listening fails fast with BROKER_UNREACHABLE and leaves the home unlocked',
  async t => {
    const r = await runKin(['broker', '--home', l0.dir, '--no-broker', '--broker', 'mqtts://127.0.0.1:1', '--json'])
    t.equal(r.status, 2)
    t.equal(JSON.parse(r.stdout).code, 'BROKER_UNREACHABLE')
    t.notOk(existsSync(join(l0.dir, LOCK_FILE)), 'no lock left behind')
  },
)

t.test("kin broker writes its address into L0's config.json, so kin invite on L0's home needs no --broker", async t => {
  const running = await startBroker(l0.dir, l0.rootPem)
  const config = JSON.parse(readFileSync(join(l0.dir, 'config.json'), 'utf8')) as Record<string, unknown>
  t.equal(config['broker'], running.printed.url, 'config.json names the broker just started')
  t.equal(config['cn'], l0.cn, 'the rest of config.json is kept')
  const invite = spawn(
    process.execPath,
    [kin, 'invite', '--home', l0.dir, '--role', 'device', '--ttl', '1m', '--json'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  t.teardown(() => {
    if (invite.exitCode === null) invite.kill('SIGKILL')
  })
  const line = await new Promise<string>((resolve, reject) => {
    let out = '',
      err = ''
    invite.stdout.on('data', d => {
      out += d
      const nl = out.indexOf('\n')
      if (nl >= 0) resolve(out.slice(0, nl))
    })
    invite.stderr.on('data', d => {
      err += d
    })
    invite.on('close', code => reject(new Error(`kin invite exited ${code}: ${out}${err}`)))
  })
  t.match(
    JSON.parse(line),
    { code: /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/ },
    'kin invite printed a code without --broker',
  )
  invite.kill('SIGTERM')
  running.child.kill('SIGTERM')
  await running.exited
})

// DESIGN.md "Command line": no command overwrites a file it did not create without --force.
t.test(
  'kin broker --export-mosquitto never writes into a kinship home, and replaces foreign files only with --force',
  async t => {
    const intoHome = await runKin([
      'broker',
      '--home',
      l0.dir,
      '--export-mosquitto',
      phone.dir,
      '--port',
      '18883',
      '--json',
    ])
    t.equal(intoHome.status, 2, "an export into the phone's home is refused")
    t.equal(JSON.parse(intoHome.stdout).code, 'STORAGE_EXISTS')
    t.match(JSON.parse(intoHome.stdout).message, /is a kinship home/)
    t.notOk(existsSync(join(phone.dir, 'mosquitto.conf')), 'nothing was written there')

    const foreign = join(l0.dir, '..', 'foreign-export')
    mkdirSync(foreign, { recursive: true })
    writeFileSync(join(foreign, 'root.pem'), "someone else's root")
    const refused = await runKin([
      'broker',
      '--home',
      l0.dir,
      '--export-mosquitto',
      foreign,
      '--port',
      '18883',
      '--json',
    ])
    t.equal(refused.status, 2)
    t.equal(JSON.parse(refused.stdout).code, 'STORAGE_EXISTS')
    t.equal(readFileSync(join(foreign, 'root.pem'), 'utf8'), "someone else's root", 'the foreign file is untouched')
    const forced = await runKin([
      'broker',
      '--home',
      l0.dir,
      '--export-mosquitto',
      foreign,
      '--port',
      '18883',
      '--force',
      '--json',
    ])
    t.equal(forced.status, 0, 'with --force it is replaced')
    t.equal(readFileSync(join(foreign, 'root.pem'), 'utf8'), l0.rootPem)
    const again = await runKin(['broker', '--home', l0.dir, '--export-mosquitto', foreign, '--port', '18883', '--json'])
    t.equal(again.status, 0, 'a second export over its own files needs no --force')
  },
)
