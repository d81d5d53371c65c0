/** @module `kin check`: decide on a peer certificate from a file, as this device would, and audit the decision. */
import { existsSync, readFileSync } from 'node:fs'
import { KinError } from '../../errors.ts'
import { auditRecordOf } from '../../access/audit.ts'
import { checkActionName, type AccessSession } from '../../access/session.ts'
import type { Decision } from '../../access/types.ts'
import { isPem, pemToDer } from '../../pki/pem.ts'
import { answerOf } from '../../../firmware-shims/node/tls-endpoint.ts'
import { requireString, usageError, type CommandSpec } from '../args.ts'
import { emit } from '../output.ts'
import { describeDecision, openAccessHome, sessionWithBundle } from './_access-home.ts'

// PEM text or raw DER; a file that is neither is a CERT_PARSE deny like any unparsable certificate.
function decideOnFile(session: AccessSession, bytes: Uint8Array, action: string): Decision {
  const text = new TextDecoder('latin1').decode(bytes)
  if (!isPem(text)) return session.decide(bytes, action)
  let der: Uint8Array
  try {
    der = pemToDer(text, 'CERTIFICATE', 'CERT_PARSE')
  } catch (e) {
    return session.refuse('CERT_PARSE', (e as Error).message, action)
  }
  return session.decide(der, action)
}

/** `kin check`. */
export const check: CommandSpec = {
  name: 'check',
  usage: 'kin check --home DIR --peer CERT.pem [--bundle FILE] [--action NAME] [--json]',
  summary: 'Decide whether the holder of the certificate CERT.pem (PEM or DER) may do an action on this device, with the same engine '
    + 'as `kin serve`: chain to the fleet root, ledger binding, lineage, policy. There is no proof of possession here: it checks what '
    + 'the ledger and the chain say about the certificate, not that anyone holds its key. The decision is printed and appended to '
    + 'DIR/audit.log. With --bundle, a proof bundle the peer carries (kin ledger bundle) is verified against this fleet\'s miner '
    + 'key and merged, for this decision only, with the ledger: every revocation this device knows still applies; a bundle '
    + 'that does not verify is a deny with its code. Exit 0 allow, 1 deny.',
  options: {
    home: { type: 'string', help: 'the deciding device\'s home directory' },
    peer: { type: 'string', help: 'the peer certificate, PEM or DER file' },
    action: { type: 'string', help: 'the action asked for', default: 'unlock' },
    bundle: { type: 'string', help: "a proof bundle for the peer's CN, merged for this decision" },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the deciding device\'s home, e.g. --home ./lock')
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
    const bytes = readFileSync(peerPath)
    const device = await openAccessHome(dir, { audit: true, needKey: false })
    try {
      let session: AccessSession = device.session
      let bundle: Record<string, unknown> | undefined
      let decision: Decision | undefined
      if (bundlePath !== undefined) {
        try {
          const withBundle = await sessionWithBundle(device, new Uint8Array(readFileSync(bundlePath)))
          const { verified } = withBundle
          session = withBundle.session
          bundle = { anchoring: verified.anchoring, headHeight: verified.head.height, headTime: verified.head.time, headAge: verified.headAge, merged: withBundle.merged, refused: withBundle.refused }
        } catch (e) {
          if (!(e instanceof KinError)) throw e
          // A bundle that does not verify is a failed verification, decided and audited like any other deny.
          decision = device.session.refuse(e.code, `the proof bundle does not verify: ${e.message}`, action)
          bundle = { error: e.code }
        }
      }
      decision ??= decideOnFile(session, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), action)
      await device.audit!.append(auditRecordOf(decision))
      const shown = decision
      emit(args.json, { ...answerOf(shown), ...(bundle === undefined ? {} : { bundle }) }, () => describeDecision(shown) + (bundle === undefined ? '' : `\n  bundle: ${JSON.stringify(bundle)}`))
      return decision.allow ? 0 : 1
    } finally {
      await device.close()
    }
  },
}
