import { Observable, asyncScheduler, interval, type OperatorFunction, type SchedulerLike } from 'rxjs';

/**
 * Mirrors the source and adds `tick` every `periodMs` while the source is active; stops ticking when
 * the source completes or errors (and mirrors that).
 *
 *   source: -a-------b---|    (period 4)
 *   out:    -a--t---tb--t|
 */
export function keepalive<T, K>(periodMs: number, tick: K, scheduler: SchedulerLike = asyncScheduler): OperatorFunction<T, T | K> {
  return (source) =>
    new Observable<T | K>((subscriber) => {
      const ticks = interval(periodMs, scheduler).subscribe(() => subscriber.next(tick));
      const inner = source.subscribe({
        next: (v) => subscriber.next(v),
        error: (e) => subscriber.error(e),
        complete: () => subscriber.complete(),
      });
      return () => {
        ticks.unsubscribe();
        inner.unsubscribe();
      };
    });
}
