/** @module A device home's identity at L0's broker: a login with it (or with another certificate and key), and a copy kept aside. */
import { chmodSync, cpSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { KinError } from '../../agent/errors.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { tempDir } from '../enroll/_harness.ts'

const read = (home: string, file: string): string => readFileSync(join(home, file), 'utf8')

/**
 * Logs in to the broker at `url` as the device of `home`, with its own certificate and key or the ones given; the
 * error code, or 'ok'.
 */
export async function loginOutcome(
  url: string,
  home: string,
  identity: { certPem: string; keyPem: string } = {
    certPem: read(home, 'cert.pem'),
    keyPem: read(home, 'tls-key.pem'),
  },
): Promise<string> {
  const config = JSON.parse(read(home, 'config.json')) as { cn: string; l0Cn: string }
  try {
    const client = await connectDevice(
      nodeTransport,
      { url, cn: config.cn, ...identity, rootPem: read(home, 'root.pem'), l0Cn: config.l0Cn },
      { timeoutMs: 20_000 },
    )
    await client.close()
    return 'ok'
  } catch (err) {
    return err instanceof KinError ? err.code : String(err)
  }
}

/** A copy of `home` as it is now (an identity kept aside), without its lock and agent socket, in its own 0700 directory. */
export function keepHomeCopy(t: Test, home: string, tag: string): string {
  const copy = join(tempDir(t, tag), 'home')
  cpSync(home, copy, { recursive: true })
  for (const leftover of ['ledger.lock', 'agent.sock']) rmSync(join(copy, leftover), { force: true })
  chmodSync(copy, 0o700)
  return copy
}
