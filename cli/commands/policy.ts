/** @module `kin policy show|set`: the trust policy in force on a device, layer by layer; and a signed policy event for a device or its subtree. */
import { readFileSync } from 'node:fs'
import { KinError, VerificationError } from '../../agent/errors.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { parsePolicyDocument, type PolicyDocument } from '../../agent/access/policy-document.ts'
import { policyLayers, policyLimits, type PolicyLayer } from '../../agent/access/policy.ts'
import { policyEvent } from '../../agent/ledger/builders.ts'
import { labelOfCn } from '../../agent/ledger/names.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import type { Ledger } from '../../agent/ledger/ledger.ts'
import type { LedgerState } from '../../agent/ledger/state.ts'
import type { PolicyRule } from '../../agent/ledger/types.ts'
import { parseDuration, requireString, usageError, type CommandSpec } from '../args.ts'
import { deliverSignedEvent } from '../../runtime/deliver-event.ts'
import { Home } from '../../runtime/home.ts'
import { EXIT_PENDING, emit, reportError } from '../output.ts'
import { findIdentity, openHomeView, shown } from '../home-view.ts'
import { localPolicyOf } from '../../runtime/access-home.ts'

/** Largest policy file read. */
const MAX_POLICY_FILE_BYTES = 64 * 1024

function hhmm(seconds: number): string {
  return `${String(Math.floor(seconds / 3600)).padStart(2, '0')}:${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}`
}

function ruleText(r: PolicyRule): string {
  const window = r.from === r.to || (r.from === 0 && r.to === 86400) ? 'all day' : `${hhmm(r.from)}–${hhmm(r.to)} UTC`
  return `${r.action === '*' ? 'any action' : r.action}: ${r.roles.length === 0 ? 'no role' : r.roles.join(', ')}, ${window}`
}

function layerJson(l: PolicyLayer): Record<string, unknown> {
  return { source: l.source, maxHops: l.maxHops, maxHeadAge: l.maxHeadAge, anchors: l.anchors, rules: l.rules }
}

/** `kin policy show`. */
export const policyShow: CommandSpec = {
  name: 'policy show',
  usage: 'kin policy show --home DIR [CN|NAME] [--json]',
  summary:
    'The trust policy in force on a device, layer by layer, highest precedence first: policy events on the device, policy ' +
    'events with subtree on its ancestors (nearest first), the local overrides of its config.json, the default policy; and the limits ' +
    "that result (hops, ledger age, anchors). Without CN: this home's own device. Per action, the highest layer with a rule for it decides.",
  options: {
    home: { type: 'string', help: 'the home whose ledger to read' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the home whose policy to show, e.g. --home ./lock')
    if (args.positionals.length > 1) throw usageError('give at most one CN or name')
    const { config, state } = await openHomeView(dir)
    const cn = args.positionals[0] !== undefined ? findIdentity(state, args.positionals[0]) : config.cn
    const local = cn === config.cn ? localPolicyOf(config) : undefined
    const layers = policyLayers(state, cn, local)
    const limits = policyLimits(layers)
    const b = state.currentBinding(cn)
    emit(args.json, { cn, name: b?.name ?? null, layers: layers.map(layerJson), limits }, () =>
      [
        `policy in force on ${cn}${b === undefined ? '' : ` "${shown(b.name)}"`}:`,
        `  at most ${limits.maxHops} hops to a common ancestor; ${limits.maxHeadAge > 0 ? `ledger head at most ${limits.maxHeadAge} s old for actions other than view` : 'no ledger age limit'}; ` +
          (limits.anchors.length > 0 ? `peers only under ${limits.anchors.join(', ')}` : 'peers anywhere in the fleet'),
        ...layers.flatMap((l, i) => [`  ${i + 1}. ${l.source}`, ...l.rules.map(r => `       ${ruleText(r)}`)]),
      ].join('\n'),
    )
    return 0
  },
}

/** The anchors of a policy file as CNs: each a CN or a device name the ledger knows. */
function anchorsOf(state: LedgerState, doc: PolicyDocument): string[] {
  return (doc.anchors ?? []).map(a => {
    try {
      return findIdentity(state, a)
    } catch (err) {
      if (err instanceof KinError)
        throw new KinError('POLICY_INVALID', `policy file: anchor "${shown(a)}": ${err.message}`, { cause: err })
      throw err
    }
  })
}

/** `kin policy set`. */
export const policySet: CommandSpec = {
  name: 'policy set',
  usage: 'kin policy set --home DIR CN|NAME --file POLICY.json [--broker mqtts://HOST:PORT] [--timeout 10s] [--json]',
  summary:
    'Sign a policy event for device CN (and, with "subtree": true in the file, everything below it) with this home\'s ledger key, ' +
    "record it and hand it to L0's miner, like kin revoke. This home must be CN itself or an ancestor that may delegate (admin or member). " +
    'The file: {"subtree": true, "maxHops": 4, "maxHeadAge": "1h", "anchors": ["front-door lock"], "rules": [{"action": "unlock", ' +
    '"roles": ["guest"], "from": "08:00", "to": "20:00"}]} — every field optional; times of day are UTC; anchors are CNs or names; ' +
    'an empty rules list leaves actions to the layers below (docs/PROTOCOL.md §12.1). Exit 0 once L0 holds it (a head of its miner covers it), ' +
    `${EXIT_PENDING} when it is recorded here but not yet sealed by L0 (EVENT_PENDING), 1 when the ledger refuses it, 2 on errors.`,
  options: {
    home: { type: 'string', help: 'the signing home: CN itself or an ancestor' },
    file: { type: 'string', help: 'the policy as JSON' },
    broker: { type: 'string', help: "on L0's home: the running broker, mqtts://HOST:PORT" },
    timeout: { type: 'string', help: 'how long to wait for L0 to hold the event', default: '10s' },
  },
  async run(args) {
    const dir = requireString(args, 'home', 'the signing home, e.g. --home ./phone')
    const target = args.positionals[0]
    if (target === undefined || args.positionals.length > 1)
      throw usageError(
        'give the device the policy is for, e.g. \'kin policy set --home ./phone "front-door lock" --file lock-policy.json\'',
      )
    const file = requireString(args, 'file', 'the policy as JSON, e.g. --file lock-policy.json')
    const bytes = readFileSync(file)
    if (bytes.length > MAX_POLICY_FILE_BYTES)
      throw new KinError(
        'POLICY_INVALID',
        `${file} is ${bytes.length} bytes; a policy file holds at most ${MAX_POLICY_FILE_BYTES}`,
      )
    let parsed: unknown
    try {
      parsed = JSON.parse(bytes.toString('utf8'))
    } catch (err) {
      throw new KinError('POLICY_INVALID', `${file} is not JSON: ${(err as Error).message}`)
    }
    const doc = parsePolicyDocument(parsed, file, 'POLICY_INVALID', { event: true })
    const timeoutMs = parseDuration(String(args.values.timeout), 'timeout') * 1000
    const home = new Home(dir)
    const config = home.readConfig()
    const now = Math.floor(Date.now() / 1000)
    let cn = target
    const sign = (ledger: Ledger, h: Home): ReturnType<typeof signEvent> => {
      const state = ledger.state
      cn = findIdentity(state, target)
      const issuer = state.currentBinding(config.cn)
      if (issuer === undefined)
        throw new KinError('HOME_MISSING', `${h.path('ledger')} holds no binding for this device (${config.cn})`)
      const subject = state.currentBinding(cn)!
      const body = {
        subtree: doc.subtree ?? false,
        maxHops: doc.maxHops ?? 0,
        maxHeadAge: doc.maxHeadAge ?? 0,
        anchors: anchorsOf(state, doc).map(a => labelOfCn(a, config.fleet)),
        rules: doc.rules ?? [],
      }
      const e = signEvent(nodeCrypto, policyEvent(issuer, subject, body, now), h.readLedgerKey())
      ledger.check(e, { now })
      return e
    }
    try {
      const broker = typeof args.values.broker === 'string' ? args.values.broker : undefined
      const { e, delivery } = await deliverSignedEvent(dir, config, sign, {
        what: 'policy',
        now,
        timeoutMs,
        ...(broker !== undefined ? { broker } : {}),
        names: [target, ...(doc.anchors ?? [])],
      })
      emit(
        args.json,
        { ok: true, cn, by: config.cn, id: e.idHex, policy: doc, ...delivery },
        () =>
          `policy for ${cn}${doc.subtree === true ? ' and its subtree' : ''} signed by ${config.cn}: ${delivery.note}`,
      )
      return 0
    } catch (err) {
      reportError(err, args.json)
      if (err instanceof KinError && err.code === 'EVENT_PENDING') return EXIT_PENDING
      return err instanceof VerificationError ? 1 : 2
    }
  },
}
