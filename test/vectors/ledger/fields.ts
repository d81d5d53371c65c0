/** @module Readable JSON form of ledger events for test vectors: hex for bytes, names for enums, numbers as numbers. */
import { fromHex, toHex } from '../../../agent/codec/bytes.ts'
import type { LedgerEvent, UnsignedEvent } from '../../../agent/ledger/types.ts'

/** A JSON value as the vectors hold it. */
export type Json = string | number | boolean | null | Json[] | { [k: string]: Json }

const BYTE_FIELDS = new Set(['rootCertHash', 'spkiHash', 'ledgerKey', 'minerKey', 'nonce', 'certHash'])

function bodyToJson(body: LedgerEvent['body']): { [k: string]: Json } {
  const out: { [k: string]: Json } = {}
  for (const [k, v] of Object.entries(body)) {
    if (v instanceof Uint8Array) out[k] = toHex(v)
    else if (k === 'anchors') out[k] = (v as Uint8Array[]).map(toHex)
    else if (k === 'rules')
      out[k] = (v as Array<{ action: string; roles: string[]; from: number; to: number }>).map(r => ({
        action: r.action,
        roles: [...r.roles],
        from: r.from,
        to: r.to,
      }))
    else out[k] = v as Json
  }
  return out
}

/** The readable fields of an event (the signature too when present). */
export function eventToJson(e: UnsignedEvent | LedgerEvent): { [k: string]: Json } {
  const out: { [k: string]: Json } = {
    version: e.version,
    type: e.type,
    subject: toHex(e.subject),
    issuer: toHex(e.issuer),
    links: e.links.map(toHex),
    time: e.time,
    body: bodyToJson(e.body),
  }
  if ('signature' in e) out.signature = toHex(e.signature)
  return out
}

/** The unsigned event described by readable fields (the signature, if any, is ignored). */
export function unsignedFromJson(j: { [k: string]: Json }): UnsignedEvent {
  const b = j.body as { [k: string]: Json }
  const body: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(b)) {
    if (BYTE_FIELDS.has(k)) body[k] = fromHex(v as string)
    else if (k === 'anchors') body[k] = (v as string[]).map(fromHex)
    else if (k === 'rules')
      body[k] = (v as Array<{ [k: string]: Json }>).map(r => ({
        action: r.action,
        roles: r.roles,
        from: r.from,
        to: r.to,
      }))
    else body[k] = v
  }
  return {
    version: j.version as number,
    type: j.type,
    subject: fromHex(j.subject as string),
    issuer: fromHex(j.issuer as string),
    links: (j.links as string[]).map(fromHex),
    time: j.time as number,
    body,
  } as unknown as UnsignedEvent
}
