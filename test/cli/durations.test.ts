// One duration syntax for every flag (DESIGN.md "Command line"): a whole number and a unit; a bare number is refused
// with the syntax, never guessed as seconds or milliseconds.
import t from 'tap'
import { parseDuration, parseDurationMs } from '../../cli/args.ts'
import { KinError } from '../../agent/errors.ts'
import { kin } from '../enroll/_harness.ts'

t.test('units from milliseconds to days', async t => {
  t.equal(parseDurationMs('500ms', 'timeout'), 500)
  t.equal(parseDurationMs('90s', 'timeout'), 90_000)
  t.equal(parseDurationMs('10m', 'ttl'), 600_000)
  t.equal(parseDurationMs('2h', 'ttl'), 7_200_000)
  t.equal(parseDurationMs('7d', 'valid'), 604_800_000)
  t.equal(parseDuration('3d', 'valid'), 259_200, 'seconds where a flag counts seconds')
})

t.test('anything else is a usage error that shows the syntax', async t => {
  for (const bad of ['5000', '', '5 s', '-1s', '1.5s', '0ms', '5sec', '1w', '9999999999s']) {
    let caught: unknown
    try {
      parseDurationMs(bad, 'timeout')
    } catch (e) {
      caught = e
    }
    t.ok(
      caught instanceof KinError &&
        caught.code === 'USAGE' &&
        /500ms, 90s, 10m, 2h or 7d|at least 1ms/.test(caught.message),
      `"${bad}" is refused with the syntax`,
    )
  }
  t.throws(
    () => parseDurationMs('5000', 'timeout'),
    /a unit is required: 5000ms or 5000s/,
    'a bare number names both readings',
  )
  t.throws(() => parseDuration('1500ms', 'valid'), /whole seconds/, 'a seconds flag refuses a fraction of a second')
})

t.test('the old millisecond form of kin access and kin serve is refused, exit 2, with the new syntax', async t => {
  for (const argv of [
    ['access', '--home', '/nonexistent', '--target', '127.0.0.1:1', '--timeout', '5000', '--json'],
    ['serve', '--home', '/nonexistent', '--timeout', '5000', '--json'],
  ]) {
    const r = await kin(argv)
    t.equal(r.status, 2, argv[0]!)
    t.match(
      JSON.parse(r.stdout),
      { code: 'USAGE', message: /a unit is required: 5000ms or 5000s/ },
      `kin ${argv[0]} --timeout 5000`,
    )
  }
})

t.test('kin serve --probe: a duration of at least 10s (each probe is a sync request to L0)', async t => {
  for (const [probe, message] of [
    ['5s', /at least 10s/],
    ['30', /a unit is required/],
  ] as const) {
    const r = await kin(['serve', '--home', '/nonexistent', '--probe', probe, '--json'])
    t.equal(r.status, 2, `--probe ${probe} exits 2`)
    t.match(JSON.parse(r.stdout), { code: 'USAGE', message }, `--probe ${probe} is refused with the reason`)
  }
})
