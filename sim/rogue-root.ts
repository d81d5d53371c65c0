/** @module A rogue CA made with the openssl command line that copies the fleet root's name and key identifier (the attack suite's rogue-ca-same-key-id cases, and the tests). */
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** A leaf's PEM files (certificate and P-256 key) and their contents. */
export interface RogueLeaf {
  certFile: string
  keyFile: string
  certPem: string
  keyPem: string
}

const openssl = (dir: string, args: string[]): string =>
  execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

/**
 * In `dir`: a root with the fleet root's subject and subject key identifier under another key of its type, and a v3 leaf for
 * `cn` it signs, whose issuer name and authority key identifier both name the fleet root. Only the signature differs,
 * so OpenSSL checks it against the real root's key (and fails) rather than passing over it for a missing issuer.
 */
export function rogueLeaf(dir: string, rootPem: string, cn: string): RogueLeaf {
  writeFileSync(join(dir, 'fleet-root.pem'), rootPem)
  const subject = '/' + new X509Certificate(rootPem).subject.split('\n').join('/')
  const ski = openssl(dir, ['x509', '-in', 'fleet-root.pem', '-noout', '-ext', 'subjectKeyIdentifier'])
    .split('\n')[1]!
    .replace(/[\s:]/g, '')
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  // The root's own key type, so that the leaf's signature algorithm is the fleet root's too.
  const rsa = new X509Certificate(rootPem).publicKey.asymmetricKeyType === 'rsa'
  openssl(dir, [
    'req',
    '-x509',
    ...(rsa ? ['-newkey', 'rsa:2048', '-nodes'] : ec),
    '-keyout',
    'rogue-ca.key',
    '-out',
    'rogue-ca.pem',
    '-subj',
    subject,
    '-days',
    '2',
  ])
  openssl(dir, ['req', ...ec, '-keyout', 'rogue.key', '-out', 'rogue.csr', '-subj', `/CN=${cn}`])
  writeFileSync(
    join(dir, 'rogue-ca.ext'),
    `basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=${ski}\n`,
  )
  // The root again, with the copied key identifier (req -x509 -addext cannot replace the one it adds itself).
  openssl(dir, [
    'x509',
    '-in',
    'rogue-ca.pem',
    '-signkey',
    'rogue-ca.key',
    '-extfile',
    'rogue-ca.ext',
    '-clrext',
    '-out',
    'rogue-ca.pem',
    '-days',
    '2',
  ])
  writeFileSync(
    join(dir, 'rogue.ext'),
    'basicConstraints=critical,CA:FALSE\nauthorityKeyIdentifier=keyid:always\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth,serverAuth\n',
  )
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    'rogue.csr',
    '-CA',
    'rogue-ca.pem',
    '-CAkey',
    'rogue-ca.key',
    '-CAcreateserial',
    '-extfile',
    'rogue.ext',
    '-out',
    'rogue.pem',
    '-days',
    '2',
  ])
  const aki = openssl(dir, ['x509', '-in', 'rogue.pem', '-noout', '-ext', 'authorityKeyIdentifier'])
  if (!aki.replace(/[\s:]/g, '').includes(ski))
    throw new Error(`the rogue leaf does not copy the root's key identifier: ${aki}`)
  const certFile = join(dir, 'rogue.pem'),
    keyFile = join(dir, 'rogue.key')
  return { certFile, keyFile, certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') }
}
