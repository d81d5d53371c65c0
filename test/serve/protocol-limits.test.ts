// docs/PROTOCOL.md against the code it describes: the heads-file record (§11.1) and the access request line (§12.2),
// the latter over real TLS at the documented limit.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { connect } from 'node:tls'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import {
  MAX_LINE_BUNDLE_BYTES,
  MAX_REQUEST_BYTES,
  parseAccessAnswer,
  startAccessEndpoint,
} from '../../runtime/node/tls-endpoint.ts'
import { decodeCbor } from '../../agent/codec/cbor.ts'
import { encodeHead, genesisPrevHeadId, headId, signHead } from '../../agent/ledger/head.ts'
import { HEADS_RECORD_PREFIX, decodeHeadsRecord, encodeHeadsRecord } from '../../agent/ledger/miner.ts'
import { makeServeHouse } from './_house.ts'

const protocol = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8')

t.test(
  '§11.1: a heads-file record is [1, 0, head], the head as its CBOR array, so the record is 0x83 0x01 0x00 ‖ head bytes',
  async t => {
    const keys = nodeCrypto.ed25519KeyPair()
    const head = signHead(
      nodeCrypto,
      {
        height: 0,
        prevHeadId: genesisPrevHeadId(),
        time: 1_700_000_000,
        treeSize: 2,
        root: nodeCrypto.sha256(new Uint8Array(1)),
      },
      keys.secretKey,
    )
    const record = encodeHeadsRecord(head)
    const headBytes = encodeHead(head)
    t.same([...HEADS_RECORD_PREFIX], [0x83, 0x01, 0x00])
    t.same(record.subarray(0, 3), HEADS_RECORD_PREFIX)
    t.same(record.subarray(3), headBytes, 'the head bytes are a plain suffix')
    const decoded = decodeCbor(record) as unknown[]
    t.equal(decoded.length, 3)
    t.same(decoded.slice(0, 2), [1, 0])
    t.ok(Array.isArray(decoded[2]), 'the third item is the head array, not a byte string')
    t.same(decodeHeadsRecord(record), head)
    t.same(
      nodeCrypto.sha256(record.subarray(3)),
      headId(nodeCrypto, head),
      'the head id is the hash of the record less its prefix',
    )
    t.match(protocol, /is the three-item array `\[1, 0, head\]`/)
    t.match(protocol, /`0x83 0x01 0x00` followed by the encoded head/)
    t.notMatch(protocol, /\[1, 0, headBytes\]/, 'the old, wrong form is gone')
  },
)

t.test('§12.2: the request line limit the spec states is the one the endpoint applies, over mutual TLS', async t => {
  const limit = MAX_REQUEST_BYTES - 1
  t.match(
    protocol,
    new RegExp(`at most ${limit.toLocaleString('en-US')}\\s+bytes before its newline`),
    `PROTOCOL.md states ${limit}`,
  )
  t.match(protocol, new RegExp(`at most ${MAX_LINE_BUNDLE_BYTES / 1024} KiB decoded`), 'and the bundle limit')
  t.ok(
    Math.ceil(MAX_LINE_BUNDLE_BYTES / 3) * 4 + '{"action":"unlock","bundle":""}'.length < limit,
    'the largest bundle fits the line in base64',
  )

  const house = await makeServeHouse()
  const lock = house.cn['L3.3'],
    guest = house.cn['L3.4']
  const endpoint = await startAccessEndpoint({
    ...house.identity(lock),
    session: house.session(lock),
    host: '127.0.0.1',
    port: 0,
  })
  t.teardown(() => endpoint.close())
  const id = house.identity(guest)
  const send = (line: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const socket = connect({
        host: '127.0.0.1',
        port: endpoint.port,
        cert: id.certPem,
        key: id.keyPem,
        rejectUnauthorized: false,
      })
      let got = ''
      socket.setEncoding('utf8')
      socket.on('secureConnect', () => socket.write(line))
      socket.on('data', (d: string) => {
        got += d
      })
      socket.on('end', () => resolve(got))
      socket.on('error', reject)
    })
  // JSON allows whitespace: pad a valid request to an exact length.
  const padded = (bytes: number): string => {
    const head = '{"action":"unlock"',
      tail = '}'
    return head + ' '.repeat(bytes - head.length - tail.length) + tail
  }
  t.equal(padded(limit).length, limit)
  const atLimit = parseAccessAnswer((await send(padded(limit) + '\n')).trim())
  t.equal(atLimit.code, 'ALLOW', `a line of ${limit} bytes is read and decided: ${atLimit.reason}`)
  const over = parseAccessAnswer((await send(padded(limit + 1) + '\n')).trim())
  t.equal(over.code, 'DECODE_OVERSIZE', `a line of ${limit + 1} bytes is refused`)
})
