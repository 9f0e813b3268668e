import { ERS_RESULTS, HV_FAULT_CODES, parseU64, type Command, type CommandType } from '@iommu-orch/core';
import { z } from 'zod';

/**
 * The command table's input side: raw JSON -> typed core Command. Unknown fields are refused (strict
 * objects), u64 values are a safe integer or a decimal/hex string. Domain rules stay in core; this
 * only guarantees shapes and types.
 */
const u64 = z.union([z.string(), z.number(), z.bigint()]).transform((v, ctx) => {
  const n = typeof v === 'bigint' ? (v >= 0n && v < 1n << 64n ? v : null) : parseU64(v);
  if (n === null) {
    ctx.addIssue({ code: 'custom', message: `not a 64-bit unsigned value: ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return n;
});
/** A PCI id: an integer or a hex string ("0x1014"). */
const pciId = z.union([
  z.number().int(),
  z.string().regex(/^0x[0-9a-fA-F]+$/, 'expected a hex string like "0x1014"').transform((v) => parseInt(v, 16)),
]);
const bdf = z.string().min(1);
const context = z.string().min(1).max(64);
const id = z.number().int().nonnegative();
const count = z.number().int().positive();
/** JSON form "r" | "w" | "rw", or the typed form { read, write }. */
const prot = z.union([
  z.enum(['r', 'w', 'rw']).transform((p) => ({ read: p.includes('r'), write: p.includes('w') })),
  z.strictObject({ read: z.boolean(), write: z.boolean() }),
]);

/** The fields of one PCI function (addDevice, a slot's card, a stress topology). */
export const deviceFields = {
  bdf,
  vendor: pciId,
  device: pciId,
  classCode: pciId,
  bridge: z.boolean().optional(),
  driver: z.string().min(1).nullable().optional(),
  totalVfs: z.number().int().optional(),
  vfOffset: z.number().int().optional(),
  vfStride: z.number().int().optional(),
  vfDevice: pciId.optional(),
};
const slotName = z.string().min(1).max(64);
/** iommufd flag names (FIXED_IOVA, READABLE, ...): core refuses unknown ones with EOPNOTSUPP, as the kernel does. */
const flags = z.array(z.string().min(1));
const range = z.strictObject({ start: u64, last: u64 });
/** HWPT-allocation window data; core checks the values (EINVAL/ENOMEM), as the driver would. */
const windowSpec = z.strictObject({ window: z.number().int(), pageShift: z.number().int(), size: u64, levels: z.number().int() });
/** RTAS arguments are 32-bit cells. */
const shift = z.number().int().nonnegative().max(0xffff_ffff);
const peId = z.string().min(1);
/** Which hypercall handler answers; absent: KVM for its own tables, else QEMU. */
const layer = z.enum(['kvm', 'qemu']).optional();
/** The guest made the hcall from problem state (MSR[PR]=1). */
const problemState = z.boolean().optional();
const u32 = u64.refine((v) => v <= 0xffff_ffffn, 'not a 32-bit value').transform((v) => Number(v));

export const COMMAND_SCHEMAS = {
  addPhb: z.strictObject({
    type: z.literal('addPhb'),
    phb: z.number().int(),
    platform: z.enum(['powernv', 'pseries']),
    generation: z.enum(['PHB3', 'PHB4', 'PHB5', 'SPAPR']),
    numPes: z.number().int().optional(),
    pageShifts: z.array(z.number().int()).min(1).optional(),
    hypervisor: z.enum(['qemu', 'powervm']).optional(),
  }),
  addDevice: z.strictObject({ type: z.literal('addDevice'), ...deviceFields }),
  removeDevice: z.strictObject({ type: z.literal('removeDevice'), bdf, surprise: z.boolean().optional() }),
  requestRemoval: z.strictObject({ type: z.literal('requestRemoval'), bdf }),
  setNumVfs: z.strictObject({
    type: z.literal('setNumVfs'), bdf, numVfs: z.number().int().nonnegative(), vfDriver: z.string().min(1).nullable().optional(),
  }),
  registerSlot: z.strictObject({ type: z.literal('registerSlot'), slot: slotName, phb: z.number().int(), bus: z.number().int() }),
  enableSlot: z.strictObject({ type: z.literal('enableSlot'), slot: slotName, devices: z.array(z.strictObject(deviceFields)).optional() }),
  disableSlot: z.strictObject({ type: z.literal('disableSlot'), slot: slotName, surprise: z.boolean().optional() }),
  unregisterSlot: z.strictObject({ type: z.literal('unregisterSlot'), slot: slotName }),
  bindDriver: z.strictObject({ type: z.literal('bindDriver'), bdf, driver: z.string().min(1) }),
  unbindDriver: z.strictObject({ type: z.literal('unbindDriver'), bdf }),
  claimDevice: z.strictObject({ type: z.literal('claimDevice'), context, bdf }),
  releaseDevice: z.strictObject({ type: z.literal('releaseDevice'), context, bdf }),
  allocPagingDomain: z.strictObject({ type: z.literal('allocPagingDomain'), context, bdf, pageShift: z.number().int().optional() }),
  freeDomain: z.strictObject({ type: z.literal('freeDomain'), context, domain: id }),
  attachDevice: z.strictObject({ type: z.literal('attachDevice'), context, domain: id, bdf }),
  detachDevice: z.strictObject({ type: z.literal('detachDevice'), context, bdf }),
  mapPages: z.strictObject({
    type: z.literal('mapPages'), context, domain: id, iova: u64, paddr: u64, pgsize: u64, pgcount: count, prot,
  }),
  unmapPages: z.strictObject({ type: z.literal('unmapPages'), context, domain: id, iova: u64, pgsize: u64, pgcount: count }),
  iovaToPhys: z.strictObject({ type: z.literal('iovaToPhys'), context, domain: id, iova: u64 }),
  setPhbOption: z.strictObject({ type: z.literal('setPhbOption'), phb: z.number().int(), option: z.enum(['tve1-4gb']), enabled: z.boolean() }),
  iommufdBind: z.strictObject({ type: z.literal('iommufdBind'), context, bdf }),
  iommufdUnbind: z.strictObject({ type: z.literal('iommufdUnbind'), context, device: id }),
  iommufdDestroy: z.strictObject({ type: z.literal('iommufdDestroy'), context, id }),
  iommufdClose: z.strictObject({ type: z.literal('iommufdClose'), context }),
  ioasAlloc: z.strictObject({ type: z.literal('ioasAlloc'), context }),
  ioasMap: z.strictObject({ type: z.literal('ioasMap'), context, ioas: id, flags, iova: u64.optional(), length: u64, paddr: u64 }),
  ioasUnmap: z.strictObject({ type: z.literal('ioasUnmap'), context, ioas: id, iova: u64, length: u64 }),
  ioasCopy: z.strictObject({
    type: z.literal('ioasCopy'), context, dstIoas: id, srcIoas: id, flags, dstIova: u64.optional(), srcIova: u64, length: u64,
  }),
  ioasIovaRanges: z.strictObject({ type: z.literal('ioasIovaRanges'), context, ioas: id, numIovas: z.number().int().nonnegative().optional() }),
  ioasAllowIovas: z.strictObject({ type: z.literal('ioasAllowIovas'), context, ioas: id, ranges: z.array(range) }),
  ioasAddReserved: z.strictObject({ type: z.literal('ioasAddReserved'), context, ioas: id, start: u64, length: u64 }),
  hwptAlloc: z.strictObject({
    type: z.literal('hwptAlloc'), context, device: id, ptId: id, flags: flags.optional(), windows: z.array(windowSpec).optional(),
  }),
  deviceAttach: z.strictObject({ type: z.literal('deviceAttach'), context, device: id, ptId: id }),
  deviceReplace: z.strictObject({ type: z.literal('deviceReplace'), context, device: id, ptId: id }),
  deviceDetach: z.strictObject({ type: z.literal('deviceDetach'), context, device: id }),
  getHwInfo: z.strictObject({ type: z.literal('getHwInfo'), context, device: id }),
  rtasQueryPeDmaWindow: z.strictObject({ type: z.literal('rtasQueryPeDmaWindow'), phb: z.number().int() }),
  rtasCreatePeDmaWindow: z.strictObject({ type: z.literal('rtasCreatePeDmaWindow'), phb: z.number().int(), pageShift: shift, windowShift: shift }),
  rtasRemovePeDmaWindow: z.strictObject({ type: z.literal('rtasRemovePeDmaWindow'), liobn: u32 }),
  rtasResetPeDmaWindows: z.strictObject({ type: z.literal('rtasResetPeDmaWindows'), phb: z.number().int() }),
  eehFreeze: z.strictObject({
    type: z.literal('eehFreeze'), bdf, cause: z.enum(['inject', 'access']).optional(),
    at: z.union([z.iso.datetime().transform((t) => Date.parse(t)), z.number().int().nonnegative()]).optional(),
  }),
  eehReport: z.strictObject({
    type: z.literal('eehReport'), pe: peId, phase: z.enum(['error_detected', 'mmio_enabled', 'slot_reset']), result: z.enum(ERS_RESULTS),
  }),
  eehThaw: z.strictObject({ type: z.literal('eehThaw'), pe: peId, what: z.enum(['mmio', 'dma']) }),
  eehReset: z.strictObject({ type: z.literal('eehReset'), pe: peId, kind: z.enum(['hot', 'fundamental']).optional() }),
  eehResume: z.strictObject({ type: z.literal('eehResume'), pe: peId }),
  eehFail: z.strictObject({ type: z.literal('eehFail'), pe: peId, reason: z.string().min(1) }),
  eehHotplugReset: z.strictObject({ type: z.literal('eehHotplugReset'), pe: peId }),
  hPutTce: z.strictObject({ type: z.literal('hPutTce'), liobn: u32, ioba: u64, tce: u64, layer, problemState }),
  hPutTceIndirect: z.strictObject({ type: z.literal('hPutTceIndirect'), liobn: u32, ioba: u64, tceList: u64, tces: z.array(u64), layer, problemState }),
  hStuffTce: z.strictObject({ type: z.literal('hStuffTce'), liobn: u32, ioba: u64, tce: u64, npages: z.number().int().nonnegative(), layer, problemState }),
  hGetTce: z.strictObject({ type: z.literal('hGetTce'), liobn: u32, ioba: u64, layer, problemState }),
  hcall: z.strictObject({ type: z.literal('hcall'), opcode: u32, problemState }),
  kvmCreateSpaprTce: z.strictObject({ type: z.literal('kvmCreateSpaprTce'), liobn: u32, pageShift: z.number().int(), offset: u64, size: u64 }),
  kvmSetMemslot: z.strictObject({ type: z.literal('kvmSetMemslot'), slot: id, gpa: u64, size: u64, ua: u64 }),
  kvmLinkGroup: z.strictObject({ type: z.literal('kvmLinkGroup'), liobn: u32, context, group: id }),
  registerMemory: z.strictObject({ type: z.literal('registerMemory'), ua: u64, size: u64, pageShift: z.number().int().optional() }),
  unregisterMemory: z.strictObject({ type: z.literal('unregisterMemory'), ua: u64, size: u64 }),
  spaprOpen: z.strictObject({ type: z.literal('spaprOpen'), container: context, iommuType: z.number().int(), memlockPages: z.number().int().nonnegative().optional() }),
  spaprAttachGroup: z.strictObject({ type: z.literal('spaprAttachGroup'), container: context, group: id }),
  spaprGetInfo: z.strictObject({ type: z.literal('spaprGetInfo'), container: context }),
  spaprEnable: z.strictObject({ type: z.literal('spaprEnable'), container: context }),
  spaprDisable: z.strictObject({ type: z.literal('spaprDisable'), container: context }),
  spaprRegisterMemory: z.strictObject({
    type: z.literal('spaprRegisterMemory'), container: context, vaddr: u64, size: u64, pageShift: z.number().int().optional(), flags: z.number().int().optional(),
  }),
  spaprUnregisterMemory: z.strictObject({ type: z.literal('spaprUnregisterMemory'), container: context, vaddr: u64, size: u64 }),
  spaprTceCreate: z.strictObject({
    type: z.literal('spaprTceCreate'), container: context, pageShift: z.number().int(), windowSize: u64, levels: z.number().int(), flags: z.number().int().optional(),
  }),
  spaprTceRemove: z.strictObject({ type: z.literal('spaprTceRemove'), container: context, startAddr: u64 }),
  spaprMapDma: z.strictObject({ type: z.literal('spaprMapDma'), container: context, vaddr: u64, iova: u64, size: u64, flags }),
  spaprUnmapDma: z.strictObject({ type: z.literal('spaprUnmapDma'), container: context, iova: u64, size: u64, flags: z.number().int().optional() }),
  spaprClose: z.strictObject({ type: z.literal('spaprClose'), container: context }),
  setIoEntitlement: z.strictObject({ type: z.literal('setIoEntitlement'), bytes: u64.nullable() }),
  injectHcallFault: z.strictObject({
    type: z.literal('injectHcallFault'), phb: z.number().int(), code: z.enum(HV_FAULT_CODES).nullable(), afterEntries: z.number().int().nonnegative().optional(),
  }),
  platformHvInfo: z.strictObject({ type: z.literal('platformHvInfo'), phb: z.number().int() }),
  vfioEehPeOp: z.strictObject({
    type: z.literal('vfioEehPeOp'), context, op: z.number().int(), flags: z.number().int().optional(),
    err: z.strictObject({ type: z.number().int(), func: z.number().int(), addr: u64, mask: u64 }).optional(),
  }),
} satisfies Record<CommandType, z.ZodType>;

export const commandSchema = z.discriminatedUnion('type', Object.values(COMMAND_SCHEMAS) as unknown as [
  (typeof COMMAND_SCHEMAS)[CommandType],
  ...(typeof COMMAND_SCHEMAS)[CommandType][],
]);

export class InputError extends Error {
  override readonly name = 'InputError';
}

/** Parses one raw command; InputError names the offending field. */
export function parseCommand(raw: unknown): Command {
  if (typeof raw === 'object' && raw !== null && 'type' in raw && typeof raw.type === 'string' && !(raw.type in COMMAND_SCHEMAS)) {
    throw new InputError(`unknown command type "${raw.type}" (known: ${Object.keys(COMMAND_SCHEMAS).join(', ')})`);
  }
  const result = commandSchema.safeParse(raw);
  if (!result.success) throw new InputError(formatIssues(result.error));
  return result.data as Command;
}

export function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const where = i.path.length ? i.path.join('.') : '(command)';
      return `${where}: ${i.message}`;
    })
    .join('; ');
}
