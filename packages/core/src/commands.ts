import type { Prot } from './domain.js';
import type { PhbGeneration, Platform } from './pci.js';

/**
 * Commands the model decides on: the typed, already-parsed form. The orchestrator validates raw JSON
 * into these (zod); core re-checks every domain rule itself.
 */
export type Command =
  | { readonly type: 'addPhb'; readonly phb: number; readonly platform: Platform; readonly generation: PhbGeneration; readonly numPes?: number }
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
  | { readonly type: 'iovaToPhys'; readonly context: string; readonly domain: number; readonly iova: bigint };

export type CommandType = Command['type'];

/** A PCI function as addDevice (and a slot's rescan) describes it. */
export interface DeviceFields {
  readonly bdf: string;
  readonly vendor: number;
  readonly device: number;
  readonly classCode: number;
  readonly bridge?: boolean;
  readonly driver?: string | null;
  readonly totalVfs?: number;
  readonly vfOffset?: number;
  readonly vfStride?: number;
  readonly vfDevice?: number;
}

/** What an accepted command reports back (ids, byte counts, addresses as hex). */
export type Output = Readonly<Record<string, string | number | boolean | null>>;
