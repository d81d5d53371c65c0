// test/vectors/pki/signatures.json inside QuickJS under the small device's limits (1 MiB heap, 256 KiB stack): kin-core's
// verifier (BigInt RSA, @noble/curves P-256) reaches every vector's verdict there too, as node and portable do on Node.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { CoreVm, SMALL_DEVICE } from './_quickjs.ts'

interface Vector {
  name: string
  algorithm: string
  spki: string
  message: string
  signature: string
  valid: boolean
}
const { vectors } = JSON.parse(readFileSync(new URL('../vectors/pki/signatures.json', import.meta.url), 'utf8')) as {
  vectors: Vector[]
}
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'))

// Generous: a refusal takes milliseconds and a P-256 verification well under a second here; the deadline only catches a hang.
const vm = await CoreVm.load({ ...SMALL_DEVICE, deadlineMs: 60_000 })
t.teardown(() => vm.dispose())

t.test("every vector's verdict inside QuickJS, within 1 MiB of heap", async t => {
  for (const v of vectors) {
    const result = vm.run<boolean>(
      'return kinCore.coreVerifier.verifySignature(input.algorithm, input.spki, input.message, input.signature)',
      {
        algorithm: v.algorithm,
        spki: bytes(v.spki),
        message: bytes(v.message),
        signature: bytes(v.signature),
      },
    )
    t.same(result, { ok: true, value: v.valid }, v.name)
  }
  t.ok(
    vm.memory().memory_used_size <= SMALL_DEVICE.memory,
    `live heap ${vm.memory().memory_used_size} bytes after ${vectors.length} vectors`,
  )
})
