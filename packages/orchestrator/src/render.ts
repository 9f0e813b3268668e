import { domainMappings, domainRefView, toHex, type Json, type State } from '@iommu-orch/core';
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
      const windows = pe.windows.map((w, slot) =>
        w ? `[${slot}] ${toHex(w.start)}..${toHex(w.start + w.size - 1n)} ${pageSize(w.pageShift)} ${w.table.kind === 'kernel' ? 'kernel table' : `domain ${w.table.domain}`}` : `[${slot}] -`,
      );
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
    lines.push(`  domain ${d.id} context ${d.context} group ${d.group} aperture [${toHex(d.start)}, ${toHex(d.last)}] ${pageSize(d.table.pageShift)} pages, ${d.table.valid} valid TCEs`);
    for (const m of domainMappings(d)) lines.push(`    ${m.iova} -> ${m.paddr} ${m.perm} x${m.pages}`);
  }
  for (const [context, bytes] of Object.entries(state.pinned)) lines.push(`Pinned by context ${context}: ${toHex(bytes)} bytes`);
  return lines.join('\n');
}

/** The heading both `run` and `audit replay` put above a state, so their blocks compare equal. */
export function stateHeading(position: number, time: string | null): string {
  return `State at position ${position}${time ? ` (${time})` : ''}`;
}

export function renderStep(r: StepResult): string {
  const n = String(r.index).padStart(3);
  const verdict = r.ok ? `ok ${formatOutput(r.output ?? {})}`.trimEnd() : `${r.error!.code}: ${r.error!.message}`;
  const exp = r.expectationMet === false ? `   <-- expected ${expectText(r.expected)}` : '';
  const broken = (r.violations ?? []).map((v) => `\n      INVARIANT ${v.rule} broken after event ${v.event + 1}: ${v.detail}`);
  return `${n} ${r.type.padEnd(18)} ${verdict}${exp}${broken.join('')}`;
}

function expectText(e: StepResult['expected']): string {
  if (e === undefined) return '';
  if (e === 'ok') return 'ok';
  return 'error' in e ? e.error : `ok ${formatOutput(e.ok)}`;
}

function formatOutput(o: Readonly<Record<string, Json>>): string {
  return Object.entries(o).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
}

function pageSize(shift: number): string {
  const units = ['', 'K', 'M', 'G', 'T'];
  return `${2 ** (shift % 10)}${units[Math.floor(shift / 10)]}`;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
