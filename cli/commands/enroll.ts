/** @module `kin enroll`: make a new device's keys, pair with a one-time code through L0's broker, write its home. */
import { existsSync, readdirSync } from 'node:fs'
import { hostname } from 'node:os'
import { KinError, VerificationError, type KinErrorCode } from '../../agent/errors.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeTransport, parseBrokerUrl } from '../../runtime/node/transport.ts'
import { derivePairingSecrets } from '../../agent/enroll/pairing.ts'
import { enrollThroughBroker, handOverFirstEvents, type EnrolledDevice } from '../../agent/gossip/enroll-session.ts'
import { parseDuration, requireString, usageError, type CommandSpec } from '../args.ts'
import { clearStaleStaging, createStaging, discardStaging } from '../../runtime/home-staging.ts'
import { refuseExistingHome, writeDeviceHome } from '../../runtime/home-writers.ts'
import { Home } from '../../runtime/home.ts'
import { emit, reportError } from '../output.ts'
import { DEFAULT_TLS_KEY_TYPE, parseTlsKeyType } from '../../agent/pki/key-type.ts'

// Refusals and failed checks (exit 1), as opposed to usage and operational errors (exit 2).
const DENIALS: ReadonlySet<KinErrorCode> = new Set<KinErrorCode>([
  'PAIR_CODE_WRONG',
  'PAIR_CODE_USED',
  'PAIR_CODE_EXPIRED',
  'PAIR_WITHDRAWN',
  'PAIR_MAC',
  'INVITE_REFUSED',
  'INVITE_MISMATCH',
  'ROLE_CANNOT_DELEGATE',
  'ROLE_ESCALATION',
  'DEPTH_EXHAUSTED',
  'ISSUER_REVOKED',
  'ISSUER_REVOKED_IN_LOG',
  'ISSUER_EXPIRED',
  'BROKER_IDENTITY',
  'NONCE_REUSED',
  'CN_EXISTS',
])

/** Exit status of a failed pairing command: 1 for a refusal or a failed check, 2 for usage and operational errors. */
export function exitStatusOf(err: unknown): number {
  if (err instanceof VerificationError) return 1
  if (err instanceof KinError && DENIALS.has(err.code)) return 1
  return 2
}

/** Prints `err` the way every kin command does and returns the pairing commands' exit status for it. */
export function reportPairingError(err: unknown, json: boolean): number {
  reportError(err, json)
  return exitStatusOf(err)
}

/** Milliseconds of a `--timeout` option (a duration such as 60s). */
export function stepTimeoutMs(value: unknown): number {
  const seconds = parseDuration(String(value), 'timeout')
  if (seconds < 1 || seconds > 3600) throw usageError('--timeout must be between 1s and 1h')
  return seconds * 1000
}

/**
 * docs/PAIRING.md step 7: the first session with the new certificate hands L0 the device's authorize and certified
 * events. The home is complete before this; a failure here says so, since L0 admits the device only once it
 * holds the certified event.
 */
async function submitFirstEvents(device: EnrolledDevice, broker: string, timeoutMs: number, home: Home): Promise<void> {
  try {
    await handOverFirstEvents(nodeTransport, device, broker, timeoutMs)
  } catch (err) {
    if (!(err instanceof KinError)) throw err
    throw new KinError(
      err.code,
      `enrolled as ${device.cn} and wrote ${home.dir}, but could not hand L0 this device's certified event: ${err.message}`,
      {
        cause: err,
        detail: { ...err.detail, cn: device.cn, home: home.dir, submitted: false },
      },
    )
  }
}

/** How far an enrollment got: whether its code logged in (is used up) and whether its home was renamed into place. */
interface EnrollStage {
  /** The keys are made and the login with the code is under way: L0 may have used the code up. */
  loggingIn: boolean
  loggedIn: boolean
  /** The certificate arrived and checked: L0 has recorded the authorization. */
  certified: boolean
  written: boolean
}

/**
 * SIGINT or SIGTERM while enrolling. Before the certificate arrived: the staging directory is removed, the person
 * is told what became of DIR and of the code (ENROLL_INTERRUPTED), and the process exits 130 or 143 at once — the
 * pairing session is dropped with the socket. Once it arrived, L0 has already recorded the authorization and
 * issued the certificate: dropping the device then would leave an orphan authorize event in every ledger, so the
 * first stop only says the home is being finished (milliseconds, then one submission) and a second stops at once.
 * Returns the function that uninstalls the handlers.
 */
function interruptCleanly(dir: string, staging: string, stage: EnrollStage, json: boolean): () => void {
  let finishing = false
  const stop = (signal: 'SIGINT' | 'SIGTERM'): void => {
    if (stage.certified && !finishing) {
      finishing = true
      process.stderr.write(
        `kin: ${signal}: L0 has already certified this device; finishing its home in ${dir} and handing L0 its certified event (send ${signal} again to stop at once)\n`,
      )
      return
    }
    if (!stage.written) discardStaging(staging)
    const homeSaid = stage.written
      ? `${dir} was written whole, but L0 may not hold this device's certified event yet`
      : `nothing was written to ${dir}`
    const codeSaid = stage.written
      ? ''
      : stage.loggedIn
        ? "; the pairing code was used up when it logged in: ask the inviting device for a new one ('kin invite')"
        : stage.loggingIn
          ? '; the pairing code was logging in and may be used up: if it is refused as used (PAIR_CODE_USED), ask for a new one'
          : '; the pairing code was not used and still works until it expires'
    reportError(
      new KinError('ENROLL_INTERRUPTED', `enrollment stopped by ${signal}: ${homeSaid}${codeSaid}`, {
        detail: { signal, home: dir, written: stage.written, codeUsed: stage.loggedIn },
      }),
      json,
    )
    process.exit(signal === 'SIGINT' ? 130 : 143)
  }
  const onInt = (): void => stop('SIGINT')
  const onTerm = (): void => stop('SIGTERM')
  process.on('SIGINT', onInt)
  process.on('SIGTERM', onTerm)
  return () => {
    process.off('SIGINT', onInt)
    process.off('SIGTERM', onTerm)
  }
}

/** `kin enroll`. */
export const enroll: CommandSpec = {
  name: 'enroll',
  usage:
    'kin enroll --home DIR --code CODE --broker mqtts://HOST:PORT [--name LABEL] [--kind KIND] [--key p256|rsa2048] [--timeout 60s] [--json]',
  summary:
    "Enroll this device in a fleet with a one-time pairing code from 'kin invite': make its TLS and ledger keys, " +
    "pair with the inviting device through L0's broker, get its certificate, and write its home in DIR. " +
    "With a code from 'kin rekey CN' the device takes over that existing CN (its name, role and place in the tree) " +
    'under the new keys instead. ' +
    'The home is built next to DIR and renamed into place whole. ' +
    'Exit 1 when the code or a check is refused (wrong, used, expired or withdrawn code; tampered messages), 2 on other errors, ' +
    '130/143 when stopped by SIGINT/SIGTERM before the certificate arrived (nothing is written).',
  options: {
    home: { type: 'string', help: 'directory to create the device home in (must not hold a kinship home yet)' },
    code: { type: 'string', help: "the pairing code shown by 'kin invite', e.g. abcd-efgh-ijkl-mnop" },
    broker: { type: 'string', help: "L0's broker, mqtts://HOST:PORT (as shown by 'kin invite')" },
    name: {
      type: 'string',
      help: 'a friendly name for this device (the inviter may override it)',
      default: hostname().slice(0, 64),
    },
    kind: { type: 'string', help: 'what this device is: lock, camera, phone, laptop…', default: 'device' },
    key: {
      type: 'string',
      help: 'TLS key type: p256 (ECDSA, fast, small certificates) or rsa2048 for a TLS stack without ECDSA (Espruino)',
      default: DEFAULT_TLS_KEY_TYPE,
    },
    timeout: { type: 'string', help: 'limit for each step (login, authorization, certificate)', default: '60s' },
  },
  async run(args) {
    // The key type first: KEY_TYPE_UNKNOWN costs nothing and uses no code.
    const keyType = parseTlsKeyType(args.values.key)
    const dir = requireString(args, 'home', 'the directory for the new device, e.g. --home ./lock')
    const code = requireString(args, 'code', "the pairing code shown by 'kin invite' on the inviting device")
    const broker = requireString(args, 'broker', "L0's address, e.g. --broker mqtts://192.168.1.10:8883")
    const timeoutMs = stepTimeoutMs(args.values.timeout)
    const kind = String(args.values.kind)
    const name = String(args.values.name)
    if (kind.length === 0 || kind.length > 16) throw usageError('--kind must be 1..16 characters')
    if (name.length > 64) throw usageError('--name must be at most 64 characters')
    const home = new Home(dir)
    refuseExistingHome(home, 'a device enrolls once')
    // rename(2) replaces an empty directory but not one holding lost+found (a mount point): refused before the code is used.
    if (existsSync(home.dir) && readdirSync(home.dir).length > 0) {
      throw new KinError(
        'HOME_EXISTS',
        `${home.dir} is not empty (a mount point?); give a new directory inside it, e.g. --home ${home.dir}/device`,
      )
    }
    try {
      parseBrokerUrl(broker)
    } catch (err) {
      throw usageError((err as Error).message)
    }
    try {
      derivePairingSecrets(code)
    } catch (err) {
      return reportPairingError(err, args.json)
    }
    const progress = !args.json && process.stderr.isTTY === true
    const say = (line: string) => {
      if (progress) process.stderr.write(`kin: ${line}\n`)
    }
    for (const stale of clearStaleStaging(home.dir)) say(`removed ${stale}, left by an enrollment that was killed`)
    // Made before the code is used, so a parent directory this user cannot write is refused while the code still works.
    const staging = createStaging(home.dir)
    const stage: EnrollStage = { loggingIn: false, loggedIn: false, certified: false, written: false }
    const stopOnSignal = interruptCleanly(home.dir, staging, stage, args.json)
    try {
      const device = await enrollThroughBroker(nodeCrypto, nodePki, nodeTransport, {
        code,
        url: broker,
        kind,
        name,
        keyType,
        stepTimeoutMs: timeoutMs,
        now: () => Math.floor(Date.now() / 1000),
        onStep(step, detail) {
          if (step === 'keys') stage.loggingIn = true
          if (step === 'login') stage.loggedIn = true
          if (step === 'certified') stage.certified = true
          if (step === 'keys') say('keys generated; logging in with the pairing code')
          else if (step === 'request') say('request sent; waiting for the inviting device')
          else if (step === 'authorized') say(`authorized as ${detail}; asking L0 for the certificate`)
          else if (step === 'certified') say('certificate received and checked')
        },
      })
      const files = await writeDeviceHome(home, device, broker, staging)
      stage.written = true
      await submitFirstEvents(device, broker, timeoutMs, home)
      const rekeyed = device.authorize.event.type === 'rekey'
      emit(
        args.json,
        {
          ok: true,
          cn: device.cn,
          fleet: device.fleet,
          role: device.role,
          parentCn: device.parentCn,
          l0Cn: device.l0Cn,
          ...(rekeyed ? { rekeyId: device.authorize.idHex } : {}),
          home: home.dir,
          files,
        },
        () =>
          [
            rekeyed
              ? `took over ${device.cn} in fleet ${device.fleet} under new keys (role ${device.role}, rekeyed by ${device.parentCn}); its old keys are refused`
              : `enrolled in fleet ${device.fleet} as ${device.cn} (role ${device.role}, authorized by ${device.parentCn})`,
            `  cert:   ${files.cert}`,
            `  ledger: ${files.ledger} (${device.ledger.size} events)`,
            `  config: ${files.config}`,
          ].join('\n'),
      )
      return 0
    } catch (err) {
      return reportPairingError(err, args.json)
    } finally {
      stopOnSignal()
      if (!stage.written) discardStaging(staging)
    }
  },
}
