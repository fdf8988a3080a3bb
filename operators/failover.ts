import { Observable, type Subscription } from 'rxjs';

/** What a move to the next candidate announces. */
export interface MoveInfo {
  /** The candidate whose attempt ended without progress. */
  readonly from: number;
  /** The candidate tried next. */
  readonly to: number;
  /** The error that ended the attempt, or undefined when it completed. */
  readonly cause: unknown;
}

/** Options of failover. */
export interface FailoverOptions<T> {
  /** Values for which this returns true mean the candidate took the attempt (a session joined): its end ends the round. */
  readonly isProgress: (value: T) => boolean;
  /** Errors for which this returns true pass the round to the next candidate; any other ends the round at once. */
  readonly movesOn: (err: unknown) => boolean;
  /** Turns a move into a value of the stream (announced before the next attempt starts). */
  readonly moving: (info: MoveInfo) => T;
}

/**
 * One round over `count` candidates: subscribes to `attempt(i)` for i = start, start + 1, ... (wrapping
 * around), one at a time, each at most once, with no wait between them. An attempt that ends without
 * a progress value, with a completion or an error that `movesOn`, hands the round to the next
 * candidate (announced by `moving`); the last candidate's end, an error that does not move on, and the
 * end of an attempt that made progress end the round the same way (error or completion). Nothing
 * when `count` is 0 (completes).
 *
 *   attempts: 0: -#   1: -#   2: -p--#        (start 0; p = progress)
 *   out:      -m-m-p--#                      m = moving
 */
export function failover<T>(count: number, start: number, attempt: (index: number) => Observable<T>, options: FailoverOptions<T>): Observable<T> {
  return new Observable<T>((subscriber) => {
    let inner: Subscription | undefined;
    /** The attempt running now (an attempt that ends during its own subscribe starts the next one in it). */
    let current = -1;
    const first = count === 0 ? 0 : ((start % count) + count) % count;
    const run = (k: number): void => {
      const index = (first + k) % count;
      current = k;
      let progressed = false;
      const ended = (cause: unknown, failed: boolean): void => {
        const last = k + 1 >= count;
        if (progressed || last || (failed && !options.movesOn(cause))) {
          if (failed) subscriber.error(cause);
          else subscriber.complete();
          return;
        }
        const to = (first + k + 1) % count;
        subscriber.next(options.moving({ from: index, to, cause }));
        // The consumer may have unsubscribed on the announcement.
        if (!subscriber.closed) run(k + 1);
      };
      const sub = attempt(index).subscribe({
        next(v) {
          if (options.isProgress(v)) progressed = true;
          subscriber.next(v);
        },
        error: (e: unknown) => ended(e, true),
        complete: () => ended(undefined, false),
      });
      if (current === k) inner = sub;
      // A value emitted during subscribe may have ended the consumer before `inner` was set.
      if (subscriber.closed) sub.unsubscribe();
    };
    if (count === 0) subscriber.complete();
    else run(0);
    return () => {
      inner?.unsubscribe();
    };
  });
}
