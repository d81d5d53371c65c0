/** @module The small interfaces through which the agent core reaches its platform. */

/** Ed25519, SHA-256 and randomness: the crypto a device needs for the ledger. */
export interface CryptoProvider {
  /** A short name for reports: 'node' or 'portable'. */
  readonly name: string
  /** SHA-256 digest (32 bytes). */
  sha256(data: Uint8Array): Uint8Array
  /** Cryptographically secure random bytes. */
  randomBytes(length: number): Uint8Array
  /** Ed25519 key pair from a 32-byte seed; the secret key is the seed. */
  ed25519KeyPair(seed?: Uint8Array): { publicKey: Uint8Array; secretKey: Uint8Array }
  /** Ed25519 public key (32 bytes) of a 32-byte seed. */
  ed25519PublicKey(secretKey: Uint8Array): Uint8Array
  /** Ed25519 signature (64 bytes) by the 32-byte seed `secretKey`. */
  ed25519Sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array
  /** Ed25519 verification; false (never a throw) for any malformed input. */
  ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean
  /**
   * Optional: the same check off the calling thread (node:crypto runs it on libuv's thread pool), so a batch
   * verifies on every core while the caller goes on. Same answers as `ed25519Verify`; never rejects.
   */
  ed25519VerifyAsync?(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): Promise<boolean>
}

/** An append-only byte file: the ledger's storage. Appends resolve only once durable. */
export interface AppendFile {
  /** Current length in bytes. */
  size(): Promise<number>
  /** Whole content. */
  read(): Promise<Uint8Array>
  /** Appends bytes and resolves after they are durable (fsync on Node). */
  append(bytes: Uint8Array): Promise<void>
  /** Replaces the whole content atomically (write a new file, then rename over the old one). */
  replace(bytes: Uint8Array): Promise<void>
  /** Closes handles. */
  close(): Promise<void>
}

/** Opens named append-only files in a device's storage. */
export interface Storage {
  /** Opens (creating if absent) the append-only file `name`. */
  openAppendFile(name: string): Promise<AppendFile>
}

/** Wall-clock time in whole seconds since the Unix epoch. */
export interface Clock {
  /** Seconds since 1970-01-01T00:00:00Z. */
  now(): number
}
