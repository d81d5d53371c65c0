/** @module Tests build deterministic ledger fleets with the simulator's (sim/ledger-fleet.ts). */
export * from '../../sim/ledger-fleet.ts'
