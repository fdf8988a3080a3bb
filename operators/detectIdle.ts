import { Observable, asyncScheduler, type MonoTypeOperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

/** The peer sent nothing for the whole timeout. */
export class IdleError extends Error {
  override readonly name = 'IdleError';
  constructor(readonly timeoutMs: number) {
    super(`peer silent for ${timeoutMs / 1000} s`);
  }
}

/**
 * Mirrors the source; errors with IdleError when `timeoutMs` pass (from subscription or from the
 * last value) without a value. The timer re-arms lazily: each value records the time, and an expiring
 * timer re-schedules itself for the remainder, so a busy stream costs no timer work per value.
 *
 *   source: -a-b-----------c   (timeout 5)
 *   out:    -a-b----#
 */
export function detectIdle<T>(timeoutMs: number, scheduler: SchedulerLike = asyncScheduler): MonoTypeOperatorFunction<T> {
  return (source) =>
    new Observable<T>((subscriber) => {
      let last = scheduler.now();
      // Only the pending timer is referenced (and released by the teardown): adding each one to the
      // subscriber would keep every expired timer alive for as long as the session lasts.
      let timer: Subscription | undefined;
      const arm = (delay: number): void => {
        timer = scheduler.schedule(() => {
          const silent = scheduler.now() - last;
          if (silent >= timeoutMs) subscriber.error(new IdleError(timeoutMs));
          else arm(timeoutMs - silent);
        }, delay);
      };
      arm(timeoutMs);
      const inner = source.subscribe({
        next(v) {
          last = scheduler.now();
          subscriber.next(v);
        },
        error: (e) => subscriber.error(e),
        complete: () => subscriber.complete(),
      });
      return () => {
        inner.unsubscribe();
        timer?.unsubscribe();
      };
    });
}
