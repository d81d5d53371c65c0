/** @module The fleet's TLS policy in one place: versions, suites and renegotiation for L0, `kin serve`, every client and Mosquitto. */
import { constants } from 'node:crypto'

/**
 * TLS 1.2 suites: forward-secret key exchange (ECDHE, or DHE for Espruino's mbedTLS with an RSA key) and AEAD only
 * (RFC 7525 §4.2, RFC 9325 §4.2). No static RSA key exchange, no CBC, no SHA-1 MACs. Strongest first.
 */
export const TLS12_SUITES: readonly string[] = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
  'DHE-RSA-CHACHA20-POLY1305',
]

/** TLS 1.3 suites (RFC 8446 §9.1): OpenSSL's defaults, named so that setting the 1.2 list cannot drop them. */
export const TLS13_SUITES: readonly string[] = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
]

/** Lowest protocol version any kinship endpoint speaks. */
export const TLS_MIN_VERSION = 'TLSv1.2'

// Node takes both lists in one `ciphers` string: names starting TLS_ are the 1.3 suites, the rest OpenSSL's 1.2 list.
const CIPHERS = [...TLS13_SUITES, ...TLS12_SUITES].join(':')

// SSL_OP_NO_RENEGOTIATION: a TLS 1.2 HelloRequest or renegotiating ClientHello is answered with a no_renegotiation
// alert. Renegotiation buys kinship nothing (a session is one identity for its life) and costs the server a full
// handshake per request (CVE-2011-1473).
const NO_RENEGOTIATION = constants.SSL_OP_NO_RENEGOTIATION

/** The policy options of every kinship TLS server (tls.createServer): suites, server's order, DH groups, no renegotiation. */
export interface TlsServerPolicy {
  minVersion: 'TLSv1.2'
  ciphers: string
  honorCipherOrder: true
  dhparam: 'auto'
  secureOptions: number
}

/** The policy options of every kinship TLS client (tls.connect, mqtt.js): suites and no renegotiation. */
export interface TlsClientPolicy {
  minVersion: 'TLSv1.2'
  ciphers: string
  secureOptions: number
}

/**
 * Options to spread into tls.createServer. `dhparam: 'auto'` lets OpenSSL pick well-known DH parameters matched to
 * the certificate's strength (RFC 7919 groups), without which the DHE-RSA suites are never chosen.
 */
export function tlsServerPolicy(): TlsServerPolicy {
  return {
    minVersion: TLS_MIN_VERSION,
    ciphers: CIPHERS,
    honorCipherOrder: true,
    dhparam: 'auto',
    secureOptions: NO_RENEGOTIATION,
  }
}

/** Options to spread into tls.connect or an mqtt.js client. */
export function tlsClientPolicy(): TlsClientPolicy {
  return { minVersion: TLS_MIN_VERSION, ciphers: CIPHERS, secureOptions: NO_RENEGOTIATION }
}

/**
 * The listener's TLS lines of a mosquitto.conf (mosquitto.conf(5)): the lowest version, the 1.2 and 1.3 suites, and
 * `dhparamfile` for the DHE-RSA suites. Mosquitto 2.0 would pick DH parameters itself; the file names the group
 * (ffdhe2048) instead of leaving it to the build.
 */
export function mosquittoTlsLines(dhparamFile: string): string[] {
  return [
    'tls_version tlsv1.2',
    `ciphers ${TLS12_SUITES.join(':')}`,
    `ciphers_tls1.3 ${TLS13_SUITES.join(':')}`,
    `dhparamfile ${dhparamFile}`,
  ]
}

/**
 * The RFC 7919 §A.1 ffdhe2048 group as PEM DH parameters (PKCS #3), for a server such as Mosquitto that reads DH
 * parameters from a file: a published group, not one generated here (`openssl pkeyparam -text` names it ffdhe2048).
 */
export const FFDHE2048_PARAMS_PEM: string = [
  '-----BEGIN DH PARAMETERS-----',
  'MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz',
  '+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a',
  '87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7',
  'YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi',
  '7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD',
  'ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==',
  '-----END DH PARAMETERS-----',
  '',
].join('\n')
