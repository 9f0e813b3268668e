import type { Prot } from './domain.js';
import { fail } from './errors.js';
import type { Bdf } from './pci.js';
import { drop, patch, put, type State } from './state.js';
import { fromHex, toHex, type Hex } from './u64.js';

/**
 * An iommufd context (an open /dev/iommu) and its object table (drivers/iommu/iommufd/main.c).
 *
 * - Object ids are per context and come from an ALLOC1 xarray: the lowest free id from 1, so 0 is
 *   never valid and a destroyed id is given out again by the next allocation.
 * - A context opens with its first object and is gone after iommufdClose.
 * - IOMMU_DESTROY: ENOENT for an id that is not there, EBUSY while anything depends on the object
 *   (an IOAS with a HWPT; an attached HWPT; a DEVICE, which only unbind destroys).
 * - A lookup for one kind that finds another kind is ENOENT, as iommufd_get_object does.
 */
export interface IommufdContext {
  readonly objects: Readonly<Record<string, IommufdObject>>;
}

export type IommufdObject = Ioas | Hwpt | IDevice;
export type ObjectKind = IommufdObject['kind'];

/** An inclusive IOVA range. */
export interface Range {
  readonly start: bigint;
  readonly last: bigint;
}

/** A range as events carry it. */
export type RangeData = { readonly start: Hex; readonly last: Hex };

export function rangeData(r: Range): RangeData {
  return { start: toHex(r.start), last: toHex(r.last) };
}

export function rangeOf(r: RangeData): Range {
  return { start: fromHex(r.start), last: fromHex(r.last) };
}

/** A mapping of pinned memory: [iova, last] -> paddr... with the permissions the map asked for. */
export interface Area {
  readonly iova: bigint;
  readonly last: bigint;
  /** Physical address of the first byte: the model's memory has no user page tables. */
  readonly paddr: bigint;
  readonly prot: Prot;
  /** Whether the pinned pages are writable (pinned for a WRITEABLE map); COPY keeps it. */
  readonly pagesWritable: boolean;
}

export type ReservedOwner =
  | { readonly kind: 'hwpt'; readonly id: number }
  | { readonly kind: 'device'; readonly id: number }
  | { readonly kind: 'test' };

export interface Reserved extends Range {
  readonly owner: ReservedOwner;
}

/** An IO address space (io_pagetable): areas, reserved ranges, the allowed list, and its HWPTs. */
export interface Ioas {
  readonly kind: 'ioas';
  readonly id: number;
  /** Sorted by IOVA, never overlapping. */
  readonly areas: readonly Area[];
  readonly reserved: readonly Reserved[];
  /** Sorted, never overlapping; empty means no restriction. */
  readonly allowed: readonly Range[];
  /** The HWPT_PAGING objects whose domains this IOAS fills, in the order they were added. */
  readonly hwpts: readonly number[];
}

/** A HWPT_PAGING: a paging domain (core state) filled from one IOAS. */
export interface Hwpt {
  readonly kind: 'hwpt';
  readonly id: number;
  readonly ioas: number;
  readonly domain: number;
  /** Made by attaching a device to an IOAS; destroyed with its last device. */
  readonly auto: boolean;
}

/** A DEVICE bound to the context (VFIO_DEVICE_BIND_IOMMUFD): owns its device's DMA. */
export interface IDevice {
  readonly kind: 'device';
  readonly id: number;
  readonly bdf: Bdf;
  /** The HWPT the device is attached to, if any. */
  readonly hwpt: number | null;
}

type ByKind = { ioas: Ioas; hwpt: Hwpt; device: IDevice };

export function objectsOf(state: State, context: string): readonly IommufdObject[] {
  return Object.values(state.iommufd[context]?.objects ?? {});
}

export function findObject(state: State, context: string, id: number): IommufdObject | undefined {
  return state.iommufd[context]?.objects[id];
}

/** iommufd_get_object: ENOENT for a missing id, and for an object of another kind. */
export function requireObject<K extends ObjectKind>(state: State, context: string, id: number, kind: K): ByKind[K] {
  const obj = findObject(state, context, id);
  if (!obj || obj.kind !== kind) fail('ENOENT', `context ${context} has no ${kind === 'device' ? 'DEVICE' : kind.toUpperCase()} object ${id}`);
  return obj as ByKind[K];
}

/** The id the next object of the context gets: the lowest free one from 1 (xa_alloc, ALLOC1). */
export function nextObjectId(state: State, context: string): number {
  const objects = state.iommufd[context]?.objects ?? {};
  let id = 1;
  while (objects[id]) id++;
  return id;
}

/** Evolve helper: the context with `obj` stored (the context opens with its first object). */
export function putObject(state: State, context: string, obj: IommufdObject): State {
  const ctx = state.iommufd[context] ?? { objects: {} };
  return patch(state, { iommufd: put(state.iommufd, context, { objects: put(ctx.objects, obj.id, obj) }) });
}

export function dropObject(state: State, context: string, id: number): State {
  const ctx = state.iommufd[context]!;
  return patch(state, { iommufd: put(state.iommufd, context, { objects: drop(ctx.objects, id) }) });
}

export function dropContext(state: State, context: string): State {
  return patch(state, { iommufd: drop(state.iommufd, context) });
}

/** Evolve helper for an object known to exist with the given kind. */
export function objectAt<K extends ObjectKind>(state: State, context: string, id: number, _kind: K): ByKind[K] {
  return state.iommufd[context]!.objects[id] as ByKind[K];
}

/** The DEVICE object bound to `bdf`, in whichever context holds it. */
export function boundDevice(state: State, bdf: Bdf): { context: string; device: IDevice } | undefined {
  for (const [context, ctx] of Object.entries(state.iommufd)) {
    for (const obj of Object.values(ctx.objects)) if (obj.kind === 'device' && obj.bdf === bdf) return { context, device: obj };
  }
  return undefined;
}

/** The HWPT whose domain is `domain`, in whichever context holds it. */
export function hwptOfDomain(state: State, domain: number): { context: string; hwpt: Hwpt } | undefined {
  for (const [context, ctx] of Object.entries(state.iommufd)) {
    for (const obj of Object.values(ctx.objects)) if (obj.kind === 'hwpt' && obj.domain === domain) return { context, hwpt: obj };
  }
  return undefined;
}

/** Devices of the context attached to `hwpt`. */
export function devicesOn(state: State, context: string, hwpt: number): IDevice[] {
  return objectsOf(state, context).filter((o): o is IDevice => o.kind === 'device' && o.hwpt === hwpt);
}

/**
 * The raw kernel-level commands (claim, alloc, attach, map, ...) work on objects iommufd does not
 * manage. A domain behind a HWPT, or a device bound to a context, belongs to iommufd: changing them
 * underneath it would leave the IOAS and the hardware disagreeing, so those commands are EBUSY.
 */
export function refuseIfIommufdDomain(state: State, domain: number): void {
  const owner = hwptOfDomain(state, domain);
  if (owner) fail('EBUSY', `domain ${domain} belongs to HWPT ${owner.hwpt.id} of iommufd context ${owner.context}`);
}

export function refuseIfIommufdDevice(state: State, bdf: Bdf): void {
  const owner = boundDevice(state, bdf);
  if (owner) fail('EBUSY', `${bdf} is bound to iommufd context ${owner.context} as DEVICE ${owner.device.id}`);
}
