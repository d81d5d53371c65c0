/** @module The report's inline stylesheet: print-friendly, no web fonts, role and event colours shared by every drawing. */

/** CSS of the report page. */
export const REPORT_CSS = `
:root{--admin:#1f6feb;--member:#1a7f37;--device:#8250df;--guest:#bf8700;--other:#6e7781;--deny:#cf222e;--allow:#1a7f37;--ink:#1f2328;--muted:#656d76;--line:#d0d7de;--path:#fb8500}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:#f6f8fa}
main{max-width:1240px;margin:0 auto;padding:20px 24px 40px}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:8px 18px;border-bottom:1px solid var(--line);padding-bottom:12px}
h1{font-size:22px;margin:0}
h2{font-size:17px;margin:28px 0 10px}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:12px}
.badge{display:inline-block;white-space:nowrap;border-radius:12px;padding:1px 10px;font-weight:600;font-size:12px;color:#fff}
.badge.ok,.badge.allow{background:var(--allow)}.badge.fail,.badge.deny{background:var(--deny)}
.meta{color:var(--muted)}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin-top:16px}
section>h2{margin-top:4px}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.figure{border:1px solid var(--line);border-radius:6px;padding:8px 10px;background:#fbfcfd}
.figure .value{font-size:20px;font-weight:600}.figure .unit{color:var(--muted);margin-left:4px}
.figure .name{color:var(--muted);font-size:12px}
svg text{font-family:system-ui,"DejaVu Sans",sans-serif}
svg.tree{width:100%;height:auto;max-height:1400px;display:block;margin:0 auto}
.edge{stroke:#afb8c1;stroke-width:1.4}
.tree-node circle,.path-node circle,.tree-legend circle{stroke:#fff;stroke-width:1.5}
.role-admin circle{fill:var(--admin)}.role-member circle{fill:var(--member)}.role-device circle{fill:var(--device)}
.role-guest circle{fill:var(--guest)}.role-other circle{fill:var(--other)}
.tree-node .ring{fill:none;stroke:var(--admin);stroke-width:2}
.revoked circle{fill:#fff!important;stroke:var(--deny)!important;stroke-width:2.5;stroke-dasharray:4 2}
.cross{stroke:var(--deny);stroke-width:2.5;fill:none}
.tree .label{font-size:12px;font-weight:600;text-anchor:middle;fill:var(--ink)}
.tree .name{font-size:10px;text-anchor:middle;fill:var(--muted)}
.tree-path .off-path{opacity:.35}
.tree-path .on-path circle{stroke:var(--path);stroke-width:3}
.path-line{fill:none;stroke:var(--path);stroke-width:3;stroke-linejoin:round;stroke-linecap:round;opacity:.9}
.end-mark{font-size:11px;font-weight:600;text-anchor:middle;fill:var(--path)}
.legend text{font-size:12px;fill:var(--ink)}
.timeline{width:100%;height:auto;display:block}
.lane-line{stroke:#eaeef2}.lane-name{font-size:11px;text-anchor:end;fill:var(--muted)}
.timeline-event.ev-genesis{fill:#24292f}.timeline-event.ev-authorize{fill:var(--admin)}.timeline-event.ev-certified{fill:var(--member)}
.timeline-event.ev-revoke{fill:var(--deny)}.timeline-event.ev-rekey{fill:var(--guest)}.timeline-event.ev-policy{fill:var(--device)}.timeline-event.ev-other{fill:var(--other)}
.heads-axis{stroke:var(--line)}.head-tick{stroke:#57606a;stroke-width:.6;stroke-dasharray:2 3;opacity:.55}
.head-mark{fill:#57606a}.head-label{font-size:10px;text-anchor:middle;fill:#57606a}
.axis-note{font-size:11px;fill:var(--muted)}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{color:var(--muted);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#ffebe9}
.decisions{display:grid;grid-template-columns:repeat(auto-fill,minmax(370px,1fr));gap:12px}
.decision{border:1px solid var(--line);border-left:5px solid var(--allow);border-radius:6px;padding:8px 10px;background:#fff}
.decision.deny{border-left-color:var(--deny)}
.decision.fail{outline:2px solid var(--deny)}
.decision h3{font-size:13px;margin:0 0 4px}
.decision .what{color:var(--muted);font-size:12px;margin-bottom:4px}
.decision svg.tree{max-height:230px}
.path-strip text{font-size:11px;text-anchor:middle;fill:var(--ink)}
.path-strip.empty text{text-anchor:start;fill:var(--muted)}
.path-node.peer circle,.path-node.target circle{stroke:var(--path);stroke-width:3}
.strip{margin:4px 0}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px}
.chart{width:100%;height:auto}
.chart-title{font-size:13px;font-weight:600;fill:var(--ink)}
.grid{stroke:#eaeef2}.axis{stroke:#8c959f}.tick,.unit{font-size:11px;fill:var(--muted)}
.bar{fill:var(--admin)}.bar-value{font-size:11px;fill:var(--ink)}
.series-line{fill:none;stroke:var(--admin);stroke-width:2}.series-point{fill:var(--admin)}
.muted{color:var(--muted)}
footer{color:var(--muted);font-size:12px;margin-top:20px}
`
