import { Observable, asyncScheduler, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import { addDrops, type DropCounts } from './types.js';

/** Drops attributed to one key (a member, or the hub itself). */
export interface DropReport<K> {
  readonly key: K;
  readonly drops: DropCounts;
}

/**
 * Rate-limits drop reporting for logs: the first report for a key opens a window of `periodMs`;
 * reports for that key during the window are added up; at the window's end one summary with the
 * totals is emitted. So at most one summary per key per period, never one per packet. On completion
 * the open windows are emitted at once.
 *
 *   reports: -a-a-a--b------|    (period 5, a and b are keys)
 *   out:     ------A------B-|    A = sum of a's three reports, B = b's
 */
export function summarizeDrops<K>(periodMs: number, scheduler: SchedulerLike = asyncScheduler): OperatorFunction<DropReport<K>, DropReport<K>> {
  return (source) =>
    new Observable<DropReport<K>>((subscriber) => {
      const open = new Map<K, { drops: DropCounts; timer: Subscription }>();
      const inner = source.subscribe({
        next({ key, drops }) {
          let w = open.get(key);
          if (w === undefined) {
            const timer = scheduler.schedule(() => {
              const done = open.get(key);
              open.delete(key);
              if (done) subscriber.next({ key, drops: done.drops });
            }, periodMs);
            w = { drops: {}, timer };
            open.set(key, w);
          }
          addDrops(w.drops, drops);
        },
        error: (e) => subscriber.error(e),
        complete() {
          for (const [key, w] of open) {
            w.timer.unsubscribe();
            subscriber.next({ key, drops: w.drops });
          }
          open.clear();
          subscriber.complete();
        },
      });
      return () => {
        inner.unsubscribe();
        for (const w of open.values()) w.timer.unsubscribe();
        open.clear();
      };
    });
}
