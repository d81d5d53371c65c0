/** @module Reconnect delays: exponential backoff with jitter, bounded, so a fleet does not hammer a restarting L0 in step. */

/** How long to wait between reconnect attempts. */
export interface BackoffOptions {
  /** Delay before the first retry, ms (default 250). */
  initialMs?: number
  /** Longest delay, ms (default 30 000). */
  maxMs?: number
}

/** Default delay before the first retry, ms. */
export const DEFAULT_BACKOFF_INITIAL_MS = 250
/** Default longest delay between retries, ms. */
export const DEFAULT_BACKOFF_MAX_MS = 30_000

/**
 * Delay before retry number `attempt` (0 for the first): min(maxMs, initialMs·2^attempt), of which a random half is
 * dropped ("equal jitter"), so devices that lost L0 together do not come back together, yet none retries at once.
 * `random` returns a number in [0, 1).
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const initial = options.initialMs ?? DEFAULT_BACKOFF_INITIAL_MS
  const max = Math.max(initial, options.maxMs ?? DEFAULT_BACKOFF_MAX_MS)
  if (!Number.isInteger(attempt) || attempt < 0)
    throw new RangeError(`"attempt" expected an integer ≥ 0, got ${attempt}`)
  if (!(initial > 0)) throw new RangeError(`"initialMs" expected a number > 0, got ${initial}`)
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30))
  const r = random()
  const jitter = r >= 0 && r < 1 ? r : 0
  return Math.round(ceiling / 2 + jitter * (ceiling / 2))
}
