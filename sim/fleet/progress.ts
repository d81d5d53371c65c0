/** @module Progress bars on stderr for the long phases of a fleet run; silent with --json or when stderr is not a terminal. */

/** One phase's bar. */
export interface ProgressBar {
  update(done: number, note?: string): void
  done(note?: string): void
}

const WIDTH = 30
const REDRAW_MS = 100

/** Bars drawn on `stream` (one line, redrawn in place), or no-ops when `enabled` is false. */
export function progressBars(
  enabled: boolean,
  stream: NodeJS.WriteStream = process.stderr,
): (label: string, total: number) => ProgressBar {
  if (!enabled) return () => ({ update: () => undefined, done: () => undefined })
  return (label, total) => {
    const started = performance.now()
    let last = 0,
      current = 0
    const draw = (note: string, final: boolean) => {
      const seconds = (performance.now() - started) / 1000
      const share = total > 0 ? Math.min(1, current / total) : 1
      const filled = Math.round(share * WIDTH)
      const rate = seconds > 0 ? ` ${(current / seconds).toFixed(1)}/s` : ''
      stream.write(
        `\r\x1b[2K${label.padEnd(14)} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${current}/${total}${rate} ${seconds.toFixed(1)} s${note ? ' ' + note : ''}${final ? '\n' : ''}`,
      )
    }
    return {
      update(done, note = '') {
        current = done
        const now = performance.now()
        if (now - last < REDRAW_MS && done < total) return
        last = now
        draw(note, false)
      },
      done(note = '') {
        draw(note, true)
      },
    }
  }
}
