import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command, DeviceFields } from '@iommu-orch/core';
import { z } from 'zod';
import { COMMAND_SCHEMAS, deviceFields, formatIssues, InputError, parseCommand } from '../command-schema.js';

/**
 * The host a stress run works on (format: docs/stress.md): PHBs, devices present at boot outside any
 * hotplug slot (root ports, onboard devices), and pnv_php slots, each with the card that can sit in it
 * and whether it is there at boot. Cards are what hot-add plugs back in after a removal.
 */
const device = z.strictObject(deviceFields);
export const stressTopologySchema = z.strictObject({
  name: z.string().min(1),
  description: z.string().optional(),
  phbs: z.array(COMMAND_SCHEMAS.addPhb.omit({ type: true })).min(1),
  devices: z.array(device).default([]),
  slots: z
    .array(
      z.strictObject({
        slot: z.string().min(1).max(64),
        phb: z.number().int(),
        bus: z.number().int(),
        populated: z.boolean().default(false),
        card: z.array(device).min(1),
      }),
    )
    .default([]),
});
export type StressTopology = z.infer<typeof stressTopologySchema>;

export interface StressSlot {
  readonly slot: string;
  /** The card's functions as typed addDevice fields. */
  readonly card: readonly DeviceFields[];
}

/** The topology shipped with the package: a POWER9 host with multifunction cards and a ConnectX-5. */
export function defaultTopologyPath(): string {
  return fileURLToPath(new URL('../../topologies/power9.json', import.meta.url));
}

export function loadTopology(file: string): StressTopology {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new InputError(`cannot read topology ${file}: ${why}`);
  }
  const r = stressTopologySchema.safeParse(raw);
  if (!r.success) throw new InputError(`${file}: ${formatIssues(r.error)}`);
  return r.data;
}

/** The commands that build the topology: PHBs, boot devices, then each slot registered and, if populated, enabled. */
export function bootCommands(t: StressTopology): Command[] {
  const raw: unknown[] = [
    ...t.phbs.map((p) => ({ type: 'addPhb', ...p })),
    ...t.devices.map((d) => ({ type: 'addDevice', ...d })),
    ...t.slots.flatMap((s) => [
      { type: 'registerSlot', slot: s.slot, phb: s.phb, bus: s.bus },
      ...(s.populated ? [{ type: 'enableSlot', slot: s.slot, devices: s.card }] : []),
    ]),
  ];
  return raw.map((r) => parseCommand(r));
}

/** Each slot with its card as typed device fields (what enableSlot takes). */
export function stressSlots(t: StressTopology): StressSlot[] {
  return t.slots.map((s) => {
    const enable = parseCommand({ type: 'enableSlot', slot: s.slot, devices: s.card });
    return { slot: s.slot, card: enable.type === 'enableSlot' ? (enable.devices ?? []) : [] };
  });
}
