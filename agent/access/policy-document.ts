/**
 * @module The one schema of a trust policy written by a person: config.json's local `policy` and the file of
 * `kin policy set` (docs/PROTOCOL.md §12.1). Parsed strictly into the ledger's PolicyRule form; anything else is a
 * coded error naming the field.
 */
import { KinError, type KinErrorCode } from '../errors.ts'
import { ROLE, type PolicyRule, type RoleName } from '../ledger/types.ts'
import { DAY_SECONDS } from './policy.ts'

/** A policy as written: limits, anchors (CNs or names, resolved by the caller), rules; and for an event, `subtree`. */
export interface PolicyDocument {
  subtree?: boolean
  maxHops?: number
  /** Seconds; 0 or absent inherits. */
  maxHeadAge?: number
  anchors?: string[]
  rules?: PolicyRule[]
}

/** Most rules and anchors one policy holds (the event codec's limits). */
export const MAX_POLICY_RULES = 32
export const MAX_POLICY_ANCHORS = 16
/** Longest action name. */
export const MAX_ACTION_LENGTH = 32
/** Most hops a policy may allow. */
export const MAX_POLICY_HOPS = 64

const DURATION_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 }

/** Seconds of the UTC day from 0..86400 or "HH:MM" (24:00 is the end of the day). */
function timeOfDay(v: unknown, fail: (what: string) => KinError, field: string): number {
  if (v === undefined) return 0
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= DAY_SECONDS) return v
  if (typeof v === 'string') {
    const m = /^([01]\d|2[0-4]):([0-5]\d)$/.exec(v)
    if (m !== null && (m[1] !== '24' || m[2] === '00')) return Number(m[1]) * 3600 + Number(m[2]) * 60
  }
  throw fail(`${field} must be a UTC time of day "HH:MM" or seconds 0..86400, got ${JSON.stringify(v)}`)
}

function ruleOf(r: unknown, i: number, fail: (what: string) => KinError): PolicyRule {
  if (typeof r !== 'object' || r === null || Array.isArray(r))
    throw fail(`rules[${i}] must be an object {action, roles, from?, to?}`)
  const rule = r as Record<string, unknown>
  const extra = Object.keys(rule).filter(k => !['action', 'roles', 'from', 'to'].includes(k))
  if (extra.length > 0)
    throw fail(`rules[${i}] has unknown field ${JSON.stringify(extra[0])} (fields: action, roles, from, to)`)
  const { action, roles } = rule
  if (typeof action !== 'string' || action.length === 0 || action.length > MAX_ACTION_LENGTH)
    throw fail(`rules[${i}].action must be 1..${MAX_ACTION_LENGTH} characters ('*' for every action)`)
  if (!Array.isArray(roles) || roles.length > 4 || !roles.every(x => typeof x === 'string' && Object.hasOwn(ROLE, x))) {
    throw fail(`rules[${i}].roles must list roles of ${Object.keys(ROLE).join(', ')}`)
  }
  return {
    action,
    roles: roles as RoleName[],
    from: timeOfDay(rule['from'], fail, `rules[${i}].from`),
    to: timeOfDay(rule['to'], fail, `rules[${i}].to`),
  }
}

function count(v: unknown, max: number, fail: (what: string) => KinError, field: string): number | undefined {
  if (v === undefined) return undefined
  if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > max)
    throw fail(`"${field}" must be a whole number 0..${max}`)
  return v as number
}

/**
 * Parses a policy document. `where` names it in messages (e.g. 'config.json "policy"'); `code` is the error's code;
 * `event` allows `subtree` (a policy event's field) and takes maxHeadAge as a duration too ("1h").
 */
export function parsePolicyDocument(
  value: unknown,
  where: string,
  code: KinErrorCode,
  opts: { event?: boolean } = {},
): PolicyDocument {
  const fail = (what: string): KinError => new KinError(code, `${where}: ${what}`)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fail('must be an object')
  const policy = value as Record<string, unknown>
  const fields = ['maxHops', 'maxHeadAge', 'anchors', 'rules', ...(opts.event === true ? ['subtree'] : [])]
  const extra = Object.keys(policy).filter(k => !fields.includes(k))
  if (extra.length > 0) throw fail(`unknown field ${JSON.stringify(extra[0])} (fields: ${fields.join(', ')})`)
  const out: PolicyDocument = {}
  if (opts.event === true) {
    const subtree = policy['subtree'] ?? false
    if (typeof subtree !== 'boolean') throw fail('"subtree" must be true or false')
    out.subtree = subtree
  }
  const maxHops = count(policy['maxHops'], MAX_POLICY_HOPS, fail, 'maxHops')
  if (maxHops !== undefined) out.maxHops = maxHops
  let age = policy['maxHeadAge']
  if (opts.event === true && typeof age === 'string') {
    const m = /^(\d{1,9})([smhd])$/.exec(age)
    if (m === null)
      throw fail(`"maxHeadAge" must be seconds or a duration such as 90s, 10m, 1h, got ${JSON.stringify(age)}`)
    age = Number(m[1]) * DURATION_SECONDS[m[2]!]!
  }
  const maxHeadAge = count(age, 0xffffffff, fail, 'maxHeadAge')
  if (maxHeadAge !== undefined) out.maxHeadAge = maxHeadAge
  const anchors = policy['anchors']
  if (anchors !== undefined) {
    if (
      !Array.isArray(anchors) ||
      anchors.length > MAX_POLICY_ANCHORS ||
      !anchors.every(a => typeof a === 'string' && a.length > 0)
    ) {
      throw fail(
        `"anchors" must be a list of at most ${MAX_POLICY_ANCHORS} CNs${opts.event === true ? ' or names' : ''}`,
      )
    }
    out.anchors = anchors as string[]
  }
  const rules = policy['rules']
  if (rules !== undefined) {
    if (!Array.isArray(rules) || rules.length > MAX_POLICY_RULES)
      throw fail(`"rules" must be a list of at most ${MAX_POLICY_RULES} rules`)
    out.rules = rules.map((r, i) => ruleOf(r, i, fail))
  }
  return out
}
