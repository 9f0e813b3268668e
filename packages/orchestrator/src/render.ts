import { domainMappings, domainRefView, toHex, type Json, type State, type TableRef, type Window } from '@iommu-orch/core';
import type { StepResult } from './scenario.js';

/**
 * Text presentation for the CLI. The --json forms print the canonical state view instead; both come
 * from the same stateView, so what the text shows is what the JSON holds.
 */
export function renderState(state: State, heading: string): string {
  const lines = [heading];
  const groupLine = (id: number | null): string => {
    if (id === null) return 'no group';
    const g = state.groups[id]!;
    const owner = g.owner === null ? 'kernel' : `context ${g.owner}`;
    const att = g.attached.length ? `, attached ${g.attached.join(' ')}` : '';
    return `group ${id} (owner ${owner}, domain ${domainRefView(g.domain)}${att})`;
  };
  for (const phb of Object.values(state.phbs)) {
    const sizes = phb.pageShifts.map(pageSize).join(' ');
    lines.push(`PHB ${hex4(phb.domain)} ${phb.platform} ${phb.generation}, ${phb.numPes} PEs, IOMMU page sizes ${sizes}`);
    for (const pe of Object.values(state.pes).filter((p) => p.phb === phb.domain)) {
      const bus = pe.vf !== null ? `VF ${pe.vf}` : pe.bus === null ? 'all buses' : `bus ${pe.bus.toString(16).padStart(2, '0')}`;
      lines.push(`  PE ${pe.id} (${bus}) ${groupLine(pe.group)}`);
      const windows = pe.windows.map((w, slot) => `[${slot}] ${w ? windowText(w) : '-'}`);
      lines.push(`    windows ${windows.join('  ')}  bypass ${pe.bypass ? 'on' : 'off'}`);
      for (const bdf of pe.devices) {
        const d = state.devices[bdf]!;
        const kind = d.bridge ? 'bridge' : d.pf !== null ? `VF of ${d.pf}` : 'endpoint';
        const sriov = d.sriov === null ? '' : `, SR-IOV ${d.sriov.vfs.length}/${d.sriov.totalVfs} VFs`;
        const removal = d.removalRequested ? ', removal requested' : '';
        lines.push(`    ${bdf} ${hex4(d.vendor)}:${hex4(d.device)} class ${d.classCode.toString(16).padStart(6, '0')} ${kind} driver ${d.driver ?? '-'}${sriov}${removal}`);
      }
    }
  }
  for (const slot of Object.values(state.slots)) {
    lines.push(`Slot ${slot.name}: PHB ${hex4(slot.phb)} bus ${slot.bus.toString(16).padStart(2, '0')} ${slot.state}`);
  }
  const domains = Object.values(state.domains);
  lines.push(domains.length ? 'Paging domains' : 'Paging domains: none');
  for (const d of domains) {
    const windows = d.windows.map((w) => `[${w.slot}] [${toHex(w.start)}, ${toHex(w.last)}] ${pageSize(w.table.pageShift)} pages, ${w.levels} level(s), ${w.table.valid} valid TCEs`);
    lines.push(`  domain ${d.id} context ${d.context} group ${d.group} ${windows.join('  ')}`);
    for (const m of domainMappings(d)) lines.push(`    ${m.iova} -> ${m.paddr} ${m.perm} x${m.pages}`);
  }
  for (const [context, bytes] of Object.entries(state.pinned)) lines.push(`Pinned by context ${context}: ${toHex(bytes)} bytes`);
  for (const [context, ctx] of Object.entries(state.iommufd)) {
    lines.push(`iommufd context ${context}`);
    for (const o of Object.values(ctx.objects)) {
      if (o.kind === 'device') lines.push(`  DEVICE ${o.id} ${o.bdf}${o.hwpt === null ? '' : ` attached to HWPT ${o.hwpt}`}`);
      else if (o.kind === 'hwpt') lines.push(`  HWPT ${o.id}${o.auto ? ' (auto)' : ''} on IOAS ${o.ioas}, domain ${o.domain}`);
      else {
        const ranges = o.areas.map((a) => `[${toHex(a.iova)}, ${toHex(a.last)}]`).join(' ');
        lines.push(`  IOAS ${o.id}: ${o.areas.length} area(s)${ranges ? ` ${ranges}` : ''}, ${o.reserved.length} reserved, HWPTs ${o.hwpts.join(' ') || '-'}`);
      }
    }
  }
  return lines.join('\n');
}

function tableText(t: TableRef): string {
  if (t.kind === 'domain') return `domain ${t.domain}`;
  return t.dynamic ? 'kernel table (DDW)' : 'kernel table';
}

/** The heading both `run` and `audit replay` put above a state, so their blocks compare equal. */
export function stateHeading(position: number, time: string | null): string {
  return `State at position ${position}${time ? ` (${time})` : ''}`;
}

export function renderStep(r: StepResult): string {
  const n = String(r.index).padStart(3);
  const verdict = r.ok ? `ok ${formatOutput(r.output ?? {})}`.trimEnd() : `${r.error!.code}: ${r.error!.message}${r.error!.output ? ` (${formatOutput(r.error!.output)})` : ''}`;
  const exp = r.expectationMet === false ? `   <-- expected ${expectText(r.expected)}` : '';
  const broken = (r.violations ?? []).map((v) => `\n      INVARIANT ${v.rule} broken after event ${v.event + 1}: ${v.detail}`);
  return `${n} ${r.type.padEnd(18)} ${verdict}${exp}${broken.join('')}`;
}

function expectText(e: StepResult['expected']): string {
  if (e === undefined) return '';
  if (e === 'ok') return 'ok';
  if ('error' in e) return e.output ? `${e.error} ${formatOutput(e.output)}` : e.error;
  return `ok ${formatOutput(e.ok)}`;
}

function formatOutput(o: Readonly<Record<string, Json>>): string {
  return Object.entries(o).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
}

/** A DMA window as the CLI prints it: its bus range, IOMMU page size and table. */
export function windowText(w: Window): string {
  return `${toHex(w.start)}..${toHex(w.start + w.size - 1n)} ${pageSize(w.pageShift)} ${tableText(w.table)}`;
}

/** An IOMMU page size from its shift: 12 -> "4K", 16 -> "64K", 30 -> "1G". */
export function pageSize(shift: number): string {
  const units = ['', 'K', 'M', 'G', 'T'];
  return `${2 ** (shift % 10)}${units[Math.floor(shift / 10)]}`;
}

export function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
