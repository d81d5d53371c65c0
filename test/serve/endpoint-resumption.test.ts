// The access endpoint resumes no TLS session (each access is a full handshake with proof of possession), and what
// kin access reads from the handshake is never served stale: a device revoked between two exchanges is denied.
import t from 'tap'
import { connect, createServer, type SecureVersion, type TLSSocket } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { parseAccessAnswer, requestAccess, startAccessEndpoint } from '../../runtime/node/tls-endpoint.ts'
import { makeServeHouse } from './_house.ts'

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

// The same certificates behind a node:tls server with Node's defaults (stateless session tickets): the control that
// shows a client offering its last session does resume where a server allows it.
const plain = createServer(
  {
    cert: house.identity(lock).certPem,
    key: house.identity(lock).keyPem,
    ca: house.fleet.fleet.root.pem,
    requestCert: true,
    rejectUnauthorized: false,
  },
  (socket: TLSSocket) => {
    socket.once('data', () => socket.end('{}\n'))
    socket.on('error', () => undefined)
  },
)
await new Promise<void>(resolve => plain.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise<void>(resolve => plain.close(() => resolve())))
const plainPort = (plain.address() as AddressInfo).port

interface Exchange {
  reused: boolean
  answer: string
  session: Buffer | undefined
}

/** One request over TLS as the guest, offering `session` for resumption; the last session the server handed out. */
function exchange(port: number, version: SecureVersion, session?: Buffer): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const { certPem, keyPem } = house.identity(guest)
    const socket = connect({
      host: '127.0.0.1',
      port,
      cert: certPem,
      key: keyPem,
      rejectUnauthorized: false,
      maxVersion: version,
      minVersion: version,
      ...(session === undefined ? {} : { session }),
    })
    let reused = false,
      answer = '',
      last: Buffer | undefined
    socket.setEncoding('utf8')
    socket.on('session', (s: Buffer) => {
      last = s
    })
    socket.once('secureConnect', () => {
      reused = socket.isSessionReused()
      socket.write('{"action":"unlock"}\n')
    })
    socket.on('data', (d: string) => {
      answer += d
    })
    // TLS 1.2 hands its session out only once the handshake is done; read it when the server closes.
    socket.on('end', () => resolve({ reused, answer, session: last ?? socket.getSession() }))
    socket.on('error', reject)
  })
}

for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
  t.test(`${version}: a requester offering its last session gets a full handshake, and is decided again`, async t => {
    const control = await exchange(plainPort, version)
    t.ok(control.session, 'the plain server handed out a session')
    const resumed = await exchange(plainPort, version, control.session)
    t.equal(resumed.reused, true, 'control: a server with session tickets resumes the offered session')

    const first = await exchange(endpoint.port, version)
    t.equal(parseAccessAnswer(first.answer.trim()).code, 'ALLOW')
    const offered = first.session ?? control.session!
    const second = await exchange(endpoint.port, version, offered)
    t.equal(second.reused, false, 'the endpoint resumed no session: the guest proved its key again')
    const answer = parseAccessAnswer(second.answer.trim())
    t.equal(answer.code, 'ALLOW', answer.reason)
    t.equal(answer.peer, guest)
  })
}

t.test('a device revoked between two exchanges is denied on the next one (ACCESS_REVOKED)', async t => {
  const ask = () =>
    requestAccess({
      ...house.identity(guest),
      host: '127.0.0.1',
      port: endpoint.port,
      action: 'unlock',
      checkServer: der => house.session(guest).checkServer(der),
    })
  const before = await ask()
  t.equal(before.answer?.code, 'ALLOW', before.answer?.reason ?? 'no answer')
  house.fleet.revoke(house.cn['L2.2'], guest, { reason: 'lost', effective: house.fleet.now, subtree: false })
  const after = await ask()
  t.equal(after.server.code, 'ALLOW', 'the lock itself still stands')
  t.equal(after.answer?.code, 'ACCESS_REVOKED', after.answer?.reason ?? 'no answer')
  t.equal(after.answer?.allow, false)
})
