import { EVENT_SCHEMA_VERSION, type IommuEvent } from '@iommu-orch/core';
import type { NewEvent } from '@iommu-orch/store';

/**
 * The rows one accepted command appends: event ids are `<stream>:<version>`, every event carries the
 * command's time, id and type. Used by the orchestrator and the stress runner alike, so their logs have
 * one shape.
 */
export function eventBatch(
  streamId: string,
  version: number,
  events: readonly IommuEvent[],
  meta: { readonly time: string; readonly commandType: string; readonly commandId?: string | undefined },
): NewEvent[] {
  const metadata = { time: meta.time, commandId: meta.commandId ?? `${streamId}:${version + 1}`, commandType: meta.commandType };
  return events.map((e, i) => ({ eventId: `${streamId}:${version + 1 + i}`, type: e.type, schemaVersion: EVENT_SCHEMA_VERSION, data: e.data, metadata }));
}
