import { fail } from './errors.js';

/**
 * PCI addressing and PHB generations.
 * A device address is `dddd:bb:dd.f` (PCI domain, bus, device 0-31, function 0-7), lower-case hex.
 * On PowerNV the PCI domain number is the PHB's global number.
 */
export type Bdf = string;

export interface PciAddress {
  readonly domain: number;
  readonly bus: number;
  readonly device: number;
  readonly fn: number;
}

const BDF_RE = /^([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/;

/** Parses `dddd:bb:dd.f`; EINVAL on anything else (device numbers above 0x1f included). */
export function parseBdf(text: string): PciAddress {
  const m = BDF_RE.exec(text);
  if (!m) fail('EINVAL', `bad PCI address "${text}": expected dddd:bb:dd.f`);
  const [, d, b, s, f] = m;
  const device = parseInt(s!, 16);
  if (device > 0x1f) fail('EINVAL', `bad PCI address "${text}": device number ${device} is above 0x1f`);
  return { domain: parseInt(d!, 16), bus: parseInt(b!, 16), device, fn: parseInt(f!, 10) };
}

export function formatBdf(a: PciAddress): Bdf {
  const h = (n: number, w: number) => n.toString(16).padStart(w, '0');
  return `${h(a.domain, 4)}:${h(a.bus, 2)}:${h(a.device, 2)}.${a.fn}`;
}

/** Canonical (lower-case) form of a user-supplied address. */
export function normalizeBdf(text: string): Bdf {
  return formatBdf(parseBdf(text));
}

export type Platform = 'powernv' | 'pseries';

/**
 * PHB3 = POWER8 IODA2, PHB4 = POWER9, PHB5 = POWER10 (skiboot); SPAPR = the QEMU sPAPR PHB a pseries
 * guest sees. Page sizes are log2 shifts (ppc-platform.md 2.3 and 3.4).
 */
export type PhbGeneration = 'PHB3' | 'PHB4' | 'PHB5' | 'SPAPR';

export const PHB_PAGE_SHIFTS: Readonly<Record<PhbGeneration, readonly number[]>> = {
  PHB3: [12, 16, 24, 28],
  PHB4: [12, 16, 21, 30],
  PHB5: [12, 16, 21, 30],
  SPAPR: [12, 16],
};

export const PLATFORM_GENERATIONS: Readonly<Record<Platform, readonly PhbGeneration[]>> = {
  powernv: ['PHB3', 'PHB4', 'PHB5'],
  pseries: ['SPAPR'],
};

/** 24-bit class code 0x0604xx: a PCI-to-PCI bridge (root ports and switch ports report it too). */
export function isBridgeClass(classCode: number): boolean {
  return classCode >> 8 === 0x0604;
}
