/** @module Strict DER framing (X.690 §10): tag-length-value elements located by offset, so raw bytes can be hashed and verified as signed. */
import { DecodeError, type KinErrorCode } from '../errors.ts'

/** One DER element inside a byte array: its tag and where it and its content lie. */
export interface DerElement {
  readonly tag: number
  readonly start: number
  readonly contentStart: number
  readonly end: number
}

/** DER tags used by X.509 and PKCS#10. */
export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  sequence: 0x30,
  set: 0x31,
  context0: 0xa0,
  context3: 0xa3,
} as const

/** Reads the element at `offset`; definite minimal lengths only (X.690 §10.1), else DecodeError `code`. */
export function readElement(bytes: Uint8Array, offset: number, code: KinErrorCode): DerElement {
  if (offset + 2 > bytes.length) throw new DecodeError(code, `DER element truncated at offset ${offset}`)
  const tag = bytes[offset]!
  // High tag numbers never occur in the structures kinship reads.
  if ((tag & 0x1f) === 0x1f) throw new DecodeError(code, `unsupported DER high tag number at offset ${offset}`)
  const first = bytes[offset + 1]!
  let length = first,
    header = 2
  if (first & 0x80) {
    const n = first & 0x7f
    if (n === 0) throw new DecodeError(code, `indefinite DER length at offset ${offset}`)
    if (n > 4 || offset + 2 + n > bytes.length)
      throw new DecodeError(code, `DER length out of range at offset ${offset}`)
    if (bytes[offset + 2] === 0) throw new DecodeError(code, `non-minimal DER length at offset ${offset}`)
    length = 0
    for (let i = 0; i < n; i++) length = length * 256 + bytes[offset + 2 + i]!
    if (length < 0x80) throw new DecodeError(code, `non-minimal DER length at offset ${offset}`)
    header = 2 + n
  }
  const end = offset + header + length
  if (end > bytes.length) throw new DecodeError(code, `DER element at offset ${offset} runs past the end`)
  return { tag, start: offset, contentStart: offset + header, end }
}

/** Reads one element that must span all of `bytes` (no trailing bytes) and carry `tag`. */
export function readWhole(bytes: Uint8Array, tag: number, code: KinErrorCode): DerElement {
  const element = expectTag(readElement(bytes, 0, code), tag, code)
  if (element.end !== bytes.length)
    throw new DecodeError(code, `${bytes.length - element.end} trailing bytes after DER element`)
  return element
}

/** The elements inside a constructed element, which must fill it exactly. */
export function childrenOf(bytes: Uint8Array, parent: DerElement, code: KinErrorCode): DerElement[] {
  if ((parent.tag & 0x20) === 0) throw new DecodeError(code, `DER element at offset ${parent.start} is not constructed`)
  const out: DerElement[] = []
  let offset = parent.contentStart
  while (offset < parent.end) {
    const child = readElement(bytes, offset, code)
    if (child.end > parent.end) throw new DecodeError(code, `DER element at offset ${offset} overruns its parent`)
    out.push(child)
    offset = child.end
  }
  return out
}

/** Throws DecodeError `code` unless `element` (present) carries `tag`. */
export function expectTag(element: DerElement | undefined, tag: number, code: KinErrorCode): DerElement {
  if (element === undefined) throw new DecodeError(code, `missing DER element with tag 0x${tag.toString(16)}`)
  if (element.tag !== tag) {
    throw new DecodeError(
      code,
      `expected DER tag 0x${tag.toString(16)} at offset ${element.start}, got 0x${element.tag.toString(16)}`,
    )
  }
  return element
}

/** The whole encoding of an element (tag, length and content). */
export function elementBytes(bytes: Uint8Array, element: DerElement): Uint8Array {
  return bytes.subarray(element.start, element.end)
}

/** The content octets of an element. */
export function contentBytes(bytes: Uint8Array, element: DerElement): Uint8Array {
  return bytes.subarray(element.contentStart, element.end)
}
