import t from 'tap'
import {
  derivePairingSecrets,
  formatPairingCode,
  openPairMessage,
  sealPairMessage,
} from '../../agent/enroll/pairing.ts'
import { decodeEnrollRequest } from '../../agent/enroll/request.ts'
import { authorizeChild } from '../../agent/enroll/parent.ts'
import { GossipClient } from '../../agent/gossip/client.ts'
import { enrollThroughBroker } from '../../agent/gossip/enroll-session.ts'
import { connectDevice } from '../../agent/gossip/login.ts'
import { decodeCbor } from '../../agent/codec/cbor.ts'
import { encodeAuthorizePayload, encodeCertReply } from '../../agent/gossip/pair-wire.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { Home } from '../../runtime/home.ts'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { nodeTransport } from '../../runtime/node/transport.ts'
import { PureFleet } from '../helpers/pure-fleet.ts'
import { MemoryBus } from './_memory-transport.ts'
import { startFleet } from './_harness.ts'

const DOMAIN = 'ident.home.arpa'
const now = () => Math.floor(Date.now() / 1000)

// Every session of an enrolled device: the broker's certificate must chain to the fleet root and name L0.
t.test('device sessions check the broker: chain to the fleet root and CN = L0 (real TLS)', async t => {
  const l0 = await startFleet(t, 'ident', DOMAIN)
  const home = new Home(l0.home)
  const login = {
    url: l0.url,
    cn: l0.services.cn,
    certPem: home.readText('cert'),
    keyPem: home.readText('tlsKey'),
    rootPem: home.readText('root'),
    l0Cn: l0.services.cn,
  }
  const ok = await connectDevice(nodeTransport, login, { timeoutMs: 10_000 })
  t.ok(ok.session.connected, 'the right root and CN connect')
  await ok.close()
  await t.rejects(
    connectDevice(nodeTransport, { ...login, l0Cn: `aaaaaaaaaaaaaaaa.${DOMAIN}` }, { timeoutMs: 10_000 }),
    { code: 'BROKER_IDENTITY' },
    'a broker whose CN is not the expected L0',
  )
  const other = await PureFleet.create({ domain: DOMAIN })
  await t.rejects(
    connectDevice(nodeTransport, { ...login, rootPem: other.fleet.root.pem }, { timeoutMs: 10_000 }),
    { code: 'BROKER_IDENTITY' },
    "a broker another fleet's root does not vouch for",
  )
})

/**
 * Plays the inviting parent (fleet `a`'s L0) and the CA over a memory bus whose "broker"
 * presents `brokerCertDer` in TLS.
 */
async function pairThroughFakeBroker(a: PureFleet, brokerCertDer: Uint8Array) {
  const bus = new MemoryBus()
  bus.peerCertificate = brokerCertDer
  const code = formatPairingCode(nodeCrypto.randomBytes(10))
  const secrets = derivePairingSecrets(code)
  const topics = fleetTopics(a.fleet.domain)
  const parent = await GossipClient.connect(bus, {
    url: 'mqtts://memory:1',
    clientId: a.l0,
    connectTimeoutMs: 1000,
    login: { kind: 'certificate', certPem: '', keyPem: '' },
    server: { kind: 'deferred' },
  })
  await parent.subscribe([topics.pairAll(secrets.inviteId)])
  const child = enrollThroughBroker(nodeCrypto, nodePki, bus, {
    code,
    url: 'mqtts://memory:1',
    kind: 'lock',
    name: 'lock',
    stepTimeoutMs: 10_000,
    now,
  })
  const outcome = child.then(
    d => ({ device: d, error: undefined }),
    (error: unknown) => ({ device: undefined, error }),
  )
  const request = decodeEnrollRequest(
    openPairMessage(
      secrets,
      'request',
      await parent.next(topics.pair(secrets.inviteId, 'request'), {
        timeoutMs: 10_000,
        code: 'PAIR_TIMEOUT',
        message: 'no request',
      }),
    ),
  )
  const l0 = a.device(a.l0)
  const authorize = authorizeChild(
    nodeCrypto,
    l0.ledger,
    { cn: a.l0, ledgerSeed: l0.secrets.ledgerSeed },
    request,
    { role: 'device', notAfter: now() + 86400 },
    now(),
  )
  await parent.publish(
    topics.pair(secrets.inviteId, 'authorize'),
    sealPairMessage(secrets, 'authorize', encodeAuthorizePayload(authorize.bytes, a.fleet.root.pem)),
  )
  // The CA answers a CSR if one comes; a child that refuses the broker ends before sending it.
  const csr = await Promise.race([
    parent.next(topics.pair(secrets.inviteId, 'csr'), { timeoutMs: 10_000, code: 'PAIR_TIMEOUT', message: 'no csr' }),
    outcome.then(() => undefined),
  ])
  if (csr !== undefined) {
    const [authorizeBytes, csrPem] = decodeCbor(csr) as [Uint8Array, string]
    const issued = await a.ca.issue({ authorizeBytes, csrPem, now: now() })
    await parent.publish(
      topics.pair(secrets.inviteId, 'cert'),
      encodeCertReply({ ok: true, certPem: issued.certificate.pem, lineage: a.l0Ledger.state.log.map(e => e.bytes) }),
    )
  }
  const result = await outcome
  await parent.close()
  return { ...result, csrSent: bus.published.some(p => p.topic.endsWith('/csr')) }
}

// The pairing session's TLS cannot be checked before docs/PAIRING.md step 4 (the device has no root yet): it is checked then,
// retroactively, against the root inside the MACed authorization, and against genesis once the lineage arrives.
t.test(
  "the pairing session checks its broker once it has the root: another fleet's broker, or a non-L0 device, is refused",
  async t => {
    const a = await PureFleet.create({ domain: DOMAIN })
    const phone = await a.enroll(a.l0, { role: 'member', notAfter: a.now + 86400 * 30 })

    const genuine = await pairThroughFakeBroker(a, a.fleet.certificate.der)
    t.equal(genuine.error, undefined, "control: through a broker presenting L0's certificate the device enrolls")
    t.equal(genuine.device?.l0Cn, a.l0)
    t.equal(
      genuine.device?.ledger.state.currentBinding(genuine.device.cn)?.certHashes.length,
      1,
      'with its certified event in its own ledger',
    )

    const mitm = await PureFleet.create({ domain: DOMAIN })
    const foreign = await pairThroughFakeBroker(a, mitm.fleet.certificate.der)
    t.match(
      foreign.error,
      { code: 'BROKER_IDENTITY' },
      'a broker certified by another root (same domain) is refused after docs/PAIRING.md step 4',
    )
    t.notOk(foreign.csrSent, 'before the CSR is sent')

    const impostor = await pairThroughFakeBroker(a, phone.certificate.der)
    t.match(
      impostor.error,
      { code: 'BROKER_IDENTITY' },
      'a fleet device that is not L0 is refused once genesis names L0',
    )
    t.match(String((impostor.error as Error).message), new RegExp(`is ${phone.cn}, not L0`))
  },
)
