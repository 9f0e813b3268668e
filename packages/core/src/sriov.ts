import { fail } from './errors.js';
import { requireDevice } from './group.js';
import { formatBdf, type Bdf } from './pci.js';
import { allocatePeRun, createPe } from './pe.js';
import { removeFunction, routingId } from './topology.js';
import type { Tx } from './tx.js';
import { setDefaultConfig } from './window.js';

/**
 * SR-IOV: writing a PF's sriov_numvfs (drivers/pci/iov.c) and, on PowerNV, the per-VF PEs of
 * pci-sriov.c (ppc-platform.md 6.2).
 *
 * The checks run in the kernel's order: more than TotalVFs is ERANGE; the current count is a no-op; a
 * PF without a driver (or whose driver has no sriov_configure) is ENOENT; a non-zero count while VFs
 * are enabled is EBUSY (write 0 first). Enabling gives every VF a PE of its own, all from one
 * contiguous run of PE numbers (pnv_ioda_alloc_pe(phb, num_vfs); none free is EBUSY), and with it a
 * TCE table with the kernel's default windows and a new IOMMU group, so VFs of one PF can belong to
 * different contexts. Disabling removes every VF, last first, and releases their PEs; a VF a context
 * still holds makes it EBUSY, because the kernel's removal waits for the owner (the orchestrator's
 * SR-IOV disable saga asks owners to release, then writes 0).
 *
 * Invariants: a PF's `sriov.vfs` lists exactly the devices whose `pf` is that PF, at most TotalVFs of
 * them; every VF sits in its own VF PE.
 */
export function setNumVfs(tx: Tx, bdf: Bdf, numVfs: number, vfDriver: string | null | undefined): void {
  const pf = requireDevice(tx.state, bdf);
  const cap = pf.sriov ?? fail('ENOENT', `${bdf} has no SR-IOV capability (no sriov_numvfs)`);
  if (!Number.isInteger(numVfs) || numVfs < 0) fail('EINVAL', `numVfs must be a non-negative integer, got ${numVfs}`);
  if (numVfs > cap.totalVfs) fail('ERANGE', `${bdf}: ${numVfs} VFs requested, TotalVFs is ${cap.totalVfs}`);
  const current = cap.vfs.length;
  if (numVfs === current) return;
  if (pf.driver === null) fail('ENOENT', `${bdf} has no driver bound; cannot configure SR-IOV`);
  if (numVfs === 0) {
    for (const vf of [...cap.vfs].reverse()) removeFunction(tx, vf, false);
    return;
  }
  if (current !== 0) fail('EBUSY', `${bdf}: ${current} VFs already enabled; disable before enabling ${numVfs}`);
  if (pf.removalRequested) fail('ENODEV', `${bdf} is being removed`);
  const phb = tx.state.phbs[pf.phb]!;
  if (phb.platform !== 'powernv') fail('ENXIO', `PHB ${pf.phb} is not a PowerNV IODA2/IODA3 PHB: the model enables SR-IOV on PowerNV only`);
  const firstPe = allocatePeRun(tx.state, phb, numVfs) ?? fail('EBUSY', `PHB ${pf.phb}: unable to allocate ${numVfs} contiguous PEs`);
  const base = routingId(bdf) + cap.vfOffset;
  for (let n = 0; n < numVfs; n++) {
    const rid = base + n * cap.vfStride;
    const vf = formatBdf({ domain: pf.phb, bus: rid >> 8, device: (rid >> 3) & 0x1f, fn: rid & 7 });
    if (tx.state.devices[vf]) fail('EEXIST', `VF ${n} of ${bdf} would be ${vf}, which is taken`);
    const pe = createPe(tx, phb, firstPe + n, rid >> 8, vf);
    const group = tx.state.nextGroupId;
    tx.emit({ type: 'GroupCreated', data: { group, pe: pe.id } });
    setDefaultConfig(tx, tx.state.pes[pe.id]!);
    tx.emit({
      type: 'DeviceAdded',
      data: {
        bdf: vf, vendor: pf.vendor, device: cap.vfDevice, classCode: pf.classCode, bridge: false,
        driver: vfDriver === undefined ? pf.driver : vfDriver, pe: pe.id, group, pf: bdf,
      },
    });
  }
}
