import type { Output } from './commands.js';
import { eehFreeze, eehOf, eehResetAssert, eehResetDeassert, eehThaw, userState } from './eeh.js';
import { fail } from './errors.js';
import type { Group, State } from './state.js';
import type { Tx } from './tx.js';

/**
 * VFIO_EEH_PE_OP (ppc-platform.md 5.8): the owner of passed-through PEs drives their recovery. The
 * ioctl is a container's: it runs on the PE of each group the context owns, in group-id order, and
 * stops at the first non-zero return, GET_STATE's positive state included. The return is `ret`.
 */
export const VFIO_EEH_PE_OPS = [
  'DISABLE', 'ENABLE', 'UNFREEZE_IO', 'UNFREEZE_DMA', 'GET_STATE', 'RESET_DEACTIVATE', 'RESET_HOT', 'RESET_FUNDAMENTAL', 'CONFIGURE', 'INJECT_ERR',
] as const;

/** EEH_ERR_FUNC_MIN..MAX and the two error types (32- and 64-bit address). */
const ERR_FUNC_MAX = 19;

export interface EehErrSpec {
  readonly type: number;
  readonly func: number;
  readonly addr: bigint;
  readonly mask: bigint;
}

export interface VfioEehPeOp {
  readonly context: string;
  readonly op: number;
  readonly flags?: number;
  readonly err?: EehErrSpec;
}

export function ownedGroups(state: State, context: string): Group[] {
  return Object.values(state.groups).filter((g) => g.owner === context).sort((a, b) => a.id - b.id);
}

export function vfioEehPeOp(tx: Tx, req: VfioEehPeOp): Output {
  if ((req.flags ?? 0) !== 0) fail('EINVAL', `flags ${req.flags} must be 0`);
  if (!Number.isInteger(req.op) || req.op < 0 || req.op >= VFIO_EEH_PE_OPS.length) fail('EINVAL', `unknown EEH PE op ${req.op}`);
  if (req.op === 9) {
    const e = req.err ?? fail('EINVAL', 'INJECT_ERR needs the err fields (argsz too small)');
    if (e.func < 0 || e.func > ERR_FUNC_MAX) fail('EINVAL', `error function ${e.func} is outside 0..${ERR_FUNC_MAX}`);
    if (e.type !== 0 && e.type !== 1) fail('EINVAL', `error type ${e.type} is neither 32-bit (0) nor 64-bit (1)`);
  }
  const groups = ownedGroups(tx.state, req.context);
  if (groups.length === 0) fail('ENODEV', `context ${req.context} holds no group with a PE`);
  let ret = 0;
  for (const g of groups) {
    ret = peOp(tx, g, req.op);
    if (ret !== 0) break;
  }
  return { op: VFIO_EEH_PE_OPS[req.op]!, ret };
}

function peOp(tx: Tx, g: Group, op: number): number {
  const pe = g.pe;
  switch (VFIO_EEH_PE_OPS[op]) {
    case 'DISABLE':
    case 'CONFIGURE':
      return 0;
    case 'ENABLE': {
      // eeh_dev_open's ownership check: a frozen PE is thawed before the owner gets it.
      const rec = eehOf(tx.state, pe);
      if (rec.mmioFrozen) eehThaw(tx, pe, 'mmio');
      if (rec.dmaFrozen) eehThaw(tx, pe, 'dma');
      return 0;
    }
    case 'UNFREEZE_IO':
      eehThaw(tx, pe, 'mmio');
      return 0;
    case 'UNFREEZE_DMA':
      eehThaw(tx, pe, 'dma');
      return 0;
    case 'GET_STATE':
      return userState(tx.state, pe);
    case 'RESET_DEACTIVATE':
      eehResetDeassert(tx, pe);
      return 0;
    case 'RESET_HOT':
      eehResetAssert(tx, pe, 'hot');
      return 0;
    case 'RESET_FUNDAMENTAL':
      eehResetAssert(tx, pe, 'fundamental');
      return 0;
    case 'INJECT_ERR':
      // The injected error freezes the PE; the host leaves a passed-through PE to its owner.
      eehFreeze(tx, tx.state.pes[pe]!.devices.find((b) => tx.state.devices[b]!.group === g.id)!, 'inject', undefined);
      return 0;
    default:
      return fail('EINVAL', `unknown EEH PE op ${op}`);
  }
}
