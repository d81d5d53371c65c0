/** @module The rogue CA copying the fleet root's name and key identifier, for the tests: it lives in sim/. */
export { rogueLeaf, type RogueLeaf } from '../../sim/rogue-root.ts'
