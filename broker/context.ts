/** @module What L0's service handlers share: identity, ledger and miner, invites, CA, clock, log, and a way to publish. */
import type { CryptoProvider } from '../agent/ports/platform.ts'
import type { FleetCa } from '../agent/enroll/ca.ts'
import type { FleetTopics } from '../agent/gossip/topics.ts'
import type { PersistentLedger } from '../agent/ledger/persistent.ts'
import type { EncodedEvent } from '../agent/ledger/types.ts'
import type { InviteBook } from './invites.ts'
import type { IssuedRegistry } from './issued.ts'
import type { L0Logger } from './log.ts'
import type { MinerService } from './miner-service.ts'

/** The services' view of L0. */
export interface ServiceContext {
  readonly fleet: string
  /** L0's own CN. */
  readonly cn: string
  readonly topics: FleetTopics
  readonly crypto: CryptoProvider
  /** L0's ledger, for reading: every write goes through `miner`. */
  readonly ledger: PersistentLedger
  /** The miner: submissions and the CA's authorize events enter the ledger through it. */
  readonly miner: MinerService
  readonly invites: InviteBook
  readonly ca: FleetCa
  /** Serials of the certificates the CA issued (for CRLs). */
  readonly issued: IssuedRegistry
  /** Seconds since the epoch. */
  now(): number
  readonly log: L0Logger
  /** Publishes as L0's services (QoS 1, not retained unless asked), past the client ACLs. */
  publish(topic: string, payload: Uint8Array, opts?: { retain?: boolean }): Promise<void>
  /** Told after events entered L0's ledger: rechecks open sessions (a revoke or rekey may end some). */
  ledgerChanged(accepted: EncodedEvent[]): Promise<void>
}
