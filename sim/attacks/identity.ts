/** @module Identity attacks over mutual TLS: Eve's CA (and a rogue root copying the fleet root's key identifier), a mis-issuing fleet CA, a stolen certificate, the old DNS parent marker, a lying SAN parent, a fake lock. */
import { createServer } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { parseAccessAnswer, requestAccess } from '../../runtime/node/tls-endpoint.ts'
import { signEvent } from '../../agent/ledger/event.ts'
import { certifiedEvent } from '../../agent/ledger/builders.ts'
import { DeviceCertificate } from '../../agent/pki/certificate.ts'
import { DEFAULT_MAX_PENDING_CONNECTIONS } from '../../runtime/node/pending-connections.ts'
import { openHalfOpen } from './half-open.ts'
import { rogueRootAttacks } from './rogue-root.ts'
import { rawTls12Request } from '../tls12-client.ts'
import type { AttackContext } from './house.ts'
import { decided, type AttackRunner } from './runner.ts'
import { TLS_HANDSHAKE, type AttackOutcome } from './types.ts'
import { tlsKeyTypeOf } from '../../agent/pki/key-type.ts'

// RFC 5246 §7.2.2: the alert a server sends when the CertificateVerify signature does not verify.
const DECRYPT_ERROR = 51

/** A TLS server presenting `cert` with `keyPem` that answers nothing and counts the bytes it receives. */
async function fakeServer(
  cert: DeviceCertificate,
  keyPem: string,
): Promise<{ port: number; received: () => number; close: () => Promise<void> }> {
  let received = 0
  const server = createServer({ cert: cert.pem, key: keyPem, requestCert: true, rejectUnauthorized: false }, socket => {
    socket.on('data', (d: Buffer) => {
      received += d.length
    })
    socket.on('error', () => undefined)
  })
  server.on('tlsClientError', () => undefined)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    received: () => received,
    close: () => new Promise<void>(resolve => server.close(() => resolve())),
  }
}

/** The guest's phone asks a fake front-door lock for 'unlock': its server identity check must refuse before a byte is sent. */
async function askFakeLock(ctx: AttackContext, fake: DeviceCertificate): Promise<AttackOutcome> {
  const guest = ctx.fleet.device('L3.4')
  const server = await fakeServer(fake, ctx.eve.keys.privateKeyPem)
  try {
    const outcome = await requestAccess({
      ...guest.identity,
      host: '127.0.0.1',
      port: server.port,
      action: 'unlock',
      timeoutMs: 1000,
      checkServer: der => guest.session.checkServer(der),
    })
    // Give a request that did leave time to arrive, so "0 bytes" means none was sent.
    await new Promise(resolve => setTimeout(resolve, 100))
    const sent = server.received()
    if (outcome.answer !== undefined || sent > 0) {
      return { actual: 'ALLOW', detail: `the phone accepted the fake lock and sent ${sent} request bytes to it` }
    }
    return {
      ...decided('L3.4', 'fake L3.3', 'serve', outcome.server),
      detail: `${outcome.server.reason}; 0 request bytes reached the fake lock`,
    }
  } catch (err) {
    // A fake lock that never answers leaves an honest requester waiting: only a sent request shows that.
    const sent = server.received()
    return {
      actual: sent > 0 ? 'ALLOW' : 'ACCESS_TRANSPORT',
      detail: `${(err as Error).message}; ${sent} request bytes reached the fake lock`,
    }
  } finally {
    await server.close()
  }
}

/**
 * Identity attacks on the front-door lock (L3.3) over real mutual TLS, with the controls that show the lock lets
 * the genuine guest and owner in. The SAN-parent case records a certificate on the live ledger (the guest's own
 * certified event): it is the last case here.
 */
export async function identityAttacks(ctx: AttackContext, run: AttackRunner): Promise<void> {
  const { fleet, eve } = ctx
  const guest = fleet.device('L3.4'),
    tablet = fleet.device('L2.2'),
    owner = fleet.device('L2.1'),
    lock = fleet.device('L3.3')
  const rootPem = fleet.l0.rootPem
  const guestCert = DeviceCertificate.from(guest.identity.certPem)

  await run.run(
    {
      id: 'guest-unlocks',
      family: 'identity',
      kind: 'control',
      attack: "the guest's phone opens the front door before the holidays end",
      expected: ['ALLOW'],
    },
    async () => decided('L3.4', 'L3.3', 'unlock', await fleet.access('L3.4', 'L3.3', 'unlock')),
  )
  await run.run(
    {
      id: 'owner-unlocks',
      family: 'identity',
      kind: 'control',
      attack: "the owner's phone opens the front door",
      expected: ['ALLOW'],
    },
    async () => decided('L2.1', 'L3.3', 'unlock', await fleet.access('L2.1', 'L3.3', 'unlock')),
  )

  await run.run(
    {
      id: 'rogue-ca',
      family: 'identity',
      kind: 'attack',
      attack: "Eve's own CA (same root name) issues the guest's CN and SAN parent for her key",
      expected: ['CERT_CHAIN'],
    },
    async () => {
      const forged = await ctx.forge('eve-ca', guest.cn, tablet.cn, eve.keys)
      return decided(
        'Eve',
        'L3.3',
        'unlock',
        await fleet.accessAs(
          { certPem: forged.pem, keyPem: eve.keys.privateKeyPem, rootPem },
          guest.session,
          'L3.3',
          'unlock',
        ),
      )
    },
  )
  await rogueRootAttacks(ctx, run)

  await run.run(
    {
      id: 'mis-issued',
      family: 'identity',
      kind: 'attack',
      attack: "the fleet CA, with L0's real root key, mis-issues the guest's CN for Eve's key",
      expected: ['CERT_UNBOUND'],
    },
    async () => {
      const forged = await ctx.forge('fleet-ca', guest.cn, tablet.cn, eve.keys)
      return decided(
        'Eve',
        'L3.3',
        'unlock',
        await fleet.accessAs(
          { certPem: forged.pem, keyPem: eve.keys.privateKeyPem, rootPem },
          guest.session,
          'L3.3',
          'unlock',
        ),
      )
    },
  )

  const endpoint = await fleet.endpoint('L3.3')
  await run.run(
    {
      id: 'stolen-certificate',
      family: 'identity',
      kind: 'attack',
      attack: "the guest's real certificate without its key (CertificateVerify signed by Eve)",
      expected: [TLS_HANDSHAKE],
    },
    async () => {
      // OpenSSL will not pair a certificate with a key it does not hold, so the impostor speaks TLS 1.2 itself.
      const outcome = await rawTls12Request({
        host: '127.0.0.1',
        port: endpoint.port,
        certificateDer: guestCert.der,
        signingKeyPem: eve.keys.privateKeyPem,
        request: '{"action":"unlock"}\n',
      })
      if (outcome.handshakeDone) {
        const answer = parseAccessAnswer(outcome.received.trim())
        return { actual: answer.code, detail: `the handshake completed: ${answer.reason}` }
      }
      const alert =
        outcome.alert === undefined
          ? 'the connection closed'
          : `fatal alert ${outcome.alert.description}${outcome.alert.description === DECRYPT_ERROR ? ' (decrypt_error)' : ''}`
      return { actual: TLS_HANDSHAKE, detail: `the lock aborted the handshake: ${alert}; no session, nothing decided` }
    },
  )
  await run.run(
    {
      id: 'own-key-bare-client',
      family: 'identity',
      kind: 'control',
      attack: "the same bare TLS 1.2 client with the guest's own key",
      expected: ['ALLOW'],
    },
    async () => {
      const outcome = await rawTls12Request({
        host: '127.0.0.1',
        port: endpoint.port,
        certificateDer: guestCert.der,
        signingKeyPem: guest.identity.keyPem,
        request: '{"action":"unlock"}\n',
      })
      if (!outcome.handshakeDone)
        return { actual: TLS_HANDSHAKE, detail: `the handshake failed (alert ${outcome.alert?.description})` }
      const answer = parseAccessAnswer(outcome.received.trim())
      return { actual: answer.code, detail: answer.reason }
    },
  )

  await run.run(
    {
      id: 'half-open-flood',
      family: 'identity',
      kind: 'attack',
      attack: `Eve holds ${2 * DEFAULT_MAX_PENDING_CONNECTIONS} half-open sockets on the lock (silent, or half a ClientHello) while the guest unlocks`,
      expected: ['CONNECTION_EVICTED'],
    },
    async () => {
      const count = 2 * DEFAULT_MAX_PENDING_CONNECTIONS
      const flood = await openHalfOpen({ host: '127.0.0.1', port: endpoint.port, count, kind: 'mixed' })
      try {
        const decision = await fleet.access('L3.4', 'L3.3', 'unlock')
        const closed = await flood.allClosed(30_000)
        const p = endpoint.pending()
        const counts = `${flood.opened} opened, ${p.evicted} evicted for newer ones, ${p.deadline} closed at the deadline, ${p.handshake} at a failed handshake`
        if (!decision.allow)
          return {
            actual: decision.code,
            detail: `the guest was not let in during the flood (${decision.reason}); ${counts}`,
          }
        if (!closed)
          return {
            actual: 'HELD_OPEN',
            detail: `the lock still held ${flood.opened - flood.closedByServer} flood sockets after 30 s; ${counts}`,
          }
        return {
          actual: 'CONNECTION_EVICTED',
          detail: `the guest got ALLOW while the flood ran; the lock closed every flood socket: ${counts}`,
        }
      } finally {
        flood.stop()
      }
    },
  )

  await run.run(
    {
      id: 'fake-lock-eve-ca',
      family: 'identity',
      kind: 'attack',
      attack: "a fake front-door lock with Eve's certificate for the lock's CN, towards the guest's phone",
      expected: ['CERT_CHAIN'],
    },
    async () => askFakeLock(ctx, await ctx.forge('eve-ca', lock.cn, owner.cn, eve.keys)),
  )
  await run.run(
    {
      id: 'fake-lock-mis-issued',
      family: 'identity',
      kind: 'attack',
      attack: "a fake front-door lock with a mis-issued fleet-CA certificate for Eve's key",
      expected: ['CERT_UNBOUND'],
    },
    async () => askFakeLock(ctx, await ctx.forge('fleet-ca', lock.cn, owner.cn, eve.keys)),
  )

  const oldForm = await ctx.forgeOldMarker(guest.cn, tablet.cn, {
    privateKeyPem: guest.identity.keyPem,
    publicKeyPem: guestCert.publicKeyPem,
    spkiDer: guestCert.spkiDer,
    keyType: tlsKeyTypeOf(guestCert.spkiDer),
  })
  await run.run(
    {
      id: 'old-parent-marker',
      family: 'identity',
      kind: 'attack',
      attack:
        "the guest's own key in a fleet-CA certificate naming its parent as DNS:parent.<P>, a name TLS clients take for a host",
      expected: ['CERT_OLD_PARENT_MARKER'],
    },
    async () =>
      decided(
        'L3.4',
        'L3.3',
        'unlock',
        await fleet.accessAs(
          { certPem: oldForm.pem, keyPem: guest.identity.keyPem, rootPem },
          guest.session,
          'L3.3',
          'unlock',
        ),
      ),
  )

  // The SAN parent is checked against the ledger in the lineage stage, after the binding stage. With a key the
  // ledger does not bind, CERT_UNBOUND comes first (mis-issued above). To reach the SAN check the certificate
  // must carry the device's own key and be recorded by a certified event — which only the device itself can sign:
  // an insider, the guest, getting a mis-issued certificate that moves it under the owner's phone.
  const guestKeys = {
    privateKeyPem: guest.identity.keyPem,
    publicKeyPem: guestCert.publicKeyPem,
    spkiDer: guestCert.spkiDer,
    keyType: tlsKeyTypeOf(guestCert.spkiDer),
  }
  const climbing = await ctx.forge('fleet-ca', guest.cn, owner.cn, guestKeys)
  const climbingIdentity = { certPem: climbing.pem, keyPem: guest.identity.keyPem, rootPem }
  await run.run(
    {
      id: 'san-parent-uncertified',
      family: 'identity',
      kind: 'attack',
      attack: "the guest's own key in a mis-issued certificate naming the owner's phone as parent, not on the ledger",
      expected: ['CERT_NOT_CERTIFIED'],
    },
    async () =>
      decided('L3.4', 'L3.3', 'unlock', await fleet.accessAs(climbingIdentity, guest.session, 'L3.3', 'unlock')),
  )
  await run.run(
    {
      id: 'san-parent',
      family: 'identity',
      kind: 'attack',
      attack: 'the same certificate recorded by a certified event the guest signs and gossips',
      expected: ['ACCESS_SAN_PARENT'],
    },
    async () => {
      const binding = guest.replica!.ledger.ledger.state.currentBinding(guest.cn)!
      const certified = signEvent(
        nodeCrypto,
        certifiedEvent(binding, climbing.certHash, fleet.clock.now()),
        guest.ledgerSeed,
      )
      // Mis-issued by the fleet CA itself, so on L0's record of what it issued; a certificate L0 never issued stops at
      // the miner instead (CERTIFIED_NOT_ISSUED, the miner family's certified-not-issued case).
      fleet.l0.issued.record(climbing, fleet.clock.now())
      await fleet.submitAs(guest, [certified])
      await fleet.converge()
      return decided('L3.4', 'L3.3', 'unlock', await fleet.accessAs(climbingIdentity, guest.session, 'L3.3', 'unlock'))
    },
  )
}
