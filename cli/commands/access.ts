/** @module `kin access`: ask a device for an action over mutual TLS, after checking that the device is who it claims. */
import { KinError, VerificationError } from '../../agent/errors.ts'
import { SERVE_ACTION, checkActionName } from '../../agent/access/session.ts'
import type { Decision } from '../../agent/access/types.ts'
import { readFileSync } from 'node:fs'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeSigning } from '../../runtime/node/signing.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { MAX_LINE_BUNDLE_BYTES, answerOf, requestAccess, type AccessOutcome } from '../../runtime/node/tls-endpoint.ts'
import { askOverInbox } from '../../agent/gossip/challenge-session.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { labelOfCn } from '../../agent/ledger/names.ts'
import { verifyBundle } from '../../agent/ledger/bundle.ts'
import type { LedgerState } from '../../agent/ledger/state.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { parseDurationMs, requireString, usageError, type CommandSpec, type ParsedArgs } from '../args.ts'
import { emit } from '../output.ts'
import { describeDecision, openAccessHome } from '../../runtime/access-home.ts'
import { offerFor, type ProofOffer } from './_proof-offer.ts'
import { brokerLoginOf, lentClient, openFollowingHome } from '../../runtime/following-home.ts'

/**
 * A bundle this device is about to send must be its own and must verify: a file that is not one would be sent along
 * and ignored by a lock that holds the proofs anyway, so a flag the command cannot honour would pass unnoticed.
 * Checked against this home's miner key and genesis (unanchored: the lock anchors it to its own head).
 */
function checkOwnBundle(
  device: { cn: string; ledger: { state(): LedgerState } },
  bytes: Uint8Array,
  path: string,
): void {
  const state = device.ledger.state()
  try {
    const verified = verifyBundle(
      nodeCrypto,
      bytes,
      { minerKey: state.genesis?.body.minerKey ?? new Uint8Array(32), genesisId: state.genesis?.event.idHex },
      Math.floor(Date.now() / 1000),
    )
    if (verified.state.currentBinding(device.cn) === undefined) {
      throw new KinError(
        'BUNDLE_INCOMPLETE',
        `it holds no binding for this device (${device.cn}): it is another device's bundle`,
      )
    }
  } catch (e) {
    if (!(e instanceof KinError)) throw e
    throw new KinError(
      e.code,
      `--bundle ${path} is not a proof bundle this device can send: ${e.message}. Make a fresh one with 'kin ledger bundle ${device.cn} --home DIR --out FILE'`,
      { cause: e },
    )
  }
}

/**
 * Catches this home up with L0's ledger once (as `kin sync` does) after the device reached was refused only for
 * want of a proof; true when new events arrived, so asking again can decide otherwise. A home that names no broker,
 * or whose ledger another process holds (a running `kin serve`, which follows L0 itself), is left as it is.
 */
async function catchUp(dir: string, refused: Decision, timeoutMs: number, json: boolean): Promise<boolean> {
  let opened
  try {
    opened = await openFollowingHome(dir)
  } catch {
    return false
  }
  try {
    const report = await opened.follower.syncOnce(Math.max(timeoutMs, 5000))
    if (!json)
      process.stderr.write(
        `this device's ledger lacked a proof for ${refused.missing ?? refused.peer ?? 'the device reached'} (${refused.code}): caught up with L0's ledger (${report.added} new events), asking again\n`,
      )
    return report.added > 0
  } catch {
    return false
  } finally {
    await opened.close()
  }
}

function targetOf(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(text)
  const port = m === null ? NaN : Number(m[2])
  if (m === null || port < 1 || port > 65535)
    throw usageError(`--target expects HOST:PORT (e.g. 127.0.0.1:8443), got "${text}"`)
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
}

/**
 * `kin access --inbox CN` (PROTOCOL.md §12.4): ask over the device's MQTT inbox, this device's TLS key signing the
 * challenge, for a device that has no TLS endpoint. The verdict counts only when signed by CN's certificate and that
 * certificate passes the same server identity check as over TLS.
 */
async function accessOverInbox(
  args: ParsedArgs,
  dir: string,
  verifierCn: string,
  action: string,
  timeoutMs: number,
): Promise<number> {
  const device = await openAccessHome(dir, { audit: false, needKey: true })
  try {
    try {
      labelOfCn(verifierCn, device.config.fleet)
    } catch {
      throw usageError(`--inbox expects the CN of a device of fleet ${device.config.fleet}, got "${verifierCn}"`)
    }
    // One session per CN at the broker: carried out inside the home's agent, the ask rides on the agent's session.
    const client =
      (await lentClient(dir, timeoutMs)) ??
      (await connectDevice(nodeTransport, brokerLoginOf(device.home, device.config), { timeoutMs }))
    try {
      const outcome = await askOverInbox(
        client,
        {
          fleet: device.config.fleet,
          cn: device.cn,
          certificateDer: DeviceCertificate.from(device.certPem, { sha256: nodeCrypto.sha256 }).der,
          privateKeyPem: device.keyPem,
          signing: nodeSigning,
          randomBytes: nodeCrypto.randomBytes,
          check: device.session,
        },
        { verifierCn, action, timeoutMs },
      )
      const answer = outcome.verdict
      emit(
        args.json,
        { stage: 'answer', via: 'inbox', server: outcome.server.peer ?? null, ...answer },
        () =>
          `${verifierCn} answered over its inbox: ${answer.allow ? 'ALLOW' : `DENY ${answer.code}`} "${answer.action}": ${answer.reason}`,
      )
      return answer.allow ? 0 : 1
    } catch (e) {
      // A verdict that could not be believed (its signer failed the server check, a bad signature, a relayed challenge): exit 1, as a refused server over TLS.
      if (!(e instanceof VerificationError)) throw e
      const server = e.detail?.['server'] as Decision | undefined
      emit(
        args.json,
        {
          stage: 'server',
          via: 'inbox',
          server: server?.peer ?? null,
          ...(server === undefined ? {} : answerOf(server)),
          code: e.code,
          reason: e.message,
          allow: false,
        },
        () =>
          `refused ${verifierCn}'s answer: ${server === undefined || server.allow ? `${e.code}: ${e.message}` : describeDecision(server)}`,
      )
      return 1
    } finally {
      await client.close().catch(() => undefined)
    }
  } finally {
    await device.close()
  }
}

/** `kin access`. */
export const access: CommandSpec = {
  name: 'access',
  usage:
    'kin access --home DIR (--target HOST:PORT | --inbox CN) [--bundle FILE] [--action NAME] [--expect CN] [--timeout 5s] [--json]',
  summary:
    `Ask a device for an action: at HOST:PORT over mutual TLS with this device's certificate (--target), or over MQTT through ` +
    "the device's inbox with a challenge this device signs with its TLS key (--inbox CN, for devices without TLS; the home must " +
    "name the broker, and the device must run 'kin serve' on a home that does too). Before sending anything over TLS, the " +
    `device reached is checked with the same engine as every access decision (action "${SERVE_ACTION}": chain to the fleet root, ` +
    'ledger binding, not revoked, lineage; any fleet device may serve), so a fake device gets no request; over the inbox the ' +
    'signed verdict is believed only when its certificate passes that check as CN and its signature holds. ' +
    'Exit 0 when the device allows, 1 when it denies or fails the check, 2 on errors.',
  options: {
    home: { type: 'string', help: "this device's home directory" },
    target: { type: 'string', help: 'the device to ask over TLS, HOST:PORT' },
    inbox: { type: 'string', help: 'the device to ask over its MQTT inbox, by CN (instead of --target)' },
    action: { type: 'string', help: 'the action to ask for', default: 'unlock' },
    expect: { type: 'string', help: 'with --target: refuse unless the device reached has this CN' },
    timeout: { type: 'string', help: 'how long to wait for the answer', default: '5s' },
    bundle: {
      type: 'string',
      help: "with --target: this device's proof bundle ('kin ledger bundle'), sent along for a device that may lack its proofs (offline)",
    },
  },
  async run(args) {
    const dir = requireString(args, 'home', "this device's home, e.g. --home ./phone")
    const inbox = typeof args.values.inbox === 'string' ? args.values.inbox : undefined
    const hasTarget = typeof args.values.target === 'string'
    if (inbox !== undefined && hasTarget)
      throw usageError('give either --target HOST:PORT (mutual TLS) or --inbox CN (over MQTT), not both')
    if (inbox === undefined && !hasTarget)
      throw usageError(
        'say which device to ask: --target HOST:PORT (mutual TLS) or --inbox CN (over MQTT), e.g. --target 127.0.0.1:8443',
      )
    let action: string
    try {
      action = checkActionName(String(args.values.action))
    } catch (e) {
      throw usageError(`--action: ${(e as Error).message}`)
    }
    const timeoutMs = parseDurationMs(String(args.values.timeout), 'timeout')
    const expect = typeof args.values.expect === 'string' ? args.values.expect : undefined
    if (inbox !== undefined) {
      if (typeof args.values.bundle === 'string')
        throw usageError(
          '--bundle goes with --target only: over the inbox the device asks the miner for missing proofs itself',
        )
      if (expect !== undefined)
        throw usageError(
          '--expect goes with --target only: --inbox CN already names the device, and its answer must be signed as CN',
        )
      return accessOverInbox(args, dir, inbox, action, timeoutMs)
    }
    const { host, port } = targetOf(String(args.values.target))
    let bundle: Uint8Array | undefined
    if (typeof args.values.bundle === 'string') {
      try {
        bundle = new Uint8Array(readFileSync(args.values.bundle))
      } catch (e) {
        throw usageError(`--bundle: cannot read ${args.values.bundle}: ${(e as Error).message}`)
      }
      if (bundle.length > MAX_LINE_BUNDLE_BYTES)
        throw usageError(`--bundle: ${bundle.length} bytes is over the ${MAX_LINE_BUNDLE_BYTES} a request may carry`)
    }
    let offer: ProofOffer | undefined
    const ask = async (): Promise<AccessOutcome> => {
      const device = await openAccessHome(dir, { audit: false, needKey: true })
      const deadline = Date.now() + timeoutMs
      try {
        if (bundle !== undefined) checkOwnBundle(device, bundle, String(args.values.bundle))
        return await requestAccess({
          host,
          port,
          action,
          certPem: device.certPem,
          keyPem: device.keyPem,
          rootPem: device.rootPem,
          timeoutMs,
          // The device states its head first; this home answers with what it lacks (or, with --bundle, that file).
          proofFor: async statement => {
            if (bundle !== undefined) return { bundle }
            offer = await offerFor(device.home, device.config, statement, deadline - Math.min(1000, timeoutMs / 4))
            return offer
          },
          checkServer: der => {
            const d = device.session.checkServer(der)
            if (d.allow && expect !== undefined && d.peer !== expect) {
              return {
                ...d,
                allow: false,
                code: 'ACCESS_WRONG_PEER',
                reason: `the device reached is ${d.peer}, not ${expect}`,
              }
            }
            return d
          },
        })
      } catch (e) {
        if (e instanceof KinError) throw e
        throw new KinError('ACCESS_TRANSPORT', `asking ${host}:${port} failed: ${(e as Error).message}`, { cause: e })
      } finally {
        await device.close()
      }
    }
    let outcome = await ask()
    // DESIGN.md "Access decision" step 5 on the requester's side: this device's ledger may lag behind the miner (a device
    // enrolled since it last synced). Catch up with L0's ledger once, within the timeout, and ask once more.
    if (
      outcome.answer === undefined &&
      outcome.server.retry &&
      (await catchUp(dir, outcome.server, timeoutMs, args.json))
    )
      outcome = await ask()
    const { server, answer } = outcome
    if (answer === undefined) {
      emit(
        args.json,
        { stage: 'server', server: server.peer ?? null, ...answerOf(server) },
        () => `refused the device at ${host}:${port} before asking: ${describeDecision(server)}`,
      )
      return 1
    }
    const sent =
      outcome.sent === undefined
        ? null
        : {
            kind: outcome.sent.kind,
            bytes: outcome.sent.bytes,
            source: bundle !== undefined ? 'file' : (offer?.source ?? 'none'),
            note: offer?.note ?? null,
            statedTreeSize: outcome.statement?.treeSize ?? null,
          }
    emit(
      args.json,
      { stage: 'answer', server: server.peer ?? null, ...answer, sent },
      () =>
        `${server.peer} answered: ${answer.allow ? 'ALLOW' : `DENY ${answer.code}`} "${answer.action}": ${answer.reason}` +
        (sent === null || sent.kind === 'none'
          ? ''
          : ` (sent ${sent.kind === 'proof' ? 'an offline proof' : 'a bundle'} of ${sent.bytes} bytes for its head of ${sent.statedTreeSize} events)`),
    )
    return answer.allow ? 0 : 1
  },
}
