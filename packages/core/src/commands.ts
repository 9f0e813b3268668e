import type { PhbOption, WindowSpec } from './ddw.js';
import type { Prot } from './domain.js';
import type { ErsResult, ResetKind } from './eeh.js';
import type { HcallLayer } from './kvm-tce.js';
import type { EehErrSpec } from './vfio-eeh.js';
import type { Range } from './iommufd-ctx.js';
import type { HvFaultCode } from './platform-hv.js';
import type { PhbSpec } from './topology.js';
import type { Json } from './view.js';

/**
 * Commands the model decides on: the typed, already-parsed form. The orchestrator validates raw JSON
 * into these (zod); core re-checks every domain rule itself.
 */
export type Command =
  | ({ readonly type: 'addPhb' } & PhbSpec)
  | ({ readonly type: 'addDevice' } & DeviceFields)
  | { readonly type: 'removeDevice'; readonly bdf: string; readonly surprise?: boolean }
  | { readonly type: 'requestRemoval'; readonly bdf: string }
  | { readonly type: 'setNumVfs'; readonly bdf: string; readonly numVfs: number; readonly vfDriver?: string | null }
  | { readonly type: 'registerSlot'; readonly slot: string; readonly phb: number; readonly bus: number }
  | { readonly type: 'enableSlot'; readonly slot: string; readonly devices?: readonly DeviceFields[] }
  | { readonly type: 'disableSlot'; readonly slot: string; readonly surprise?: boolean }
  | { readonly type: 'unregisterSlot'; readonly slot: string }
  | { readonly type: 'bindDriver'; readonly bdf: string; readonly driver: string }
  | { readonly type: 'unbindDriver'; readonly bdf: string }
  | { readonly type: 'claimDevice'; readonly context: string; readonly bdf: string }
  | { readonly type: 'releaseDevice'; readonly context: string; readonly bdf: string }
  | { readonly type: 'allocPagingDomain'; readonly context: string; readonly bdf: string; readonly pageShift?: number }
  | { readonly type: 'freeDomain'; readonly context: string; readonly domain: number }
  | { readonly type: 'attachDevice'; readonly context: string; readonly domain: number; readonly bdf: string }
  | { readonly type: 'detachDevice'; readonly context: string; readonly bdf: string }
  | {
      readonly type: 'mapPages';
      readonly context: string;
      readonly domain: number;
      readonly iova: bigint;
      readonly paddr: bigint;
      readonly pgsize: bigint;
      readonly pgcount: number;
      readonly prot: Prot;
    }
  | {
      readonly type: 'unmapPages';
      readonly context: string;
      readonly domain: number;
      readonly iova: bigint;
      readonly pgsize: bigint;
      readonly pgcount: number;
    }
  | { readonly type: 'iovaToPhys'; readonly context: string; readonly domain: number; readonly iova: bigint }
  | { readonly type: 'setPhbOption'; readonly phb: number; readonly option: PhbOption; readonly enabled: boolean }
  // iommufd: a context is an open /dev/iommu; ids are the context's object ids.
  | { readonly type: 'iommufdBind'; readonly context: string; readonly bdf: string }
  | { readonly type: 'iommufdUnbind'; readonly context: string; readonly device: number }
  | { readonly type: 'iommufdDestroy'; readonly context: string; readonly id: number }
  | { readonly type: 'iommufdClose'; readonly context: string }
  | { readonly type: 'ioasAlloc'; readonly context: string }
  | {
      readonly type: 'ioasMap';
      readonly context: string;
      readonly ioas: number;
      readonly flags: readonly string[];
      readonly iova?: bigint;
      readonly length: bigint;
      readonly paddr: bigint;
    }
  | { readonly type: 'ioasUnmap'; readonly context: string; readonly ioas: number; readonly iova: bigint; readonly length: bigint }
  | {
      readonly type: 'ioasCopy';
      readonly context: string;
      readonly dstIoas: number;
      readonly srcIoas: number;
      readonly flags: readonly string[];
      readonly dstIova?: bigint;
      readonly srcIova: bigint;
      readonly length: bigint;
    }
  | { readonly type: 'ioasIovaRanges'; readonly context: string; readonly ioas: number; readonly numIovas?: number }
  | { readonly type: 'ioasAllowIovas'; readonly context: string; readonly ioas: number; readonly ranges: readonly Range[] }
  | { readonly type: 'ioasAddReserved'; readonly context: string; readonly ioas: number; readonly start: bigint; readonly length: bigint }
  | {
      readonly type: 'hwptAlloc';
      readonly context: string;
      readonly device: number;
      readonly ptId: number;
      readonly flags?: readonly string[];
      readonly windows?: readonly WindowSpec[];
    }
  | { readonly type: 'deviceAttach'; readonly context: string; readonly device: number; readonly ptId: number }
  | { readonly type: 'deviceReplace'; readonly context: string; readonly device: number; readonly ptId: number }
  | { readonly type: 'deviceDetach'; readonly context: string; readonly device: number }
  | { readonly type: 'getHwInfo'; readonly context: string; readonly device: number }
  // pSeries RTAS calls of the guest kernel (QEMU's answers).
  | { readonly type: 'rtasQueryPeDmaWindow'; readonly phb: number }
  | { readonly type: 'rtasCreatePeDmaWindow'; readonly phb: number; readonly pageShift: number; readonly windowShift: number }
  | { readonly type: 'rtasRemovePeDmaWindow'; readonly liobn: number }
  | { readonly type: 'rtasResetPeDmaWindows'; readonly phb: number }
  // EEH: freezes, the host recovery's steps (driven by the eeh-recovery saga) and the owner's VFIO_EEH_PE_OP.
  /** `at`: event time in ms since the epoch; the orchestrator fills it from its clock when absent. */
  | { readonly type: 'eehFreeze'; readonly bdf: string; readonly cause?: 'inject' | 'access'; readonly at?: number }
  | { readonly type: 'eehReport'; readonly pe: string; readonly phase: 'error_detected' | 'mmio_enabled' | 'slot_reset'; readonly result: ErsResult }
  | { readonly type: 'eehThaw'; readonly pe: string; readonly what: 'mmio' | 'dma' }
  | { readonly type: 'eehReset'; readonly pe: string; readonly kind?: ResetKind }
  | { readonly type: 'eehResume'; readonly pe: string }
  | { readonly type: 'eehFail'; readonly pe: string; readonly reason: string }
  | { readonly type: 'eehHotplugReset'; readonly pe: string }
  | { readonly type: 'vfioEehPeOp'; readonly context: string; readonly op: number; readonly flags?: number; readonly err?: EehErrSpec }
  // The guest's TCE hypercalls (KVM for its tables, else QEMU) and KVM's set-up ioctls; preregistration.
  // `problemState`: the guest made the call from problem state (MSR[PR]=1; hcall-dispatch.ts).
  | { readonly type: 'hPutTce'; readonly liobn: number; readonly ioba: bigint; readonly tce: bigint; readonly layer?: HcallLayer; readonly problemState?: boolean }
  | {
      readonly type: 'hPutTceIndirect';
      readonly liobn: number;
      readonly ioba: bigint;
      /** Guest physical address of the list page, and the TCEs it holds. */
      readonly tceList: bigint;
      readonly tces: readonly bigint[];
      readonly layer?: HcallLayer;
      readonly problemState?: boolean;
    }
  | { readonly type: 'hStuffTce'; readonly liobn: number; readonly ioba: bigint; readonly tce: bigint; readonly npages: number; readonly layer?: HcallLayer; readonly problemState?: boolean }
  | { readonly type: 'hGetTce'; readonly liobn: number; readonly ioba: bigint; readonly layer?: HcallLayer; readonly problemState?: boolean }
  /** Any other hcall opcode: the dispatch answers it (H_PRIVILEGE, H_FUNCTION) or the model cannot say. */
  | { readonly type: 'hcall'; readonly opcode: number; readonly problemState?: boolean }
  | { readonly type: 'kvmCreateSpaprTce'; readonly liobn: number; readonly pageShift: number; readonly offset: bigint; readonly size: bigint }
  | { readonly type: 'kvmSetMemslot'; readonly slot: number; readonly gpa: bigint; readonly size: bigint; readonly ua: bigint }
  | { readonly type: 'kvmLinkGroup'; readonly liobn: number; readonly context: string; readonly group: number }
  | { readonly type: 'registerMemory'; readonly ua: bigint; readonly size: bigint; readonly pageShift?: number }
  | { readonly type: 'unregisterMemory'; readonly ua: bigint; readonly size: bigint }
  // VFIO sPAPR TCE container ioctls (vfio-spapr.ts); `container` names the container and the context it is.
  | { readonly type: 'spaprOpen'; readonly container: string; readonly iommuType: number; readonly memlockPages?: number }
  | { readonly type: 'spaprAttachGroup'; readonly container: string; readonly group: number }
  | { readonly type: 'spaprGetInfo'; readonly container: string }
  | { readonly type: 'spaprEnable'; readonly container: string }
  | { readonly type: 'spaprDisable'; readonly container: string }
  | { readonly type: 'spaprRegisterMemory'; readonly container: string; readonly vaddr: bigint; readonly size: bigint; readonly pageShift?: number; readonly flags?: number }
  | { readonly type: 'spaprUnregisterMemory'; readonly container: string; readonly vaddr: bigint; readonly size: bigint }
  | { readonly type: 'spaprTceCreate'; readonly container: string; readonly pageShift: number; readonly windowSize: bigint; readonly levels: number; readonly flags?: number }
  | { readonly type: 'spaprTceRemove'; readonly container: string; readonly startAddr: bigint }
  | { readonly type: 'spaprMapDma'; readonly container: string; readonly vaddr: bigint; readonly iova: bigint; readonly size: bigint; readonly flags: readonly string[] }
  | { readonly type: 'spaprUnmapDma'; readonly container: string; readonly iova: bigint; readonly size: bigint; readonly flags?: number }
  | { readonly type: 'spaprClose'; readonly container: string }
  // The platform hypervisor of a pSeries partition under PowerVM (platform-hv.ts).
  | { readonly type: 'setIoEntitlement'; readonly bytes: bigint | null }
  | { readonly type: 'injectHcallFault'; readonly phb: number; readonly code: HvFaultCode | null; readonly afterEntries?: number }
  | { readonly type: 'platformHvInfo'; readonly phb: number };

export type CommandType = Command['type'];

/** A PCI function as addDevice (and a slot's rescan) describes it. */
export interface DeviceFields {
  readonly bdf: string;
  readonly vendor: number;
  readonly device: number;
  readonly classCode: number;
  readonly bridge?: boolean;
  readonly driver?: string | null;
  /** SR-IOV capability: TotalVFs (absent: no capability), First VF Offset and VF Stride (default 1), VF Device ID (default: the PF's). */
  readonly totalVfs?: number;
  readonly vfOffset?: number;
  readonly vfStride?: number;
  readonly vfDevice?: number;
}

/** What an accepted command reports back (ids, byte counts, addresses as hex, lists of ranges). */
export type Output = Readonly<Record<string, Json>>;
