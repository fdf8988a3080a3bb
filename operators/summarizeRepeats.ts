import { asyncScheduler, type OperatorFunction, type SchedulerLike } from 'rxjs';
import { keyedWindows } from './keyedWindows.js';

/** What summarizeRepeats lets through: an event as it came, or how many of a key's events it held back. */
export type Repeated<T, K> =
  | { readonly kind: 'event'; readonly event: T }
  | { readonly kind: 'held'; readonly key: K; readonly count: number; readonly last: T };

/**
 * Rate-limits repeated events for logs: an event whose key has no open window opens one of
 * `periodMs`; the first `burst` events of the window pass at once, the key's further events in it
 * are only counted. At the window's end one `held` summary with their count follows and a quiet
 * window opens at once, which passes nothing and only counts, so a steady flood gives one summary
 * per period; a window that held nothing closes silently, and the key's next event opens a fresh
 * one. On completion the held counts are emitted at once. Each open window holds one timer: keys
 * must be few (reasons, not addresses).
 *
 *   events: -a-a-a--a----------a-|    (period 5, burst 1, a is a key)
 *   out:    -a----A----B-------a-|    A = held a ×2, B = held a ×1
 */
export function summarizeRepeats<T, K>(keyOf: (event: T) => K, periodMs: number, burst: number, scheduler: SchedulerLike = asyncScheduler): OperatorFunction<T, Repeated<T, K>> {
  return keyedWindows<T, K, { pass: number; count: number; last: T | undefined }, Repeated<T, K>>(periodMs, scheduler, {
    keyOf,
    start: (chained) => ({ pass: chained ? 0 : burst, count: 0, last: undefined }),
    add(window, event) {
      if (window.pass > 0) {
        window.pass--;
        return { kind: 'event', event };
      }
      window.count++;
      window.last = event;
      return undefined;
    },
    end: (key, window) => (window.count === 0 ? undefined : { kind: 'held', key, count: window.count, last: window.last as T }),
    chain: true,
  });
}
