import { fail } from './errors.js';
import { destroyHwpt } from './hwpt.js';
import { unbindDevice } from './idevice.js';
import { destroyIoas } from './ioas.js';
import { devicesOn, dropContext, findObject, objectsOf } from './iommufd-ctx.js';
import type { State } from './state.js';
import type { Tx } from './tx.js';

/**
 * IOMMU_DESTROY and closing /dev/iommu.
 * Destroy: ENOENT for an id that is not there (0 never is); EBUSY while something depends on the
 * object. Close destroys everything, leaves first: devices (detach, release), HWPTs, IOASes.
 */
export type IommufdCtxEvent = { readonly type: 'IommufdClosed'; readonly data: { readonly context: string } };

export function destroyObject(tx: Tx, context: string, id: number): void {
  const obj = findObject(tx.state, context, id) ?? fail('ENOENT', `context ${context} has no object ${id}`);
  switch (obj.kind) {
    case 'device':
      return fail('EBUSY', `DEVICE ${id} is held by its VFIO device file: unbind it`);
    case 'hwpt': {
      const users = devicesOn(tx.state, context, id);
      if (users.length > 0) fail('EBUSY', `HWPT ${id} is attached to DEVICE ${users.map((d) => d.id).join(', ')}`);
      return destroyHwpt(tx, context, id);
    }
    case 'ioas':
      return destroyIoas(tx, context, obj);
  }
}

export function closeContext(tx: Tx, context: string): void {
  if (!tx.state.iommufd[context]) fail('EBADF', `context ${context} has no open /dev/iommu`);
  for (const kind of ['device', 'hwpt', 'ioas'] as const) {
    for (const obj of objectsOf(tx.state, context)) {
      if (obj.kind !== kind) continue;
      if (obj.kind === 'device') unbindDevice(tx, context, obj.id);
      else if (findObject(tx.state, context, obj.id)) destroyObject(tx, context, obj.id);
    }
  }
  tx.emit({ type: 'IommufdClosed', data: { context } });
}

export function evolveIommufdCtx(state: State, event: IommufdCtxEvent): State {
  return dropContext(state, event.data.context);
}
