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
import { describeDecision, openAccessHome } from './_access-home.ts'

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
  usage: 'kin check --home DIR --peer CERT.pem [--action NAME] [--json]',
  summary: 'Decide whether the holder of the certificate CERT.pem (PEM or DER) may do an action on this device, with the same engine '
    + 'as `kin serve`: chain to the fleet root, ledger binding, lineage, policy. There is no proof of possession here: it checks what '
    + 'the ledger and the chain say about the certificate, not that anyone holds its key. The decision is printed and appended to '
    + 'DIR/audit.log. Exit 0 allow, 1 deny. --bundle (a proof bundle carried by the peer) is not supported yet and is refused.',
  options: {
    home: { type: 'string', help: 'the deciding device\'s home directory' },
    peer: { type: 'string', help: 'the peer certificate, PEM or DER file' },
    action: { type: 'string', help: 'the action asked for', default: 'unlock' },
    bundle: { type: 'string', help: 'a proof bundle for the peer (not supported yet: refused with ACCESS_BUNDLE_UNSUPPORTED)' },
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
    if (args.values.bundle !== undefined) {
      throw new KinError('ACCESS_BUNDLE_UNSUPPORTED', 'proof bundles are not supported by kin check yet; sync this device\'s ledger (kin sync) and check without --bundle')
    }
    if (!existsSync(peerPath)) throw usageError(`--peer: no file at ${peerPath}`)
    const bytes = readFileSync(peerPath)
    const device = await openAccessHome(dir, { audit: true, needKey: false })
    try {
      const decision = decideOnFile(device.session, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), action)
      await device.audit!.append(auditRecordOf(decision))
      emit(args.json, answerOf(decision), () => describeDecision(decision))
      return decision.allow ? 0 : 1
    } finally {
      await device.close()
    }
  },
}
