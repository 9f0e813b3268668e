import { readFileSync } from 'node:fs';
import { decide, initialState, invariants, type Command, type State } from '@iommu-orch/core';
import { applyCommand } from '@iommu-orch/orchestrator';
import { describe, expect, it } from 'vitest';

/**
 * Replays QEMU traces of a real ppc64 Linux guest (shared/data/ppc-guest-traces, QEMU 7.2 under TCG,
 * so every TCE hypercall is QEMU's emulation) through the model's RTAS and hypercall commands, with
 * every invariant checked after every event. The trace only says that each call returned H_SUCCESS
 * and what devices then read through the tables: every call must be accepted with H_SUCCESS, and at
 * every `spapr_iommu_xlate` line the model's TCE must translate as QEMU did.
 *
 * Trace quirks (README): a stuff line prints the ioba after the last page cleared; an indirect line
 * prints only the last index and TCE, so the list is rebuilt as the guest builds it
 * (tce_buildmulti_pSeriesLP: consecutive real pages, one permission), which the xlate checks then
 * confirm; the DDW query prints QEMU's 5-cell block size while the guest reads 1<<37; the VIO LIOBN
 * 0x71000002 (spapr-vty/vscsi tables) is outside the model: its lines are skipped.
 */
const traces = new URL('../../../shared/data/ppc-guest-traces/', import.meta.url);

const NVME = { vendor: 0x1b36, device: 0x0010, classCode: 0x010802, driver: 'nvme' };
const VBLK = { vendor: 0x1af4, device: 0x1001, classCode: 0x010000, driver: 'virtio-pci' };
/** QEMU 7.2's PHB offered 4K, 64K, 2M and 16M pages to this 2 GiB guest (query mask 0x107). */
const pageShifts = [12, 16, 21, 24];

type Step = { command: Command; expect: Record<string, unknown> } | { xlate: { liobn: number; addr: bigint; to: bigint; perm: bigint } };

function fields(line: string): Record<string, string> {
  return Object.fromEntries([...line.matchAll(/(\w+)=(0x[0-9a-f]+|-?\d+)/g)].map((m) => [m[1]!, m[2]!]));
}

/**
 * The trace as commands and checks, produced lazily: a line's page size is the window's at that point
 * of the replay. The parser is the test's; core never reads traces.
 */
function* parse(text: string, pageShiftOf: (liobn: number) => number): Generator<Step> {
  for (const line of text.split('\n')) {
    const event = line.split(' ')[0];
    const f = fields(line);
    const liobn = f.liobn === undefined ? 0 : Number(f.liobn);
    if (liobn === 0x7100_0002) continue;
    const page = () => 1n << BigInt(pageShiftOf(liobn));
    switch (event) {
      case 'spapr_iommu_ddw_query':
        yield ({ command: { type: 'rtasQueryPeDmaWindow', phb: 0 }, expect: { status: 0, windowsAvailable: Number(/(\d+) windows available/.exec(line)![1]), pageSizeMask: /mask=(0x[0-9a-f]+)/.exec(line)![1], largestBlock: '0x2000000000' } });
        break;
      case 'spapr_iommu_ddw_create': {
        const pageSize = BigInt(/page size=(0x[0-9a-f]+)/.exec(line)![1]!);
        const requested = BigInt(/requested=(0x[0-9a-f]+)/.exec(line)![1]!);
        const shift = (n: bigint) => n.toString(2).length - 1;
        yield ({
          command: { type: 'rtasCreatePeDmaWindow', phb: 0, pageShift: shift(pageSize), windowShift: shift(requested) },
          expect: { status: 0, liobn: `0x${Number(/liobn=(0x[0-9a-f]+)/.exec(line)![1]).toString(16)}`, startAddr: `0x${BigInt(/start addr=(0x[0-9a-f]+)/.exec(line)![1]!).toString(16)}` },
        });
        break;
      }
      case 'spapr_iommu_pci_put':
        yield ({ command: { type: 'hPutTce', liobn, ioba: BigInt(f.ioba!), tce: BigInt(f.tce!) }, expect: { ret: 'H_SUCCESS' } });
        break;
      case 'spapr_iommu_pci_stuff': {
        const npages = Number(f.npages);
        const ioba = BigInt(f.ioba!) - BigInt(npages) * page();
        yield ({ command: { type: 'hStuffTce', liobn, ioba, tce: BigInt(f.tcevalue!), npages }, expect: { ret: 'H_SUCCESS', processed: npages } });
        break;
      }
      case 'spapr_iommu_pci_indirect': {
        const n = Number(f.iobaN) + 1;
        const last = BigInt(f.tceN!);
        const tces = Array.from({ length: n }, (_, i) => last - BigInt(n - 1 - i) * page());
        yield ({ command: { type: 'hPutTceIndirect', liobn, ioba: BigInt(f.ioba!), tceList: BigInt(f.tcelist!), tces }, expect: { ret: 'H_SUCCESS', processed: n } });
        break;
      }
      case 'spapr_iommu_xlate': {
        const m = /liobn=(0x[0-9a-f]+) (0x[0-9a-f]+) -> (0x[0-9a-f]+) perm=(\d+)/.exec(line)!;
        yield ({ xlate: { liobn: Number(m[1]), addr: BigInt(m[2]!), to: BigInt(m[3]!), perm: BigInt(m[4]!) } });
        break;
      }
    }
  }
}

function replayTrace(boot: Command[], text: string) {
  let state: State = initialState;
  const run = (c: Command) => {
    const a = applyCommand(state, c, { check: true });
    if (!a.ok) throw new Error(`${c.type} refused: ${a.error.code} ${a.error.message}`);
    expect(a.violations).toEqual([]);
    state = a.state;
    return a.output;
  };
  for (const c of boot) run(c);
  const pageShiftOf = (liobn: number) => {
    const phb = (liobn >>> 8) & 0xffff;
    return Object.values(state.pes).find((p) => p.phb === phb)?.windows[liobn & 1]?.pageShift ?? 12;
  };
  const counts: Record<string, number> = {};
  for (const step of parse(text, pageShiftOf)) {
    if ('command' in step) {
      expect(run(step.command)).toMatchObject(step.expect);
      counts[step.command.type] = (counts[step.command.type] ?? 0) + 1;
      continue;
    }
    // The IOMMU region starts at the window's bus address: xlate prints the offset into it.
    const { liobn, addr, to, perm } = step.xlate;
    const phb = (liobn >>> 8) & 0xffff;
    const start = Object.values(state.pes).find((p) => p.phb === phb)!.windows[liobn & 1]!.start;
    const d = decide(state, { type: 'hGetTce', liobn, ioba: start + addr });
    expect(d.ok).toBe(true);
    const tce = BigInt(d.ok ? (d.output.tce as string) : 0);
    expect(tce & 3n).toBe(perm);
    if (perm !== 0n) expect(tce & ~((1n << BigInt(pageShiftOf(liobn))) - 1n)).toBe(to);
    counts.xlate = (counts.xlate ?? 0) + 1;
  }
  expect(invariants(state)).toEqual([]);
  return { state, counts };
}

describe('guest traces replayed through RTAS and the TCE hypercalls', () => {
  it('run1: default window cleared with H_STUFF_TCE, DDW queried and created at 1<<59, RAM mapped with one H_PUT_TCE_INDIRECT', () => {
    const { state, counts } = replayTrace(
      [
        { type: 'addPhb', phb: 0, platform: 'pseries', generation: 'SPAPR', pageShifts },
        { type: 'addDevice', bdf: '0000:00:00.0', ...NVME },
        { type: 'addDevice', bdf: '0000:00:01.0', ...VBLK },
      ],
      readFileSync(new URL('run1-defaultphb/trace.log', traces), 'utf8'),
    );
    expect(counts).toEqual({ hStuffTce: 512, rtasQueryPeDmaWindow: 1, rtasCreatePeDmaWindow: 1, hPutTceIndirect: 1, xlate: 688 });
    // 2 GiB of RAM direct-mapped 1:1 with 128 16M TCEs; the default window holds nothing.
    expect(state.guestTces['0x80000001']).toMatchObject({ pageShift: 24, size: 128, valid: 128 });
    expect(state.guestTces['0x80000000']?.valid ?? 0).toBe(0);
  });

  it('run3: a second PHB without DDW, thousands of H_PUT_TCE / H_PUT_TCE_INDIRECT / H_STUFF_TCE on its 32-bit window', () => {
    const { state, counts } = replayTrace(
      [
        { type: 'addPhb', phb: 0, platform: 'pseries', generation: 'SPAPR', pageShifts },
        { type: 'addPhb', phb: 1, platform: 'pseries', generation: 'SPAPR', pageShifts },
        { type: 'addDevice', bdf: '0000:00:00.0', ...VBLK },
        { type: 'addDevice', bdf: '0001:00:00.0', ...NVME },
      ],
      readFileSync(new URL('run3-phb1-ddw-off/trace.log', traces), 'utf8'),
    );
    expect(counts).toEqual({ hStuffTce: 1077, hPutTceIndirect: 247, hPutTce: 11, xlate: 5004 });
    expect(state.guestTces['0x80000100']).toMatchObject({ pageShift: 12, size: 262144 });
  });
});
