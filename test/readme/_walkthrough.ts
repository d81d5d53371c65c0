/** @module Reading the README's walkthrough: the one block that opens with `# walkthrough`, and the step markers its run prints. */

/** The body of the README's one fenced sh block whose first line is `# walkthrough`. */
export function walkthroughBlock(readme: string): string {
  const blocks = [...readme.matchAll(/^```sh\n(# walkthrough\n[\s\S]*?)^```$/gm)].map(m => m[1]!)
  if (blocks.length !== 1)
    throw new Error(`README.md: expected one \`\`\`sh block opening with "# walkthrough", found ${blocks.length}`)
  return blocks[0]!
}

/** One deciding step of a walkthrough run: its name, its exit status and what it printed since the step before. */
export interface StepOutcome {
  name: string
  exit: number
  output: string
}

/** The steps a walkthrough run reported, from its `step NAME: exit N` lines, in order. */
export function stepOutcomes(output: string): StepOutcome[] {
  const steps: StepOutcome[] = []
  let since = 0
  for (const m of output.matchAll(/^step (\S+): exit (\d+)$/gm)) {
    steps.push({ name: m[1]!, exit: Number(m[2]), output: output.slice(since, m.index) })
    since = m.index + m[0].length
  }
  return steps
}
