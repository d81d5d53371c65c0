/** @module `kin rekey`: a fresh TLS key for this device and a certificate for it, the ledger's binding moved to the new key. */
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { existsSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { KinError, VerificationError } from '../../agent/errors.ts'
import { fromHex, toHex } from '../../agent/codec/bytes.ts'
import { connectDevice, type DeviceLogin } from '../../agent/gossip/login.ts'
import { certifiedEvent, rekeyEvent } from '../../agent/ledger/builders.ts'
import { readEvent, signEvent } from '../../agent/ledger/event.ts'
import type { LedgerState } from '../../agent/ledger/state.ts'
import type { Binding, EncodedEvent } from '../../agent/ledger/types.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { parseTlsKeyType, tlsKeyTypeOf, type TlsKeyType } from '../../agent/pki/key-type.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { HOME_FILE_MODE, readHomeFile } from '../../runtime/node/home-file.ts'
import { askL0ForCertificate, standingBinding } from '../../runtime/l0-certificate.ts'
import { Home, writeFileDurable } from '../../runtime/home.ts'
import { brokerLoginOf, headSummary, openFollowingHome, type FollowingHome } from '../../runtime/following-home.ts'
import { parseDuration, parseDurationMs, requireString, usageError, type CommandSpec } from '../args.ts'
import { runInvite } from './invite.ts'
import { stepTimeoutMs } from './enroll.ts'
import { emit, isoTime, reportError } from '../output.ts'

/**
 * The journal of a rekey under way, in the home (mode 0600): the new key, its certificate and the two events that move
 * the binding. Written before the events leave the device, removed once key and certificate are in place, so a rekey
 * interrupted anywhere is finished by the next `kin rekey` with the same key.
 */
export const REKEY_PENDING_FILE = 'rekey-pending.json'

interface PendingRekey {
  keyPem: string
  certPem: string
  /** The rekey and certified events, hex. */
  rekey: string
  certified: string
}

/** What a rekey did. */
export interface Rekeying {
  cn: string
  keyType: TlsKeyType
  serial: string
  notAfter: number
  certHash: string
  previous: { serial: string; keyType: TlsKeyType }
  rekeyId: string
  certifiedId: string
  /** True when this run finished a rekey an earlier run had begun. */
  resumed: boolean
  head: Record<string, unknown> | null
}

/** This device's binding, refused when its own ledger already says it may not rekey (runtime/l0-certificate.ts). */
export const rekeyableBinding = (state: LedgerState, cn: string, now: number): Binding =>
  standingBinding(state, cn, now, 'rekey')

function readPending(path: string): PendingRekey | undefined {
  if (!existsSync(path)) return undefined
  try {
    const p = JSON.parse(Buffer.from(readHomeFile(path)).toString('utf8')) as PendingRekey
    if ([p.keyPem, p.certPem, p.rekey, p.certified].every(v => typeof v === 'string')) return p
  } catch (err) {
    if (err instanceof KinError && err.code === 'FILE_NOT_REGULAR') throw err
  }
  throw new KinError('STORAGE_DAMAGED', `${path} is not a rekey journal kinship wrote: move it away and run again`)
}

/** Whether `login` opens a session with L0's broker now (false when refused, or when its certificate and key are no pair). */
async function logsIn(login: DeviceLogin, timeoutMs: number): Promise<boolean> {
  try {
    const client = await connectDevice(nodeTransport, login, { timeoutMs })
    await client.close().catch(() => undefined)
    return true
  } catch (err) {
    if (err instanceof KinError && err.code === 'BROKER_REFUSED') return false
    if (!new X509Certificate(login.certPem).checkPrivateKey(createPrivateKey(login.keyPem))) return false
    throw err
  }
}

function dropPending(path: string): void {
  try {
    unlinkSync(path)
  } catch {
    /* already gone */
  }
}

/**
 * Submits the rekey and certified events, waits until a head of L0's covers them, then puts the new key and
 * certificate in place (each file atomically; the journal, removed last, finishes a swap cut in half). The follower
 * logs in with the new identity from the moment the events are on their way: L0 ends the old certificate's session
 * once the rekey is in its log. Undefined when this device's ledger refuses the journal's rekey and the binding is
 * not the journal's key: that rekey can never enter, the journal is dropped and the old identity stands.
 */
async function finish(
  opened: FollowingHome,
  pending: PendingRekey,
  pendingPath: string,
  timeoutMs: number,
): Promise<{ rekey: EncodedEvent; certified: EncodedEvent } | undefined> {
  const { home, follower } = opened
  const rekey = readEvent(nodeCrypto, fromHex(pending.rekey))
  const certified = readEvent(nodeCrypto, fromHex(pending.certified))
  const out = await follower.submit([rekey, certified])
  const refused = out.refused.filter(r => r.code !== 'DUPLICATE_EVENT')
  if (refused.length > 0) {
    const state = opened.files.ledger.ledger.state
    if (state.has(rekey.idHex)) {
      const r = refused[0]!
      throw new VerificationError(
        r.code as KinError['code'],
        `this device's ledger refused the certified event of the new certificate: ${r.message}`,
      )
    }
    dropPending(pendingPath)
    return undefined
  }
  follower.start()
  try {
    if (!out.sent) await follower.waitOnline(timeoutMs)
    opened.replaceIdentity(pending.certPem, pending.keyPem)
    await follower.waitCovered([rekey.idHex, certified.idHex], timeoutMs)
  } catch (err) {
    const cause = follower.lastError ?? (err as KinError)
    throw new KinError(
      cause.code,
      `the rekey is on its way but no head of L0's covers it within ${timeoutMs} ms (${cause.message}); run 'kin rekey' again: it finishes with the new key kept in ${pendingPath}`,
      { cause, detail: { rekeyId: rekey.idHex, certifiedId: certified.idHex } },
    )
  }
  home.writeSecret('tlsKey', pending.keyPem)
  home.writePublic('cert', pending.certPem)
  dropPending(pendingPath)
  return { rekey, certified }
}

/**
 * Rekeys an opened device home whose follower is not started (or the agent's, lent): finishes a journalled rekey if
 * one is there; else makes a new TLS key, signs a rekey of itself with its ledger key (same ledger key, same notAfter),
 * asks L0's CA for a certificate over its own session, signs the certified event, journals all of it, and finishes.
 * Until the events are submitted the old identity is untouched; L0 itself records nothing before that.
 */
export async function rekeyOpenedHome(
  opened: FollowingHome,
  opts: { now: number; timeoutMs: number; keyType?: TlsKeyType },
): Promise<Rekeying> {
  const { home, config } = opened
  const pendingPath = join(home.dir, REKEY_PENDING_FILE)
  const login = brokerLoginOf(home, config)
  const previous = DeviceCertificate.from(login.certPem, { sha256: nodeCrypto.sha256 })
  const previousType = tlsKeyTypeOf(previous.spkiDer)
  const journalled = readPending(pendingPath)
  if (journalled !== undefined) {
    const journalType = tlsKeyTypeOf(DeviceCertificate.from(journalled.certPem).spkiDer)
    if (opts.keyType !== undefined && opts.keyType !== journalType)
      throw new KinError(
        'USAGE',
        `a rekey begun earlier is still to finish, with a new ${journalType} key: run 'kin rekey' without --key ${opts.keyType} to finish it, then again to change the key type`,
      )
    // Once L0 logged the rekey, the old certificate no longer logs in (and a swap cut in half leaves no old pair):
    // the follower then logs in with the journalled identity. Asked once, only here, and never beside an agent's session.
    if (opened.lentBy === undefined && !(await logsIn(login, opts.timeoutMs)))
      opened.replaceIdentity(journalled.certPem, journalled.keyPem)
    const done = await finish(opened, journalled, pendingPath, opts.timeoutMs)
    if (done !== undefined) return describe(opened, journalled, done, previous, true)
  }
  const binding = rekeyableBinding(opened.files.ledger.ledger.state, config.cn, opts.now)
  const keyPair = await nodePki.generateTlsKeyPair(opts.keyType ?? previousType)
  const seed = home.readLedgerKey()
  const rekey = signEvent(
    nodeCrypto,
    rekeyEvent(
      nodeCrypto,
      binding,
      binding,
      { spkiHash: nodeCrypto.sha256(keyPair.spkiDer), ledgerKey: binding.ledgerKey, notAfter: binding.notAfter },
      opts.now,
    ),
    seed,
  )
  const fresh = await askL0ForCertificate(home.dir, config.fleet, config.cn, login, 'rekey', {
    timeoutMs: opts.timeoutMs,
    rekey: { keyPair, rekeyBytes: rekey.bytes },
  })
  const certified = signEvent(
    nodeCrypto,
    certifiedEvent({ ...binding, id: rekey.idHex }, fresh.certHash, opts.now),
    seed,
  )
  const pending: PendingRekey = {
    keyPem: keyPair.privateKeyPem,
    certPem: fresh.pem,
    rekey: toHex(rekey.bytes),
    certified: toHex(certified.bytes),
  }
  writeFileDurable(pendingPath, JSON.stringify(pending) + '\n', HOME_FILE_MODE)
  const done = await finish(opened, pending, pendingPath, opts.timeoutMs)
  if (done === undefined)
    throw new VerificationError('REKEY_REVOKED', `this device's ledger refused its own rekey: it may not rekey now`)
  return describe(opened, pending, done, previous, false)
}

function describe(
  opened: FollowingHome,
  pending: PendingRekey,
  done: { rekey: EncodedEvent; certified: EncodedEvent },
  previous: DeviceCertificate,
  resumed: boolean,
): Rekeying {
  const cert = DeviceCertificate.from(pending.certPem, { sha256: nodeCrypto.sha256 })
  const r = opened.follower.replica
  return {
    cn: cert.cn,
    keyType: tlsKeyTypeOf(cert.spkiDer),
    serial: cert.serialHex,
    notAfter: cert.notAfter,
    certHash: cert.certHashHex,
    previous: { serial: previous.serialHex, keyType: tlsKeyTypeOf(previous.spkiDer) },
    rekeyId: done.rekey.idHex,
    certifiedId: done.certified.idHex,
    resumed,
    head: headSummary(r.head, r.headId),
  }
}

/** `kin rekey`. */
export const rekey: CommandSpec = {
  name: 'rekey',
  usage:
    'kin rekey --home DIR [--key p256|rsa2048] [--timeout 30s] [--json]\n' +
    '       kin rekey CN|NAME --home DIR [--ttl 10m] [--broker mqtts://HOST:PORT] [--timeout 60s] [--json]',
  summary:
    'Without CN: give this device a fresh TLS key and a certificate for it, and move its binding in the ledger to the new key: ' +
    'certificates of the old key are refused from then on, by L0 at login and by every device that decides. The device ' +
    'signs a rekey of itself with its ledger key (which stays; so does its authorization, name, role and end date); L0 ' +
    "issues over the device's own session after checking it against its ledger; once a head of L0's covers the rekey " +
    'and the new certificate, DIR/tls-key.pem and DIR/cert.pem are replaced. Interrupted before the rekey leaves the ' +
    'device, the old identity stands; after, run kin rekey again: it finishes with the key it kept. ' +
    'With CN|NAME, a direct child of this device: new keys (ledger and TLS) for that child, e.g. after it was stolen and ' +
    "revoked compromised. Prints a one-time pairing code like 'kin invite'; the replacement device runs " +
    "'kin enroll --code CODE' with it, makes fresh keys, and takes over the child's name, role, place in the tree and " +
    "children under them; this device signs the rekey, L0's CA issues the certificate. The old keys stay refused; the " +
    'CN is valid again under the new ones. Ctrl-C while waiting withdraws the code. ' +
    'Exit 0 rekeyed, 1 refused (REKEY_REVOKED, REKEY_EXPIRED, REKEY_NOT_CHILD, …) or the code expired unused, 2 other errors.',
  options: {
    home: { type: 'string', help: 'the device home to rekey; with CN|NAME, the home of its parent' },
    key: {
      type: 'string',
      help: 'without CN: type of the new TLS key, p256 or rsa2048 (default: the type of the current key)',
    },
    ttl: { type: 'string', help: 'with CN|NAME: how long the code works (default 10m)' },
    broker: { type: 'string', help: "with CN|NAME: L0's broker, mqtts://HOST:PORT (default: config.json 'broker')" },
    timeout: {
      type: 'string',
      help: 'how long to wait for L0 at each step (with CN|NAME: and for the new device; default 30s, 60s with CN)',
    },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the device home to rekey, e.g. --home ./phone')
    if (args.positionals.length > 1)
      throw usageError(`kin rekey takes at most one CN or name, got "${args.positionals.join(' ')}"`)
    if (args.positionals.length === 1) return rekeyChildOf(dir, args.positionals[0]!, args)
    for (const flag of ['ttl', 'broker'] as const)
      if (args.values[flag] !== undefined)
        throw usageError(
          `--${flag} belongs to the parent's rekey of a child: kin rekey CN|NAME --home PARENT --${flag} …`,
        )
    const keyType = args.values.key === undefined ? undefined : parseTlsKeyType(args.values.key)
    const timeoutMs = parseDurationMs(String(args.values.timeout ?? '30s'), 'timeout')
    const config = new Home(dir).readConfig()
    if (config.l0 === true)
      throw usageError(`${dir} is L0's home: L0's keys are the fleet's anchor, which 'kin rekey' does not replace`)
    try {
      const opened = await openFollowingHome(dir)
      let done: Rekeying
      try {
        done = await rekeyOpenedHome(opened, {
          now: Math.floor(Date.now() / 1000),
          timeoutMs,
          ...(keyType === undefined ? {} : { keyType }),
        })
      } finally {
        await opened.close()
      }
      emit(
        args.json,
        { ok: true, ...done },
        () =>
          `rekeyed ${done.cn}${done.resumed ? ' (finished the rekey begun earlier)' : ''}: new ${done.keyType} key, certificate ${done.serial} valid until ${isoTime(done.notAfter)}, recorded in head ${String(done.head?.['height'] ?? '?')}; certificates of the old key are refused from now on`,
      )
      return 0
    } catch (err) {
      reportError(err, args.json)
      return err instanceof VerificationError ? 1 : 2
    }
  },
}

/**
 * `kin rekey CN|NAME` (docs/PROTOCOL.md "Rekey by the parent"): the invite flow of `kin invite` for an existing child,
 * so the replacement device enrolls with the code as any new device would and the parent signs a rekey instead of an
 * authorization. The new device's key type is its own choice (`kin enroll --key`), so --key is refused here.
 */
function rekeyChildOf(dir: string, target: string, args: Parameters<CommandSpec['run']>[0]): Promise<number> {
  if (args.values.key !== undefined)
    throw usageError(
      "--key is the device's own choice when a parent rekeys it: run 'kin enroll --key …' on the replacement device",
    )
  const ttlSeconds = parseDuration(String(args.values.ttl ?? '10m'), 'ttl')
  if (ttlSeconds < 1 || ttlSeconds > 86400) throw usageError('--ttl must be between 1s and 1d')
  return runInvite({
    dir,
    json: args.json,
    broker: args.values.broker,
    role: 'device',
    name: '',
    ttlSeconds,
    guestValidSeconds: 86400,
    timeoutMs: stepTimeoutMs(args.values.timeout ?? '60s'),
    rekey: target,
  })
}
