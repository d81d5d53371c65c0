/**
 * @module Footprint figures: bundle sizes (minified, gzipped, what takes the room); ledger, bundle and decision
 * times of dist/kin-core.js in QuickJS against the same file on V8 in the same run; QuickJS's live memory after
 * each step (its own accounting) and the heap's high-water mark (the peak; test/footprint/_quickjs.ts); a cold
 * decision from two bundles on the full tier (every signature) against the bundle tier (DESIGN.md "Small devices").
 */
import { pathToFileURL } from 'node:url'
import { sizeReport, ensureBuilt } from '../test/footprint/_build.ts'
import { CoreVm, SMALL_DEVICE, type CoreVmLimits } from '../test/footprint/_quickjs.ts'
import { footprintHouse, type FootprintHouse } from '../test/footprint/_house.ts'

type Core = typeof import('../agent/core.ts')

const KIB = 1024

// The operations, each as a function body for the engine (inputs on `input`, state kept on globalThis between runs).
// A device parses the fleet root once; the peer's certificate arrives, and is parsed, with every request. Cold: the
// chain is checked (BigInt RSA) every time; warm: a ChainCache remembers it.
const STEPS = {
  verifyLedger: 'globalThis.ledger = kinCore.verifyLedger(input.ledger); return ledger.log.length',
  verifyBundle:
    'globalThis.own = kinCore.verifyBundle(input.own, input.anchor, input.now); globalThis.peer = kinCore.verifyBundle(input.peer, input.anchor, input.now); return peer.state.log.length',
  combineBundles:
    'globalThis.state = kinCore.combineBundles([own, peer]); globalThis.root = new kinCore.CoreCertificate(input.root); return state.log.length',
  decideCold: `let d
    for (let i = 0; i < input.times; i++) d = kinCore.decide({ certificate: input.certificate, action: 'unlock' }, state, input.now, { self: input.self, root })
    return d.code`,
  decideWarm: `const cache = new kinCore.ChainCache(8); let d
    kinCore.decide({ certificate: input.certificate, action: 'unlock' }, state, input.now, { self: input.self, root, chainCache: cache })
    for (let i = 0; i < input.times; i++) d = kinCore.decide({ certificate: input.certificate, action: 'unlock' }, state, input.now, { self: input.self, root, chainCache: cache })
    return d.code`,
} as const

// A cold decision as a device meets a stranger: the stranger's bundle verified, combined with the device's own, the
// root parsed, the chain checked (no cache). Full tier: both bundles verified, every signature. Bundle tier: the own
// bundle was verified at boot (timed apart), so only the peer's, with the boot's SignatureCache. Each round starts
// from a fresh boot, so no round finds the peer's signatures cached, and runs both tiers one after the other, so that
// load from other work on the machine falls on both alike. Times are taken inside the engine (the same source runs
// on V8), in milliseconds per decision; `signatures` counts the Ed25519 checks of one decision, heads included.
const COLD = `const clock = () => typeof performance === 'object' ? performance.now() : Date.now()
  const full = { ms: 0, signatures: 0, code: '' }, bundle = { ms: 0, bootMs: 0, signatures: 0, code: '' }
  const decide = (own, peer) => kinCore.decide({ certificate: input.certificate, action: 'unlock' }, kinCore.combineBundles([own, peer]), input.now,
    { self: input.self, root: new kinCore.CoreCertificate(input.root) }).code
  for (let i = 0; i < input.coldTimes; i++) {
    let start = clock()
    const ownFull = kinCore.verifyBundle(input.own, input.anchor, input.now), peerFull = kinCore.verifyBundle(input.peer, input.anchor, input.now)
    full.code = decide(ownFull, peerFull)
    full.ms += clock() - start
    full.signatures = ownFull.signatures.verified + peerFull.signatures.verified + 2
    start = clock()
    const cache = new kinCore.SignatureCache(32)
    const own = kinCore.verifyBundle(input.own, input.anchor, input.now, { tier: 'bundle', cache, own: true })
    bundle.bootMs += clock() - start
    start = clock()
    const peer = kinCore.verifyBundle(input.peer, input.anchor, input.now, { tier: 'bundle', cache })
    bundle.code = decide(own, peer)
    bundle.ms += clock() - start
    bundle.signatures = peer.signatures.verified + 1
  }
  full.ms /= input.coldTimes; bundle.ms /= input.coldTimes; bundle.bootMs /= input.coldTimes
  return { full, bundle }`

type ColdResult = Record<'full' | 'bundle', { code: string; ms: number; bootMs?: number; signatures: number }>

function inputsOf(house: FootprintHouse, times: number, coldTimes: number): Record<string, unknown> {
  return {
    ledger: house.ledgerBytes,
    own: house.bundleOf(house.lock.cn),
    peer: house.bundleOf(house.guest.cn),
    anchor: house.anchor,
    now: house.now,
    certificate: house.guest.certificate.der,
    self: house.lock.cn,
    root: house.pf.fleet.root.der,
    times,
    coldTimes,
  }
}

// The same steps on V8, through the same dist/kin-core.js.
function v8Step(
  core: Core,
  step: keyof typeof STEPS,
  input: Record<string, unknown>,
  held: Record<string, unknown>,
): unknown {
  const i = input as {
    ledger: Uint8Array
    own: Uint8Array
    peer: Uint8Array
    anchor: Parameters<Core['verifyBundle']>[1]
    now: number
    certificate: Uint8Array
    self: string
    root: Uint8Array
    times: number
  }
  switch (step) {
    case 'verifyLedger':
      return core.verifyLedger(i.ledger).log.length
    case 'verifyBundle':
      held.own = core.verifyBundle(i.own, i.anchor, i.now)
      held.peer = core.verifyBundle(i.peer, i.anchor, i.now)
      return (held.peer as ReturnType<Core['verifyBundle']>).state.log.length
    case 'combineBundles':
      held.state = core.combineBundles([held.own, held.peer] as ReturnType<Core['verifyBundle']>[])
      held.root = new core.CoreCertificate(i.root)
      return (held.state as ReturnType<Core['combineBundles']>).log.length
    case 'decideCold':
    case 'decideWarm': {
      const state = held.state as ReturnType<Core['combineBundles']>,
        root = held.root as InstanceType<Core['CoreCertificate']>
      const cache = step === 'decideWarm' ? new core.ChainCache(8) : undefined
      if (cache !== undefined)
        core.decide({ certificate: i.certificate, action: 'unlock' }, state, i.now, {
          self: i.self,
          root,
          chainCache: cache,
        })
      let code = ''
      for (let n = 0; n < i.times; n++)
        code = core.decide({ certificate: i.certificate, action: 'unlock' }, state, i.now, {
          self: i.self,
          root,
          chainCache: cache,
        }).code
      return code
    }
  }
}

/** The heap's high-water mark (bytes beyond an empty runtime) after loading kin-core and running `bodies`. */
async function peakOf(bodies: string[], input: Record<string, unknown>): Promise<{ bytes: number; ok: boolean }> {
  const vm = await CoreVm.load({ ...SMALL_DEVICE, deadlineMs: 600_000 })
  try {
    const ok = bodies.every(body => vm.run(body, input).ok)
    return { bytes: vm.memory().heapPeak, ok }
  } finally {
    vm.dispose()
  }
}

export async function run(emit: (row: object) => void): Promise<void> {
  for (const file of ['kin-core.js', 'kin-device.mjs'] as const) {
    const r = await sizeReport(file)
    emit({
      bench: 'footprint.size',
      file,
      minified: r.minified,
      gzipped: r.gzipped,
      budgetMinified: r.budget.minified,
      budgetGzipped: r.budget.gzipped,
      top: r.groups.slice(0, 8).map(g => ({
        name: g.name,
        kib: Math.round((g.rendered / KIB) * 10) / 10,
        share: Math.round(g.share * 1000) / 10,
      })),
    })
  }

  const house = await footprintHouse()
  const times = 20,
    coldTimes = 3
  const input = inputsOf(house, times, coldTimes)
  const core = (await import(pathToFileURL(await ensureBuilt('kin-core.js')).href)) as Core
  const limits: CoreVmLimits = { ...SMALL_DEVICE, deadlineMs: 600_000 }

  const loadStart = performance.now()
  const vm = await CoreVm.load(limits)
  const loadMs = performance.now() - loadStart
  const loaded = vm.memory()
  emit({
    bench: 'footprint.quickjs.load',
    ms: Math.round(loadMs),
    heapPeak: loaded.heapPeak,
    liveBytes: loaded.memory_used_size,
    budget: limits.memory,
    stackLimit: limits.stack,
  })

  const held: Record<string, unknown> = {}
  const events = house.pf.l0Ledger.state.log.length
  for (const step of Object.keys(STEPS) as (keyof typeof STEPS)[]) {
    const repeat = step.startsWith('decide') ? times : 1
    let start = performance.now()
    const inEngine = vm.run(STEPS[step], input)
    const quickjsMs = (performance.now() - start) / repeat
    start = performance.now()
    const onV8 = v8Step(core, step, input, held)
    const v8Ms = (performance.now() - start) / repeat
    const memory = vm.memory()
    emit({
      bench: `footprint.${step}`,
      events: step === 'verifyLedger' ? events : undefined,
      repeat,
      quickjsMs: Math.round(quickjsMs * 100) / 100,
      v8Ms: Math.round(v8Ms * 100) / 100,
      slowdown: Math.round(quickjsMs / v8Ms),
      sameResult: inEngine.ok && JSON.stringify(inEngine.value) === JSON.stringify(onV8),
      result: inEngine.ok ? inEngine.value : inEngine.message,
      quickjsLiveBytes: memory.memory_used_size,
      quickjsHeapPeak: memory.heapPeak,
      quickjsObjects: memory.obj_count,
    })
  }

  vm.dispose()

  // In a fresh engine, as a device that keeps only its own lineage: nothing of the steps above stays alive in it.
  const coldVm = await CoreVm.load(limits)
  const inEngine = coldVm.run<ColdResult>(COLD, input)
  // The engine's exact source, run on V8 for the comparison.
  const v8 = (new Function('kinCore', 'input', COLD) as (core: Core, input: Record<string, unknown>) => ColdResult)(
    core,
    input,
  )
  const memory = coldVm.memory()
  coldVm.dispose()
  for (const tier of ['full', 'bundle'] as const) {
    if (!inEngine.ok) {
      emit({ bench: 'footprint.coldDecision', tier, error: inEngine.message })
      continue
    }
    const q = inEngine.value[tier],
      v = v8[tier]
    emit({
      bench: 'footprint.coldDecision',
      tier,
      repeat: coldTimes,
      signatures: q.signatures,
      quickjsMs: Math.round(q.ms),
      v8Ms: Math.round(v.ms * 10) / 10,
      slowdown: Math.round(q.ms / v.ms),
      quickjsBootMs: q.bootMs === undefined ? undefined : Math.round(q.bootMs),
      v8BootMs: v.bootMs === undefined ? undefined : Math.round(v.bootMs * 10) / 10,
      sameResult: q.code === v.code && q.signatures === v.signatures,
      result: q.code,
      quickjsLiveBytes: memory.memory_used_size,
      quickjsHeapPeak: memory.heapPeak,
    })
  }

  // Peaks, each path in a fresh engine (the cold decisions' is on their rows).
  emit({ bench: 'footprint.quickjs.peak', path: 'load', ...(await peakOf([], input)), budget: SMALL_DEVICE.memory })
  emit({
    bench: 'footprint.quickjs.peak',
    path: `load + two bundles + ${times} cold and ${times} warm decisions`,
    ...(await peakOf([STEPS.verifyBundle, STEPS.combineBundles, STEPS.decideCold, STEPS.decideWarm], input)),
    budget: SMALL_DEVICE.memory,
  })
  emit({
    bench: 'footprint.quickjs.peak',
    path: `load + whole ledger (${events} events)`,
    ...(await peakOf([STEPS.verifyLedger], input)),
    budget: SMALL_DEVICE.memory,
  })
}
