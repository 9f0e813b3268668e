import { StoreError, type EventStore, type StoredEvent } from '@iommu-orch/store';
import { asyncScheduler, EMPTY, interval, merge, Observable, type SchedulerLike } from 'rxjs';

export interface SubscribeOptions {
  /** Events per read: the most this subscription ever holds in memory. */
  readonly pageSize?: number;
  /** How often to look for events that other connections or processes appended (ms). */
  readonly pollMs?: number;
  /** Emits when this process committed something, so the read happens at once instead of at the next poll. */
  readonly wake$?: Observable<unknown>;
  readonly scheduler?: SchedulerLike;
}

/**
 * A catch-up subscription: every event after position `after`, history first, then live, in position
 * order, each exactly once.
 *
 * The log is the only source. Live notifications (`wake$`, and the store's own `watch`, which is
 * PostgreSQL's LISTEN/NOTIFY) and the poll only say "look again"; every
 * event is read from the store with `position > last` in pages of `pageSize`. So the switch from
 * history to live cannot lose or repeat an event (there is no second source to reconcile), events that
 * another process appends are found by the poll, and memory is bounded by one page: the next page is
 * read only after the subscriber has taken the previous one. A position that skips ahead (which the
 * store's dense-positions invariant forbids) is reported as an error rather than delivered.
 */
export function subscribeFrom(store: EventStore, after: number, options: SubscribeOptions = {}): Observable<StoredEvent> {
  const pageSize = options.pageSize ?? 500;
  const pollMs = options.pollMs ?? 50;
  return new Observable<StoredEvent>((subscriber) => {
    let last = after;
    let reading = false;
    let lookAgain = false;
    const pump = async (): Promise<void> => {
      if (reading) {
        lookAgain = true;
        return;
      }
      reading = true;
      try {
        do {
          lookAgain = false;
          for (;;) {
            const page = await store.read(last, pageSize);
            for (const e of page) {
              if (subscriber.closed) return;
              if (e.position !== last + 1) throw new StoreError('CORRUPT', `the log went from position ${last} to ${e.position}`);
              last = e.position;
              subscriber.next(e);
            }
            if (page.length < pageSize || subscriber.closed) break;
          }
        } while (lookAgain && !subscriber.closed);
      } catch (e) {
        subscriber.error(e);
      } finally {
        reading = false;
      }
    };
    const wakes = merge(options.wake$ ?? EMPTY, interval(pollMs, options.scheduler ?? asyncScheduler)).subscribe(() => void pump());
    const unwatch = store.watch?.(() => void pump());
    void pump();
    return () => {
      wakes.unsubscribe();
      unwatch?.();
    };
  });
}
