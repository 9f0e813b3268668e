import type { EehPe } from './eeh.js';
import type { IommufdContext } from './iommufd-ctx.js';
import type { KvmTceTable, Memslot } from './kvm-tce.js';
import type { Hypervisor, PlatformHv } from './platform-hv.js';
import type { Prereg } from './prereg.js';
import type { SpaprContainer } from './vfio-spapr.js';
import type { Bdf, PhbGeneration, Platform } from './pci.js';
import type { TceTable } from './tce-table.js';
import { isOwned, own } from './transient.js';

/**
 * The whole modelled host: the fold of every event so far. Plain immutable records keyed by string
 * ids, so a state can be kept, compared and serialised at any point of the log.
 *
 * Cross-object invariants are written in invariants.ts; each object file states its own.
 */
export interface State {
  /** Number of events folded in: the aggregate version. */
  readonly version: number;
  readonly phbs: Readonly<Record<string, Phb>>;
  readonly devices: Readonly<Record<Bdf, Device>>;
  readonly pes: Readonly<Record<PeId, Pe>>;
  readonly groups: Readonly<Record<string, Group>>;
  readonly domains: Readonly<Record<string, PagingDomain>>;
  /** Hotplug slots (pnv_php), by name. */
  readonly slots: Readonly<Record<string, Slot>>;
  /**
   * Bytes each user context has pinned through its mappings: every valid TCE of a context's domains
   * pins one IOMMU page. Kept apart from the tables so that a domain freed with live TCEs shows as a
   * leak (invariants.ts compares the two).
   */
  readonly pinned: Readonly<Record<string, bigint>>;
  /**
   * Bytes each context left pinned for good: TCEs whose clear the platform hypervisor refused when
   * their table went away (TcesLeaked, platform-hv.ts). No longer in any table, so not in `pinned`;
   * nothing in the model ends them (the key outlives the container).
   */
  readonly leakedPinned: Readonly<Record<string, bigint>>;
  /** Next iommu_group id (global, in probe order, from 0 like the kernel's ida). */
  readonly nextGroupId: number;
  /** Next paging domain id (from 1: 0 is never a valid object id). */
  readonly nextDomainId: number;
  /** Start of window slot 1 on PHBs configured away from 1<<59 (TVE#1 at 4 GiB); absent = 1<<59. */
  readonly dma64Base: Readonly<Record<string, bigint>>;
  /** iommufd contexts (open /dev/iommu files) by name, each with its object table. */
  readonly iommufd: Readonly<Record<string, IommufdContext>>;
  /** EEH bookkeeping per PE (eeh.ts): present from a PE's first freeze until the PE is released. */
  readonly eeh: Readonly<Record<PeId, EehPe>>;
  /** Guest-visible TCE tables by LIOBN (hex): QEMU's PHB windows and KVM's tables (guest-tce.ts). */
  readonly guestTces: Readonly<Record<string, TceTable>>;
  /** KVM's in-kernel TCE tables by LIOBN (hex), and the guest's memslots by slot id (kvm-tce.ts). */
  readonly kvmTables: Readonly<Record<string, KvmTceTable>>;
  readonly memslots: Readonly<Record<string, Memslot>>;
  /** Memory the guest process preregistered for VFIO/KVM (prereg.ts). */
  readonly prereg: readonly Prereg[];
  /** VFIO sPAPR TCE containers by name (vfio-spapr.ts); each is the context owning its group. */
  readonly spapr: Readonly<Record<string, SpaprContainer>>;
  /** The platform hypervisor of the partition the pSeries PHBs belong to (platform-hv.ts). */
  readonly platformHv: PlatformHv;
}

export interface Phb {
  /** PCI domain number; on PowerNV the PHB's global number. */
  readonly domain: number;
  readonly platform: Platform;
  readonly generation: PhbGeneration;
  /** PEs the PHB supports (256 or 512 on PowerNV; 1 on pSeries, where the PHB is one table group). */
  readonly numPes: number;
  /** Supported IOMMU page sizes as log2 shifts. */
  readonly pageShifts: readonly number[];
  /** pSeries: the hypervisor that answers the partition's TCE hcalls and RTAS calls; null on PowerNV. */
  readonly hypervisor: Hypervisor | null;
}

export interface Device {
  readonly bdf: Bdf;
  readonly phb: number;
  readonly bus: number;
  readonly vendor: number;
  readonly device: number;
  readonly classCode: number;
  readonly bridge: boolean;
  /**
   * Kernel driver using the DMA API (holds the group's default domain), or null when unbound or bound
   * to a driver that manages DMA itself (vfio-pci): those claim ownership instead.
   */
  readonly driver: string | null;
  readonly pe: PeId;
  /** iommu_group id; null for bridges, which get no group. */
  readonly group: number | null;
  /** A virtual function's physical function; null for every other device. */
  readonly pf: Bdf | null;
  /** A physical function's SR-IOV capability; null when the device has none. */
  readonly sriov: Sriov | null;
  /**
   * An orderly removal was requested and waits for the owner to release the device (vfio's request()).
   * No new claim or driver probe is accepted meanwhile; the owner may still use what it holds.
   */
  readonly removalRequested: boolean;
}

/** SR-IOV extended capability of a PF. VF n (from 0) has routing ID PF + vfOffset + n * vfStride. */
export interface Sriov {
  readonly totalVfs: number;
  readonly vfOffset: number;
  readonly vfStride: number;
  /** VF device id (the capability's VF Device ID). */
  readonly vfDevice: number;
  /** The VFs present, in VF-number order: sriov_numvfs is their count. */
  readonly vfs: readonly Bdf[];
}

/**
 * pnv_php slot states: INITIALIZED becomes REGISTERED at registration, POPULATED once enabled with a
 * card present, OFFLINE once deregistered. A slot serves one bus of its PHB.
 */
export type SlotState = 'registered' | 'populated' | 'offline';

export interface Slot {
  readonly name: string;
  readonly phb: number;
  readonly bus: number;
  readonly state: SlotState;
}

/** PowerNV: `domain<phb>-pe<hex>`, the kernel's group name. pSeries: one PE per PHB. */
export type PeId = string;

export interface TableGroup {
  readonly tce32Start: bigint;
  readonly tce32Size: bigint;
  readonly pageShifts: readonly number[];
  readonly maxDynamicWindows: number;
  readonly maxLevels: number;
}

/**
 * What a window translates through: a kernel table (the default configuration, or on pSeries a
 * dynamic window the guest kernel created with ibm,create-pe-dma-window: `dynamic`), or a paging
 * domain's table.
 */
export type TableRef =
  | { readonly kind: 'kernel'; readonly dynamic?: boolean }
  | { readonly kind: 'domain'; readonly domain: number };

/** A programmed DMA window (a TVE on PowerNV): bus range [start, start+size-1] through a table. */
export interface Window {
  readonly start: bigint;
  readonly size: bigint;
  readonly pageShift: number;
  readonly table: TableRef;
}

export interface Pe {
  readonly id: PeId;
  readonly phb: number;
  readonly number: number;
  /** The bus this PE serves; null on pSeries where the PE is the whole PHB. */
  readonly bus: number | null;
  /** A VF PE (PowerNV SR-IOV) serves this one VF and no bus; null for bus and PHB PEs. */
  readonly vf: Bdf | null;
  /** Every device of the PE, bridges included, in the order they were added. */
  readonly devices: readonly Bdf[];
  readonly group: number | null;
  readonly tableGroup: TableGroup;
  /** Two slots (IOMMU_TABLE_GROUP_MAX_TABLES): slot 0 at tce32_start, slot 1 at 1<<59. */
  readonly windows: readonly [Window | null, Window | null];
  /** PowerNV real-mode bypass on TVE#1 (kernel default config only). */
  readonly bypass: boolean;
}

export type DomainRef =
  | { readonly type: 'platform' }
  | { readonly type: 'blocked' }
  | { readonly type: 'paging'; readonly id: number };

export interface Group {
  readonly id: number;
  readonly pe: PeId;
  /** Non-bridge devices (bridges stay with the host). */
  readonly devices: readonly Bdf[];
  /** User context owning DMA (iommufd ctx / VFIO container), or null for the kernel. */
  readonly owner: string | null;
  /** Devices the owner has claimed (iommu_device_claim_dma_owner); owner is null iff this is empty. */
  readonly claimed: readonly Bdf[];
  readonly domain: DomainRef;
  /** Devices attached to the group's paging domain; non-empty iff domain is paging. */
  readonly attached: readonly Bdf[];
}

/** One window of a paging domain: a TCE table behind one slot of the table group. */
export interface DomainWindow {
  readonly slot: 0 | 1;
  /** Aperture: first and last (inclusive) mappable bus address. */
  readonly start: bigint;
  readonly last: bigint;
  /** Table levels (1-5 on PowerNV, 1 on pSeries): decides the kernel's allocation, not the translation. */
  readonly levels: number;
  readonly table: TceTable;
}

export interface PagingDomain {
  readonly id: number;
  readonly context: string;
  /** The group (and so the table group) this domain was allocated for; attach checks it. */
  readonly group: number;
  readonly pe: PeId;
  /**
   * One or two windows, one per slot, in slot order. The domain's apertures are the windows' ranges;
   * its pgsize_bitmap is the union of their page sizes.
   */
  readonly windows: readonly DomainWindow[];
}

export const initialState: State = {
  version: 0,
  phbs: {},
  devices: {},
  pes: {},
  groups: {},
  domains: {},
  slots: {},
  pinned: {},
  leakedPinned: {},
  nextGroupId: 0,
  nextDomainId: 1,
  dma64Base: {},
  iommufd: {},
  eeh: {},
  guestTces: {},
  kvmTables: {},
  memslots: {},
  prereg: [],
  spapr: {},
  platformHv: { entitlement: null, faults: {} },
};

/**
 * Record helpers for persistent updates; keys keep their insertion order. A record or State the open
 * transient scope owns (transient.ts) is written in place; any other is copied, and the copy is owned.
 */
export function put<V>(record: Readonly<Record<string, V>>, key: string | number, value: V): Readonly<Record<string, V>> {
  if (isOwned(record)) {
    (record as Record<string, V>)[key] = value;
    return record;
  }
  return own({ ...record, [key]: value });
}

export function drop<V>(record: Readonly<Record<string, V>>, key: string | number): Readonly<Record<string, V>> {
  if (isOwned(record)) {
    delete (record as Record<string, V>)[key];
    return record;
  }
  const { [key]: _removed, ...rest } = record;
  return own(rest);
}

/** The state with `changes`: what `{ ...state, ...changes }` gives, without the copy when the scope owns it. */
export function patch(state: State, changes: Partial<State>): State {
  if (isOwned(state)) return Object.assign(state, changes);
  return own({ ...state, ...changes });
}

export function without<T>(list: readonly T[], item: T): readonly T[] {
  return list.filter((x) => x !== item);
}
