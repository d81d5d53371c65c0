/** @module Identity attacks with a rogue root copying the fleet root's name and key identifier: at the lock over mutual TLS, at L0's broker as an MQTT login. */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { decisionOfAnswer } from '../../agent/access/decision.ts'
import { KinError } from '../../agent/errors.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { requestAccess } from '../../runtime/node/tls-endpoint.ts'
import { rogueLeaf } from '../rogue-root.ts'
import type { AttackContext } from './house.ts'
import { decided, type AttackRunner } from './runner.ts'
import type { AttackOutcome } from './types.ts'

/**
 * Tries per case: before the lock and the broker read the peer certificate as the handshake ends, OpenSSL's failed
 * signature check reset most connections (not all), so one attempt could pass by luck.
 */
const ATTEMPTS = 4

/** How long one login may take to get its CONNACK, ms: generous, the fleet shares the machine. */
const LOGIN_TIMEOUT_MS = 10_000

// [MQTT-3.2.2.3] CONNACK return code 5: not authorized.
const NOT_AUTHORIZED = 5

/** The codes the attempts saw, counted: "4/4 CERT_CHAIN", or "3/4 CERT_CHAIN, 1/4 ACCESS_TRANSPORT". */
function tallied(codes: readonly string[]): string {
  const counts = new Map<string, number>()
  for (const c of codes) counts.set(c, (counts.get(c) ?? 0) + 1)
  return [...counts].map(([c, n]) => `${n}/${codes.length} ${c}`).join(', ')
}

/**
 * The rogue root has the fleet root's subject and subject key identifier under Eve's own key, so OpenSSL checks its
 * leaf against the real root's key and fails, rather than passing over it for a missing issuer. Its leaf names the
 * guest's phone. Both cases leave the fleet as it was: nothing is recorded, every login is refused.
 */
export async function rogueRootAttacks(ctx: AttackContext, run: AttackRunner): Promise<void> {
  const { fleet } = ctx
  const guest = fleet.device('L3.4')
  const dir = join(ctx.scratch, 'rogue-root')
  mkdirSync(dir, { recursive: true })
  const rogue = rogueLeaf(dir, fleet.l0.rootPem, guest.cn)
  const identity = { certPem: rogue.certPem, keyPem: rogue.keyPem, rootPem: fleet.l0.rootPem }

  await run.run(
    {
      id: 'rogue-ca-same-key-id',
      family: 'identity',
      kind: 'attack',
      attack:
        "a rogue root with the fleet root's name and key identifier issues the guest's CN; its leaf asks the lock",
      expected: ['CERT_CHAIN'],
    },
    async () => {
      const endpoint = await fleet.endpoint('L3.3')
      const codes: string[] = []
      let first: AttackOutcome | undefined
      for (let i = 0; i < ATTEMPTS; i++) {
        let seen: AttackOutcome
        try {
          const outcome = await requestAccess({
            ...identity,
            host: '127.0.0.1',
            port: endpoint.port,
            action: 'unlock',
            checkServer: der => guest.session.checkServer(der),
          })
          seen =
            outcome.answer === undefined
              ? { ...decided('Eve', 'L3.3', 'unlock', outcome.server), detail: 'the requester refused the lock' }
              : {
                  ...decided('Eve', 'L3.3', 'unlock', decisionOfAnswer(outcome.answer)),
                  detail: `the handshake completed and the lock answered: ${outcome.answer.reason}`,
                }
        } catch (err) {
          const code = err instanceof KinError ? err.code : 'INTERNAL'
          seen = { actual: code, detail: `no answer from the lock: ${(err as Error).message}` }
        }
        codes.push(seen.actual)
        // The row shows the first attempt that was not refused as expected, so one reset connection fails it.
        if (first === undefined || (first.actual === 'CERT_CHAIN' && seen.actual !== 'CERT_CHAIN')) first = seen
      }
      return { ...first!, detail: `${first!.detail}; ${tallied(codes)} attempts` }
    },
  )

  await run.run(
    {
      id: 'rogue-ca-same-key-id-login',
      family: 'identity',
      kind: 'attack',
      attack: "over MQTT: the same rogue leaf logs in to L0's broker as the guest's phone",
      expected: ['CERT_CHAIN'],
    },
    async () => {
      const refused: Array<Record<string, unknown>> = []
      const stop = ctx.watchLog(r => {
        if (r['source'] === 'L0' && r['event'] === 'login.refused' && r['clientId'] === guest.cn) refused.push(r)
      })
      const codes: string[] = []
      let first: AttackOutcome | undefined
      try {
        for (let i = 0; i < ATTEMPTS; i++) {
          const logged = refused.length
          let seen: AttackOutcome
          try {
            const session = await nodeTransport.connect({
              url: fleet.url,
              clientId: guest.cn,
              login: { kind: 'certificate', certPem: rogue.certPem, keyPem: rogue.keyPem },
              server: { kind: 'fleet', rootPem: fleet.l0.rootPem, serverCn: fleet.l0.cn },
              connectTimeoutMs: LOGIN_TIMEOUT_MS,
            })
            await session.end()
            seen = { actual: 'ACCEPTED', detail: "L0's broker accepted the login (CONNACK 0)" }
          } catch (err) {
            const code = err instanceof KinError ? err.code : 'INTERNAL'
            const connack = err instanceof KinError ? err.detail?.['returnCode'] : undefined
            // L0 logs the refusal before it answers, so the line is in by the time the CONNACK arrives.
            const line = refused[logged]
            if (connack === NOT_AUTHORIZED && line !== undefined)
              seen = {
                actual: String(line['code']),
                detail: `CONNACK 5 (not authorized); L0 logged login.refused ${String(line['code'])}: ${String(line['message'])}`,
              }
            else
              seen = {
                actual: code,
                detail: `${connack === undefined ? 'no CONNACK' : `CONNACK ${String(connack)}`} (${(err as Error).message}); L0 logged ${line === undefined ? 'no login.refused' : `login.refused ${String(line['code'])}`}`,
              }
          }
          codes.push(seen.actual)
          if (first === undefined || (first.actual === 'CERT_CHAIN' && seen.actual !== 'CERT_CHAIN')) first = seen
        }
      } finally {
        stop()
      }
      return { ...first!, detail: `${first!.detail}; ${tallied(codes)} attempts` }
    },
  )
}
