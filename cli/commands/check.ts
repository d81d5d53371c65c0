/** @module `kin check`: decide on a peer certificate from a file, as this device would, and audit the decision. */
import { existsSync, readFileSync } from 'node:fs'
import { KinError } from '../../agent/errors.ts'
import { auditRecordOf } from '../../agent/access/audit.ts'
import { checkActionName, type AccessSession } from '../../agent/access/session.ts'
import type { Decision } from '../../agent/access/types.ts'
import { isPem, pemToDer } from '../../agent/pki/pem.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { answerOf } from '../../runtime/node/tls-endpoint.ts'
import { fetchBundle } from '../../agent/gossip/bundle-request.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { DEFAULT_PROOF_DEADLINE_MS, decideWithProofs, type ProofReport } from '../../agent/gossip/missing-proof.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { requireString, usageError, type CommandSpec } from '../args.ts'
import { emit } from '../output.ts'
import { describeDecision, openAccessHome, sessionWithBundle, type AccessHome } from '../../runtime/access-home.ts'
import {
  LEDGER_LOCK_FILE,
  brokerLoginOf,
  followsBroker,
  lentFollower,
  lockHolder,
} from '../../runtime/following-home.ts'

// PEM text or raw DER; a file that is neither is a CERT_PARSE deny like any unparsable certificate.
function certificateOf(session: AccessSession, bytes: Uint8Array, action: string): Uint8Array | Decision {
  const text = new TextDecoder('latin1').decode(bytes)
  if (!isPem(text)) return bytes
  try {
    return pemToDer(text, 'CERTIFICATE', 'CERT_PARSE')
  } catch (e) {
    return session.refuse('CERT_PARSE', (e as Error).message, action)
  }
}

/**
 * How `kin check` asks the miner for a missing proof: a short session of this device with L0's broker (config.json's
 * broker and L0 CN). None for L0's home or a home without a broker; refused while another process (kin serve, kin
 * sync --follow) holds the device's broker session, which a second session would push off.
 */
function minerFetch(device: AccessHome): ((cn: string, deadlineMs: number) => Promise<Uint8Array>) | undefined {
  const { home, config } = device
  if (!followsBroker(config)) return undefined
  // Carried out inside the home's agent: its follower asks the miner on the agent's own session.
  const follower = lentFollower(home.dir)
  if (follower !== undefined) return async (cn, deadlineMs) => (await follower.requestBundle(cn, deadlineMs)).bytes
  return async (cn, deadlineMs) => {
    const holder = lockHolder(home, LEDGER_LOCK_FILE)
    if (holder !== undefined)
      throw new KinError('STORAGE_BUSY', `the process following this home (pid ${holder}) holds its broker session`, {
        detail: { pid: holder },
      })
    const end = Date.now() + deadlineMs
    const state = device.ledger.state()
    const client = await connectDevice(nodeTransport, brokerLoginOf(home, config), { timeoutMs: deadlineMs })
    try {
      await client.subscribe([fleetTopics(config.fleet).syncResp(config.cn)])
      const fetched = await fetchBundle(client, {
        crypto: nodeCrypto,
        fleet: config.fleet,
        selfCn: config.cn,
        cn,
        now: device.session.now(),
        timeoutMs: Math.max(1, end - Date.now()),
        anchor: {
          minerKey: state.genesis!.body.minerKey,
          genesisId: state.genesis!.event.idHex,
          knownHead: device.heldHead(),
        },
      })
      return fetched.bytes
    } finally {
      await client.close().catch(() => undefined)
    }
  }
}

function deadlineOf(text: string): number {
  const ms = Number(text)
  if (!/^\d+$/.test(text) || ms < 1 || ms > 60_000)
    throw usageError(`--proof-deadline expects milliseconds 1..60000, got "${text}"`)
  return ms
}

/** `kin check`. */
export const check: CommandSpec = {
  name: 'check',
  usage: 'kin check --home DIR --peer CERT.pem [--bundle FILE] [--action NAME] [--proof-deadline MS] [--json]',
  summary:
    'Decide whether the holder of the certificate CERT.pem (PEM or DER) may do an action on this device, with the same engine ' +
    'as `kin serve`: chain to the fleet root, ledger binding, lineage, policy. There is no proof of possession here: it checks what ' +
    'the ledger and the chain say about the certificate, not that anyone holds its key. The decision is printed and appended to ' +
    "DIR/audit.log. With --bundle, a proof bundle the peer carries (kin ledger bundle) is verified against this fleet's miner " +
    'key and merged, for this decision only, with the ledger: every revocation this device knows still applies; a bundle ' +
    'that does not verify is a deny with its code. When the ledger lacks a proof for the peer (ACCESS_MISSING_PROOF) and no bundle ' +
    "fills it, the peer's bundle is asked from L0's miner over this device's broker session (config.json) within --proof-deadline, " +
    'verified against the head in DIR/sync.cbor, and the decision made once more with it; without a proof the answer is deny. ' +
    'While an agent (kin serve) runs on DIR, it carries the check out: on its own replica, asking the miner on its session. ' +
    'Exit 0 allow, 1 deny.',
  options: {
    home: { type: 'string', help: "the deciding device's home directory" },
    peer: { type: 'string', help: 'the peer certificate, PEM or DER file' },
    action: { type: 'string', help: 'the action asked for', default: 'unlock' },
    bundle: { type: 'string', help: "a proof bundle for the peer's CN, merged for this decision" },
    'proof-deadline': {
      type: 'string',
      help: 'milliseconds the miner has to hand over a missing proof',
      default: String(DEFAULT_PROOF_DEADLINE_MS),
    },
  },
  async run(args) {
    const dir = requireString(args, 'home', "the deciding device's home, e.g. --home ./lock")
    const peerPath = requireString(args, 'peer', 'the certificate to decide on, e.g. --peer guest.pem')
    let action: string
    try {
      action = checkActionName(String(args.values.action))
    } catch (e) {
      throw usageError(`--action: ${(e as Error).message}`)
    }
    if (!existsSync(peerPath)) throw usageError(`--peer: no file at ${peerPath}`)
    const bundlePath = typeof args.values.bundle === 'string' ? args.values.bundle : undefined
    if (bundlePath !== undefined && !existsSync(bundlePath)) throw usageError(`--bundle: no file at ${bundlePath}`)
    const proofDeadlineMs = deadlineOf(String(args.values['proof-deadline']))
    const bytes = readFileSync(peerPath)
    // Inside the agent, decisions read its replica, as its endpoint's do (the file may lag a sync under way).
    const lent = lentFollower(dir)
    const device = await openAccessHome(dir, {
      audit: true,
      needKey: false,
      ...(lent === undefined
        ? {}
        : {
            lastHeadTime: () => lent.lastHeadTime(),
            inMemory: { state: () => lent.replica.ledger.ledger.state, head: () => lent.replica.head },
          }),
    })
    try {
      let session: AccessSession = device.session
      let bundle: Record<string, unknown> | undefined
      let decision: Decision | undefined
      if (bundlePath !== undefined) {
        try {
          const withBundle = await sessionWithBundle(device, new Uint8Array(readFileSync(bundlePath)))
          const { verified } = withBundle
          session = withBundle.session
          bundle = {
            anchoring: verified.anchoring,
            headHeight: verified.head.height,
            headTime: verified.head.time,
            headAge: verified.headAge,
            merged: withBundle.merged,
            refused: withBundle.refused,
          }
        } catch (e) {
          if (!(e instanceof KinError)) throw e
          // A bundle that does not verify is a failed verification, decided and audited like any other deny.
          decision = device.session.refuse(e.code, `the proof bundle does not verify: ${e.message}`, action)
          bundle = { error: e.code }
        }
      }
      let proof: ProofReport | undefined
      if (decision === undefined) {
        const der = certificateOf(session, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), action)
        if (!(der instanceof Uint8Array)) decision = der
        else {
          // DESIGN.md "Access decision" step 5 on what the peer did not carry: the miner, within the deadline; its bundle is checked like any other.
          const state = device.ledger.state()
          const proved = await decideWithProofs(session, der, action, {
            crypto: nodeCrypto,
            fetch: minerFetch(device),
            deadlineMs: proofDeadlineMs,
            anchor: {
              minerKey: state.genesis?.body.minerKey ?? new Uint8Array(32),
              genesisId: state.genesis?.event.idHex,
              knownHead: device.heldHead(),
            },
          })
          decision = proved.decision
          proof = proved.proof
        }
      }
      await device.audit!.append(auditRecordOf(decision))
      const shown = decision
      const extra = { ...(bundle === undefined ? {} : { bundle }), ...(proof === undefined ? {} : { proof }) }
      emit(
        args.json,
        { ...answerOf(shown), ...extra },
        () =>
          describeDecision(shown) +
          (bundle === undefined ? '' : `\n  bundle: ${JSON.stringify(bundle)}`) +
          (proof === undefined
            ? ''
            : `\n  proof from the ${proof.source}: ${proof.outcome}${proof.code === undefined ? '' : ` (${proof.code})`}`),
      )
      return decision.allow ? 0 : 1
    } finally {
      await device.close()
    }
  },
}
