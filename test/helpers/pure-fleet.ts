/** @module Tests build real fleets with the simulator's in-process fleet (sim/pure-fleet.ts). */
export * from '../../sim/pure-fleet.ts'
