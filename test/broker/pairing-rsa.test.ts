// DESIGN.md "Bounded inputs", "Key types": a CSR carrying an RSA key made to be slow (a huge exponent, a huge modulus)
// is refused over the real broker by its key's parameters, before the CA does any RSA arithmetic; the invite stays
// usable, and a device logging in meanwhile gets its answers.
import t from 'tap'
import type { MqttClient } from 'mqtt'
import { encodeCbor } from '../../agent/codec/cbor.ts'
import type { L0Services } from '../../broker/l0.ts'
import { csrWithKey, slowRsaKey, type SlowRsaShape } from '../helpers/slow-rsa.ts'
import {
  childRequest,
  connectDevice,
  end,
  enrollDirect,
  logRecord,
  makeInvite,
  makeL0Home,
  nowSeconds,
  registerInvite,
  sendCsr,
  startTestL0,
  tryPairing,
  withHomeLedger,
  type TestDevice,
} from './_fleet.ts'

const l0 = await makeL0Home()
const { phone, tablet } = await withHomeLedger(l0, async ledger => ({
  phone: await enrollDirect(l0, ledger, l0.self, { role: 'member' }),
  tablet: await enrollDirect(l0, ledger, l0.self, { role: 'member' }),
}))
const clock = nowSeconds()
const running = await startTestL0(l0, { now: () => clock })
t.teardown(() => running.services.close())
const svc = (): L0Services => running.services

/**
 * A child whose parent authorized a hostile TLS key (the parent's own request check is bypassed: this is what a
 * parent that did not look would sign), and the CSR for it: the right names, the hostile key, a signature of the
 * modulus length, so a CA that verified first would run RSAVP1 with that key.
 */
async function hostileRequest(parent: TestDevice, shape: SlowRsaShape) {
  const key = slowRsaKey(shape)
  // The names the authorization gives, in a CSR whose key is then swapped for the hostile one.
  const { authorize, csrPem } = await childRequest(svc(), parent, 'device', clock, key.spkiDer)
  return { key, authorize, csrPem: csrWithKey(csrPem, key) }
}

/** A registered invite of the phone's and a pairing session logged in with its code. */
async function openPairing(): Promise<{ id: string; child: MqttClient; parentClient: MqttClient }> {
  const parentClient = await connectDevice(svc(), phone)
  const invite = makeInvite(phone, { role: 'device', now: clock })
  const registered = await registerInvite(svc(), parentClient, phone, invite.registration)
  if ((registered as unknown[])[0] !== 'invite-ok') throw new Error(`invite not registered: ${String(registered)}`)
  const login = await tryPairing(svc(), invite.invite.inviteId, invite.secrets.loginProof)
  return { id: invite.invite.inviteId, child: login.client!, parentClient }
}

t.test(
  'the worst CSRs over the pairing topic: refused by their key, the proof not consumed, the invite still good',
  async t => {
    const { id, child, parentClient } = await openPairing()
    const cases: Array<[SlowRsaShape, string]> = [
      ['huge-exponent', 'RSA_EXPONENT'],
      ['huge-modulus', 'RSA_KEY_SIZE'],
      ['modulus-16384', 'RSA_KEY_SIZE'],
      ['modulus-512', 'RSA_KEY_SIZE'],
      ['modulus-16KiB', 'CSR_PARSE'],
    ]
    for (const [shape, code] of cases) {
      const worst = await hostileRequest(phone, shape)
      const answer = await sendCsr(svc(), child, id, encodeCbor([worst.authorize.bytes, worst.csrPem]))
      t.same(
        answer.slice(0, 2),
        ['error', code],
        `${shape} (${worst.key.modulusBits}-bit modulus, ${worst.key.exponentBytes}-byte exponent, ${worst.csrPem.length} B PEM): ${String(answer[2])}`,
      )
      t.notOk(svc().ledger.ledger.state.has(worst.authorize.idHex), `${shape}: the authorization was not consumed`)
      await logRecord(running.logs, r => r.event === 'ca.refused' && r.inviteId === id && r.code === code)
    }
    // Under the tablet's authorization (not this invite's parent) the invite refuses first: nothing about the key is looked at.
    const byTablet = await hostileRequest(tablet, 'huge-exponent')
    t.same(
      (await sendCsr(svc(), child, id, encodeCbor([byTablet.authorize.bytes, byTablet.csrPem]))).slice(0, 2),
      ['error', 'INVITE_MISMATCH'],
      'invite state before key parameters',
    )
    t.equal(svc().invites.get(id)?.state, 'used', 'none of these used the invite up')
    const good = await childRequest(svc(), phone, 'device', clock)
    const ok = await sendCsr(svc(), child, id, encodeCbor([good.authorize.bytes, good.csrPem]))
    t.equal(ok[0], 'ok', `the genuine CSR still gets its certificate (${String(ok[1]).slice(0, 40)}…)`)
    await end(child)
    await end(parentClient)
  },
)

t.test('a device logs in and gets its answer while the worst CSRs are being sent', async t => {
  const { id, child, parentClient } = await openPairing()
  const worst = await hostileRequest(phone, 'huge-exponent')
  const payload = encodeCbor([worst.authorize.bytes, worst.csrPem])
  // Bounded in count and in time: the attacker sends one after another, as fast as L0 answers.
  const MAX_SENT = 40,
    MAX_MS = 60_000
  let stop = false
  const codes: string[] = []
  const attacker = (async () => {
    const started = Date.now()
    while (!stop && codes.length < MAX_SENT && Date.now() - started < MAX_MS)
      codes.push(String((await sendCsr(svc(), child, id, payload))[1]))
  })()
  // Meanwhile the tablet logs in and registers an invite: L0's answer is the decision it waits for.
  await new Promise(resolve => setTimeout(resolve, 50))
  const tabletClient = await connectDevice(svc(), tablet)
  const invite = makeInvite(tablet, { role: 'guest', now: clock })
  const answer = (await registerInvite(svc(), tabletClient, tablet, invite.registration)) as unknown[]
  const sentBefore = codes.length
  stop = true
  await attacker
  t.same(
    answer,
    ['invite-ok', invite.invite.inviteId],
    `the tablet logged in and was answered (with ${sentBefore} hostile CSRs answered before it)`,
  )
  t.ok(
    codes.length > 0 && codes.every(c => c === 'RSA_EXPONENT'),
    `every hostile CSR was refused RSA_EXPONENT (${codes.length})`,
  )
  await end(tabletClient)
  await end(child)
  await end(parentClient)
})
