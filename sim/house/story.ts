/** @module The house of the design, as a story with expectations: enrolled for real, then decided on by the devices. */
import type { Decision } from '../../agent/access/types.ts'

/** The devices of the house and their layers (DESIGN.md, "PKI identity on a ledger"). */
export const HOUSE = [
  { label: 'L1', parent: 'L0', role: 'admin', kind: 'laptop', name: 'laptop' },
  { label: 'L2.1', parent: 'L1', role: 'member', kind: 'phone', name: "owner's phone" },
  { label: 'L2.2', parent: 'L1', role: 'member', kind: 'tablet', name: 'tablet' },
  { label: 'L3.1', parent: 'L2.1', role: 'device', kind: 'camera', name: 'garden camera' },
  { label: 'L3.2', parent: 'L2.1', role: 'device', kind: 'camera', name: 'hall camera' },
  { label: 'L3.3', parent: 'L2.1', role: 'device', kind: 'lock', name: 'front-door lock' },
  { label: 'L3.4', parent: 'L2.2', role: 'guest', kind: 'phone', name: "mother's phone" },
] as const

/** A label of the house: L0 … L3.4. */
export type HouseLabel = 'L0' | (typeof HOUSE)[number]['label']

/** One checked step of the story. */
export interface StoryStep {
  label: string
  peer: HouseLabel
  target: HouseLabel
  action: string
  expect: 'allow' | 'deny'
  /** Codes that count as the expected refusal. */
  codes?: string[]
  decision?: Decision
  ok?: boolean
}

/** How a story reaches the fleet: through the broker for the demo, or in process. */
export interface HouseDriver {
  /** Simulated time, seconds. */
  now(): number
  advance(seconds: number): void
  enroll(
    label: HouseLabel,
    parent: HouseLabel,
    info: { role: string; kind: string; name: string; notAfter: number },
  ): Promise<string>
  revoke(
    by: HouseLabel,
    target: HouseLabel,
    body: { reason: 'compromised' | 'lost' | 'retired'; subtree: boolean },
  ): Promise<void>
  rekey(parent: HouseLabel, target: HouseLabel, notAfter?: number): Promise<void>
  /** Every device catches up with L0's ledger. */
  converge(): Promise<void>
  decide(peer: HouseLabel, target: HouseLabel, action: string): Promise<Decision>
  cnOf(label: HouseLabel): string
}

/** What the story prints as it goes. */
export type StoryLog = (line: string) => void

const DAY = 86400

/**
 * Plays the house: enrolls it, lets the guest in, keeps a camera from configuring the lock, revokes the
 * compromised tablet (the guest loses access, the owner's branch keeps it), rekeys the tablet and re-admits
 * the guest, then lets the holidays end. Returns every checked step.
 */
export async function playHouse(driver: HouseDriver, log: StoryLog): Promise<StoryStep[]> {
  const holidaysEnd = driver.now() + 14 * DAY
  for (const d of HOUSE) {
    const notAfter = d.role === 'guest' ? holidaysEnd : driver.now() + 365 * DAY
    const cn = await driver.enroll(d.label, d.parent, { role: d.role, kind: d.kind, name: d.name, notAfter })
    log(`enrolled ${d.label.padEnd(4)} ${d.name.padEnd(16)} ${d.role.padEnd(6)} under ${d.parent.padEnd(4)} ${cn}`)
  }
  await driver.converge()
  const steps: StoryStep[] = []
  const check = async (step: StoryStep): Promise<void> => {
    const decision = await driver.decide(step.peer, step.target, step.action)
    const ok =
      step.expect === 'allow'
        ? decision.allow
        : !decision.allow && (step.codes === undefined || step.codes.includes(decision.code))
    steps.push({ ...step, decision, ok })
    const path = decision.path.length > 0 ? `  path ${pathLabels(driver, decision.path)}` : ''
    log(
      `${ok ? 'ok  ' : 'FAIL'} ${step.label}: ${step.peer} → ${step.target} ${step.action}: ${decision.allow ? 'ALLOW' : 'DENY'} ${decision.code}${path}`,
    )
  }
  await check({
    label: 'the guest opens the front door',
    peer: 'L3.4',
    target: 'L3.3',
    action: 'unlock',
    expect: 'allow',
  })
  await check({ label: 'the lock checks the owner', peer: 'L2.1', target: 'L3.3', action: 'unlock', expect: 'allow' })
  await check({
    label: 'a camera may not configure the lock',
    peer: 'L3.1',
    target: 'L3.3',
    action: 'configure',
    expect: 'deny',
    codes: ['POLICY_ACTION', 'POLICY_ROLE'],
  })
  await check({
    label: 'the cameras may view each other',
    peer: 'L3.1',
    target: 'L3.2',
    action: 'view',
    expect: 'allow',
  })

  log('the tablet (L2.2) is reported compromised: the laptop revokes it and its subtree')
  await driver.revoke('L1', 'L2.2', { reason: 'compromised', subtree: true })
  await driver.converge()
  await check({
    label: 'the guest loses access',
    peer: 'L3.4',
    target: 'L3.3',
    action: 'unlock',
    expect: 'deny',
    codes: ['ACCESS_ANCESTOR_REVOKED', 'ACCESS_REVOKED'],
  })
  await check({ label: "the owner's branch keeps it", peer: 'L2.1', target: 'L3.3', action: 'unlock', expect: 'allow' })
  await check({
    label: 'the revoked tablet is refused',
    peer: 'L2.2',
    target: 'L3.3',
    action: 'unlock',
    expect: 'deny',
    codes: ['ACCESS_REVOKED', 'CERT_UNBOUND'],
  })

  log('the laptop rekeys the tablet; the tablet re-admits the guest with new keys')
  driver.advance(60)
  await driver.rekey('L1', 'L2.2')
  await driver.rekey('L2.2', 'L3.4', holidaysEnd)
  await driver.converge()
  await check({
    label: 'the guest is back for the holidays',
    peer: 'L3.4',
    target: 'L3.3',
    action: 'unlock',
    expect: 'allow',
  })
  await check({
    label: 'the rekeyed tablet is trusted again',
    peer: 'L2.2',
    target: 'L3.3',
    action: 'view',
    expect: 'allow',
  })

  log('the holidays end')
  driver.advance(holidaysEnd - driver.now() + 3600)
  await check({
    label: 'the guest is refused after the holidays',
    peer: 'L3.4',
    target: 'L3.3',
    action: 'unlock',
    expect: 'deny',
    codes: ['ACCESS_EXPIRED', 'CERT_EXPIRED'],
  })
  await check({
    label: 'the owner still opens the door',
    peer: 'L2.1',
    target: 'L3.3',
    action: 'unlock',
    expect: 'allow',
  })
  return steps
}

function pathLabels(driver: HouseDriver, path: string[]): string {
  const byCn = new Map<string, string>()
  for (const label of ['L0', ...HOUSE.map(h => h.label)] as HouseLabel[]) {
    try {
      byCn.set(driver.cnOf(label), label)
    } catch {
      /* not enrolled yet */
    }
  }
  const names = path.map(cn => byCn.get(cn) ?? cn.split('.')[0]!)
  // The path climbs from the peer to the common ancestor, then descends to the deciding device.
  const top = names.findIndex(
    (_, i) =>
      i > 0 &&
      i < names.length - 1 &&
      layer(names[i]!) < layer(names[i - 1]!) &&
      layer(names[i]!) < layer(names[i + 1]!),
  )
  if (top < 0) return names.join(' → ')
  return names.slice(0, top + 1).join(' → ') + ' ← ' + names.slice(top + 1).join(' ← ')
}

function layer(label: string): number {
  return Number(label.slice(1).split('.')[0])
}
