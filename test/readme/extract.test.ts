/** @module Finding the README's walkthrough and reading its step markers: one marked block or a refusal, every step with what it printed. */
import t from 'tap'
import { stepOutcomes, walkthroughBlock } from './_walkthrough.ts'

t.test('the walkthrough is the one sh block opening with "# walkthrough"', async t => {
  const readme =
    '# x\n```sh\nkin sim house\n```\n\n```sh\n# walkthrough\nkin init --home ./l0\n```\ntext\n```\nplain\n```\n'
  t.equal(walkthroughBlock(readme), '# walkthrough\nkin init --home ./l0\n')
  t.throws(() => walkthroughBlock('```sh\nkin init\n```\n'), /found 0/, 'a README without the block is refused')
  t.throws(
    () => walkthroughBlock('```sh\n# walkthrough\na\n```\n```sh\n# walkthrough\nb\n```\n'),
    /found 2/,
    'two blocks are refused: the test would not know which one a person reads',
  )
  t.throws(() => walkthroughBlock('```bash\n# walkthrough\na\n```\n'), /found 0/, 'only an sh block counts')
})

t.test('step markers split a run into steps with their exit status and output', async t => {
  const output =
    'created L0\nphone answered: ALLOW "unlock"\nstep phone-unlock: exit 0\nDENY ACCESS_REVOKED\nstep guest-refused: exit 1\nwalkthrough done\n'
  t.same(stepOutcomes(output), [
    { name: 'phone-unlock', exit: 0, output: 'created L0\nphone answered: ALLOW "unlock"\n' },
    { name: 'guest-refused', exit: 1, output: '\nDENY ACCESS_REVOKED\n' },
  ])
  t.same(stepOutcomes('no markers\n'), [], 'a run that printed no marker has no steps')
  t.same(stepOutcomes('xstep a: exit 0\nstep b: exit 0 and more\n'), [], 'a marker is a whole line')
})
