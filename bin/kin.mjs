#!/usr/bin/env node
// The `kin` command: runs the TypeScript CLI through tsx, so a checkout works without a build step.
import { register } from 'tsx/esm/api'
register()
const { main } = await import('../cli/main.ts')
const { runToExit } = await import('../cli/run-to-exit.ts')
const argv = process.argv.slice(2)
await runToExit(() => main(argv), argv)
