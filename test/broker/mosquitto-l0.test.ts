import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { toHex } from '../../agent/codec/bytes.ts'
import { decodeCbor, encodeCbor } from '../../agent/codec/cbor.ts'
import { createEnrollRequest } from '../../agent/enroll/request.ts'
import { authorizeChild } from '../../agent/enroll/parent.ts'
import { acceptAuthorization, createEnrollCsr, recordCertificate } from '../../agent/enroll/child.ts'
import { Ledger } from '../../agent/ledger/ledger.ts'
import { decodeHead, headId, verifyHeadSignature } from '../../agent/ledger/head.ts'
import { encodeSyncRequest } from '../../agent/ledger/sync.ts'
import { verifyConsistency } from '../../agent/ledger/merkle.ts'
import type { EncodedEvent } from '../../agent/ledger/types.ts'
import { decodeEventsAnnouncement, decodeLedgerResponse } from '../../agent/gossip/ledger-wire.ts'
import { fleetTopics } from '../../agent/gossip/topics.ts'
import { startL0Client, type L0ClientServices } from '../../broker/l0-client.ts'
import { exportMosquitto } from '../../broker/mosquitto.ts'
import { servicesCn } from '../../broker/services-identity.ts'
import { checkTlsPolicy, sClient } from '../helpers/tls-policy-check.ts'
import { freePort, handToMosquittoUser, startMosquitto as startMosquittoFor } from './_mosquitto.ts'
import {
  connectDevice,
  end,
  enrollDirect,
  logRecord,
  makeInvite,
  makeL0Home,
  nextMessage,
  nowSeconds,
  registerInvite,
  revocation,
  startTestL0,
  subscribeGranted,
  submission,
  tempDir,
  tryConnect,
  tryPairing,
  withHomeLedger,
  type BrokerAddress,
  type TestDevice,
} from './_fleet.ts'

// Debian's mosquitto broker; .ci/run installs it. Missing is a failure, never a silent skip.
const missing = ['mosquitto', 'mosquitto_sub'].filter(
  tool => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0,
)
const startMosquitto = (conf: string) => startMosquittoFor(t, conf)
if (missing.length > 0) {
  t.fail(
    `${missing.join(', ')} not installed: run 'apt-get install -y mosquitto mosquitto-clients' (CI's .ci/run installs them) to test L0 behind Mosquitto`,
  )
} else {
  await mosquittoPath()
}

async function mosquittoPath(): Promise<void> {
  // A P-256 fleet: the export's main listener presents L0's ECDSA certificate, a second one (rsaPort) its RSA
  // certificate, whose DHE-RSA and ECDHE-RSA suites Espruino's mbedTLS needs (Mosquitto takes one certfile per listener).
  const l0 = await makeL0Home()
  const { phone, tablet, camera } = await withHomeLedger(l0, async ledger => ({
    phone: await enrollDirect(l0, ledger, l0.self, { role: 'member' }),
    tablet: await enrollDirect(l0, ledger, l0.self, { role: 'member' }),
    camera: await enrollDirect(l0, ledger, l0.self, { role: 'device', kind: 'camera' }),
  }))
  const topics = fleetTopics(l0.domain)
  const minerKey = await withHomeLedger(l0, async ledger => ledger.ledger.state.genesis!.body.minerKey)
  const port = await freePort()
  const rsaPort = await freePort()
  const exportDir = tempDir('kin-mosquitto-')
  const exported = await exportMosquitto({ home: l0.dir, dir: exportDir, host: '127.0.0.1', port, rsaPort })
  handToMosquittoUser(exported)
  const mosquitto = await startMosquitto(exported.files.conf)
  // Devices reach Mosquitto exactly as they reach L0's own broker: it presents L0's certificate.
  const broker: BrokerAddress = { host: '127.0.0.1', port, cn: l0.cn, rootPem: l0.rootPem }
  const url = `mqtts://127.0.0.1:${port}`

  const logs: Array<Record<string, unknown>> = []
  let services: L0ClientServices = await startL0Client({
    home: l0.dir,
    broker: url,
    log: r => logs.push(r as Record<string, unknown>),
  })
  t.teardown(() => services.close())

  const phoneClient = await connectDevice(broker, phone)
  t.teardown(() => end(phoneClient))
  if ((await subscribeGranted(phoneClient, [topics.syncResp(phone.cn)]))[0] !== 1)
    throw new Error('the phone may not follow its sync responses')

  const keys = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'camera', name: 'camera' })
  const authorizations = (n: number): EncodedEvent[] => {
    const now = nowSeconds()
    return Array.from({ length: n }, () =>
      authorizeChild(
        nodeCrypto,
        services.ledger.ledger,
        { cn: phone.cn, ledgerSeed: phone.ledgerSeed },
        keys.request,
        { role: 'device', notAfter: now + 86400 },
        now,
      ),
    )
  }

  const phoneFiles = {
    cert: join(phone.dir, 'cert.pem'),
    key: join(phone.dir, 'tls-key.pem'),
    root: join(phone.dir, 'root.pem'),
  }
  t.test(
    "Mosquitto's RSA listener with the exported TLS lines: weak suites and renegotiation refused, AEAD with ECDHE or DHE accepted",
    async t => {
      await checkTlsPolicy(t, rsaPort, phoneFiles)
    },
  )

  t.test('the main listener presents the P-256 certificate, the second the RSA one, both naming 127.0.0.1', async t => {
    const ecdsa = await sClient(port, phoneFiles, ['-tls1_2', '-verify_return_error', '-verify_ip', '127.0.0.1'])
    t.equal(ecdsa.cipher, 'ECDHE-ECDSA-AES128-GCM-SHA256')
    t.match(ecdsa.out, /Server public key is 256 bit/)
    t.match(ecdsa.out, /Verify return code: 0 \(ok\)/)
    const rsaOnly = ['-tls1_2', '-sigalgs', 'RSA-PSS+SHA256:RSA+SHA256', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256']
    const rsa = await sClient(rsaPort, phoneFiles, [...rsaOnly, '-verify_return_error', '-verify_ip', '127.0.0.1'])
    t.equal(rsa.cipher, 'ECDHE-RSA-AES128-GCM-SHA256', 'an RSA-only client logs in on the second listener')
    t.match(rsa.out, /Server public key is 2048 bit/)
    t.match(rsa.out, /Verify return code: 0 \(ok\)/)
    const refused = await sClient(port, phoneFiles, rsaOnly)
    t.equal(refused.cipher ?? '(NONE)', '(NONE)', 'the main listener has no RSA certificate for it')
  })

  t.test(
    'L0 as a client of Mosquitto: a device submits, the head comes back retained and signed, events follow',
    async t => {
      const watcher = await connectDevice(broker, tablet)
      const retained = nextMessage(watcher, topics.head)
      t.same(await subscribeGranted(watcher, [topics.head, topics.events]), [1, 1])
      const first = decodeHead(new Uint8Array(await retained))
      t.ok(verifyHeadSignature(nodeCrypto, first, minerKey), 'the retained head, published by L0 through Mosquitto')
      t.equal(first.treeSize, services.ledger.ledger.size)

      const events = authorizations(2)
      const announced = nextMessage(watcher, topics.events)
      const nextHead = nextMessage(watcher, topics.head)
      await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission(events)), { qos: 1 })
      const a = decodeEventsAnnouncement(new Uint8Array(await announced))
      const head = decodeHead(new Uint8Array(await nextHead))
      t.equal(head.treeSize, first.treeSize + 2)
      t.same(a.headBytes, services.miner.miner.latestHeadBytes())
      t.equal(a.from, first.treeSize)
      t.same(a.events.map(b => toHex(nodeCrypto.sha256(b))).sort(), events.map(e => e.idHex).sort())
      t.ok(verifyConsistency(nodeCrypto, first.treeSize, head.treeSize, first.root, head.root, a.consistencyProof))
      await end(watcher)
    },
  )

  t.test('mosquitto_sub with a device certificate reads the retained head (-C 1)', async t => {
    const r = spawnSync(
      'mosquitto_sub',
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-V',
        'mqttv311',
        // Verification on: the certificate names 127.0.0.1.
        '--cafile',
        exported.files.cafile,
        // Not the phone: its client id would become the phone's CN (use_username_as_clientid) and close its open session.
        '--cert',
        join(camera.dir, 'cert.pem'),
        '--key',
        join(camera.dir, 'tls-key.pem'),
        '-i',
        'any-client-id',
        '-t',
        topics.head,
        '-C',
        '1',
        '-W',
        '20',
        '-F',
        '%x',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    )
    t.equal(r.status, 0, r.stderr)
    t.equal(
      r.stdout.trim(),
      toHex(services.miner.miner.latestHeadBytes()!),
      'the payload is the latest head, byte for byte',
    )
  })

  t.test("sync requests go through Mosquitto's ACL to L0 and back", async t => {
    const old = services.miner.miner.headAt(0)!
    const reply = nextMessage(phoneClient, topics.syncResp(phone.cn))
    await phoneClient.publishAsync(
      topics.syncReq(phone.cn),
      Buffer.from(encodeSyncRequest({ fromTreeSize: old.treeSize, fromHeadId: headId(nodeCrypto, old) })),
      { qos: 1 },
    )
    const r = decodeLedgerResponse(new Uint8Array(await reply))
    if (r.kind !== 'sync') throw new Error(`expected a sync response, got ${r.kind}`)
    t.equal(r.response.proofFrom, old.treeSize)
    t.ok(
      verifyConsistency(
        nodeCrypto,
        old.treeSize,
        r.response.head.treeSize,
        old.root,
        r.response.head.root,
        r.response.consistencyProof,
      ),
    )
  })

  t.test(
    "Mosquitto's ACL: a device cannot submit as another CN, forge the head, write an inbox under another's label, or read another inbox (the camera tries the last)",
    async t => {
      const watcher = await connectDevice(broker, tablet)
      const retained = nextMessage(watcher, topics.head)
      t.same(await subscribeGranted(watcher, [topics.head]), [1])
      await retained
      const forged = new Promise<string>(resolve =>
        watcher.on('message', (topic, p) => {
          if (topic === topics.head) resolve(p.toString('hex'))
        }),
      )
      const [stolen] = authorizations(1)
      // MQTT 3.1.1 has no negative PUBACK: Mosquitto acknowledges and drops what the ACL denies.
      await phoneClient.publishAsync(topics.submit(tablet.cn), Buffer.from(submission([stolen!])), { qos: 1 })
      await phoneClient.publishAsync(topics.head, Buffer.from('forged head'), { qos: 1 })
      const spy = await connectDevice(broker, camera, 'any-client-id')
      await subscribeGranted(spy, [topics.inboxAll(tablet.cn)])
      let leaked = false
      spy.on('message', () => {
        leaked = true
      })
      const inbox = new Promise<[string, string]>(resolve =>
        watcher.on('message', (topic, p) => {
          if (topic.startsWith(topics.inboxAll(tablet.cn).slice(0, -1))) resolve([topic, p.toString()])
        }),
      )
      t.same(await subscribeGranted(watcher, [topics.inboxAll(tablet.cn)]), [1])
      // Under L0's sender label: Mosquitto's exported ACL drops it (acknowledged, never delivered).
      await phoneClient.publishAsync(topics.inbox(tablet.cn, l0.cn), Buffer.from('forged in the name of L0'), {
        qos: 1,
      })
      await phoneClient.publishAsync(topics.inbox(tablet.cn, phone.cn), Buffer.from('challenge'), { qos: 1 })
      t.same(
        await inbox,
        [topics.inbox(tablet.cn, phone.cn), 'challenge'],
        "the tablet's first inbox message is the phone's, under its own label: the forged one was dropped",
      )
      // A real submission and its head mark the point by which the forged ones would have shown.
      const [marker] = authorizations(1)
      await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission([marker!])), { qos: 1 })
      const seen = await forged
      t.equal(
        seen,
        toHex(services.miner.miner.latestHeadBytes()!),
        "the next head is the miner's, never the forged one",
      )
      t.notOk(services.ledger.ledger.state.has(stolen!.idHex), 'the submission under another CN never reached L0')
      t.notOk(leaked, "nothing of the tablet's inbox reached the phone")
      await end(spy)
      await end(watcher)
    },
  )

  t.test('a revoked device is refused by the regenerated CRL after a SIGHUP; the others still log in', async t => {
    const revoke = revocation(services.ledger, l0.self, tablet)
    await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission([revoke])), { qos: 1 })
    await logRecord(logs, r => r.event === 'ledger.accepted' && r.id === revoke.idHex)
    const before = await tryConnect(broker, { clientId: tablet.cn, cert: tablet.certPem, key: tablet.keyPem })
    t.ok(
      before.client !== undefined,
      'the old CRL still admits the tablet: Mosquitto learns revocations from the CRL only',
    )
    await end(before.client)

    // Exported again while L0's services run (the export only reads the ledger), then reloaded.
    const again = await exportMosquitto({ home: l0.dir, dir: exportDir, host: '127.0.0.1', port, rsaPort })
    handToMosquittoUser(again)
    t.same(
      again.revoked.map(r => r.cn),
      [tablet.cn],
    )
    const mark = mosquitto.log().length
    mosquitto.child.kill('SIGHUP')
    await mosquitto.logged(/Reloading config/, mark)
    const refused = await tryConnect(broker, { clientId: tablet.cn, cert: tablet.certPem, key: tablet.keyPem })
    t.equal(refused.client, undefined, 'the revoked tablet cannot log in')
    t.match(mosquitto.log().slice(mark), /certificate revoked|OpenSSL Error/i, 'Mosquitto says why')
    const cameraAgain = await tryConnect(broker, { clientId: camera.cn, cert: camera.certPem, key: camera.keyPem })
    t.ok(cameraAgain.client !== undefined, 'the camera still logs in')
    await end(cameraAgain.client)
  })

  t.test(
    'enrollment: no pairing login through Mosquitto; it happens while L0 runs its own broker, then the device uses Mosquitto',
    async t => {
      const invite = makeInvite(phone, { role: 'device' })
      // Pairing sessions have no certificate, and the listener requires one: the TLS handshake itself fails.
      const noCode = await tryPairing(broker, invite.invite.inviteId, invite.secrets.loginProof)
      t.equal(noCode.client, undefined, 'a pairing login cannot reach Mosquitto')

      // The enrollment window: L0's services stop serving Mosquitto and run their own broker for a while.
      await services.close()
      const { services: window, logs: windowLogs } = await startTestL0(l0)
      const parent = await connectDevice(window, phone)
      t.same(await registerInvite(window, parent, phone, invite.registration), ['invite-ok', invite.invite.inviteId])
      const child = (await tryPairing(window, invite.invite.inviteId, invite.secrets.loginProof)).client!
      const { request, secrets } = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'lock', name: 'front door' })
      const now = nowSeconds()
      const authorize = authorizeChild(
        nodeCrypto,
        window.ledger.ledger,
        { cn: phone.cn, ledgerSeed: phone.ledgerSeed },
        request,
        { role: 'device', notAfter: now + 86400 },
        now,
      )
      const accepted = acceptAuthorization(nodeCrypto, authorize.bytes, request, l0.domain)
      t.same(await subscribeGranted(child, [topics.pair(invite.invite.inviteId, 'cert')]), [1])
      const answer = nextMessage(child, topics.pair(invite.invite.inviteId, 'cert'))
      await child.publishAsync(
        topics.pair(invite.invite.inviteId, 'csr'),
        Buffer.from(encodeCbor([authorize.bytes, await createEnrollCsr(accepted, secrets)])),
        { qos: 1 },
      )
      const [status, certPem, lineage] = decodeCbor(new Uint8Array(await answer)) as [string, string, Uint8Array[]]
      t.equal(status, 'ok')
      const childLedger = new Ledger(nodeCrypto)
      for (const b of lineage) childLedger.ingest(b)
      childLedger.ingest(authorize)
      const { certified } = recordCertificate(
        nodeCrypto,
        nodePki,
        childLedger,
        accepted,
        secrets,
        certPem,
        l0.rootPem,
        now,
      )
      await end(child)
      const lock: TestDevice = {
        cn: accepted.cn,
        parentCn: phone.cn,
        role: 'device',
        certPem,
        keyPem: secrets.tls.privateKeyPem,
        ledgerSeed: secrets.ledgerSeed,
        bindingId: authorize.idHex,
        dir: '',
      }
      const first = await connectDevice(window, lock)
      await first.publishAsync(topics.submit(lock.cn), Buffer.from(submission([authorize, certified])), { qos: 1 })
      await logRecord(windowLogs, r => r.event === 'ledger.accepted' && r.id === certified.idHex)
      await end(first)
      await end(parent)
      await window.close()

      // Back behind Mosquitto: exported again and reloaded (the ACL names the lock's label now), the new device logs in
      // there with its certificate and follows the ledger.
      const again = await exportMosquitto({ home: l0.dir, dir: exportDir, host: '127.0.0.1', port, rsaPort })
      handToMosquittoUser(again)
      t.ok(
        readFileSync(again.files.acl, 'utf8').split('\n').includes(`user ${lock.cn}`),
        'the new export grants the lock its topics',
      )
      const mark = mosquitto.log().length
      mosquitto.child.kill('SIGHUP')
      await mosquitto.logged(/Reloading config/, mark)
      services = await startL0Client({ home: l0.dir, broker: url, log: r => logs.push(r as Record<string, unknown>) })
      const lockClient = await connectDevice(broker, lock)
      const retained = nextMessage(lockClient, topics.head)
      t.same(await subscribeGranted(lockClient, [topics.head, topics.syncResp(lock.cn)]), [1, 1])
      const head = decodeHead(new Uint8Array(await retained))
      t.equal(head.treeSize, services.ledger.ledger.size, 'the head covers the enrollment, certified event included')
      t.ok(services.miner.miner.indexOf(certified.idHex)! < head.treeSize)
      await end(lockClient)
    },
  )

  t.test(
    "no device takes L0's services' session: the client id is the certificate's CN, whatever CONNECT says",
    async t => {
      const sessionId = services.clientId
      t.equal(sessionId, servicesCn(l0.cn), "the services' client id is their own CN")
      const disconnects = () => logs.filter(r => r.event === 'broker.disconnected').length
      const before = disconnects()
      // The attack of the issue: the camera logs in with the services' client id and a persistent session.
      const thief = await tryConnect(broker, {
        clientId: sessionId,
        clean: false,
        cert: camera.certPem,
        key: camera.keyPem,
      })
      t.ok(thief.client !== undefined, 'Mosquitto lets the camera in, under its own CN')
      const granted = await subscribeGranted(thief.client!, [topics.submitAll])
      const stolen: string[] = []
      thief.client!.on('message', topic => stolen.push(topic))
      const [ping] = authorizations(1)
      await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission([ping!])), { qos: 1 })
      await logRecord(logs, r => r.event === 'ledger.accepted' && r.id === ping!.idHex)
      t.equal(disconnects(), before, "the services' connection was not taken over")
      t.same(
        stolen,
        [],
        'the camera got none of the submissions' + (granted[0] === 128 ? ' (its subscription was refused)' : ''),
      )
      await end(thief.client)

      // While L0 is away, the thief tries again (clean, which would wipe the session were it the services'): what the
      // phone submitted meanwhile still reaches L0 when it is back.
      await services.close()
      const [queued] = authorizations(1)
      await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission([queued!])), { qos: 1 })
      for (const clean of [true, false]) {
        const again = await tryConnect(broker, { clientId: sessionId, clean, cert: camera.certPem, key: camera.keyPem })
        t.ok(again.client !== undefined)
        await end(again.client)
      }
      const l0Cli = await tryConnect(broker, {
        clientId: sessionId,
        clean: true,
        cert: l0.self.certPem,
        key: l0.self.keyPem,
      })
      t.ok(l0Cli.client !== undefined, "L0's own CLI logs in as L0 meanwhile: another session than the services'")
      await end(l0Cli.client)
      services = await startL0Client({ home: l0.dir, broker: url, log: r => logs.push(r as Record<string, unknown>) })
      await logRecord(logs, r => r.event === 'ledger.accepted' && r.id === queued!.idHex)
      t.ok(
        services.ledger.ledger.state.has(queued!.idHex),
        "the submission queued in the services' session was not lost",
      )
    },
  )

  t.test('submissions made while L0 is away wait in Mosquitto for its persistent session', async t => {
    await services.close()
    const [late] = authorizations(1)
    await phoneClient.publishAsync(topics.submit(phone.cn), Buffer.from(submission([late!])), { qos: 1 })
    services = await startL0Client({ home: l0.dir, broker: url, log: r => logs.push(r as Record<string, unknown>) })
    await logRecord(logs, r => r.event === 'ledger.accepted' && r.id === late!.idHex)
    t.ok(services.ledger.ledger.state.has(late!.idHex), 'accepted once L0 is back')
  })
}
