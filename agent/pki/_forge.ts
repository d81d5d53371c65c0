/** @module The one door to node-forge: its namespace and conversions between bytes and forge's binary strings. */
import * as forgeNamespace from 'node-forge'
import type { asn1 } from 'node-forge'

type Forge = typeof forgeNamespace
// node-forge is CommonJS: under Node's ESM loader its API is the default export, under a bundler it may be the namespace.
/** node-forge, imported once so a bundle for a small engine has one place to swap it. */
export const forge: Forge = (forgeNamespace as unknown as { default?: Forge }).default ?? forgeNamespace

/** Bytes as a forge binary string (one char per byte). */
export function toBinary(bytes: Uint8Array): string {
  let out = ''
  // Chunked so long inputs do not overflow the argument list of fromCharCode.
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[])
  }
  return out
}

/** A forge binary string (one char per byte) as bytes. */
export function fromBinary(binary: string): Uint8Array {
  const out = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i) & 0xff
  return out
}

/** The DER bytes of a forge ASN.1 object. */
export function asn1ToBytes(object: asn1.Asn1): Uint8Array {
  return fromBinary(forge.asn1.toDer(object).getBytes())
}
