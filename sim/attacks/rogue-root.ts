/** @module Identity attacks with a rogue root copying the fleet root's name and key identifier: at the lock over mutual TLS from openssl s_client, at L0's broker as an MQTT login. */
import { spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { decisionOfAnswer } from '../../agent/access/decision.ts'
import { KinError } from '../../agent/errors.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { parseAccessAnswer } from '../../runtime/node/tls-endpoint.ts'
import { rogueLeaf } from '../rogue-root.ts'
import type { AttackContext } from './house.ts'
import { decided, type AttackRunner } from './runner.ts'
import type { AttackOutcome } from './types.ts'

/**
 * Tries per case. Before the lock and the broker read the peer certificate as the handshake ends, OpenSSL's failed
 * signature check dropped every login at the broker but reset only some accesses at the lock (1 of 4 in one run), so
 * one attempt could pass by luck: the lock is asked more often.
 */
const LOGIN_ATTEMPTS = 4
const ACCESS_ATTEMPTS = 8

/** How long one login may take to get its CONNACK, ms: generous, the fleet shares the machine. */
const LOGIN_TIMEOUT_MS = 10_000

// [MQTT-3.2.2.3] CONNACK return code 5: not authorized.
const NOT_AUTHORIZED = 5

/** What an attempt that got no answer line shows: the lock reset or closed the connection without a decision. */
const NO_ANSWER = 'NO_ANSWER'

/** How long s_client may wait for the lock's answer, ms: generous, the fleet shares the machine. */
const ANSWER_TIMEOUT_MS = 10_000

/**
 * Asks the lock for 'unlock' from an openssl s_client process, as from Eve's own machine. An attacker in this process
 * would hide the fault the case is about: OpenSSL's error queue is per thread, and a TLS client here clears it.
 */
function sClientAsk(port: number, certFile: string, keyFile: string): Promise<{ line?: string; stderr: string }> {
  return new Promise(resolve => {
    const child = spawn(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-cert', certFile, '-key', keyFile, '-quiet'],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    )
    let out = '',
      err = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('"allow"')) child.stdin.end()
    })
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString()
    })
    child.stdin.on('error', () => undefined)
    child.on('error', e => resolve({ stderr: `openssl did not run: ${e.message}` }))
    child.stdin.write('{"action":"unlock"}\n')
    // Bounded: s_client ends with its input, and is killed if it does not.
    let killer: NodeJS.Timeout | undefined
    const timer = setTimeout(() => {
      child.stdin.end()
      killer = setTimeout(() => child.kill('SIGKILL'), 1000)
    }, ANSWER_TIMEOUT_MS)
    child.on('close', () => {
      clearTimeout(timer)
      clearTimeout(killer)
      const line = out
        .split('\n')
        .map(l => l.trim())
        .find(l => l.includes('"allow"'))
      resolve({ line, stderr: err.trim().split('\n').at(-1) ?? '' })
    })
  })
}

/** The codes the attempts saw, counted: "4/4 CERT_CHAIN", or "3/4 CERT_CHAIN, 1/4 NO_ANSWER". */
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

  await run.run(
    {
      id: 'rogue-ca-same-key-id',
      family: 'identity',
      kind: 'attack',
      attack:
        "a rogue root with the fleet root's name and key identifier issues the guest's CN; its leaf asks the lock from openssl s_client",
      expected: ['CERT_CHAIN'],
    },
    async () => {
      const endpoint = await fleet.endpoint('L3.3')
      const codes: string[] = []
      let first: AttackOutcome | undefined
      for (let i = 0; i < ACCESS_ATTEMPTS; i++) {
        const asked = await sClientAsk(endpoint.port, rogue.certFile, rogue.keyFile)
        let seen: AttackOutcome
        if (asked.line === undefined)
          seen = { actual: NO_ANSWER, detail: `the lock answered nothing (s_client: ${asked.stderr || 'no message'})` }
        else {
          try {
            const answer = parseAccessAnswer(asked.line)
            seen = {
              ...decided('Eve', 'L3.3', 'unlock', decisionOfAnswer(answer)),
              detail: `the handshake completed and the lock answered: ${answer.reason}`,
            }
          } catch (err) {
            const code = err instanceof KinError ? err.code : 'INTERNAL'
            seen = { actual: code, detail: `the lock's answer did not parse: ${(err as Error).message}` }
          }
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
        for (let i = 0; i < LOGIN_ATTEMPTS; i++) {
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
