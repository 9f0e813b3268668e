import type { Ioas } from './iommufd-ctx.js';
import { apertures, ioasAlignment } from './hwpt.js';
import { holesIn, PAGE_SIZE } from './io-pagetable.js';
import type { PagingDomain, State } from './state.js';
import { tceRuns, TCE_PCI_READ, TCE_PCI_WRITE } from './tce-table.js';
import { toHex, U64_MAX } from './u64.js';

/**
 * The iommufd layer's rules, which hold after every event, like the core's:
 * - object ids are positive and keyed by themselves; a bdf is bound at most once;
 * - an IOAS's areas are sorted, disjoint, aligned to its alignment and clear of reserved ranges; its
 *   allowed ranges are sorted, disjoint and clear of reserved ranges; every reservation's owner
 *   exists (a HWPT of the IOAS, a device attached to one of them);
 * - a HWPT's domain exists in its context, its IOAS lists it, it reserves exactly the gaps of the
 *   domain's apertures, and the domain's TCEs are exactly the IOAS's areas, so iova_to_phys through
 *   it agrees with the IOAS (`deep` compares every run; otherwise the counts per window);
 * - a bound device is claimed by its context; an attached one is attached in its group, and the
 *   group is on its HWPT's domain.
 * That no other device reaches a HWPT's domain is kept by refusing the kernel-level commands on it
 * (iommufd-ctx.ts), and that an automatic HWPT has a device holds between commands only.
 */
export function iommufdInvariants(state: State, deep: boolean, bad: (rule: string, detail: string) => void): void {
  const bound = new Map<string, string>();
  for (const [context, ctx] of Object.entries(state.iommufd)) {
    for (const [key, obj] of Object.entries(ctx.objects)) {
      if (obj.id < 1 || String(obj.id) !== key) bad('iommufd-ids', `${context}: object ${key} has id ${obj.id}`);
      const where = `${context} ${obj.kind} ${obj.id}`;
      switch (obj.kind) {
        case 'ioas':
          checkIoas(state, context, obj, (detail) => bad('ioas', `${where}: ${detail}`));
          break;
        case 'hwpt': {
          const d = state.domains[obj.domain];
          const ioas = ctx.objects[obj.ioas];
          if (!d || d.context !== context) bad('hwpt-domain', `${where}: domain ${obj.domain} is missing or not the context's`);
          if (ioas?.kind !== 'ioas' || !ioas.hwpts.includes(obj.id)) bad('hwpt-ioas', `${where}: IOAS ${obj.ioas} does not list it`);
          if (!d || ioas?.kind !== 'ioas') break;
          const owned = ioas.reserved.filter((r) => r.owner.kind === 'hwpt' && r.owner.id === obj.id);
          const gaps = holesIn(apertures(d), 0n, U64_MAX);
          if (JSON.stringify(owned.map((r) => [toHex(r.start), toHex(r.last)])) !== JSON.stringify(gaps.map((r) => [toHex(r.start), toHex(r.last)]))) {
            bad('hwpt-reserved', `${where}: reserved ranges are not the gaps of domain ${d.id}'s apertures`);
          }
          const mismatch = deep ? tceMismatch(d, ioas) : tceCountMismatch(d, ioas);
          if (mismatch) bad('hwpt-tces', `${where}: domain ${d.id} disagrees with IOAS ${ioas.id}: ${mismatch}`);
          break;
        }
        case 'device': {
          const other = bound.get(obj.bdf);
          if (other) bad('device-bound-once', `${obj.bdf} is bound in ${other} and ${context}`);
          bound.set(obj.bdf, context);
          const dev = state.devices[obj.bdf];
          const group = dev?.group === null || dev === undefined ? undefined : state.groups[dev.group];
          if (!group || group.owner !== context || !group.claimed.includes(obj.bdf)) bad('device-claimed', `${where}: ${obj.bdf} is not claimed by the context`);
          if (obj.hwpt === null) break;
          const h = ctx.objects[obj.hwpt];
          if (h?.kind !== 'hwpt') bad('device-hwpt', `${where}: HWPT ${obj.hwpt} is missing`);
          else if (group?.domain.type !== 'paging' || group.domain.id !== h.domain || !group.attached.includes(obj.bdf)) {
            bad('device-attached', `${where}: group is not attached to HWPT ${h.id}'s domain ${h.domain}`);
          }
        }
      }
    }
  }
}

function checkIoas(state: State, context: string, ioas: Ioas, bad: (detail: string) => void): void {
  const objects = state.iommufd[context]!.objects;
  const align = ioasAlignment(state, context, ioas);
  ioas.areas.forEach((a, i) => {
    if (a.last < a.iova) bad(`area at ${toHex(a.iova)} ends before it starts`);
    const prev = ioas.areas[i - 1];
    if (prev && prev.last >= a.iova) bad(`areas at ${toHex(prev.iova)} and ${toHex(a.iova)} overlap or are out of order`);
    if ((a.iova | (a.last + 1n - a.iova) | (a.paddr % PAGE_SIZE)) & (align - 1n)) bad(`area at ${toHex(a.iova)} is not aligned to ${toHex(align)}`);
    const r = ioas.reserved.find((x) => x.start <= a.last && a.iova <= x.last);
    if (r) bad(`area at ${toHex(a.iova)} overlaps reserved [${toHex(r.start)}, ${toHex(r.last)}]`);
  });
  ioas.allowed.forEach((a, i) => {
    const prev = ioas.allowed[i - 1];
    if (a.last < a.start || (prev && prev.last >= a.start)) bad(`allowed ranges are not sorted and disjoint at ${toHex(a.start)}`);
    if (ioas.reserved.some((x) => x.start <= a.last && a.start <= x.last)) bad(`allowed range at ${toHex(a.start)} overlaps a reserved range`);
  });
  for (const r of ioas.reserved) {
    if (r.owner.kind === 'hwpt' && !ioas.hwpts.includes(r.owner.id)) bad(`reservation owned by HWPT ${r.owner.id}, which is not on this IOAS`);
    if (r.owner.kind === 'device') {
      const dev = objects[r.owner.id];
      const h = dev?.kind === 'device' && dev.hwpt !== null ? objects[dev.hwpt] : undefined;
      if (h?.kind !== 'hwpt' || h.ioas !== ioas.id) bad(`reservation owned by DEVICE ${r.owner.id}, which is not attached to this IOAS`);
    }
  }
  for (const id of ioas.hwpts) if (objects[id]?.kind !== 'hwpt') bad(`lists missing HWPT ${id}`);
}

/** The cheap form of tceMismatch: as many valid TCEs in each window as the areas there have pages. */
function tceCountMismatch(d: PagingDomain, ioas: Ioas): string | null {
  for (const w of d.windows) {
    let pages = 0n;
    for (const a of ioas.areas) if (a.iova >= w.start && a.iova <= w.last) pages += (a.last - a.iova + 1n) >> BigInt(w.table.pageShift);
    if (pages !== BigInt(w.table.valid)) return `window ${w.slot} holds ${w.table.valid} valid TCEs, the areas need ${pages}`;
  }
  return null;
}

/** Compares the domain's valid TCEs with what the areas say they must be; a description or null. */
function tceMismatch(d: PagingDomain, ioas: Ioas): string | null {
  for (const w of d.windows) {
    const shift = BigInt(w.table.pageShift);
    const step = 1n << shift;
    const expected: { index: number; count: number; first: bigint }[] = [];
    for (const a of ioas.areas) {
      if (a.iova < w.start || a.iova > w.last) continue;
      const perm = a.prot.write ? TCE_PCI_READ | TCE_PCI_WRITE : TCE_PCI_READ;
      const run = { index: Number((a.iova - w.start) >> shift), count: Number((a.last - a.iova + 1n) >> shift), first: a.paddr | perm };
      const prev = expected[expected.length - 1];
      if (prev && prev.index + prev.count === run.index && prev.first + step * BigInt(prev.count) === run.first) prev.count += run.count;
      else expected.push(run);
    }
    const actual = tceRuns(w.table);
    const text = (runs: readonly { index: number; count: number; first: bigint }[]) => runs.map((r) => `${r.index}+${r.count}:${toHex(r.first)}`).join(' ');
    if (text(expected) !== text(actual)) return `window ${w.slot} holds [${text(actual)}], the areas need [${text(expected)}]`;
  }
  return null;
}
