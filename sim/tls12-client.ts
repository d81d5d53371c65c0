/** @module A bare TLS 1.2 client (RFC 5246, ECDHE-RSA- or ECDHE-ECDSA-AES128-GCM-SHA256) that signs CertificateVerify with any key, to test proof of possession. */
import { connect } from 'node:net'
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createHmac,
  createPrivateKey,
  randomBytes,
  sign,
} from 'node:crypto'

// OpenSSL and Node refuse to pair a certificate with a private key that does not match it, so an impostor who
// stole a certificate (not its key) has to speak TLS itself. This client does just enough for one mutual
// handshake and one request: it presents `certificateDer` and signs the transcript with `signingKeyPem`.

/** What a raw handshake came to. */
export interface RawTlsOutcome {
  /** The alert the server sent, if any (RFC 5246 §7.2: 51 = decrypt_error, 42 = bad_certificate, 0 = close_notify). */
  alert: { level: number; description: number } | undefined
  /** True when the server's Finished arrived: the handshake completed. */
  handshakeDone: boolean
  /** Application data the server sent, decrypted. */
  received: string
}

// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 and TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (RFC 5289): the same record
// protection; which one the server takes depends on its certificate's key type (P-256 or RSA).
const SUITES = [Buffer.from([0xc0, 0x2f]), Buffer.from([0xc0, 0x2b])]
const V12 = Buffer.from([0x03, 0x03])

function u8(n: number): Buffer {
  return Buffer.from([n])
}
function u16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}
function u24(n: number): Buffer {
  return Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff])
}
function u64(n: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

function handshake(type: number, body: Buffer): Buffer {
  return Buffer.concat([u8(type), u24(body.length), body])
}

function record(type: number, fragment: Buffer): Buffer {
  return Buffer.concat([u8(type), V12, u16(fragment.length), fragment])
}

// RFC 5246 §5: PRF(secret, label, seed) = P_SHA256(secret, label ‖ seed).
function prf(secret: Buffer, label: string, seed: Buffer, length: number): Buffer {
  const labelSeed = Buffer.concat([Buffer.from(label, 'ascii'), seed])
  const out: Buffer[] = []
  let a = labelSeed
  let total = 0
  while (total < length) {
    a = createHmac('sha256', secret).update(a).digest()
    const block = createHmac('sha256', secret)
      .update(Buffer.concat([a, labelSeed]))
      .digest()
    out.push(block)
    total += block.length
  }
  return Buffer.concat(out).subarray(0, length)
}

function clientHello(random: Buffer): Buffer {
  const extensions = Buffer.concat([
    Buffer.from([0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17]), // supported_groups: secp256r1 (RFC 8422 §5.1.1)
    Buffer.from([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]), // ec_point_formats: uncompressed
    Buffer.from([0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x01, 0x04, 0x03]), // signature_algorithms: rsa_pkcs1_sha256, ecdsa_secp256r1_sha256 (RFC 5246 §7.4.1.4.1)
  ])
  const suites = Buffer.concat([...SUITES, Buffer.from([0x00, 0xff])]) // + TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3)
  return handshake(
    1,
    Buffer.concat([
      V12,
      random,
      u8(0),
      u16(suites.length),
      suites,
      Buffer.from([0x01, 0x00]),
      u16(extensions.length),
      extensions,
    ]),
  )
}

class RecordReader {
  #buffer = Buffer.alloc(0)
  #ended = false
  #wake: (() => void) | undefined

  constructor(socket: ReturnType<typeof connect>) {
    socket.on('data', (d: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, d])
      this.#wake?.()
    })
    const end = (): void => {
      this.#ended = true
      this.#wake?.()
    }
    socket.on('end', end)
    socket.on('close', end)
    socket.on('error', end)
  }

  async next(): Promise<{ type: number; fragment: Buffer } | undefined> {
    for (;;) {
      if (this.#buffer.length >= 5) {
        const length = this.#buffer.readUInt16BE(3)
        if (this.#buffer.length >= 5 + length) {
          const type = this.#buffer[0]!
          const fragment = this.#buffer.subarray(5, 5 + length)
          this.#buffer = this.#buffer.subarray(5 + length)
          return { type, fragment }
        }
      }
      if (this.#ended) return undefined
      await new Promise<void>(resolve => {
        this.#wake = resolve
      })
      this.#wake = undefined
    }
  }
}

/**
 * One TLS 1.2 mutual handshake to `host:port` presenting `certificateDer` and signing CertificateVerify with
 * `signingKeyPem`, then `request` as application data; returns what the server did.
 */
export async function rawTls12Request(options: {
  host: string
  port: number
  certificateDer: Uint8Array
  signingKeyPem: string
  request: string
  timeoutMs?: number
}): Promise<RawTlsOutcome> {
  const socket = connect({ host: options.host, port: options.port })
  const timer = setTimeout(() => socket.destroy(), options.timeoutMs ?? 5000)
  const reader = new RecordReader(socket)
  const outcome: RawTlsOutcome = { alert: undefined, handshakeDone: false, received: '' }
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    const clientRandom = randomBytes(32)
    const transcript: Buffer[] = []
    const hello = clientHello(clientRandom)
    transcript.push(hello)
    socket.write(record(22, hello))

    // Server flight: ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone.
    let pending = Buffer.alloc(0)
    let serverRandom: Buffer | undefined, serverPublic: Buffer | undefined
    for (let done = false; !done;) {
      const r = await reader.next()
      if (r === undefined) return outcome
      if (r.type === 21) {
        outcome.alert = { level: r.fragment[0]!, description: r.fragment[1]! }
        return outcome
      }
      if (r.type !== 22) throw new Error(`unexpected record type ${r.type}`)
      pending = Buffer.concat([pending, r.fragment])
      while (pending.length >= 4) {
        const length = (pending[1]! << 16) | (pending[2]! << 8) | pending[3]!
        if (pending.length < 4 + length) break
        const message = pending.subarray(0, 4 + length)
        pending = pending.subarray(4 + length)
        transcript.push(message)
        const body = message.subarray(4)
        if (message[0] === 2) {
          serverRandom = body.subarray(2, 34)
          const sid = body[34]!
          if (!SUITES.some(s => body.subarray(35 + sid, 37 + sid).equals(s)))
            throw new Error('the server chose another cipher suite')
        } else if (message[0] === 12) {
          // RFC 8422 §5.4: ECParameters (named_curve) then the point; the signature that follows is not checked here.
          if (body[0] !== 3 || body.readUInt16BE(1) !== 0x0017) throw new Error('the server chose another curve')
          serverPublic = body.subarray(4, 4 + body[3]!)
        } else if (message[0] === 14) {
          done = true
        }
      }
    }
    if (serverRandom === undefined || serverPublic === undefined) throw new Error('incomplete server flight')

    const ecdh = createECDH('prime256v1')
    ecdh.generateKeys()
    const preMaster = ecdh.computeSecret(serverPublic)
    const master = prf(preMaster, 'master secret', Buffer.concat([clientRandom, serverRandom]), 48)
    const certificate = Buffer.from(options.certificateDer)
    const certMessage = handshake(
      11,
      Buffer.concat([u24(certificate.length + 3), u24(certificate.length), certificate]),
    )
    const clientPublic = ecdh.getPublicKey()
    const keyExchange = handshake(16, Buffer.concat([u8(clientPublic.length), clientPublic]))
    transcript.push(certMessage, keyExchange)
    // RFC 5246 §7.4.8: the signature covers every handshake message so far, with the key the client chooses.
    const ecdsa = createPrivateKey(options.signingKeyPem).asymmetricKeyType === 'ec'
    const signature = ecdsa
      ? sign('sha256', Buffer.concat(transcript), options.signingKeyPem)
      : sign('sha256', Buffer.concat(transcript), { key: options.signingKeyPem, padding: constants.RSA_PKCS1_PADDING })
    const verify = handshake(
      15,
      Buffer.concat([Buffer.from(ecdsa ? [0x04, 0x03] : [0x04, 0x01]), u16(signature.length), signature]),
    )
    transcript.push(verify)
    const keys = prf(master, 'key expansion', Buffer.concat([serverRandom, clientRandom]), 40)
    const clientKey = keys.subarray(0, 16),
      serverKey = keys.subarray(16, 32),
      clientIv = keys.subarray(32, 36),
      serverIv = keys.subarray(36, 40)
    let clientSeq = 0,
      serverSeq = 0
    // RFC 5288 §3: nonce = 4-byte implicit IV ‖ 8-byte explicit part; additional data per RFC 5246 §6.2.3.3.
    const seal = (type: number, plain: Buffer): Buffer => {
      const explicit = u64(clientSeq)
      const cipher = createCipheriv('aes-128-gcm', clientKey, Buffer.concat([clientIv, explicit]))
      cipher.setAAD(Buffer.concat([u64(clientSeq++), u8(type), V12, u16(plain.length)]))
      return record(type, Buffer.concat([explicit, cipher.update(plain), cipher.final(), cipher.getAuthTag()]))
    }
    const open = (type: number, fragment: Buffer): Buffer => {
      const decipher = createDecipheriv('aes-128-gcm', serverKey, Buffer.concat([serverIv, fragment.subarray(0, 8)]))
      const body = fragment.subarray(8, fragment.length - 16)
      decipher.setAAD(Buffer.concat([u64(serverSeq++), u8(type), V12, u16(body.length)]))
      decipher.setAuthTag(fragment.subarray(fragment.length - 16))
      return Buffer.concat([decipher.update(body), decipher.final()])
    }
    const finishedData = prf(
      master,
      'client finished',
      createHash('sha256').update(Buffer.concat(transcript)).digest(),
      12,
    )
    socket.write(
      Buffer.concat([
        record(22, Buffer.concat([certMessage, keyExchange, verify])),
        record(20, u8(1)),
        seal(22, handshake(20, finishedData)),
      ]),
    )

    let encrypted = false
    let requested = false
    for (;;) {
      const r = await reader.next()
      if (r === undefined) return outcome
      if (r.type === 20) {
        encrypted = true
        continue
      }
      const plain = encrypted ? open(r.type, r.fragment) : r.fragment
      if (r.type === 21) {
        outcome.alert = { level: plain[0]!, description: plain[1]! }
        return outcome
      }
      if (r.type === 22 && encrypted && plain[0] === 20) {
        outcome.handshakeDone = true
        if (!requested) {
          requested = true
          socket.write(seal(23, Buffer.from(options.request, 'utf8')))
        }
      } else if (r.type === 23) {
        outcome.received += plain.toString('utf8')
      }
    }
  } finally {
    clearTimeout(timer)
    socket.destroy()
  }
}
