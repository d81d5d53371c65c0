/** @module What `kin --version` reports: the package's version, read from its package.json, and the Node runtime. */
import { readFileSync } from 'node:fs'

/** The installed kinship version and the Node version it runs on. */
export interface KinVersion {
  version: string
  node: string
}

/** Reads the version from the package.json two folders up from this file. */
export function kinVersion(): KinVersion {
  let version = 'unknown'
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown }
    if (typeof pkg.version === 'string') version = pkg.version
  } catch {
    // A bundle without its package.json still answers, with "unknown".
  }
  return { version, node: process.versions.node }
}
