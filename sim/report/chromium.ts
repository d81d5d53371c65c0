/** @module Headless Chromium for reports: a screenshot of the page and its DOM as rendered, for tests and the docs' screenshot. */
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { KinError } from '../../agent/errors.ts'

/** Names Chromium goes by on Debian and elsewhere, tried in order. */
export const CHROMIUM_NAMES: readonly string[] = [
  'chromium',
  'chromium-browser',
  'google-chrome',
  'google-chrome-stable',
]

/** The Chromium binary: $CHROMIUM, else the first of CHROMIUM_NAMES on the PATH; undefined when there is none. */
export function findChromium(): string | undefined {
  const fromEnv = process.env['CHROMIUM']
  if (fromEnv !== undefined && fromEnv !== '' && existsSync(fromEnv)) return fromEnv
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    for (const name of CHROMIUM_NAMES) if (dir !== '' && existsSync(join(dir, name))) return join(dir, name)
  }
  return undefined
}

function run(binary: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(binary, args, { timeout: timeoutMs, maxBuffer: 64 * 2 ** 20 }, (err, stdout, stderr) => {
      if (err)
        reject(new KinError('INTERNAL', `chromium failed: ${err.message}\n${stderr.slice(-2000)}`, { cause: err }))
      else resolvePromise(stdout)
    })
  })
}

/** Flags for a quiet, offline, throwaway headless Chromium (no GPU, no sandbox: CI runs it as root in a container). */
function flags(profile: string): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--hide-scrollbars',
    `--user-data-dir=${profile}`,
  ]
}

async function withProfile<T>(job: (binary: string, profile: string) => Promise<T>): Promise<T> {
  const binary = findChromium()
  if (binary === undefined) {
    throw new KinError(
      'INTERNAL',
      `no Chromium found (tried $CHROMIUM and ${CHROMIUM_NAMES.join(', ')} on the PATH): install it with 'apt-get install -y chromium'`,
    )
  }
  const profile = mkdtempSync(join(tmpdir(), 'kin-chromium-'))
  try {
    return await job(binary, profile)
  } finally {
    rmSync(profile, { recursive: true, force: true })
  }
}

/** Renders `htmlFile` at `width`×`height` CSS pixels into `pngFile`. */
export function screenshot(
  htmlFile: string,
  pngFile: string,
  opts: { width?: number; height?: number; timeoutMs?: number } = {},
): Promise<void> {
  return withProfile(async (binary, profile) => {
    await run(
      binary,
      [
        ...flags(profile),
        `--screenshot=${resolve(pngFile)}`,
        `--window-size=${opts.width ?? 1280},${opts.height ?? 2000}`,
        pathToFileURL(resolve(htmlFile)).href,
      ],
      opts.timeoutMs ?? 90_000,
    )
  })
}

/** The DOM of `htmlFile` after Chromium parsed and laid it out, serialized. */
export function dumpDom(htmlFile: string, opts: { timeoutMs?: number } = {}): Promise<string> {
  return withProfile((binary, profile) =>
    run(binary, [...flags(profile), '--dump-dom', pathToFileURL(resolve(htmlFile)).href], opts.timeoutMs ?? 90_000),
  )
}
