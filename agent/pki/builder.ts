/** @module Which certificate builder runs: native (@peculiar/x509 on WebCrypto) wherever the engine has WebCrypto, node-forge elsewhere. */
import type { RandomBytes, X509Builder } from './_build.ts'
import { forgeBuilder, forgeRandomBytes } from './_forge-build.ts'
import { hasWebCrypto, nativeBuilder, webCrypto } from './_native-build.ts'

export type { X509Builder } from './_build.ts'
export { nativeBuilder } from './_native-build.ts'
export { forgeBuilder } from './_forge-build.ts'

/** The builder for this engine: native signing (0.26 ms per RSA signature on Node) where WebCrypto exists, forge (21 ms) otherwise. */
export function x509Builder(): X509Builder {
  return hasWebCrypto() ? nativeBuilder : forgeBuilder
}

/** The engine's CSPRNG: crypto.getRandomValues where it exists, forge's generator otherwise. */
export const defaultRandomBytes: RandomBytes = n =>
  webCrypto()?.getRandomValues(new Uint8Array(n)) ?? forgeRandomBytes(n)
