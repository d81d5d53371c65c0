import t from 'tap'
import fc from 'fast-check'
import { concatBytes } from '../../agent/codec/bytes.ts'
import { encodeCbor } from '../../agent/codec/cbor.ts'
import { KinError } from '../../agent/errors.ts'
import { encodeSyncRequest, encodeSyncResponse } from '../../agent/ledger/sync.ts'
import {
  MAX_CN_CHARS,
  decodeEventsAnnouncement,
  decodeLedgerRequest,
  decodeLedgerResponse,
  encodeBundleError,
  encodeBundleReply,
  encodeBundleRequest,
  encodeSyncError,
} from '../../agent/gossip/ledger-wire.ts'
import { encodeHead } from '../../agent/ledger/head.ts'

const cn = 'abcdefghijklmnop.smith.home.arpa'

function code(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof KinError) return err.code
    throw err
  }
  return 'no error'
}

// A syntactically valid head (the codecs check shape, not signatures).
const headBytes = encodeHead({
  height: 1,
  prevHeadId: new Uint8Array(32).fill(1),
  time: 100,
  treeSize: 3,
  root: new Uint8Array(32).fill(2),
  signature: new Uint8Array(64).fill(3),
})

t.test('requests: a sync request and a bundle request share the topic and decode to their kind', async t => {
  t.same(decodeLedgerRequest(encodeSyncRequest({ fromTreeSize: 7, fromHeadId: undefined })), {
    kind: 'sync',
    request: { fromTreeSize: 7, fromHeadId: undefined },
  })
  t.same(decodeLedgerRequest(encodeBundleRequest(cn)), { kind: 'bundle', cn, knownTreeSize: undefined })
  t.same(decodeLedgerRequest(encodeBundleRequest(cn, 12)), { kind: 'bundle', cn, knownTreeSize: 12 })
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: MAX_CN_CHARS }),
      fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }),
      (name, k) => {
        const d = decodeLedgerRequest(encodeBundleRequest(name, k))
        return d.kind === 'bundle' && d.cn === name && d.knownTreeSize === k
      },
    ),
  )
})

t.test('requests that are not one of the two forms are refused with decode codes', async t => {
  t.equal(
    code(() => decodeLedgerRequest(encodeCbor(['bundle', cn]))),
    'DECODE_SHAPE',
    'bundle without the tree size item',
  )
  t.equal(
    code(() => decodeLedgerRequest(encodeCbor(['sync', 1]))),
    'DECODE_SHAPE',
    'unknown tag',
  )
  t.equal(
    code(() => decodeLedgerRequest(encodeCbor(['bundle', '', null]))),
    'DECODE_FIELD',
    'empty CN',
  )
  t.equal(
    code(() => decodeLedgerRequest(encodeCbor(['bundle', cn, 'x']))),
    'DECODE_FIELD',
    'tree size not a number',
  )
  t.equal(
    code(() => decodeLedgerRequest(encodeCbor([]))),
    'DECODE_SHAPE',
  )
  t.equal(
    code(() => decodeLedgerRequest(concatBytes(encodeBundleRequest(cn), new Uint8Array([0])))),
    'DECODE_TRAILING',
  )
  t.match(
    code(() => decodeLedgerRequest(new Uint8Array([0xff]))),
    /^DECODE_/,
    'not CBOR',
  )
  t.equal(
    code(() => decodeLedgerRequest(encodeCbor(['bundle', 'x'.repeat(400), null]))),
    'DECODE_OVERSIZE',
    'a request is small',
  )
  t.throws(() => encodeBundleRequest('x'.repeat(MAX_CN_CHARS + 1)), RangeError)
  t.throws(() => encodeBundleRequest(cn, -1), RangeError)
})

t.test('answers: sync response, bundle, and the two error forms round-trip; anything else is refused', async t => {
  const response = {
    headBytes,
    head: undefined as never,
    proofFrom: 1,
    consistencyProof: [new Uint8Array(32)],
    from: 1,
    events: [new Uint8Array([0x80])],
    more: true,
  }
  const sync = decodeLedgerResponse(encodeSyncResponse(response))
  t.equal(sync.kind, 'sync')
  if (sync.kind === 'sync') t.match(sync.response, { from: 1, more: true, proofFrom: 1 })
  t.same(decodeLedgerResponse(encodeBundleReply(cn, new Uint8Array([1, 2, 3]))), {
    kind: 'bundle',
    cn,
    bundleBytes: new Uint8Array([1, 2, 3]),
  })
  t.same(decodeLedgerResponse(encodeBundleError(cn, 'BUNDLE_INCOMPLETE', 'unknown')), {
    kind: 'error',
    request: 'bundle',
    cn,
    code: 'BUNDLE_INCOMPLETE',
    message: 'unknown',
  })
  t.same(decodeLedgerResponse(encodeSyncError('DECODE_SHAPE', 'bad')), {
    kind: 'error',
    request: 'sync',
    cn: undefined,
    code: 'DECODE_SHAPE',
    message: 'bad',
  })
  const long = decodeLedgerResponse(encodeSyncError('DECODE_SHAPE', 'y'.repeat(5000)))
  t.ok(long.kind === 'error' && long.message.length <= 1024, 'long messages are cut to the limit')

  t.equal(
    code(() => decodeLedgerResponse(encodeCbor(['bundle', cn, new Uint8Array(0)]))),
    'DECODE_FIELD',
    'empty bundle',
  )
  t.equal(
    code(() => decodeLedgerResponse(encodeCbor(['bundle-error', cn, 'lower case', 'x']))),
    'DECODE_FIELD',
    'codes are capitals',
  )
  t.equal(
    code(() => decodeLedgerResponse(encodeCbor(['hello']))),
    'DECODE_SHAPE',
  )
  // A sync response whose `more` contradicts its range is refused by sync.ts's strict decoder.
  t.equal(
    code(() => decodeLedgerResponse(encodeSyncResponse({ ...response, more: false }))),
    'DECODE_FIELD',
  )
})

t.test('an events announcement is a sync response: from, events, more', async t => {
  const bytes = encodeSyncResponse({
    headBytes,
    head: undefined as never,
    proofFrom: 2,
    consistencyProof: [],
    from: 2,
    events: [new Uint8Array([0x80])],
    more: false,
  })
  t.match(decodeEventsAnnouncement(bytes), { from: 2, proofFrom: 2, more: false, head: { height: 1, treeSize: 3 } })
  t.equal(
    code(() => decodeEventsAnnouncement(encodeBundleReply(cn, new Uint8Array([1])))),
    'DECODE_SHAPE',
  )
})
