/** @module Logins the simulator's enroller tries again: one the broker closed before CONNACK (L0 shedding load) is transient, a CONNACK refusal is not. */
import type { ConnectOptions, Transport } from '../../agent/ports/transport.ts'
import { isClosedBeforeConnack } from '../../runtime/node/transport.ts'

/** Logins tried in all when the broker closes each before CONNACK. */
export const LOGIN_ATTEMPTS = 4
/** Pause (ms) before the second login; doubled before each next one (with up to as much again at random). */
export const LOGIN_BACKOFF_MS = 250

/** Settings of a retrying transport. */
export interface LoginRetryOptions {
  /** Logins in all (default LOGIN_ATTEMPTS). */
  attempts?: number
  /** First pause, ms (default LOGIN_BACKOFF_MS). */
  backoffMs?: number
  /** Told of each login closed before CONNACK that is tried again (attempt: 1 for the first). */
  onRetry?: (attempt: number, err: unknown, options: ConnectOptions) => void
}

/**
 * `inner` with a login the broker closed before CONNACK tried again after a pause, up to `attempts` in all; the last
 * such error is thrown after that. Any other failure (a CONNACK refusal, a wrong L0, a timeout) is thrown at once.
 * For the simulator, whose devices' certificates L0 just issued: a close at login is the broker's load, not a refusal.
 */
export function retryingLogins(inner: Transport, opts: LoginRetryOptions = {}): Transport {
  const attempts = Math.max(1, opts.attempts ?? LOGIN_ATTEMPTS)
  const backoffMs = opts.backoffMs ?? LOGIN_BACKOFF_MS
  return {
    async connect(options) {
      for (let attempt = 1; ; attempt++) {
        try {
          return await inner.connect(options)
        } catch (err) {
          if (attempt >= attempts || !isClosedBeforeConnack(err)) throw err
          opts.onRetry?.(attempt, err, options)
          const pause = backoffMs * 2 ** (attempt - 1)
          // Jittered: logins shed together by one overload do not all come back in the same instant.
          await new Promise(r => setTimeout(r, pause + Math.random() * pause))
        }
      }
    },
  }
}
