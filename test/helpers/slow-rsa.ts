/** @module Tests take hostile RSA keys from the simulator's (sim/slow-rsa.ts). */
export * from '../../sim/slow-rsa.ts'
