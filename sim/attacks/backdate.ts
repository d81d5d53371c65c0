/** @module Back-dating with a stolen key: after the laptop's revocation, its ledger key signs events dated before it and a device relays them to the miner over MQTT. */
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { Home } from '../../runtime/home.ts'
import { KinError } from '../../agent/errors.ts'
import { FleetCa } from '../../agent/enroll/ca.ts'
import { submitEvents } from '../../agent/gossip/submit.ts'
import { authorizeEvent, policyEvent } from '../../agent/ledger/builders.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { signedRevoke } from '../../agent/ledger/revoke.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import type { LiveFleet } from '../live/fleet.ts'
import type { AttackContext } from './house.ts'
import { borrowFollowerClient } from './inbox-link.ts'
import { watchMiner } from './miner-watch.ts'
import { decided, type AttackRunner } from './runner.ts'
import { ACCEPTED, type AttackOutcome } from './types.ts'

/** What the thief signs with the laptop's ledger key. */
export type BackDatedKind = 'authorize' | 'policy' | 'revoke'

/** Who plays which part: the stolen device, the lock, the owner's device, the device whose session relays. */
export interface BackDateCast {
  thief: string
  lock: string
  owner: string
  relay: string
}

/**
 * The thief's event, signed with the key in the stolen device's `ledger-key` file and dated `back` seconds before
 * `before`: a new admin child, a policy on the lock granting guests every action, or a revocation of the owner's
 * branch with its subtree. Built against L0's ledger (what the thief learned before the theft was noticed). An
 * authorize binds `childTlsKey` when given (so a CSR for it can be put to the CA), a random key hash otherwise.
 */
export function backDatedEvent(
  fleet: LiveFleet,
  cast: BackDateCast,
  kind: BackDatedKind,
  before: number,
  back: number,
  childTlsKey?: { spkiDer: Uint8Array },
): EncodedEvent {
  const state = fleet.l0.ledger.ledger.state
  const thief = fleet.device(cast.thief)
  const stolenKey = new Home(thief.dir).readLedgerKey()
  const issuer = state.currentBinding(thief.cn)
  if (issuer === undefined) throw new KinError('ENROLL_STATE', `L0's ledger does not know ${cast.thief}`)
  const time = before - back
  if (kind === 'authorize') {
    const child = nodeCrypto.ed25519KeyPair(nodeCrypto.randomBytes(32))
    return signEvent(
      nodeCrypto,
      authorizeEvent(
        nodeCrypto,
        issuer,
        {
          spkiHash: childTlsKey === undefined ? nodeCrypto.randomBytes(32) : nodeCrypto.sha256(childTlsKey.spkiDer),
          ledgerKey: child.publicKey,
          role: 'admin',
          depth: issuer.depth - 1,
          notAfter: issuer.notAfter,
          kind: 'laptop',
          name: 'spare laptop',
        },
        time,
      ),
      stolenKey,
    )
  }
  if (kind === 'revoke') {
    const body = { reason: 'compromised' as const, subtree: true, effective: time }
    return signedRevoke(nodeCrypto, state, { cn: thief.cn, ledgerSeed: stolenKey }, fleet.cnOf(cast.owner), body, time)
  }
  const target = state.currentBinding(fleet.cnOf(cast.lock))!
  const body = {
    subtree: false,
    maxHops: 0,
    maxHeadAge: 0,
    anchors: [],
    rules: [{ action: '*', roles: ['guest' as const], from: 0, to: 0 }],
  }
  return signEvent(nodeCrypto, policyEvent(issuer, target, body, time), stolenKey)
}

/** Labels of the devices (L0 included) whose ledger holds `idHex`. */
export function holdersOf(fleet: LiveFleet, idHex: string): string[] {
  return [...fleet.devices.values()]
    .filter(d => (d.replica?.ledger ?? fleet.l0.ledger).ledger.state.has(idHex))
    .map(d => d.label)
}

/**
 * Relays `event` on the relay's own submit topic from its own broker session (the follower's), then reads L0's
 * verdict and, after a seal and convergence, which ledgers hold it: the outcome is the miner's refusal code when
 * no ledger does.
 */
export async function relayToMiner(fleet: LiveFleet, relayLabel: string, event: EncodedEvent): Promise<AttackOutcome> {
  const relay = fleet.device(relayLabel)
  const verdict = watchMiner(fleet, event.idHex)
  try {
    const client = await borrowFollowerClient(fleet, relayLabel)
    try {
      await submitEvents(client, fleet.l0.fleet, relay.cn, [event])
    } finally {
      await client.close()
    }
    const seen = await verdict.result
    await fleet.l0.seal()
    await fleet.converge()
    const holders = holdersOf(fleet, event.idHex)
    const wire =
      holders.length === 0
        ? `none of the ${fleet.devices.size} ledgers (L0's included) holds it`
        : `held by ${holders.join(', ')}`
    if (seen.refused !== undefined && holders.length === 0)
      return {
        actual: seen.refused.code,
        detail: `relayed by ${relayLabel}; L0's miner refused it (${seen.refused.code}): ${seen.refused.message}; ${wire}`,
      }
    if (seen.refused !== undefined)
      return { actual: ACCEPTED, detail: `L0's miner refused it (${seen.refused.code}) yet the event spread: ${wire}` }
    return { actual: ACCEPTED, detail: `L0's miner took it; ${wire}` }
  } finally {
    verdict.stop()
  }
}

/**
 * The fleet CA judging `authorize` as it does for a CSR (broker/services.ts builds it the same way): over L0's
 * ledger, appending through the miner. Resolves with the refusal code, or ACCEPTED if a certificate came out.
 */
export async function presentToCa(
  fleet: LiveFleet,
  authorize: EncodedEvent,
  csrPem: string,
): Promise<{ code: string; message: string }> {
  const ca = new FleetCa({
    crypto: nodeCrypto,
    rootCertPem: fleet.l0.rootPem,
    rootKeyPem: fleet.l0Home.readText('caKey'),
    ledger: {
      ledger: fleet.l0.ledger.ledger,
      append: (e, o) => fleet.l0.miner.appendOne(e, o?.now ?? fleet.clock.now()),
    },
  })
  try {
    await ca.issue({ authorizeBytes: authorize.bytes, csrPem, now: fleet.clock.now() })
    return { code: ACCEPTED, message: 'the CA issued a certificate' }
  } catch (err) {
    if (err instanceof KinError) return { code: err.code, message: err.message }
    throw err
  }
}

/**
 * The suite's rows: L0 revokes the stolen laptop (compromised, effective now, no subtree); the thief then signs, with
 * the laptop's ledger key, a new admin dated an hour back, a guest-widening policy on the lock and a revocation of
 * the owner's phone dated a minute back (inside the miner's clock skew), each relayed by the garden camera.
 */
export async function backDateAttacks(ctx: AttackContext, run: AttackRunner): Promise<void> {
  const { fleet } = ctx
  const cast: BackDateCast = { thief: 'L1', lock: 'L3.3', owner: 'L2.1', relay: 'L3.1' }
  const revocation = await fleet.revoke('L0', cast.thief, { reason: 'compromised', subtree: false })
  await fleet.converge()
  const at = revocation.event.time
  await run.run(
    {
      id: 'backdated-authorize',
      family: 'lifecycle',
      kind: 'attack',
      attack: 'over MQTT: the stolen laptop, revoked, authorizes a new admin dated an hour before its revocation',
      expected: ['TIME_TOO_OLD'],
    },
    () => relayToMiner(fleet, cast.relay, backDatedEvent(fleet, cast, 'authorize', at, 3600)),
  )
  await run.run(
    {
      id: 'backdated-policy',
      family: 'lifecycle',
      kind: 'attack',
      attack:
        "over MQTT: the stolen laptop's policy granting guests every action on the lock, dated a minute before its revocation",
      expected: ['ISSUER_REVOKED_IN_LOG'],
    },
    () => relayToMiner(fleet, cast.relay, backDatedEvent(fleet, cast, 'policy', at, 60)),
  )
  await run.run(
    {
      id: 'backdated-revoke',
      family: 'lifecycle',
      kind: 'attack',
      attack:
        "over MQTT: the stolen laptop revokes the owner's phone and its subtree, dated a minute before its revocation",
      expected: ['ISSUER_REVOKED_IN_LOG'],
    },
    () => relayToMiner(fleet, cast.relay, backDatedEvent(fleet, cast, 'revoke', at, 60)),
  )
  await run.run(
    {
      id: 'owner-after-laptop-revoked',
      family: 'lifecycle',
      kind: 'control',
      attack: "the owner's phone, authorized by the laptop before its revocation, still opens the door",
      expected: ['ALLOW'],
    },
    async () => decided('L2.1', 'L3.3', 'unlock', await fleet.access('L2.1', 'L3.3', 'unlock')),
  )
}
