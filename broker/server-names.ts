/** @module The host names and addresses L0's server certificates carry beside its CN: what standard MQTT clients check L0 by. */
import { isIP } from 'node:net'
import { hostname, networkInterfaces } from 'node:os'
import { KinError } from '../agent/errors.ts'

/** DNS names and IP addresses (canonical text, sorted, without repeats) for the SAN of L0's server certificates. */
export interface ServerNames {
  readonly dns: readonly string[]
  readonly ips: readonly string[]
}

// RFC 1123 §2.1 labels (letters, digits, hyphens; not starting or ending with a hyphen), RFC 1035 §2.3.4 lengths.
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** A host name as a SAN dNSName: lowercase LDH labels, at most 253 characters; SERVER_NAME otherwise (wildcards too). */
export function checkServerName(name: string): string {
  const lower = name.toLowerCase().replace(/\.$/, '')
  if (lower.length === 0 || lower.length > 253 || !lower.split('.').every(l => LABEL.test(l)))
    throw new KinError(
      'SERVER_NAME',
      `"${name}" is not a host name for L0's certificate: letters, digits and hyphens in dot-separated labels, at most 253 characters, no wildcard`,
    )
  return lower
}

/**
 * An IPv4 or IPv6 address in canonical text (IPv6 compressed and lowercase, as the WHATWG URL parser writes it), so
 * that one address has one spelling; SERVER_ADDRESS otherwise (a zone such as `%eth0` too: a certificate holds none).
 */
export function checkServerAddress(address: string): string {
  const bare = address.replace(/^\[(.*)\]$/, '$1')
  const family = bare.includes('%') ? 0 : isIP(bare)
  if (family === 0)
    throw new KinError('SERVER_ADDRESS', `"${address}" is not an IPv4 or IPv6 address for L0's certificate`)
  return family === 4 ? new URL(`http://${bare}/`).hostname : new URL(`http://[${bare}]/`).hostname.slice(1, -1)
}

const WILDCARDS = new Set(['0.0.0.0', '::'])

// fe80::/10: a link-local address is reached with a zone, which no certificate can name.
function linkLocal(ip: string): boolean {
  return /^fe[89ab]/.test(ip)
}

/** The machine's own addresses: what a client on the network dials when L0 listens on every address. */
function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap(list => list ?? [])
    .map(i => checkServerAddress(i.address))
    .filter(ip => !linkLocal(ip))
}

/**
 * The names L0 is reached by unless told otherwise: the machine's host name (when it is a DNS name), `localhost`,
 * 127.0.0.1 and ::1, and each listen address (a wildcard listener adds every address of the machine's interfaces).
 */
export function defaultServerNames(listen: readonly string[]): { dns: string[]; ips: string[] } {
  const dns = ['localhost'],
    ips = ['127.0.0.1', '::1']
  try {
    dns.push(checkServerName(hostname()))
  } catch {
    // A host name that is no DNS name (an underscore, say) is left out: no client could check it.
  }
  for (const host of listen) {
    if (WILDCARDS.has(host)) ips.push(...interfaceAddresses())
    else if (isIP(host.replace(/^\[(.*)\]$/, '$1')) !== 0) ips.push(host)
    else dns.push(host)
  }
  return { dns, ips }
}

/** The defaults for `listen` plus the names and addresses given, checked, canonical, sorted and without repeats. */
export function serverNames(opts: {
  listen: readonly string[]
  names?: readonly string[]
  addresses?: readonly string[]
}): ServerNames {
  const given = { dns: (opts.names ?? []).map(checkServerName), ips: (opts.addresses ?? []).map(checkServerAddress) }
  const defaults = defaultServerNames(opts.listen)
  return {
    dns: [...new Set([...defaults.dns.map(checkServerName), ...given.dns])].sort(),
    ips: [...new Set([...defaults.ips.map(checkServerAddress), ...given.ips])].sort(),
  }
}

/** True when both hold the same names and addresses (both canonical and sorted, as serverNames returns them). */
export function sameServerNames(a: ServerNames, b: ServerNames): boolean {
  return a.dns.join(' ') === b.dns.join(' ') && a.ips.join(' ') === b.ips.join(' ')
}
