import { Observable, asyncScheduler, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

/** What summarizeRepeats lets through: an event as it came, or how many of a key's events it held back. */
export type Repeated<T, K> =
  | { readonly kind: 'event'; readonly event: T }
  | { readonly kind: 'held'; readonly key: K; readonly count: number; readonly last: T };

/**
 * Rate-limits repeated events for logs: an event whose key has no open window passes at once and
 * opens a window of `periodMs`; the key's further events in the window are only counted. At the
 * window's end one `held` summary with their count follows and a new window opens at once, so a
 * steady flood gives one summary per period; a window that held nothing closes silently, and the
 * key's next event passes at once again. On completion the held counts are emitted at once. Each
 * open window holds one timer: keys must be few (reasons, not addresses).
 *
 *   events: -a-a-a--a----------a-|    (period 5, a is a key)
 *   out:    -a----A----B-------a-|    A = held a ×2, B = held a ×1
 */
export function summarizeRepeats<T, K>(keyOf: (event: T) => K, periodMs: number, scheduler: SchedulerLike = asyncScheduler): OperatorFunction<T, Repeated<T, K>> {
  return (source) =>
    new Observable<Repeated<T, K>>((subscriber) => {
      const open = new Map<K, { count: number; last: T | undefined; timer: Subscription }>();
      const openWindow = (key: K): void => {
        const timer = scheduler.schedule(() => {
          const w = open.get(key);
          open.delete(key);
          if (w === undefined || w.count === 0) return;
          subscriber.next({ kind: 'held', key, count: w.count, last: w.last as T });
          openWindow(key);
        }, periodMs);
        open.set(key, { count: 0, last: undefined, timer });
      };
      const inner = source.subscribe({
        next(event) {
          const key = keyOf(event);
          const w = open.get(key);
          if (w === undefined) {
            openWindow(key);
            subscriber.next({ kind: 'event', event });
          } else {
            w.count++;
            w.last = event;
          }
        },
        error: (e) => subscriber.error(e),
        complete() {
          for (const [key, w] of open) {
            w.timer.unsubscribe();
            if (w.count > 0) subscriber.next({ kind: 'held', key, count: w.count, last: w.last as T });
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
