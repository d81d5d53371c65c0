/** @module `kin access`: ask a device for an action over mutual TLS, after checking that the device is who it claims. */
import { KinError } from '../../errors.ts'
import { SERVE_ACTION, checkActionName } from '../../access/session.ts'
import { readFileSync } from 'node:fs'
import { MAX_LINE_BUNDLE_BYTES, answerOf, requestAccess } from '../../../firmware-shims/node/tls-endpoint.ts'
import { requireString, usageError, type CommandSpec } from '../args.ts'
import { emit } from '../output.ts'
import { describeDecision, openAccessHome } from './_access-home.ts'

function targetOf(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(text)
  const port = m === null ? NaN : Number(m[2])
  if (m === null || port < 1 || port > 65535) throw usageError(`--target expects HOST:PORT (e.g. 127.0.0.1:8443), got "${text}"`)
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
}

/** `kin access`. */
export const access: CommandSpec = {
  name: 'access',
  usage: 'kin access --home DIR --target HOST:PORT [--bundle FILE] [--action NAME] [--expect CN] [--json]',
  summary: `Ask the device at HOST:PORT for an action over mutual TLS with this device's certificate. Before sending anything, the `
    + `device reached is checked with the same engine as every access decision (action "${SERVE_ACTION}": chain to the fleet root, `
    + 'ledger binding, not revoked, lineage; any fleet device may serve), so a fake device gets no request. '
    + 'Exit 0 when the device allows, 1 when it denies or fails the check, 2 on errors.',
  options: {
    home: { type: 'string', help: 'this device\'s home directory' },
    target: { type: 'string', help: 'the device to ask, HOST:PORT' },
    action: { type: 'string', help: 'the action to ask for', default: 'unlock' },
    expect: { type: 'string', help: 'refuse unless the device reached has this CN' },
    timeout: { type: 'string', help: 'milliseconds to wait for the answer', default: '5000' },
    bundle: { type: 'string', help: "this device's proof bundle ('kin ledger bundle'), sent along for a device that may lack its proofs (offline)" },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'this device\'s home, e.g. --home ./phone')
    const { host, port } = targetOf(requireString(args, 'target', 'the device to ask, e.g. --target 127.0.0.1:8443'))
    let action: string
    try {
      action = checkActionName(String(args.values.action))
    } catch (e) {
      throw usageError(`--action: ${(e as Error).message}`)
    }
    const timeoutMs = Number(args.values.timeout)
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw usageError(`--timeout expects milliseconds ≥ 1, got "${String(args.values.timeout)}"`)
    const expect = typeof args.values.expect === 'string' ? args.values.expect : undefined
    let bundle: Uint8Array | undefined
    if (typeof args.values.bundle === 'string') {
      try {
        bundle = new Uint8Array(readFileSync(args.values.bundle))
      } catch (e) {
        throw usageError(`--bundle: cannot read ${args.values.bundle}: ${(e as Error).message}`)
      }
      if (bundle.length > MAX_LINE_BUNDLE_BYTES) throw usageError(`--bundle: ${bundle.length} bytes is over the ${MAX_LINE_BUNDLE_BYTES} a request may carry`)
    }
    const device = await openAccessHome(dir, { audit: false, needKey: true })
    try {
      const outcome = await requestAccess({
        host, port, action, certPem: device.certPem, keyPem: device.keyPem, rootPem: device.rootPem, timeoutMs, ...(bundle === undefined ? {} : { bundle }),
        checkServer: der => {
          const d = device.session.checkServer(der)
          if (d.allow && expect !== undefined && d.peer !== expect) {
            return { ...d, allow: false, code: 'ACCESS_WRONG_PEER', reason: `the device reached is ${d.peer}, not ${expect}` }
          }
          return d
        },
      })
      const { server, answer } = outcome
      if (answer === undefined) {
        emit(args.json, { stage: 'server', server: server.peer ?? null, ...answerOf(server) }, () =>
          `refused the device at ${host}:${port} before asking: ${describeDecision(server)}`)
        return 1
      }
      emit(args.json, { stage: 'answer', server: server.peer ?? null, ...answer }, () =>
        `${server.peer} answered: ${answer.allow ? 'ALLOW' : `DENY ${answer.code}`} "${answer.action}": ${answer.reason}`)
      return answer.allow ? 0 : 1
    } catch (e) {
      if (e instanceof KinError) throw e
      throw new KinError('ACCESS_TRANSPORT', `asking ${host}:${port} failed: ${(e as Error).message}`, { cause: e })
    } finally {
      await device.close()
    }
  },
}
