/**
 * @module Stand-ins kin-core carries instead of what agent/ carries on Node: a WHATWG-exact UTF-8 encoder and the
 * part of cbor-x that agent/codec/cbor.ts uses. Plain JavaScript, because rollup.config.mjs turns each function's
 * source into a virtual module of the kin-core bundle (so Node loads it with the build, and tests call it directly);
 * test/footprint/cbor-lite.test.ts and the QuickJS tests hold them to what they replace. Each function is
 * self-contained: it may use nothing from outside its own body.
 */

/**
 * A UTF-8 encoder with the results of the WHATWG TextEncoder (lone surrogates become U+FFFD). The agent's utf8()
 * calls TextEncoder, a Web API that QuickJS and other small engines lack.
 */
export function utf8Encoder() {
  class TextEncoder {
    get encoding() {
      return 'utf-8'
    }
    encode(input = '') {
      const s = String(input),
        out = []
      for (let i = 0; i < s.length; i++) {
        let c = s.charCodeAt(i)
        if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
          const d = s.charCodeAt(i + 1)
          if (d >= 0xdc00 && d <= 0xdfff) {
            c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00)
            i++
          }
        }
        if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd
        if (c < 0x80) out.push(c)
        else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63))
        else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63))
        else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63))
      }
      return new Uint8Array(out)
    }
  }
  return { TextEncoder }
}

/**
 * The part of cbor-x that agent/codec/cbor.ts uses (`new Encoder(o).encode(v)`, `new Decoder(o).decode(bytes)`), in
 * 3 KB instead of 30 KB: parsing and compiling cbor-x costs QuickJS about 300 KiB of heap at load. The encoder
 * writes what cbor.ts hands it (unsigned integers, byte and text strings, arrays, booleans, null) in the shortest
 * form, as cbor-x does. The decoder reads every well-formed item (RFC 8949 §3) the way cbor-x does where cbor.ts
 * could tell the difference: maps come back as Map, floats as numbers, indefinite-length arrays and maps read, so
 * that cbor.ts refuses them by its own checks (DECODE_FIELD, DECODE_SHAPE, DECODE_NONCANONICAL); indefinite-length
 * strings, simple values (cbor-x's "packed values") and bytes that are no CBOR item throw (DECODE_CBOR); trailing
 * bytes throw cbor-x's own message, which cbor.ts maps to DECODE_TRAILING. Tags other than 55799 come back as
 * { tag, value } (DECODE_FIELD), where cbor-x gives some tags meanings of its own, and cbor-x reads some invalid
 * UTF-8 with errors of its own: for such input the two may refuse with different codes. Both refuse it.
 */
export function cborLite(TextEncoder) {
  const MAX_DEPTH = 64
  // A break (0xff) where no indefinite-length item is open: a value of no kind kinship knows, as in cbor-x.
  const BREAK = Object.freeze({ break: true })
  const utf8 = new TextEncoder()

  // UTF-8 as the WHATWG decoder reads it (RFC 3629 §4): an invalid sequence becomes U+FFFD, so the text never
  // re-encodes to the same bytes and cbor.ts refuses it as not canonical.
  function utf8Decode(bytes) {
    let out = '',
      i = 0
    while (i < bytes.length) {
      const b = bytes[i]
      const need =
        b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1
      let cp = need === 0 ? b : need === 1 ? b & 0x1f : need === 2 ? b & 0x0f : b & 0x07,
        j = 1
      for (; need > 0 && j <= need && i + j < bytes.length && (bytes[i + j] & 0xc0) === 0x80; j++)
        cp = (cp << 6) | (bytes[i + j] & 0x3f)
      const min = [0, 0x80, 0x800, 0x10000][need]
      if (need < 0 || j <= need || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        out += '\ufffd'
        i += Math.max(1, j - 1)
        continue
      }
      out += String.fromCodePoint(cp)
      i += need + 1
    }
    return out
  }

  function half(bits) {
    const exp = (bits >> 10) & 0x1f,
      mant = bits & 0x3ff
    const v = exp === 0 ? mant * 2 ** -24 : exp === 31 ? (mant === 0 ? Infinity : NaN) : (mant + 1024) * 2 ** (exp - 25)
    return bits & 0x8000 ? -v : v
  }

  // The reader is an object with methods, not closures made per call: recursive closures would form reference
  // cycles that only QuickJS's cycle collector frees, and memory would pile up between its runs.
  class Reader {
    constructor(bytes) {
      this.bytes = bytes
      this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      this.pos = 0
    }
    need(n) {
      if (this.pos + n > this.bytes.length) throw new Error('Unexpected end of CBOR data')
    }
    argument(info) {
      if (info < 24) return info
      let v
      if (info === 24) {
        this.need(1)
        v = this.bytes[this.pos]
        this.pos += 1
      } else if (info === 25) {
        this.need(2)
        v = this.view.getUint16(this.pos)
        this.pos += 2
      } else if (info === 26) {
        this.need(4)
        v = this.view.getUint32(this.pos)
        this.pos += 4
      } else if (info === 27) {
        this.need(8)
        v = this.view.getUint32(this.pos) * 2 ** 32 + this.view.getUint32(this.pos + 4)
        this.pos += 8
      } else throw new Error(`Invalid additional information ${info}`)
      return v
    }
    simple(info) {
      if (info === 20) return false
      if (info === 21) return true
      if (info === 22) return null
      if (info === 23) return undefined
      let v
      if (info === 25) {
        this.need(2)
        v = half(this.view.getUint16(this.pos))
        this.pos += 2
      } else if (info === 26) {
        this.need(4)
        v = this.view.getFloat32(this.pos)
        this.pos += 4
      } else if (info === 27) {
        this.need(8)
        v = this.view.getFloat64(this.pos)
        this.pos += 8
      } else if (info < 25) {
        if (info === 24) this.need(1)
        throw new Error('No packed values available')
      } else throw new Error(`Invalid additional information ${info}`)
      return v
    }
    indefinite(major, depth) {
      if (major === 2 || major === 3) throw new Error('Indefinite length not supported for byte or text strings')
      if (major === 7) return BREAK
      if (major !== 4 && major !== 5) throw new Error(`Invalid indefinite length for major type ${major}`)
      const items = []
      for (;;) {
        this.need(1)
        if (this.bytes[this.pos] === 0xff) {
          this.pos++
          break
        }
        items.push(this.item(depth + 1))
      }
      if (major === 4) return items
      if (items.length % 2 !== 0) throw new Error('Odd number of items in an indefinite-length map')
      const map = new Map()
      for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1])
      return map
    }
    item(depth) {
      if (depth > MAX_DEPTH) throw new Error('CBOR nested too deeply')
      this.need(1)
      const first = this.bytes[this.pos++],
        major = first >> 5,
        info = first & 0x1f
      if (info === 31) return this.indefinite(major, depth)
      if (major === 7) return this.simple(info)
      const n = this.argument(info)
      if (major === 0) return n
      if (major === 1) return -1 - n
      if (major === 2 || major === 3) {
        this.need(n)
        const start = this.pos
        this.pos += n
        return major === 2 ? this.bytes.slice(start, this.pos) : utf8Decode(this.bytes.subarray(start, this.pos))
      }
      if (major === 4) {
        const items = []
        for (let i = 0; i < n; i++) items.push(this.item(depth + 1))
        return items
      }
      if (major === 5) {
        const map = new Map()
        for (let i = 0; i < n; i++) {
          const k = this.item(depth + 1)
          map.set(k, this.item(depth + 1))
        }
        return map
      }
      const value = this.item(depth + 1)
      // RFC 8949 §3.4.6: the self-described CBOR tag marks, it does not change, what it wraps.
      return n === 55799 ? value : { tag: n, value }
    }
  }

  class Writer {
    constructor() {
      this.out = []
    }
    head(major, n) {
      const m = major << 5,
        out = this.out
      if (n < 24) out.push(m | n)
      else if (n < 0x100) out.push(m | 24, n)
      else if (n < 0x10000) out.push(m | 25, n >> 8, n & 255)
      else out.push(m | 26, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)
    }
    bytes(major, b) {
      this.head(major, b.length)
      for (let i = 0; i < b.length; i++) this.out.push(b[i])
    }
    write(v) {
      if (typeof v === 'number') this.head(0, v)
      else if (typeof v === 'string') this.bytes(3, utf8.encode(v))
      else if (v instanceof Uint8Array) this.bytes(2, v)
      else if (Array.isArray(v)) {
        this.head(4, v.length)
        for (let i = 0; i < v.length; i++) this.write(v[i])
      } else if (v === false) this.out.push(0xf4)
      else if (v === true) this.out.push(0xf5)
      else if (v === null) this.out.push(0xf6)
      else throw new TypeError(`kin-core's CBOR encoder writes no ${typeof v}`)
    }
  }

  class Decoder {
    decode(bytes) {
      const reader = new Reader(bytes)
      const value = reader.item(0)
      if (reader.pos !== bytes.length) throw new Error('Data read, but end of buffer not reached')
      return value
    }
  }

  class Encoder {
    encode(value) {
      const writer = new Writer()
      writer.write(value)
      return new Uint8Array(writer.out)
    }
  }

  return { Encoder, Decoder }
}
