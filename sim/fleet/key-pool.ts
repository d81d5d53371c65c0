/** @module TLS keys for simulated devices (P-256 by default, RSA-2048 by choice), made once and kept on disk, so key generation does not dominate a fleet run. */
import { createPrivateKey, createPublicKey } from 'node:crypto'
import { appendFileSync, chmodSync, mkdirSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nodePki } from '../../runtime/node/pki.ts'
import type { TlsKeyPair } from '../../agent/ports/pki.ts'
import { tlsKeyTypeOf, type TlsKeyType } from '../../agent/pki/key-type.ts'

/** Where the pool lives by default: a file of PEM keys under the OS's temporary directory. */
export const DEFAULT_KEY_POOL_FILE: string = join(tmpdir(), 'kinship-sim-keys', 'tls-keys.jsonl')

/** Where the keys of a run came from. */
export interface KeyPoolStats {
  file: string | undefined
  fromDisk: number
  made: number
  makeMs: number
}

function fromPrivatePem(privateKeyPem: string): TlsKeyPair {
  const publicKey = createPublicKey(createPrivateKey(privateKeyPem))
  const spki = publicKey.export({ type: 'spki', format: 'der' })
  const spkiDer = new Uint8Array(spki.buffer, spki.byteOffset, spki.length)
  return {
    privateKeyPem,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    spkiDer,
    keyType: tlsKeyTypeOf(spkiDer),
  }
}

/**
 * Hands out `count` distinct key pairs of `keyType`: first the ones kept in `file` (simulator keys only — never a
 * real device's), then new ones made with the node shim (in parallel on libuv's thread pool) and appended to it.
 * Every device of one run gets its own key; runs reuse the same file. With `file` undefined nothing is kept.
 */
export async function takeTlsKeys(
  count: number,
  file: string | undefined,
  onProgress?: (done: number) => void,
  keyType: TlsKeyType = 'p256',
): Promise<{ keys: TlsKeyPair[]; stats: KeyPoolStats }> {
  const keys: TlsKeyPair[] = []
  if (file !== undefined && existsSync(file)) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (keys.length >= count) break
      if (line.trim() === '') continue
      try {
        const pem = JSON.parse(line) as unknown
        if (typeof pem !== 'string') continue
        const key = fromPrivatePem(pem)
        if (key.keyType === keyType) keys.push(key)
      } catch {
        /* a torn or foreign line: skipped, a new key replaces it */
      }
    }
  }
  const fromDisk = keys.length
  onProgress?.(keys.length)
  const started = performance.now()
  if (file !== undefined) {
    mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 })
    if (!existsSync(file)) appendFileSync(file, '', { mode: 0o600 })
    chmodSync(file, 0o600)
  }
  const BATCH = 8
  while (keys.length < count) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(BATCH, count - keys.length) }, () => nodePki.generateTlsKeyPair(keyType)),
    )
    keys.push(...batch)
    if (file !== undefined) appendFileSync(file, batch.map(k => JSON.stringify(k.privateKeyPem) + '\n').join(''))
    onProgress?.(keys.length)
  }
  return { keys, stats: { file, fromDisk, made: count - fromDisk, makeMs: Math.round(performance.now() - started) } }
}
