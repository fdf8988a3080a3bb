import { Observable, asyncScheduler, type MonoTypeOperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

/** What a retry announcement carries. */
export interface RetryInfo {
  /** Consecutive failed attempts so far (1 for the first retry). */
  readonly attempt: number;
  /** How long until the next attempt. */
  readonly delayMs: number;
  /** The error that ended the attempt, or undefined when it completed. */
  readonly cause: unknown;
}

/** Options of reconnect. */
export interface ReconnectOptions<T> {
  /** Delay after the first failure. */
  readonly initialMs: number;
  /** The delay doubles per consecutive failure up to this bound. */
  readonly maxMs: number;
  /** Turns a retry into a value of the stream (announced before waiting). */
  readonly retrying: (info: RetryInfo) => T;
  /** Values for which this returns true mean the attempt succeeded: the backoff starts over. */
  readonly isProgress?: (value: T) => boolean;
  /** Errors for which this returns true are not retried: the output errors with them. */
  readonly isFatal?: (err: unknown) => boolean;
  /** Errors for which this returns true mean "stay away for a while" (the peer pushed back): the wait is `maxMs` at once (jittered). */
  readonly isPushback?: (err: unknown) => boolean;
  /**
   * For this long after an attempt that made progress ended, the waits stay at `initialMs`
   * (jittered) instead of growing, and do not count toward the growth after it (what was just lost
   * is being replaced: the next attempt may well succeed). Undefined: no such window.
   */
  readonly settleMs?: number;
  /** A number in [0, 1) for jitter; Math.random by default. */
  readonly random?: () => number;
  readonly scheduler?: SchedulerLike;
}

/**
 * Resubscribes to the source forever, whenever an attempt errors (unless fatal) or completes. Before
 * each wait it emits `retrying(info)`. The wait is `min(maxMs, initialMs * 2^(failures-1))` scaled by
 * a jitter factor in [0.5, 1) (`maxMs` at once after a pushback error); a progress value resets the
 * failure count, and for `settleMs` after the attempt that made it ended the waits stay at
 * `initialMs`. Never completes by itself.
 *
 *   attempts: -a#  (2s)  -#  (4s)  -a-p-#  (2s) ...   (initial 2, max 8, no jitter; p = progress)
 *   out:      -ar--------r-----------a-p-r ...        r = retrying
 */
export function reconnect<T>(options: ReconnectOptions<T>): MonoTypeOperatorFunction<T> {
  const { initialMs, maxMs, retrying, isProgress, isFatal, isPushback } = options;
  const random = options.random ?? Math.random;
  const scheduler = options.scheduler ?? asyncScheduler;
  return (source) =>
    new Observable<T>((subscriber) => {
      let failures = 0;
      /** Failures that make the wait grow (those in a settle window do not). */
      let growth = 0;
      /** When the last attempt that made progress ended (the settle window's start). */
      let settledFrom: number | undefined;
      let inner: Subscription | undefined;
      let timer: Subscription | undefined;
      let closed = false;
      const retry = (cause: unknown): void => {
        if (closed) return;
        failures++;
        const settling = settledFrom !== undefined && options.settleMs !== undefined && scheduler.now() - settledFrom < options.settleMs;
        growth = settling ? 1 : growth + 1;
        const base = isPushback?.(cause) === true ? maxMs : Math.min(maxMs, initialMs * 2 ** Math.min(growth - 1, 30));
        const delayMs = Math.round(base * (0.5 + 0.5 * random()));
        subscriber.next(retrying({ attempt: failures, delayMs, cause }));
        // The consumer may have unsubscribed on the announcement: then no timer may outlive it.
        if (closed) return;
        timer = scheduler.schedule(attempt, delayMs);
      };
      const attempt = (): void => {
        timer = undefined;
        let progressed = false;
        const ended = (): void => {
          if (progressed) settledFrom = scheduler.now();
        };
        inner = source.subscribe({
          next(v) {
            if (isProgress?.(v)) {
              failures = 0;
              growth = 0;
              progressed = true;
            }
            subscriber.next(v);
          },
          error(e) {
            ended();
            if (isFatal?.(e)) subscriber.error(e);
            else retry(e);
          },
          complete: () => {
            ended();
            retry(undefined);
          },
        });
        // A value emitted during subscribe may have ended the consumer before `inner` was set.
        if (closed) inner.unsubscribe();
      };
      attempt();
      return () => {
        closed = true;
        inner?.unsubscribe();
        timer?.unsubscribe();
      };
    });
}
