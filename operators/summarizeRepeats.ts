import { asyncScheduler, type OperatorFunction, type SchedulerLike } from 'rxjs';
import { keyedWindows } from './keyedWindows.js';

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
  return keyedWindows<T, K, { count: number; last: T | undefined }, Repeated<T, K>>(periodMs, scheduler, {
    keyOf,
    start: () => ({ count: 0, last: undefined }),
    add(held, event, opened) {
      if (opened) return { kind: 'event', event };
      held.count++;
      held.last = event;
      return undefined;
    },
    end: (key, held) => (held.count === 0 ? undefined : { kind: 'held', key, count: held.count, last: held.last as T }),
    chain: true,
  });
}
