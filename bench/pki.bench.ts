/** @module PKI figures: key generation and CSR/certificate signing per key type (P-256, RSA-2048) and builder (native, forge), and chain verification native vs portable vs bare X509Certificate. */
import { X509Certificate } from 'node:crypto'
import { nodeCrypto } from '../runtime/node/crypto.ts'
import { nodePki } from '../runtime/node/pki.ts'
import { createPortablePki } from '../agent/portable/pki.ts'
import { cnOf } from '../agent/ledger/names.ts'
import { DeviceCertificate } from '../agent/pki/certificate.ts'
import { createFleetRoot } from '../agent/pki/root.ts'
import { createCsr } from '../agent/pki/csr.ts'
import { issueDeviceCertificate } from '../agent/pki/issue.ts'
import { verifyChain } from '../agent/pki/chain.ts'
import type { PkiProvider, TlsKeyType } from '../agent/ports/pki.ts'
import { forgeBuilder, nativeBuilder, type X509Builder } from '../agent/pki/builder.ts'

const DOMAIN = 'bench.home.arpa'

/** Runs `fn` until `minMs` have passed or `maxOps` runs are done; at least one run. */
async function rate(
  fn: () => unknown,
  minMs: number,
  maxOps: number,
): Promise<{ ops: number; opsPerSec: number; msPerOp: number }> {
  let ops = 0
  const start = performance.now()
  do {
    await fn()
    ops++
  } while (ops < maxOps && performance.now() - start < minMs)
  const ms = performance.now() - start
  return { ops, opsPerSec: Math.round((ops / ms) * 1000 * 10) / 10, msPerOp: Math.round((ms / ops) * 1000) / 1000 }
}

export async function run(emit: (row: object) => void): Promise<void> {
  const portablePki = createPortablePki(nodeCrypto)
  // Key generation per key type: native is fast; pure-JavaScript forge RSA takes seconds per key, so it gets one or two tries.
  for (const keyType of ['p256', 'rsa2048'] as TlsKeyType[]) {
    emit({
      bench: 'pki.keygen',
      path: 'native',
      keyType,
      ...(await rate(() => nodePki.generateTlsKeyPair(keyType), 2000, keyType === 'p256' ? 5000 : 10)),
    })
    emit({
      bench: 'pki.keygen',
      path: 'portable',
      keyType,
      ...(await rate(
        () => portablePki.generateTlsKeyPair(keyType),
        keyType === 'p256' ? 1000 : 1,
        keyType === 'p256' ? 500 : 2,
      )),
    })
  }

  const now = Math.floor(Date.now() / 1000)
  const cn = cnOf(nodeCrypto.randomBytes(10), DOMAIN),
    parentCn = cnOf(nodeCrypto.randomBytes(10), DOMAIN)
  let ca: Parameters<typeof issueDeviceCertificate>[0] | undefined
  // Signing per key type (root and device of the same type) and builder: forge signs RSA only.
  for (const keyType of ['p256', 'rsa2048'] as TlsKeyType[]) {
    const [rootKeys, deviceKeys] = await Promise.all([
      nodePki.generateTlsKeyPair(keyType),
      nodePki.generateTlsKeyPair(keyType),
    ])
    const builders: [string, X509Builder][] =
      keyType === 'p256'
        ? [['native', nativeBuilder]]
        : [
            ['native', nativeBuilder],
            ['forge', forgeBuilder],
          ]
    for (const [path, builder] of builders) {
      const root = await createFleetRoot({
        domain: DOMAIN,
        keyPair: rootKeys,
        now,
        randomBytes: nodeCrypto.randomBytes,
        builder,
      })
      const csrPem = await createCsr({ cn, parentCn, keyPair: deviceKeys, builder })
      const auth = { cn, parentCn, spkiHash: nodeCrypto.sha256(deviceKeys.spkiDer), notAfter: now + 86400 }
      const options = {
        rootCertPem: root,
        rootKeyPem: rootKeys.privateKeyPem,
        now,
        randomBytes: nodeCrypto.randomBytes,
        crypto: nodeCrypto,
        csrPem,
        auth,
        builder,
      }
      // Issuance = CSR parse and checks (its signature included) + build + sign.
      emit({ bench: 'pki.issue', path, keyType, ...(await rate(() => issueDeviceCertificate(options), 2000, 2000)) })
      emit({
        bench: 'pki.csr',
        path,
        keyType,
        ...(await rate(() => createCsr({ cn, parentCn, keyPair: deviceKeys, builder }), 2000, 2000)),
      })
      if (keyType === 'rsa2048' && path === 'native') ca = options
    }
  }
  const root = DeviceCertificate.from(ca!.rootCertPem)

  const leaf = await issueDeviceCertificate(ca!)
  const der = leaf.der
  emit({ bench: 'pki.parse', path: 'der', ...(await rate(() => new DeviceCertificate(der), 1000, 1e5)) })

  // Verification of a presented certificate (DER in, parse included) on each path, and the bare native call as baseline.
  const rootKey = new X509Certificate(root.der).publicKey
  emit({
    bench: 'pki.verify',
    path: 'x509-baseline',
    what: 'new X509Certificate(der).verify(rootKey)',
    ...(await rate(() => new X509Certificate(der).verify(rootKey), 1500, 1e5)),
  })
  for (const [path, provider] of [
    ['native', nodePki],
    ['portable', portablePki],
  ] as [string, PkiProvider][]) {
    emit({
      bench: 'pki.verify',
      path,
      what: 'verifyChain(der, root, now, provider)',
      ...(await rate(() => verifyChain(der, root, now, provider), 1500, 1e5)),
    })
    emit({
      bench: 'pki.verifySignature',
      path,
      what: 'provider.verifyCertificateSignature',
      ...(await rate(() => provider.verifyCertificateSignature(der, root.der), 1500, 1e5)),
    })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run(row => process.stdout.write(JSON.stringify(row) + '\n'))
}
