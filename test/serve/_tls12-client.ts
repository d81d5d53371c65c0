/** @module Tests speak bare TLS 1.2 through the simulator's client (sim/tls12-client.ts). */
export * from '../../sim/tls12-client.ts'
