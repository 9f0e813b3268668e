import type { IommufdObject, Reserved } from './iommufd-ctx.js';
import type { State } from './state.js';
import { toHex } from './u64.js';
import type { Json } from './view.js';

/** The iommufd contexts as JSON, objects in id order: part of the canonical state view. */
export function iommufdView(state: State): Json {
  return Object.entries(state.iommufd).map(([context, ctx]) => ({
    context,
    objects: Object.values(ctx.objects).sort((a, b) => a.id - b.id).map(objectView),
  }));
}

function objectView(o: IommufdObject): Json {
  switch (o.kind) {
    case 'ioas':
      return {
        id: o.id, kind: 'ioas', hwpts: [...o.hwpts],
        areas: o.areas.map((a) => ({
          iova: toHex(a.iova), last: toHex(a.last), paddr: toHex(a.paddr),
          prot: `${a.prot.read ? 'r' : ''}${a.prot.write ? 'w' : ''}`, pagesWritable: a.pagesWritable,
        })),
        reserved: o.reserved.map((r) => ({ start: toHex(r.start), last: toHex(r.last), owner: ownerView(r) })),
        allowed: o.allowed.map((r) => ({ start: toHex(r.start), last: toHex(r.last) })),
      };
    case 'hwpt':
      return { id: o.id, kind: 'hwpt', ioas: o.ioas, domain: o.domain, auto: o.auto };
    case 'device':
      return { id: o.id, kind: 'device', bdf: o.bdf, hwpt: o.hwpt };
  }
}

function ownerView(r: Reserved): string {
  return r.owner.kind === 'test' ? 'test' : `${r.owner.kind}:${r.owner.id}`;
}
