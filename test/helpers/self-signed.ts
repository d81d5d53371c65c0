/** @module A self-signed RSA certificate made with the openssl command line: a TLS server that is not the fleet's broker. */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A private key and certificate, PEM, and the certificate's DER. */
export interface SelfSigned {
  key: string
  cert: string
  der: Uint8Array
}

/** `openssl req -x509` for CN `cn`: an RSA-2048 key and a certificate valid for a day, signed by that key itself. */
export function selfSigned(cn: string): SelfSigned {
  const dir = mkdtempSync(join(tmpdir(), 'kin-self-signed-'))
  try {
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')],
        ...['-days', '1', '-subj', `/CN=${cn}`],
      ],
      { stdio: 'ignore' },
    )
    const cert = readFileSync(join(dir, 'c.pem'), 'utf8')
    const der = new Uint8Array(Buffer.from(cert.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64'))
    return { key: readFileSync(join(dir, 'k.pem'), 'utf8'), cert, der }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
