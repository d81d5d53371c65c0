// A home on disk as an unprivileged local attacker finds it (DESIGN.md "Storage"): umask 000, symlinks, FIFOs and
// devices at a home file's name, a home others can write, and names that would forge terminal output.
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { nodeStorage } from '../../runtime/node/storage.ts'
import { readHomeFile } from '../../runtime/node/home-file.ts'
import { escapeNonPrintable, requirePrintableName } from '../../agent/ledger/names.ts'
import { authorizeEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { decodeEnrollRequest, encodeEnrollRequest } from '../../agent/enroll/request.ts'
import { decodeInvite, signInvite } from '../../agent/enroll/invite.ts'
import { makeServeHouse } from './_house.ts'
import { tempDir } from '../helpers/home-fleet.ts'

const KIN = fileURLToPath(new URL('../../bin/kin.mjs', import.meta.url))
const house = await makeServeHouse()
const lock = house.cn['L3.3'],
  guest = house.cn['L3.4']

interface Run {
  status: number | null
  stdout: string
  stderr: string
}

/** Runs `kin ...` to completion under `umask` (a shell sets it, as a user's login would); killed after 60 s. */
function kin(args: string[], umask = '022'): Promise<Run> {
  return new Promise(resolve => {
    const child = spawn('/bin/sh', ['-c', `umask ${umask}; exec "$0" "$@"`, process.execPath, KIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = '',
      stderr = ''
    // A hang (a FIFO opened for reading) must fail the test, not stall the suite.
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.stdout.on('data', d => {
      stdout += d
    })
    child.stderr.on('data', d => {
      stderr += d
    })
    child.on('close', status => {
      clearTimeout(guard)
      resolve({ status, stdout, stderr })
    })
  })
}

function json(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout) as Record<string, unknown>
}

/** Every entry under `dir` with its mode bits, paths relative to `dir`. */
function modes(dir: string, prefix = ''): Array<[string, number]> {
  const out: Array<[string, number]> = []
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    const st = lstatSync(path)
    out.push([prefix + name, st.mode & 0o777])
    if (st.isDirectory()) out.push(...modes(path, `${prefix}${name}/`))
  }
  return out
}

t.test(
  'umask 000: kin init writes a 0700 home of 0600 files; a home others can write is refused with how to fix it',
  async t => {
    const { dir: parent, remove } = tempDir()
    t.teardown(remove)
    const dir = join(parent, 'l0', 'home')
    const init = await kin(['init', '--home', dir, '--fleet', 'umask.home.arpa', '--json'], '000')
    t.equal(init.status, 0, init.stdout + init.stderr)
    t.equal(statSync(dir).mode & 0o777, 0o700, 'the home directory is 0700')
    t.equal(statSync(join(parent, 'l0')).mode & 0o777, 0o700, 'so is a parent kin created for it')
    const entries = modes(dir)
    t.ok(entries.length >= 7, `${entries.length} entries`)
    for (const [name, mode] of entries)
      t.equal(mode, lstatSync(join(dir, name)).isDirectory() ? 0o700 : 0o600, `${name} is ${mode.toString(8)}`)

    const verify = await kin(['ledger', 'verify', '--home', dir, '--json'], '000')
    t.equal(verify.status, 0, verify.stdout + verify.stderr)
    t.equal(statSync(dir).mode & 0o777, 0o700, 'still 0700 after a run under umask 000')

    chmodSync(dir, 0o777)
    const [open, check] = await Promise.all([
      kin(['ledger', 'verify', '--home', dir, '--json']),
      kin(['revoke', '--home', dir, `aaaaaaaaaaaaaaaa.umask.home.arpa`, '--json']),
    ])
    for (const r of [open, check]) {
      t.equal(r.status, 2, 'an error, not a verdict')
      t.match(json(r.stdout), {
        ok: false,
        code: 'HOME_UNSAFE',
        message: new RegExp(`writable by its group and others \\(mode 777\\).*chmod 700 ${dir}`),
      })
    }
    chmodSync(dir, 0o720)
    t.match(json((await kin(['ledger', 'verify', '--home', dir, '--json'])).stdout), {
      code: 'HOME_UNSAFE',
      message: /writable by its group \(mode 720\)/,
    })
    chmodSync(dir, 0o700)
    t.equal(
      (await kin(['ledger', 'verify', '--home', dir, '--json'])).status,
      0,
      'fixed as the message says, it runs again',
    )

    // Another user's home (only root can hand a directory to someone else).
    if (process.getuid?.() === 0) {
      chownSync(dir, 65534, 65534)
      t.match(json((await kin(['ledger', 'verify', '--home', dir, '--json'])).stdout), {
        code: 'HOME_UNSAFE',
        message: /belongs to user 65534, not to this user \(0\)/,
      })
      chownSync(dir, 0, 0)
    }
  },
)

t.test(
  'a symlink, a FIFO or a device at a home file is refused (FILE_NOT_REGULAR), never followed nor waited on',
  async t => {
    const home = await house.home(lock)
    t.teardown(home.remove)
    const ledger = join(home.dir, 'ledger.cbor')
    const elsewhere = join(home.dir, '..', `${home.dir.split('/').at(-1)}-elsewhere.cbor`)
    copyFileSync(ledger, elsewhere)
    t.teardown(() => {
      try {
        unlinkSync(elsewhere)
      } catch {
        /* gone */
      }
    })
    const peer = house.file(home.dir, 'guest.pem', house.fleet.device(guest).certificate.pem)
    const check = () => kin(['check', '--home', home.dir, '--peer', peer, '--action', 'unlock', '--json'])
    t.equal((await check()).status, 0, 'the untouched home allows the guest')

    unlinkSync(ledger)
    symlinkSync(elsewhere, ledger)
    const [viaLink, verifyLink] = await Promise.all([check(), kin(['ledger', 'verify', '--home', home.dir, '--json'])])
    t.equal(viaLink.status, 2)
    t.match(json(viaLink.stdout), { code: 'FILE_NOT_REGULAR', message: /is a symlink, not a regular file/ })
    t.match(json(verifyLink.stdout), { code: 'FILE_NOT_REGULAR' }, 'kin ledger verify --home does not follow it either')
    const size = statSync(elsewhere).size
    await t.rejects(
      nodeStorage(home.dir).openAppendFile('ledger.cbor'),
      { code: 'FILE_NOT_REGULAR' },
      'the writer refuses it too',
    )
    t.equal(statSync(elsewhere).size, size, 'nothing was written through the link')

    unlinkSync(ledger)
    symlinkSync('/dev/zero', ledger)
    t.match(json((await check()).stdout), { code: 'FILE_NOT_REGULAR' }, '/dev/zero behind a link: refused at once')
    unlinkSync(ledger)
    execFileSync('mkfifo', [ledger])
    const [fifo, fifoVerify] = await Promise.all([check(), kin(['ledger', 'verify', ledger, '--json'])])
    t.match(json(fifo.stdout), { code: 'FILE_NOT_REGULAR', message: /is a FIFO/ }, 'a FIFO: refused, not waited on')
    t.match(json(fifoVerify.stdout), { code: 'FILE_NOT_REGULAR' }, 'a FIFO named as FILE too')
    t.match(json((await kin(['ledger', 'verify', '/dev/zero', '--json'])).stdout), {
      code: 'FILE_NOT_REGULAR',
      message: /is a device/,
    })
    t.throws(() => readHomeFile(ledger), { code: 'FILE_NOT_REGULAR' })

    // The audit log is written by kin check: a link planted there must not redirect its lines.
    unlinkSync(ledger)
    copyFileSync(elsewhere, ledger)
    const target = join(home.dir, 'victim.txt')
    writeFileSync(target, 'untouched\n')
    unlinkSync(join(home.dir, 'audit.log'))
    symlinkSync(target, join(home.dir, 'audit.log'))
    const audited = await check()
    t.match(json(audited.stdout), { code: 'FILE_NOT_REGULAR' })
    t.equal(readFileSync(target, 'utf8'), 'untouched\n', 'no audit line went through the link')
  },
)

t.test('kin ledger verify: an empty ledger is a failure (exit 1, LEDGER_EMPTY), not "ok"', async t => {
  const home = await house.home(lock)
  t.teardown(home.remove)
  const empty = join(home.dir, 'empty.cbor')
  writeFileSync(empty, '')
  const r = await kin(['ledger', 'verify', empty, '--json'])
  t.equal(r.status, 1)
  t.match(json(r.stdout), { ok: false, code: 'LEDGER_EMPTY' })
  writeFileSync(join(home.dir, 'ledger.cbor'), '')
  const readable = await kin(['ledger', 'verify', '--home', home.dir])
  t.equal(readable.status, 1)
  t.match(readable.stdout, /^FAILED: .*holds no event/)
})

t.test(
  'names with control or reordering characters: refused at invite and authorize time, escaped on display',
  async t => {
    const forged = 'lock\u001b[2K\r    3  2026-01-01T00:00:00Z  revoke  '
    t.throws(() => requirePrintableName(forged, '--name'), {
      code: 'NAME_NOT_PRINTABLE',
      message: /U\+001b at position 4/,
    })
    t.throws(
      () => requirePrintableName('tablet\u202egnp.exe', 'the name'),
      { code: 'NAME_NOT_PRINTABLE' },
      'a right-to-left override',
    )
    t.equal(
      requirePrintableName('Küche — Tür 🚪', 'the name'),
      'Küche — Tür 🚪',
      'letters, punctuation and emoji are fine',
    )
    t.equal(escapeNonPrintable('a\u001bb\nc\u202ed'), 'a\\u{1b}b\\u{a}c\\u{202e}d')

    const l0 = await house.home(house.cn.L0)
    t.teardown(l0.remove)
    const invite = await kin(['invite', '--home', l0.dir, '--name', forged, '--json'])
    t.equal(invite.status, 2)
    t.match(json(invite.stdout), { code: 'NAME_NOT_PRINTABLE' }, 'kin invite refuses before it asks anyone')

    // Whatever a parent's software lets through, every device refuses the event (agent/ledger/validate.ts).
    const ledger = house.fleet.l0Ledger
    const parent = house.fleet.device(house.cn['L2.2'])
    const now = Math.floor(Date.now() / 1000)
    const keys = nodeCrypto.ed25519KeyPair()
    for (const [name, kind] of [
      [forged, 'phone'],
      ['phone', 'ph\none'],
    ]) {
      const event = signEvent(
        nodeCrypto,
        authorizeEvent(
          nodeCrypto,
          ledger.state.currentBinding(parent.cn)!,
          {
            spkiHash: nodeCrypto.sha256(nodeCrypto.randomBytes(32)),
            ledgerKey: keys.publicKey,
            role: 'guest',
            depth: 0,
            notAfter: now + 3600,
            kind: kind!,
            name: name!,
          },
          now,
        ),
        parent.secrets.ledgerSeed,
      )
      t.throws(
        () => ledger.check(event, { now }),
        { code: 'NAME_NOT_PRINTABLE' },
        `a hand-built authorize event (${JSON.stringify(name)}, ${JSON.stringify(kind)})`,
      )
    }

    const request = { spkiDer: new Uint8Array(300), ledgerKey: new Uint8Array(32), kind: 'phone', name: forged }
    t.throws(
      () => decodeEnrollRequest(encodeEnrollRequest(request)),
      { code: 'NAME_NOT_PRINTABLE' },
      'the parent refuses such a request',
    )
    const signed = signInvite(
      nodeCrypto,
      {
        inviteId: '0123456789abcdef',
        loginVerifier: 'ab'.repeat(32),
        parentCn: parent.cn,
        role: 'guest',
        name: forged,
        expires: now + 60,
        time: now,
      },
      parent.secrets.ledgerSeed,
    )
    t.throws(() => decodeInvite(signed), { code: 'NAME_NOT_PRINTABLE' }, 'and L0 such an invite')
    t.ok(existsSync(l0.dir))
  },
)
