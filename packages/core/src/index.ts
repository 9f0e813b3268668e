/**
 * @iommu-orch/core: the pure domain model of the PPC64 sPAPR TCE IOMMU.
 * decide(state, command) -> events | typed error; evolve(state, event) -> state; invariants(state).
 */
export type { Command, CommandType, DeviceFields, Output } from './commands.js';
export { decide, type Decision } from './decide.js';
export { evolve, fold } from './evolve.js';
export { EVENT_SCHEMA_VERSION, EVENT_TYPES, isEventType, type IommuEvent, type IommuEventType } from './events.js';
export { ERRNO_CODES, HCALL_CODES, IommuError, RTAS_CODES, type ErrnoCode, type ErrorCode, type HcallCode, type RtasCode } from './errors.js';
export { invariants, invariantsAfter, type Violation } from './invariants.js';
export {
  formatBdf, isBridgeClass, normalizeBdf, parseBdf, PHB_PAGE_SHIFTS, PLATFORM_GENERATIONS,
  type Bdf, type PciAddress, type PhbGeneration, type Platform,
} from './pci.js';
export { slotDevices } from './slot.js';
export { decodeState, decodeValue, encodeState, encodeValue, SNAPSHOT_FORMAT } from './snapshot-codec.js';
export { initialState } from './state.js';
export type {
  Device, DomainRef, DomainWindow, Group, PagingDomain, Pe, PeId, Phb, Slot, SlotState, Sriov, State, TableGroup, TableRef, Window,
} from './state.js';
export {
  TCE_PCI_READ, TCE_PCI_WRITE, tceAllocatedBytes, tceClearRange, tceFirstValid, tceGet, tceLeafBases, tceRuns, tceTableCreate,
  tcePermBits, tcePermName, tceValidRun, tceWriteRange,
  tceWriteRun, type TcePerm, type TceRun, type TceTable,
} from './tce-table.js';
export { transientSession, withTransientTables, type TransientSession } from './transient.js';
export type { Prot } from './domain.js';
export { domainIovaToPhys, windowAt } from './domain.js';
export { dma64Start, resolveWindows, SPAPR_LARGEST_BLOCK, TVE1_4GB_BASE, type PhbOption, type WindowData, type WindowSpec } from './ddw.js';
export { HOST_PAGE_SHIFT, MAX_TABLE_LEVELS, pnvTableBytes, pnvTableGeometry, pnvTableSizeBound, type TableGeometry } from './tce-levels.js';
export { MAP_FLAGS } from './ioas.js';
export { deviceReservedRegions } from './idevice.js';
export { liobn } from './rtas.js';
export { upcast, UPCASTERS, type Upcaster, type UpcasterRegistry } from './upcast.js';
export type { Area, Hwpt, IDevice, Ioas, IommufdContext, IommufdObject, Range, Reserved, ReservedOwner } from './iommufd-ctx.js';
export { fromHex, parseU64, toHex, U64_MAX, type Hex } from './u64.js';
export { canonicalJson, canonicalState, domainMappings, domainRefView, stateView, tableRefView, type Json, type MappingView } from './view.js';
export { BYPASS_BASE } from './window.js';
export {
  EEH_FREEZE_WINDOW_MS, EEH_MAX_FREEZES, EEH_PE_CFG_BLOCKED, EEH_PE_ISOLATED, EEH_PE_RECOVERING, EEH_PE_REMOVED, EEH_PE_RESET, eehOf,
  eehPeType, ERS_RESULTS, mergeErsResult, passedThrough, userState,
  type EehPe, type EehPeType, type ErsResult, type ResetKind, type ResetScope,
} from './eeh.js';
export { VFIO_EEH_PE_OPS, type EehErrSpec } from './vfio-eeh.js';
export { guestTces, liobnKey, MAX_INDIRECT_TCES } from './guest-tce.js';
export type { HcallLayer, KvmLink, KvmTceTable, Memslot } from './kvm-tce.js';
export type { Prereg } from './prereg.js';
export { HCALL_STATUS, HV_FAULT_CODES, type HcallFault, type HvFaultCode, type Hypervisor, type PlatformHv } from './platform-hv.js';
export { lockedPages, VFIO_SPAPR_TCE_IOMMU, VFIO_SPAPR_TCE_V2_IOMMU, type SpaprContainer, type SpaprGroupEntry } from './vfio-spapr.js';
