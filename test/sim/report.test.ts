import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inflateSync } from 'node:zlib'
import { DEFAULT_KEY_POOL_FILE } from '../../sim/fleet/key-pool.ts'
import { runFleet } from '../../sim/fleet/run.ts'
import { dumpDom, findChromium, screenshot } from '../../sim/report/chromium.ts'
import { renderReport, writeReport } from '../../sim/report/html.ts'
import type { SimReport } from '../../sim/report/model.ts'

/** Pixels of a PNG (8-bit RGB or RGBA, not interlaced) as RGB(A) rows, after undoing the row filters (PNG spec §9). */
function decodePng(bytes: Uint8Array): { width: number; height: number; channels: number; pixels: Uint8Array } {
  const sig = [137, 80, 78, 71, 13, 10, 26, 10]
  if (!sig.every((b, i) => bytes[i] === b)) throw new Error('not a PNG')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let off = 8,
    width = 0,
    height = 0,
    channels = 0
  const idat: Uint8Array[] = []
  while (off < bytes.length) {
    const len = view.getUint32(off),
      type = String.fromCharCode(...bytes.subarray(off + 4, off + 8))
    const data = bytes.subarray(off + 8, off + 8 + len)
    if (type === 'IHDR') {
      width = view.getUint32(off + 8)
      height = view.getUint32(off + 12)
      if (data[12] !== 0) throw new Error('interlaced PNG')
      if (data[8] !== 8) throw new Error(`bit depth ${data[8]}`)
      channels = ({ 2: 3, 6: 4 } as Record<number, number>)[data[9]!] ?? 0
      if (channels === 0) throw new Error(`colour type ${data[9]}`)
    }
    if (type === 'IDAT') idat.push(data)
    off += 12 + len
  }
  const raw = inflateSync(Buffer.concat(idat))
  const stride = width * channels
  const pixels = new Uint8Array(height * stride)
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1))
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[y * stride + x - channels]! : 0
      const b = y > 0 ? pixels[(y - 1) * stride + x]! : 0
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels]! : 0
      const p = a + b - c,
        pa = Math.abs(p - a),
        pb = Math.abs(p - b),
        pc = Math.abs(p - c)
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter]!
      pixels[y * stride + x] = (line[x]! + pred) & 0xff
    }
  }
  return { width, height, channels, pixels }
}

function count(text: string, pattern: RegExp): number {
  return [...text.matchAll(pattern)].length
}

/** The part of the DOM between the opening of `<section id="ID"` and the next `</section>`. */
function section(dom: string, id: string): string {
  const start = dom.indexOf(`<section id="${id}"`)
  if (start < 0) return ''
  return dom.slice(start, dom.indexOf('</section>', start))
}

t.test(
  'a report from a real fleet run renders in headless Chromium: tree, timeline, every decision with its path',
  async t => {
    // Not skipped when Chromium is missing: CI installs it (.ci/run), and a report nobody can open is a failure.
    const chromium = findChromium()
    t.ok(chromium, 'Chromium is installed (apt-get install -y chromium, or set $CHROMIUM)')
    if (chromium === undefined) return

    const work = mkdtempSync(join(tmpdir(), 'kin-report-test-'))
    t.teardown(() => rmSync(work, { recursive: true, force: true }))
    const run = await runFleet({
      devices: 8,
      depth: 2,
      dir: join(work, 'homes'),
      concurrency: 8,
      checks: 24,
      tlsChecks: 2,
      revocations: 1,
      keyPool: DEFAULT_KEY_POOL_FILE,
      report: true,
    })
    t.ok(run.ok, `the run itself held: ${run.failures.join('; ')}`)
    const report = run.report!
    t.equal(report.devices.length, 9, 'L0 and 8 devices')
    t.ok(
      report.devices.some(d => d.revoked),
      'one device was revoked during the run',
    )
    t.ok(
      report.decisions.length > 0 && report.decisions.every(d => d.path.length > 0 || !d.allow),
      'decisions carry their paths',
    )

    const file = join(work, 'report.html')
    writeReport(file, report)
    const html = readFileSync(file, 'utf8')
    t.notMatch(html, /<script/i, 'no script: the page renders without one')
    t.notMatch(html, /<link|\ssrc=|\shref=|url\(/i, 'no external asset of any kind')

    const png = join(work, 'report.png')
    await screenshot(file, png, { width: 1280, height: 2000 })
    const bytes = new Uint8Array(readFileSync(png))
    t.ok(statSync(png).size > 20_000, `the screenshot has substance (${statSync(png).size} bytes)`)
    const image = decodePng(bytes)
    t.same([image.width, image.height], [1280, 2000], 'the window size asked for')
    const colours = new Map<number, number>()
    for (let i = 0; i < image.pixels.length; i += image.channels) {
      const rgb = (image.pixels[i]! << 16) | (image.pixels[i + 1]! << 8) | image.pixels[i + 2]!
      colours.set(rgb, (colours.get(rgb) ?? 0) + 1)
    }
    const dominant = Math.max(...colours.values())
    t.ok(colours.size > 50, `many colours drawn (${colours.size})`)
    t.ok(
      dominant / (image.width * image.height) < 0.9,
      `not one colour (the most common covers ${Math.round((100 * dominant) / (image.width * image.height))}%)`,
    )
    const revokedRed = [...colours.keys()].some(c => c === 0xcf222e)
    t.ok(revokedRed, 'the revocation red (revoked node, deny badge or revoke event) is on screen')

    const dom = await dumpDom(file)
    const tree = section(dom, 'tree')
    t.equal(count(tree, /<g class="tree-node /g), report.devices.length, 'a tree node for every device')
    for (const d of report.devices) t.match(tree, `data-label="${d.label}"`, `tree node ${d.label}`)
    t.equal(
      count(tree, /<g class="tree-node [^"]*revoked/g),
      report.devices.filter(d => d.revoked).length,
      'revoked nodes marked',
    )
    const ledger = section(dom, 'ledger')
    t.equal(count(ledger, /<rect class="timeline-event /g), report.events.length, 'every ledger event on the timeline')
    t.equal(count(ledger, /<g class="timeline-head"/g), report.heads.length, 'every signed head on the timeline')
    const decisions = section(dom, 'decisions')
    const cards = decisions.split('<article ').slice(1)
    t.equal(cards.length, report.decisions.length, 'a card for every decision')
    cards.forEach((card, i) => {
      const d = report.decisions[i]!
      if (d.path.length === 0) {
        t.match(card, 'path-strip empty', `decision ${i} says it has no path`)
        return
      }
      t.match(card, `data-path-length="${d.path.length}"`, `decision ${i}: its path length`)
      const strip = /<svg class="path-strip"[^>]*>.*?<\/svg>/s.exec(card)?.[0] ?? ''
      const points = /<polyline class="path-line" points="([^"]*)"/.exec(strip)?.[1] ?? ''
      t.equal(
        points.split(' ').length,
        d.path.length,
        `decision ${i}: the path is drawn through ${d.path.length} nodes`,
      )
      t.equal(count(strip, /<g class="path-node /g), d.path.length, `decision ${i}: one node per hop`)
      // The small multiple of the whole tree highlights exactly the path's nodes.
      t.equal(
        count(card, /<g class="tree-node [^"]*on-path/g),
        new Set(d.path).size,
        `decision ${i}: path highlighted on the tree`,
      )
    })
  },
)

t.test('untrusted strings are escaped: names, CNs and codes cannot inject markup', async t => {
  t.ok(findChromium(), 'Chromium is installed (apt-get install -y chromium, or set $CHROMIUM)')
  const evil = '"><script>document.title="pwned"</script><img src=x onerror=alert(1)>'
  const report: SimReport = {
    title: `fleet ${evil}`,
    command: `kin sim ${evil}`,
    startedAt: evil,
    seconds: 1,
    ok: false,
    devices: [
      { label: 'L0', cn: `l0.${evil}`, parent: '', role: 'admin', kind: 'pc', name: evil, revoked: false },
      { label: `L1${evil}`, cn: evil, parent: 'L0', role: `admin${evil}`, kind: evil, name: evil, revoked: true },
    ],
    events: [{ index: 0, type: `authorize${evil}`, subject: evil, issuer: evil, time: 0, id: evil, bytes: 1 }],
    heads: [{ height: 0, treeSize: 1, time: 0 }],
    decisions: [
      {
        label: evil,
        peer: evil,
        target: 'L0',
        action: evil,
        allow: false,
        code: evil,
        path: [`L1${evil}`, 'L0'],
        expected: 'deny',
        ok: true,
      },
    ],
    attacks: [{ attack: evil, expected: evil, actual: evil, refused: true, ok: true }],
    figures: [{ name: evil, value: evil, unit: evil }],
    charts: [{ title: evil, unit: evil, points: [{ x: evil, y: 1 }] }],
    notes: [evil],
  }
  const html = renderReport(report)
  t.notMatch(html, /<script|<img/i, 'no element made from the strings')
  t.match(html, '&lt;script&gt;', 'shown as text instead')
  t.notMatch(html, /class="role-admin"[^>]*pwned/, 'an unknown role never reaches a class name')
  const work = mkdtempSync(join(tmpdir(), 'kin-report-escape-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  const file = join(work, 'evil.html')
  writeFileSync(file, html)
  if (findChromium() === undefined) return
  const dom = await dumpDom(file)
  t.notMatch(dom, /<script|<img/i, 'Chromium parsed no script or image element')
  t.notMatch(dom, /<title>pwned<\/title>/, 'the title was not rewritten')
  t.equal(count(section(dom, 'tree'), /<g class="tree-node /g), 2, 'both nodes drawn')
})
