import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nodeCrypto } from '../../runtime/node/crypto.ts'
import { nodePki } from '../../runtime/node/pki.ts'
import { createEnrollRequest } from '../../agent/enroll/request.ts'
import { rekeyChild } from '../../agent/enroll/parent.ts'
import { buildCrl } from '../../broker/crl.ts'
import { IssuedRegistry } from '../../broker/issued.ts'
import { CRL_BACKDATE_SECONDS, MOSQUITTO_FILES, exportMosquitto, mosquittoAcl } from '../../broker/mosquitto.ts'
import { servicesCn } from '../../broker/services-identity.ts'
import { serverCertificatePaths } from '../../broker/server-certificates.ts'
import { X509Certificate } from 'node:crypto'
import { CRL_NUMBER_FILE } from '../../broker/crl-number.ts'
import { enrollDirect, makeL0Home, nowSeconds, revocation, tempDir, withHomeLedger } from './_fleet.ts'

/** `openssl crl -text` of a CRL file, checked against the fleet root: stdout and stderr together. */
function opensslCrl(crlPath: string, rootPath: string): string {
  const r = spawnSync('openssl', ['crl', '-in', crlPath, '-noout', '-text', '-CAfile', rootPath], { encoding: 'utf8' })
  t.equal(r.status, 0, `openssl crl: ${r.stderr}`)
  return r.stdout + r.stderr
}

/** `openssl verify -crl_check` of a certificate against the root and the CRL. */
function opensslVerify(certPem: string, rootPath: string, crlPath: string): { ok: boolean; out: string } {
  const dir = tempDir('kin-crl-cert-')
  const certPath = join(dir, 'cert.pem')
  writeFileSync(certPath, certPem)
  const r = spawnSync('openssl', ['verify', '-crl_check', '-CRLfile', crlPath, '-CAfile', rootPath, certPath], {
    encoding: 'utf8',
  })
  return { ok: r.status === 0, out: r.stdout + r.stderr }
}

function serialOf(certPem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-serial'], { input: certPem, encoding: 'utf8' })
    .trim()
    .replace(/^serial=/, '')
    .toUpperCase()
}

const l0 = await makeL0Home()
const fleet = await withHomeLedger(l0, async ledger => {
  const phone = await enrollDirect(l0, ledger, l0.self, { role: 'member', name: 'phone' })
  const tablet = await enrollDirect(l0, ledger, l0.self, { role: 'member', name: 'tablet' })
  const lock = await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'lock', name: 'lock' })
  const camera = await enrollDirect(l0, ledger, phone, { role: 'device', kind: 'camera', name: 'camera' })
  return { phone, tablet, lock, camera }
})
const { phone, tablet, lock, camera } = fleet

t.test('RFC 5280 §5: an empty CRL signed by the root verifies with openssl and names no certificate', async t => {
  const dir = tempDir('kin-crl-')
  const now = nowSeconds()
  const crl = buildCrl({
    rootCertPem: l0.rootPem,
    rootKeyPem: l0.fleet.rootKey.privateKeyPem,
    revoked: [],
    thisUpdate: now,
    nextUpdate: now + 86400,
    crlNumber: 7,
  })
  writeFileSync(join(dir, 'crl.pem'), crl.pem)
  writeFileSync(join(dir, 'root.pem'), l0.rootPem)
  const text = opensslCrl(join(dir, 'crl.pem'), join(dir, 'root.pem'))
  t.match(text, /verify OK/)
  t.match(text, /Version 2/)
  t.match(
    text,
    /Signature Algorithm: ecdsa-with-SHA256/,
    'signed as its P-256 root signs (an RSA root: sha256WithRSAEncryption, test/broker/mosquitto-l0.test.ts)',
  )
  t.match(text, /No Revoked Certificates/)
  t.match(text, /X509v3 CRL Number:\s*\n\s*7/)
  t.match(text, /X509v3 Authority Key Identifier/)
  t.equal(crl.der[0], 0x30, 'DER: a SEQUENCE')

  // The signature covers the list: one changed byte in the DER and openssl refuses it.
  const forged = Buffer.from(crl.der)
  // A digit of thisUpdate (UTCTime, tag 0x17 length 13): still a date, no longer the one signed.
  forged[forged.indexOf(Buffer.from([0x17, 0x0d])) + 5]! ^= 0x01
  writeFileSync(join(dir, 'forged.der'), forged)
  const r = spawnSync(
    'openssl',
    ['crl', '-inform', 'DER', '-in', join(dir, 'forged.der'), '-noout', '-CAfile', join(dir, 'root.pem')],
    { encoding: 'utf8' },
  )
  t.match(r.stdout + r.stderr, /verify failure|signature failure|bad signature/i)

  // A CRL signed by another key is refused as well.
  const other = await makeL0Home()
  const foreign = buildCrl({
    rootCertPem: l0.rootPem,
    rootKeyPem: other.fleet.rootKey.privateKeyPem,
    revoked: [],
    thisUpdate: now,
    nextUpdate: now + 86400,
    crlNumber: 8,
  })
  writeFileSync(join(dir, 'foreign.pem'), foreign.pem)
  const f = spawnSync('openssl', ['crl', '-in', join(dir, 'foreign.pem'), '-noout', '-CAfile', join(dir, 'root.pem')], {
    encoding: 'utf8',
  })
  t.match(f.stdout + f.stderr, /verify failure|signature failure|bad signature/i)
})

t.test(
  'the export names revoked, retired and rekeyed certificates by the serials L0 recorded; the others still verify',
  async t => {
    const at = nowSeconds()
    // The CRL is made a little later than the ledger's events, as it would be.
    const now = at + 5
    const oldCameraCert = camera.certPem
    await withHomeLedger(l0, async ledger => {
      await ledger.append(revocation(ledger, phone, lock, { now: at }))
      await ledger.append(revocation(ledger, tablet, tablet, { now: at, reason: 'retired' }))
      // The camera gets new keys from its parent: its old certificate is superseded.
      const { request } = await createEnrollRequest(nodeCrypto, nodePki, { kind: 'camera', name: 'camera' })
      await ledger.append(
        rekeyChild(nodeCrypto, ledger.ledger, { cn: phone.cn, ledgerSeed: phone.ledgerSeed }, camera.cn, request, at),
      )
    })
    t.equal(IssuedRegistry.open(l0.dir).list().length, 4, 'the four device certificates were recorded when issued')
    const dir = tempDir('kin-export-')
    const out = await exportMosquitto({ home: l0.dir, dir, port: 8883, now })
    t.equal(
      out.known,
      8,
      "the four devices, L0's own certificate, its services' and its two server certificates (made by the first export)",
    )
    const byCn = new Map(out.revoked.map(r => [r.cn, r]))
    t.same([...byCn.keys()].sort(), [lock.cn, tablet.cn, camera.cn].sort())
    t.match(byCn.get(lock.cn), { why: 'REVOKED', reason: 'keyCompromise', revokedAt: at })
    t.match(byCn.get(tablet.cn), { why: 'REVOKED', reason: 'cessationOfOperation' })
    t.match(byCn.get(camera.cn), { why: 'SUPERSEDED', reason: 'superseded', revokedAt: at })

    const root = out.files.cafile
    const text = opensslCrl(out.files.crl, root)
    t.match(text, /verify OK/)
    for (const dev of [lock, tablet])
      t.match(text, new RegExp(`Serial Number: ${serialOf(dev.certPem)}`), `${dev.cn.slice(0, 8)}… listed`)
    t.match(text, new RegExp(`Serial Number: ${serialOf(oldCameraCert)}`), "the camera's old certificate listed")
    t.notMatch(text, new RegExp(serialOf(phone.certPem)), 'the phone is not listed')
    t.match(text, /Key Compromise/)
    t.match(text, /Cessation Of Operation/)
    t.match(text, /Superseded/)

    t.match(
      opensslVerify(lock.certPem, root, out.files.crl).out,
      /certificate revoked/,
      'openssl -crl_check refuses the revoked lock',
    )
    const phoneCheck = opensslVerify(phone.certPem, root, out.files.crl)
    t.ok(phoneCheck.ok, `and accepts the phone: ${phoneCheck.out}`)
  },
)

t.test('a subtree revocation puts the revoked device and everything under it on the next CRL', async t => {
  const at = nowSeconds()
  const now = at + 5
  await withHomeLedger(l0, async ledger => {
    await ledger.append(revocation(ledger, l0.self, phone, { now: at, subtree: true }))
  })
  const previous = Number(readFileSync(join(l0.dir, CRL_NUMBER_FILE), 'utf8'))
  const out = await exportMosquitto({ home: l0.dir, dir: tempDir('kin-export-'), port: 8883, now })
  const byCn = new Map(out.revoked.map(r => [r.cn, r]))
  t.match(byCn.get(phone.cn), { why: 'REVOKED', reason: 'keyCompromise' })
  t.match(byCn.get(lock.cn), { why: 'REVOKED' }, 'the lock keeps its own, earlier revocation')
  t.notOk(byCn.has(l0.cn), 'L0 is not revoked')
  const text = opensslCrl(out.files.crl, out.files.cafile)
  t.match(text, new RegExp(`Serial Number: ${serialOf(phone.certPem)}`))
  t.equal(out.crlNumber, previous + 1, "one more than the previous export's CRL")
})

t.test(
  "the exported files: Mosquitto settings, an ACL block per device the ledger stands behind, L0's service rights, a key only its owner reads",
  async t => {
    // Every device above is revoked by now: one more, in good standing.
    const speaker = await withHomeLedger(l0, ledger =>
      enrollDirect(l0, ledger, l0.self, { role: 'device', kind: 'speaker', name: 'speaker' }),
    )
    const dir = tempDir('kin-export-')
    const out = await exportMosquitto({ home: l0.dir, dir, port: 18883, host: '127.0.0.1' })
    t.same(Object.keys(out.files).sort(), Object.keys(MOSQUITTO_FILES).sort())
    const conf = readFileSync(out.files.conf, 'utf8')
    for (const line of [
      'listener 18883 127.0.0.1',
      'require_certificate true',
      'use_identity_as_username true',
      'use_username_as_clientid true',
      'allow_anonymous false',
      `crlfile ${out.files.crl}`,
      `acl_file ${out.files.acl}`,
      `cafile ${out.files.cafile}`,
    ]) {
      t.ok(conf.split('\n').includes(line), line)
    }
    const acl = readFileSync(out.files.acl, 'utf8')
    const lines = acl.split('\n')
    const fid = l0.domain.split('.').join('_')
    const label = (cn: string): string => cn.slice(0, -(l0.domain.length + 1))
    t.notOk(
      lines.some(l => !l.startsWith('#') && (l.includes('%u') || l.includes('%c'))),
      'no substitution: %u is a CN, topics hold labels',
    )
    t.notOk(
      lines.some(l => /^(topic|pattern) /.test(l) && l.split(' ').pop()!.includes('.')),
      'no topic with a dotted level',
    )
    t.ok(lines.includes(`pattern read kin/${fid}/ledger/head`))
    t.ok(lines.includes(`pattern read kin/${fid}/ledger/events`))
    // One block per device the ledger stands behind, with its own label written out.
    const block = (cn: string): string[] => {
      const start = lines.indexOf(`user ${cn}`)
      if (start < 0) return []
      const end = lines.findIndex((l, i) => i > start && (l === '' || l.startsWith('user ')))
      return lines.slice(start + 1, end < 0 ? undefined : end)
    }
    const me = label(speaker.cn)
    t.same(
      block(speaker.cn),
      [
        `topic write kin/${fid}/ledger/submit/${me}`,
        `topic write kin/${fid}/ledger/sync/${me}/req`,
        `topic read kin/${fid}/ledger/sync/${me}/resp`,
        `topic write kin/${fid}/ledger/delegated/${me}/req`,
        `topic read kin/${fid}/ledger/delegated/${me}/head`,
        `topic read kin/${fid}/dev/${me}/inbox/+`,
        `topic write kin/${fid}/dev/+/inbox/${me}`,
      ],
      'the speaker: its own submit, sync, delegated heads and inbox, any inbox under its own label only',
    )
    for (const dev of [phone, lock, tablet, camera])
      t.same(block(dev.cn), [], `revoked ${dev.cn.slice(0, 8)}…: no rights (the CRL refuses it too)`)
    t.notOk(
      lines.some(l => l.startsWith('pattern write')),
      'nothing every device may write',
    )
    const servicesBlock = block(servicesCn(l0.cn))
    t.ok(servicesBlock.includes(`topic write kin/${fid}/ledger/head`), "L0's services write the head")
    t.ok(servicesBlock.includes(`topic write kin/${fid}/pair/+/cert`))
    t.notOk(
      lines.some(l => l.includes('/pair/') && !servicesBlock.includes(l)),
      'no pairing topic for devices',
    )
    t.same(
      block(l0.cn),
      [
        `topic write kin/${fid}/ledger/submit/${label(l0.cn)}`,
        `topic write kin/${fid}/ledger/sync/${label(l0.cn)}/req`,
        `topic read kin/${fid}/ledger/sync/${label(l0.cn)}/resp`,
        `topic write kin/${fid}/ledger/delegated/${label(l0.cn)}/req`,
        `topic read kin/${fid}/ledger/delegated/${label(l0.cn)}/head`,
        `topic read kin/${fid}/dev/${label(l0.cn)}/inbox/+`,
        `topic write kin/${fid}/dev/+/inbox/${label(l0.cn)}`,
      ],
      "L0's own CN (its CLI) is a device like the others: no service rights",
    )
    t.ok(
      readFileSync(join(l0.dir, 'services', 'cert.pem'), 'utf8').length > 0,
      "the export made the services' certificate in L0's home",
    )
    t.equal(acl, mosquittoAcl(l0.domain, l0.cn, [speaker.cn]))
    t.equal(statSync(out.files.keyfile).mode & 0o777, 0o600)
    // L0's server certificate of the root's key type (P-256), under L0's CN: not its ledger-bound cert.pem.
    t.equal(readFileSync(out.files.certfile, 'utf8'), readFileSync(serverCertificatePaths(l0.dir, 'p256').cert, 'utf8'))
    t.match(new X509Certificate(readFileSync(out.files.certfile)).subject, `CN=${l0.cn}`)
  },
)

/** thisUpdate, nextUpdate, the CRL number and every revocation date as `openssl crl -text` prints them (seconds). */
function crlDates(text: string): { thisUpdate: number; nextUpdate: number; number: number; revoked: number[] } {
  const seconds = (s: string): number => Date.parse(s.trim()) / 1000
  return {
    thisUpdate: seconds(/Last Update: (.*)/.exec(text)![1]!),
    nextUpdate: seconds(/Next Update: (.*)/.exec(text)![1]!),
    number: Number(/X509v3 CRL Number:\s*\n\s*(\d+)/.exec(text)![1]),
    revoked: [...text.matchAll(/Revocation Date: (.*)/g)].map(m => seconds(m[1]!)),
  }
}

t.test(
  "RFC 5280 §5.2.3: the CRL number grows by one with every export, kept in L0's home, whatever the clock says",
  async t => {
    const now = nowSeconds()
    const numbers: number[] = []
    // The same second twice, then a clock set back an hour: the number still grows.
    for (const at of [now, now, now - 3600]) {
      const out = await exportMosquitto({ home: l0.dir, dir: tempDir('kin-export-'), port: 8883, now: at })
      const printed = crlDates(opensslCrl(out.files.crl, out.files.cafile))
      t.equal(printed.number, out.crlNumber, 'openssl reads the number the export reports')
      numbers.push(out.crlNumber)
    }
    t.ok(numbers[1]! > numbers[0]! && numbers[2]! > numbers[1]!, `strictly increasing: ${numbers.join(', ')}`)
    t.equal(numbers[2]! - numbers[0]!, 2, 'one more per CRL')
    t.equal(readFileSync(join(l0.dir, CRL_NUMBER_FILE), 'utf8'), `${numbers[2]}\n`, 'the last number is on disk')
    t.equal(statSync(join(l0.dir, CRL_NUMBER_FILE)).mode & 0o777, 0o600)
  },
)

t.test('a damaged CRL counter is refused (STORAGE_DAMAGED), never restarted', async t => {
  const other = await makeL0Home()
  writeFileSync(join(other.dir, CRL_NUMBER_FILE), 'twelve\n')
  await t.rejects(exportMosquitto({ home: other.dir, dir: tempDir('kin-export-'), port: 8883 }), {
    code: 'STORAGE_DAMAGED',
  })
  writeFileSync(join(other.dir, CRL_NUMBER_FILE), '41\n')
  t.equal((await exportMosquitto({ home: other.dir, dir: tempDir('kin-export-'), port: 8883 })).crlNumber, 42)
})

t.test(
  'RFC 5280 §5.1.2.4–6: thisUpdate is no earlier than any revocation listed, nextUpdate after it; openssl verify -crl_check agrees',
  async t => {
    const at = nowSeconds()
    const other = await makeL0Home({ now: at - 600 })
    const devices = await withHomeLedger(other, async ledger => {
      const phone = await enrollDirect(other, ledger, other.self, { role: 'member', name: 'phone', now: at - 600 })
      const lock = await enrollDirect(other, ledger, phone, {
        role: 'device',
        kind: 'lock',
        name: 'lock',
        now: at - 600,
      })
      // Revoked a minute ago: within the five minutes thisUpdate could otherwise be set back by.
      await ledger.append(revocation(ledger, phone, lock, { now: at - 60 }))
      return { phone, lock }
    })
    const out = await exportMosquitto({ home: other.dir, dir: tempDir('kin-export-'), port: 8883, now: at })
    const printed = crlDates(opensslCrl(out.files.crl, out.files.cafile))
    t.equal(printed.revoked.length, 1)
    t.equal(printed.revoked[0], at - 60, "the revocation's date is the ledger's effective time")
    t.ok(
      printed.revoked.every(r => r <= printed.thisUpdate),
      `thisUpdate ${printed.thisUpdate} is not before any revocation (${printed.revoked.join(', ')})`,
    )
    t.equal(printed.thisUpdate, at - 60, 'set back only as far as the newest revocation allows')
    t.equal(out.thisUpdate, printed.thisUpdate)
    t.ok(printed.nextUpdate > printed.thisUpdate)
    t.ok(printed.thisUpdate <= nowSeconds(), 'valid already: openssl would otherwise report the CRL not yet valid')
    t.match(opensslVerify(devices.lock.certPem, out.files.cafile, out.files.crl).out, /certificate revoked/)
    const phoneCheck = opensslVerify(devices.phone.certPem, out.files.cafile, out.files.crl)
    t.ok(phoneCheck.ok, phoneCheck.out)

    // With no recent revocation, thisUpdate keeps its tolerance for a broker clock behind L0's.
    const later = await exportMosquitto({ home: other.dir, dir: tempDir('kin-export-'), port: 8883, now: at + 3600 })
    t.equal(later.thisUpdate, at + 3600 - CRL_BACKDATE_SECONDS)

    // The builder itself refuses a revocation dated after the CRL.
    t.throws(
      () =>
        buildCrl({
          rootCertPem: other.rootPem,
          rootKeyPem: other.fleet.rootKey.privateKeyPem,
          revoked: [{ serial: '01', revokedAt: at + 1, reason: 'keyCompromise' }],
          thisUpdate: at,
          nextUpdate: at + 86400,
          crlNumber: 1,
        }),
      RangeError,
    )
  },
)
