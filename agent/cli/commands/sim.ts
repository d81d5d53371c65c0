/** @module `kin sim house`: run the fleet simulator's house story and report each decision. */
import { playHouse, type StoryStep } from '../../../sim/house/story.ts'
import { pureHouseDriver } from '../../../sim/house/pure-driver.ts'
import type { CommandSpec } from '../args.ts'
import { emit } from '../output.ts'

/** `kin sim house`. */
export const simHouse: CommandSpec = {
  name: 'sim house',
  usage: 'kin sim house [--json]',
  summary: "Play the house of the design: enroll L0, the laptop, two phones, two cameras, the lock and the guest's phone, then check who may open the door as the story unfolds (compromise, rekey, holidays' end). Exit 0 only if every expectation held.",
  options: {},
  async run(args) {
    const started = performance.now()
    const driver = await pureHouseDriver()
    const log = args.json ? () => undefined : (line: string) => process.stdout.write(line + '\n')
    if (!args.json) log(`kinship house demo — fleet ${driver.fleet.fleet.domain}, L0 ${driver.cnOf('L0')}`)
    const steps: StoryStep[] = await playHouse(driver, log)
    const passed = steps.filter(s => s.ok).length
    const seconds = ((performance.now() - started) / 1000).toFixed(1)
    emit(args.json, {
      ok: passed === steps.length, passed, failed: steps.length - passed, seconds: Number(seconds),
      steps: steps.map(s => ({ label: s.label, peer: s.peer, target: s.target, action: s.action, expect: s.expect, ok: s.ok, allow: s.decision?.allow, code: s.decision?.code, path: s.decision?.path })),
    }, () => `\n${passed}/${steps.length} expectations held in ${seconds} s${passed === steps.length ? '' : ' — SOME FAILED'}`)
    return passed === steps.length ? 0 : 1
  },
}
