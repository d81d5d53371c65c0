/** @module `kin init` without the files: a fleet root, L0's identity, genesis and L0's certified event. */
import type { CryptoProvider } from '../ports/platform.ts'
import { validateFleetDomain } from '../ledger/names.ts'
import { certifiedEvent, genesisEvent } from '../ledger/builders.ts'
import { signEvent } from '../ledger/event.ts'
import { Ledger } from '../ledger/ledger.ts'
import type { EncodedEvent } from '../ledger/types.ts'
import { createFleetRoot } from '../pki/root.ts'
import { issueL0Certificate } from '../pki/issue.ts'
import type { DeviceCertificate } from '../pki/certificate.ts'
import type { PkiProvider, TlsKeyPair } from '../ports/pki.ts'
import { DEFAULT_TLS_KEY_TYPE, type TlsKeyType } from '../pki/key-type.ts'

/** Everything L0 starts with. Private keys: rootKey, tls, ledgerSeed. */
export interface NewFleet {
  domain: string
  cn: string
  root: DeviceCertificate
  rootKey: TlsKeyPair
  certificate: DeviceCertificate
  tls: TlsKeyPair
  ledgerSeed: Uint8Array
  /** genesis, then L0's certified event. */
  events: EncodedEvent[]
}

/** Creates a fleet: root CA (20 years), L0's TLS key and certificate, ledger key, genesis (L0 is also the miner). */
export async function createFleet(
  crypto: CryptoProvider,
  pki: PkiProvider,
  opts: { domain: string; now: number; name?: string; years?: number; keyType?: TlsKeyType },
): Promise<NewFleet> {
  const domain = validateFleetDomain(opts.domain)
  const { now } = opts
  const keyType = opts.keyType ?? DEFAULT_TLS_KEY_TYPE
  const [rootKey, tls] = await Promise.all([pki.generateTlsKeyPair(keyType), pki.generateTlsKeyPair(keyType)])
  const root = await createFleetRoot({
    domain,
    keyPair: rootKey,
    now,
    years: opts.years ?? 20,
    randomBytes: n => crypto.randomBytes(n),
  })
  const ledger = crypto.ed25519KeyPair()
  const genesis = signEvent(
    crypto,
    genesisEvent(
      crypto,
      {
        domain,
        rootCertHash: root.certHash,
        spkiHash: crypto.sha256(tls.spkiDer),
        ledgerKey: ledger.publicKey,
        minerKey: ledger.publicKey,
        notAfter: root.notAfter,
        name: opts.name ?? 'L0',
      },
      now,
    ),
    ledger.secretKey,
  )
  const l = new Ledger(crypto)
  l.ingest(genesis)
  const cn = l.state.genesis!.cn
  const certificate = await issueL0Certificate({
    rootCertPem: root,
    rootKeyPem: rootKey.privateKeyPem,
    cn,
    publicKeyPem: tls.publicKeyPem,
    notAfter: root.notAfter,
    now,
    randomBytes: n => crypto.randomBytes(n),
    crypto,
  })
  const certified = signEvent(
    crypto,
    certifiedEvent(l.state.currentBinding(cn)!, certificate.certHash, now),
    ledger.secretKey,
  )
  l.ingest(certified)
  return { domain, cn, root, rootKey, certificate, tls, ledgerSeed: ledger.secretKey, events: [genesis, certified] }
}
