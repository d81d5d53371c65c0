import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { decodeCbor } from '../../agent/codec/cbor.ts'
import { authorizeChild } from '../../agent/enroll/parent.ts'
import {
  derivePairingSecrets,
  formatPairingCode,
  openPairMessage,
  sealPairMessage,
} from '../../agent/enroll/pairing.ts'
import { createEnrollRequest, decodeEnrollRequest, encodeEnrollRequest } from '../../agent/enroll/request.ts'
import type { GossipClient } from '../../agent/gossip/client.ts'
import { enrollThroughBroker } from '../../agent/gossip/enroll-session.ts'
import { completeInvite, openInvite, type Inviter, type OpenedInvite } from '../../agent/gossip/invite-session.ts'
import { connectPairing } from '../../agent/gossip/login.ts'
import { encodeAuthorizePayload } from '../../agent/gossip/pair-wire.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { inviterOf, kin, lastJson, startFleet } from './_harness.ts'

const now = () => Math.floor(Date.now() / 1000)
const choices = { role: 'device' as const, name: '', ttlSeconds: 120, guestValidSeconds: 86400 }

/** The child's request as anyone on the topic sees it: the MAC authenticates it but does not hide it. */
async function readRequest(client: GossipClient, inviter: Inviter, opened: OpenedInvite) {
  const sealed = await client.next(fleetTopics(inviter.fleet).pair(opened.inviteId, 'request'), {
    timeoutMs: 30_000,
    code: 'PAIR_TIMEOUT',
    message: 'no request',
  })
  const [, , payload] = decodeCbor(sealed) as [string, string, Uint8Array, Uint8Array]
  return decodeEnrollRequest(payload)
}

/** Flips one byte inside the payload of a sealed pairing message (the CBOR framing stays intact). */
function flipPayloadByte(sealed: Uint8Array, payload: Uint8Array): Uint8Array {
  const out = sealed.slice()
  for (let i = 0; i + payload.length <= out.length; i++) {
    if (out.subarray(i, i + payload.length).every((b, k) => b === payload[k])) {
      out[i + Math.floor(payload.length / 2)]! ^= 0x01
      return out
    }
  }
  throw new Error('payload not found in the sealed message')
}

// docs/PAIRING.md: steps 3-4 are MACed with a key derived from the code; L0 never learns it, so nobody without
// the code can authorize the child, and nobody can alter what the parent sent.
t.test('tampered pairing messages are refused with PAIR_MAC and nothing is enrolled', async t => {
  const l0 = await startFleet(t, 'tamper')

  t.test(
    'a forged authorize from a session that knows the invite id but not the code (kin enroll exits 1)',
    async t => {
      // The forger is the inviting device's own session: it may publish on the invite's topics, and it signs a
      // perfectly valid authorize event for the child's keys, but it seals it without the code.
      const { inviter, client } = await inviterOf(l0.home, l0.url)
      t.teardown(() => client.close())
      const opened = await openInvite(nodeCrypto, client, inviter, choices, { now: now(), timeoutMs: 10_000 })
      const dir = join(l0.dir, 'forged')
      const child = kin(['enroll', '--home', dir, '--code', opened.code, '--broker', l0.url, '--json'])
      const request = await readRequest(client, inviter, opened)
      const authorize = authorizeChild(
        nodeCrypto,
        inviter.ledger,
        inviter,
        request,
        { role: 'device', notAfter: now() + 86400 },
        now(),
      )
      const guessed = {
        ...derivePairingSecrets(formatPairingCode(nodeCrypto.randomBytes(10))),
        inviteId: opened.inviteId,
      }
      await client.publish(
        fleetTopics(inviter.fleet).pair(opened.inviteId, 'authorize'),
        sealPairMessage(guessed, 'authorize', encodeAuthorizePayload(authorize.bytes, inviter.rootPem)),
      )
      const run = await child
      t.equal(run.status, 1, 'kin enroll exits 1')
      t.equal(lastJson(run.stdout).code, 'PAIR_MAC')
      t.notOk(existsSync(dir), 'no home is written')
      const cn = inviter.ledger.state.cnOfLabel(authorize.event.subject)
      t.equal(
        l0.services.ledger.ledger.state.currentBinding(cn),
        undefined,
        "the forged authorization never reached L0's ledger",
      )
    },
  )

  t.test('one flipped byte in the real authorize message', async t => {
    const { inviter, client } = await inviterOf(l0.home, l0.url)
    t.teardown(() => client.close())
    const opened = await openInvite(nodeCrypto, client, inviter, choices, { now: now(), timeoutMs: 10_000 })
    const enrolling = enrollThroughBroker(nodeCrypto, nodePki, nodeTransport, {
      code: opened.code,
      url: l0.url,
      kind: 'lock',
      name: 'lock',
      stepTimeoutMs: 30_000,
      now,
    })
    enrolling.catch(() => undefined)
    const request = await readRequest(client, inviter, opened)
    const authorize = authorizeChild(
      nodeCrypto,
      inviter.ledger,
      inviter,
      request,
      { role: 'device', notAfter: now() + 86400 },
      now(),
    )
    const payload = encodeAuthorizePayload(authorize.bytes, inviter.rootPem)
    const sealed = sealPairMessage(opened.secrets, 'authorize', payload)
    t.same(openPairMessage(opened.secrets, 'authorize', sealed), payload, 'the untouched message opens')
    await client.publish(
      fleetTopics(inviter.fleet).pair(opened.inviteId, 'authorize'),
      flipPayloadByte(sealed, payload),
    )
    await t.rejects(enrolling, { code: 'PAIR_MAC' }, 'the child refuses it')
    const cn = inviter.ledger.state.cnOfLabel(authorize.event.subject)
    t.equal(l0.services.ledger.ledger.state.currentBinding(cn), undefined, 'nothing was enrolled')
  })

  t.test("one flipped byte in the child's request: the parent refuses it", async t => {
    const { inviter, client } = await inviterOf(l0.home, l0.url)
    t.teardown(() => client.close())
    const opened = await openInvite(nodeCrypto, client, inviter, choices, { now: now(), timeoutMs: 10_000 })
    const kept: unknown[] = []
    const parent = completeInvite(nodeCrypto, nodePki, client, inviter, opened, {
      keep: async e => {
        kept.push(e)
      },
      now,
      stepTimeoutMs: 10_000,
    })
    parent.catch(() => undefined)
    const pairing = await connectPairing(nodeTransport, l0.url, derivePairingSecrets(opened.code), {
      timeoutMs: 10_000,
    })
    t.teardown(() => pairing.close())
    const { request } = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'lock', name: 'lock' })
    const payload = encodeEnrollRequest(request)
    await pairing.publish(
      fleetTopics(inviter.fleet).pair(opened.inviteId, 'request'),
      flipPayloadByte(sealPairMessage(opened.secrets, 'request', payload), payload),
    )
    await t.rejects(parent, { code: 'PAIR_MAC' }, 'completeInvite refuses the request')
    t.same(kept, [], 'no authorization was signed or kept')
  })
})
