/** @module openssl s_client against a kinship TLS server: which suites and versions it accepts, whether it renegotiates. */
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import { TLS13_SUITES } from '../../runtime/node/tls-policy.ts'

/** PEM files of a device s_client presents: its certificate and key, and the fleet root it checks the server against. */
export interface ClientFiles {
  cert: string
  key: string
  root: string
}

/** What openssl s_client reported: its exit status, the suite it settled on, and everything it printed. */
export interface SClient {
  code: number | null
  cipher: string | undefined
  out: string
}

/**
 * Runs openssl s_client against 127.0.0.1:`port` with a device's certificate, writes `input` once the handshake is
 * done (s_client reads commands such as R from stdin), and closes stdin after the handshake and `input` had time.
 */
export function sClient(port: number, files: ClientFiles, args: string[], input = ''): Promise<SClient> {
  return new Promise(resolve => {
    const child = spawn(
      'openssl',
      [
        's_client',
        '-connect',
        `127.0.0.1:${port}`,
        '-cert',
        files.cert,
        '-key',
        files.key,
        '-CAfile',
        files.root,
        ...args,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    )
    let out = ''
    child.stdout.on('data', d => {
      out += d
    })
    child.stderr.on('data', d => {
      out += d
    })
    // s_client exits by itself on a refused handshake, possibly before its stdin is closed.
    child.stdin.on('error', () => undefined)
    // Once the handshake is printed the session is up: send the input, then close stdin so s_client ends.
    const done = setInterval(() => {
      if (!/Cipher is|alert|error/.test(out)) return
      clearInterval(done)
      child.stdin.end(input)
    }, 20)
    child.on('close', code => {
      clearInterval(done)
      resolve({ code, cipher: /Cipher is (\S+)/.exec(out)?.[1], out })
    })
  })
}

/** The s_client cases of the fleet's TLS policy against a kinship server listening on 127.0.0.1:`port` with an RSA certificate. */
export async function checkTlsPolicy(t: Test, port: number, files: ClientFiles): Promise<void> {
  for (const cipher of ['AES128-SHA', 'AES256-GCM-SHA384']) {
    const r = await sClient(port, files, ['-tls1_2', '-cipher', cipher])
    t.not(r.cipher, cipher, `${cipher} (static RSA key exchange: no forward secrecy) is refused`)
    t.match(r.out, /handshake failure|no cipher|alert/, `${cipher}: the server ends the handshake`)
  }
  for (const cipher of ['ECDHE-RSA-AES128-SHA', 'ECDHE-RSA-AES256-SHA384', 'DHE-RSA-AES128-SHA']) {
    const r = await sClient(port, files, ['-tls1_2', '-cipher', cipher])
    t.not(r.cipher, cipher, `${cipher} (CBC) is refused`)
  }
  for (const cipher of [
    'DHE-RSA-AES128-GCM-SHA256',
    'DHE-RSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES128-GCM-SHA256',
    'ECDHE-RSA-AES256-GCM-SHA384',
    'ECDHE-RSA-CHACHA20-POLY1305',
  ]) {
    const r = await sClient(port, files, ['-tls1_2', '-cipher', cipher])
    t.equal(r.cipher, cipher, `${cipher} is accepted (Espruino's mbedTLS speaks DHE-RSA with an RSA key)`)
    // RFC 7919 / Logjam: a DHE group of at least 2048 bits.
    const dh = /Server Temp Key: DH, (\d+) bits/.exec(r.out)
    if (cipher.startsWith('DHE-')) t.ok(dh !== null && Number(dh[1]) >= 2048, `${cipher}: DH group of ${dh?.[1]} bits`)
  }
  const v13 = await sClient(port, files, ['-tls1_3'])
  t.ok(TLS13_SUITES.includes(v13.cipher ?? ''), `TLS 1.3 as offered: ${v13.cipher}`)
  for (const v of ['-tls1', '-tls1_1']) {
    const r = await sClient(port, files, [v, '-cipher', 'DEFAULT@SECLEVEL=0'])
    t.equal(r.cipher ?? '(NONE)', '(NONE)', `${v} is refused`)
  }
  // RFC 5746: a client-initiated renegotiation ('R' on s_client's stdin) is answered with no_renegotiation.
  const reneg = await sClient(port, files, ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'], 'R\n')
  t.equal(reneg.cipher, 'ECDHE-RSA-AES128-GCM-SHA256', 'the session itself came up')
  t.match(reneg.out, /RENEGOTIATING/, 's_client asked to renegotiate')
  t.match(reneg.out, /no renegotiation/, 'the server refused to renegotiate')
}
