import { topologyCounts, type Occupancy, type ReportModel, type ReportPe } from './report.js';

/**
 * The report as one self-contained HTML page: inline CSS, inline SVG, one inline script, the model as
 * embedded JSON, and a Content-Security-Policy that forbids every network fetch, so the page shows the
 * same thing offline, from a mail attachment or a ticket. The topology and the window strips are SVG
 * drawn here (the page is complete without script); the script draws the timeline from the embedded
 * model and adds its hover details.
 *
 * Shapes carry classes a test (or a user's own tooling) can count: `rect.device` per device,
 * `rect.group` per IOMMU group, `rect.pe` per PE, `rect.phb` per PHB, `rect.bucket` per timeline bar.
 */
const DEV_W = 176;
const DEV_H = 46;
const GAP = 10;
const PAD = 12;
const PE_HEAD = 34;
const GROUP_HEAD = 24;
const MAX_ROW = 1180;

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2', '#bcbd22', '#7f7f7f'];
const KERNEL = '#9aa3ad';
const CATEGORY_COLOURS: Readonly<Record<string, string>> = {
  topology: '#6b7280', hotplug: '#b45309', driver: '#0f766e', ownership: '#b91c1c', domain: '#7c3aed',
  attachment: '#2563eb', window: '#0891b2', mapping: '#65a30d',
};

export function renderReportHtml(m: ReportModel, source: string): string {
  const colours = new Map(m.contexts.map((c, i) => [c, PALETTE[i % PALETTE.length]!]));
  const owner = (o: string | null): string => (o === null ? KERNEL : colours.get(o) ?? KERNEL);
  const { devices, groups } = topologyCounts(m);
  const at = `position ${m.position}${m.time ? ` (${m.time})` : ''}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>IOMMU audit: ${esc(source)} at ${esc(at)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>IOMMU audit report</h1>
<p class="meta"><b>${esc(source)}</b> at ${esc(at)}; log head ${m.head}. ${m.events} events in ${m.commands} commands;
${m.phbs.length} PHBs, ${devices} devices, ${groups} IOMMU groups, ${m.contexts.length} user contexts.</p>
</header>
<section id="topology">
<h2>Topology and ownership</h2>
${legend(m.contexts, owner)}
${topologySvg(m, owner)}
</section>
<section id="timeline">
<h2>Timeline</h2>
<p class="hint">Events per run of consecutive positions, by kind. Hover a bar for its positions and times.</p>
<div class="legend">${m.categories.map((c) => `<span><i style="background:${CATEGORY_COLOURS[c]}"></i>${esc(c)}</span>`).join('')}</div>
<svg id="timeline-chart" class="timeline" role="img" aria-label="events over the log" width="1180" height="220"></svg>
<p id="timeline-detail" class="detail">&nbsp;</p>
<h3>Latest ownership, attachment, domain, driver and hotplug changes</h3>
${recentTable(m)}
</section>
<section id="windows">
<h2>Window occupancy</h2>
<p class="hint">Each strip is one DMA window (or a paging domain no window uses yet), cut into ${m.windows[0]?.bins?.length ?? 128} slices; the darker a slice, the more of its TCEs are valid.</p>
${m.windows.length ? m.windows.map((w) => occupancy(w, owner)).join('\n') : '<p>No window is programmed.</p>'}
</section>
<script type="application/json" id="report-data">${jsonForScript(m)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

function legend(contexts: readonly string[], owner: (o: string | null) => string): string {
  const items = [['kernel', owner(null)], ...contexts.map((c) => [c, owner(c)])];
  return `<div class="legend">${items.map(([name, colour]) => `<span><i style="background:${colour}"></i>${esc(name!)}</span>`).join('')}
<span><i class="claimed"></i>claimed</span><span><i class="attached"></i>attached</span><span><i class="bridge"></i>bridge</span></div>`;
}

interface Box {
  readonly w: number;
  readonly h: number;
  draw(x: number, y: number): string;
}

function topologySvg(m: ReportModel, owner: (o: string | null) => string): string {
  let y = 0;
  let width = 0;
  const parts: string[] = [];
  for (const phb of m.phbs) {
    const boxes = phb.pes.map((pe) => peBox(pe, owner));
    const rows: Box[][] = [[]];
    let rowW = 0;
    for (const b of boxes) {
      if (rowW > 0 && rowW + b.w > MAX_ROW - 2 * PAD) {
        rows.push([]);
        rowW = 0;
      }
      rows[rows.length - 1]!.push(b);
      rowW += b.w + GAP;
    }
    const innerW = Math.max(320, ...rows.map((r) => r.reduce((n, b) => n + b.w + GAP, -GAP)));
    const innerH = rows.reduce((n, r) => n + Math.max(0, ...r.map((b) => b.h)) + GAP, 0);
    const w = innerW + 2 * PAD;
    const h = 30 + innerH + PAD;
    const out = [`<g class="phb-node" data-phb="${esc(phb.domain)}">`,
      `<rect class="phb" x="0" y="${y}" width="${w}" height="${h}" rx="8"/>`,
      `<text class="phb-label" x="${PAD}" y="${y + 20}">PHB ${esc(phb.domain)} · ${esc(phb.platform)} ${esc(phb.generation)} · ${phb.pes.length} PEs</text>`];
    let ry = y + 30;
    for (const row of rows) {
      let rx = PAD;
      for (const b of row) {
        out.push(b.draw(rx, ry));
        rx += b.w + GAP;
      }
      ry += Math.max(0, ...row.map((b) => b.h)) + GAP;
    }
    out.push('</g>');
    parts.push(out.join('\n'));
    y += h + GAP * 2;
    width = Math.max(width, w);
  }
  if (parts.length === 0) return '<p>The log holds no PHB at this point.</p>';
  return `<svg class="topology" xmlns="http://www.w3.org/2000/svg" width="${width + 2}" height="${y}" viewBox="-1 -1 ${width + 2} ${y}" role="img" aria-label="PCI topology, IOMMU groups and owners">
${parts.join('\n')}
</svg>`;
}

function peBox(pe: ReportPe, owner: (o: string | null) => string): Box {
  const endpoints = pe.devices.filter((d) => !d.bridge);
  const bridges = pe.devices.filter((d) => d.bridge);
  const row = (n: number): number => (n === 0 ? 0 : n * DEV_W + (n - 1) * GAP);
  const groupW = pe.group ? Math.max(200, row(endpoints.length) + 2 * PAD) : 0;
  const groupH = GROUP_HEAD + DEV_H + PAD;
  const bridgeW = row(bridges.length);
  const innerW = groupW + (groupW && bridgeW ? GAP : 0) + bridgeW;
  const w = Math.max(240, innerW + 2 * PAD);
  const h = PE_HEAD + Math.max(groupH, DEV_H) + PAD;
  return {
    w, h,
    draw(x, y) {
      const out = [`<g class="pe-node" data-pe="${esc(pe.id)}">`,
        `<rect class="pe" x="${x}" y="${y}" width="${w}" height="${h}" rx="6"/>`,
        `<text class="pe-label" x="${x + PAD}" y="${y + 16}">PE ${esc(pe.id)}</text>`,
        `<text class="small" x="${x + PAD}" y="${y + 29}">${pe.bus === null ? 'all buses' : `bus ${pe.bus.toString(16).padStart(2, '0')}`} · bypass ${pe.bypass ? 'on' : 'off'}</text>`];
      let dx = x + PAD;
      const top = y + PE_HEAD;
      if (pe.group) {
        const g = pe.group;
        const colour = owner(g.owner);
        out.push(`<g class="group-node" data-group="${g.id}" data-owner="${esc(g.owner ?? 'kernel')}">`,
          `<rect class="group" x="${dx}" y="${top}" width="${groupW}" height="${groupH}" rx="6" style="stroke:${colour};fill:${colour}1f"/>`,
          `<text class="group-label" x="${dx + PAD}" y="${top + 16}" style="fill:${colour}">group ${g.id} · ${esc(g.owner ?? 'kernel')} · ${esc(g.domain)}</text>`,
          `<title>IOMMU group ${g.id}: owner ${esc(g.owner ?? 'kernel')}, domain ${esc(g.domain)}</title>`);
        endpoints.forEach((d, i) => out.push(device(d, dx + PAD + i * (DEV_W + GAP), top + GROUP_HEAD, colour)));
        out.push('</g>');
        dx += groupW + GAP;
      }
      bridges.forEach((d, i) => out.push(device(d, dx + i * (DEV_W + GAP), top, KERNEL)));
      out.push('</g>');
      return out.join('\n');
    },
  };
}

function device(d: ReportPe['devices'][number], x: number, y: number, colour: string): string {
  const cls = ['device', d.bridge ? 'bridge' : '', d.claimed ? 'claimed' : '', d.attached ? 'attached' : ''].filter(Boolean).join(' ');
  const state = d.bridge ? 'bridge' : d.attached ? 'attached' : d.claimed ? 'claimed' : d.driver ? `driver ${d.driver}` : 'no driver';
  return `<g class="device-node" data-bdf="${esc(d.bdf)}">
<rect class="${cls}" x="${x}" y="${y}" width="${DEV_W}" height="${DEV_H}" rx="4" style="stroke:${colour}"/>
<text class="bdf" x="${x + 8}" y="${y + 18}">${esc(d.bdf)}</text>
<text class="small" x="${x + 8}" y="${y + 35}">${esc(d.id)} · ${esc(state)}</text>
<title>${esc(d.bdf)} ${esc(d.id)} class ${esc(d.class)}; driver ${esc(d.driver ?? 'none')}${d.claimed ? '; claimed' : ''}${d.attached ? '; attached' : ''}</title>
</g>`;
}

function recentTable(m: ReportModel): string {
  if (m.recent.length === 0) return '<p>None.</p>';
  const rows = m.recent.map((e) => `<tr class="cat-${esc(e.category)}"><td>${e.position}</td><td>${esc(e.time ?? '')}</td><td>${esc(e.command)}</td><td>${esc(e.category)}</td><td>${esc(e.summary)}</td></tr>`);
  return `<div class="scroll"><table class="recent"><thead><tr><th>position</th><th>time</th><th>command</th><th>kind</th><th>change</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody></table></div>`;
}

function occupancy(w: Occupancy, owner: (o: string | null) => string): string {
  const width = 1024;
  const head = `${esc(w.label)}: [${esc(w.start)}, ${esc(w.last)}], ${esc(w.pageSize)} pages, ${w.table === 'kernel' ? 'kernel table' : w.table === 'kernel-ddw' ? 'kernel table (DDW)' : esc(w.table.replace(':', ' '))}`;
  if (w.bins === null || w.entries === null || w.valid === null) {
    return `<div class="window"><p>${head}: the kernel's own table; its DMA-API mappings are not in the log.</p></div>`;
  }
  const colour = owner(w.context);
  const slice = width / w.bins.length;
  const rects = w.bins.map((f, i) => (f > 0 ? `<rect class="fill" x="${(i * slice).toFixed(2)}" y="0" width="${slice.toFixed(2)}" height="22" style="fill:${colour};opacity:${(0.25 + 0.75 * f).toFixed(3)}"/>` : '')).join('');
  const pct = w.entries ? ((100 * w.valid) / w.entries).toFixed(w.valid && w.valid * 1000 < w.entries ? 3 : 1) : '0';
  return `<div class="window"><p>${head} of ${esc(w.context ?? '?')}: ${w.valid.toLocaleString('en-US')} of ${w.entries.toLocaleString('en-US')} TCEs valid (${pct}%)</p>
<svg class="occupancy" data-table="${esc(w.table)}" width="${width}" height="22" viewBox="0 0 ${width} 22"><rect class="empty" x="0" y="0" width="${width}" height="22"/>${rects}</svg></div>`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON inside a script element: `<` is escaped so no text can close the element. */
function jsonForScript(m: ReportModel): string {
  return JSON.stringify(m).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

const CSS = `
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1f2937;background:#f8fafc}
h1{margin:0 0 4px;font-size:22px}h2{margin:28px 0 8px;font-size:18px}h3{font-size:15px;margin:18px 0 6px}
.meta,.hint{color:#4b5563}.detail{font-family:ui-monospace,monospace;font-size:12px;min-height:1.4em}
svg text{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;fill:#111827}
svg .small{font-size:10.5px;fill:#4b5563}.phb{fill:#eef2f7;stroke:#64748b;stroke-width:1.5}.phb-label{font-weight:700;font-size:13px}
.pe{fill:#fff;stroke:#94a3b8;stroke-dasharray:4 3}.pe-label{font-weight:600}.group{stroke-width:2}.group-label{font-weight:700;font-size:11.5px}
.device{fill:#fff;stroke-width:1.5}.device.bridge{fill:#f1f5f9;stroke-dasharray:3 2}.device.claimed{fill:#fff7ed}.device.attached{fill:#ecfdf5;stroke-width:3}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin:6px 0 10px;font-size:12px}.legend i{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border-radius:2px;border:1px solid #64748b}
.legend i.claimed{background:#fff7ed}.legend i.attached{background:#ecfdf5;border-width:2px}.legend i.bridge{background:#f1f5f9;border-style:dashed}
.timeline{background:#fff;border:1px solid #cbd5e1}.timeline .bucket:hover{opacity:.75}
table.recent{border-collapse:collapse;font-size:12px;background:#fff}table.recent td,table.recent th{border:1px solid #e2e8f0;padding:2px 6px;text-align:left;vertical-align:top}
table.recent td:first-child{text-align:right;font-family:ui-monospace,monospace}
.scroll{max-height:420px;overflow:auto;border:1px solid #e2e8f0;display:inline-block}
.window p{margin:10px 0 3px;font-family:ui-monospace,monospace;font-size:12px}.occupancy .empty{fill:#fff;stroke:#cbd5e1}
`;

/** Draws the timeline (stacked bars per bucket) from the embedded model; no external code, no fetch. */
const SCRIPT = `
(function () {
  var model = JSON.parse(document.getElementById('report-data').textContent);
  var svg = document.getElementById('timeline-chart');
  var detail = document.getElementById('timeline-detail');
  var colours = ${JSON.stringify(CATEGORY_COLOURS)};
  var ns = 'http://www.w3.org/2000/svg';
  var W = 1180, H = 220, left = 48, bottom = 28, top = 8;
  var buckets = model.timeline;
  function el(name, attrs, text) {
    var e = document.createElementNS(ns, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  }
  if (buckets.length === 0) { el('text', { x: left, y: H / 2 }, 'The log is empty.'); return; }
  var max = 1;
  buckets.forEach(function (b) { var n = 0; for (var c in b.counts) n += b.counts[c]; b.total = n; if (n > max) max = n; });
  var bw = (W - left - 8) / buckets.length;
  el('line', { x1: left, y1: H - bottom, x2: W - 8, y2: H - bottom, stroke: '#64748b' });
  el('text', { x: 4, y: top + 10, 'font-size': 10 }, String(max));
  el('text', { x: 4, y: H - bottom, 'font-size': 10 }, '0');
  el('text', { x: left, y: H - 8, 'font-size': 10 }, 'position ' + buckets[0].from + ' (' + buckets[0].fromTime + ')');
  var lastB = buckets[buckets.length - 1];
  el('text', { x: W - 8, y: H - 8, 'font-size': 10, 'text-anchor': 'end' }, 'position ' + lastB.to + ' (' + lastB.toTime + ')');
  buckets.forEach(function (b, i) {
    var x = left + i * bw, y = H - bottom;
    var g = el('g', { 'class': 'bucket-stack' });
    var hit = document.createElementNS(ns, 'rect');
    model.categories.forEach(function (c) {
      var n = b.counts[c]; if (!n) return;
      var h = (n / max) * (H - bottom - top);
      y -= h;
      var r = document.createElementNS(ns, 'rect');
      r.setAttribute('x', x + 0.5); r.setAttribute('y', y); r.setAttribute('width', Math.max(1, bw - 1)); r.setAttribute('height', h);
      r.setAttribute('fill', colours[c]);
      g.appendChild(r);
    });
    hit.setAttribute('class', 'bucket');
    hit.setAttribute('x', x); hit.setAttribute('y', top); hit.setAttribute('width', bw); hit.setAttribute('height', H - bottom - top);
    hit.setAttribute('fill', 'transparent');
    hit.setAttribute('data-from', b.from); hit.setAttribute('data-to', b.to);
    hit.addEventListener('mouseenter', function () {
      var parts = model.categories.filter(function (c) { return b.counts[c]; }).map(function (c) { return c + ' ' + b.counts[c]; });
      detail.textContent = 'positions ' + b.from + '-' + b.to + ' (' + b.fromTime + ' .. ' + b.toTime + '): ' + b.total + ' events: ' + parts.join(', ');
    });
    g.appendChild(hit);
  });
})();
`;
