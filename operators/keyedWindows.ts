import { Observable, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

/** How keyedWindows folds one key's events: S is a window's state, R what it emits. */
export interface WindowFold<T, K, S, R> {
  readonly keyOf: (event: T) => K;
  /** A new window's state (empty: the event that opened it comes to `add` next); `chained`: it follows a window whose end emitted. */
  readonly start: (chained: boolean) => S;
  /** Folds an event into its key's window; returns what to emit at once, if anything. */
  readonly add: (state: S, event: T) => R | undefined;
  /** What a window emits when it ends (its period is over, or the source completed), if anything. */
  readonly end: (key: K, state: S) => R | undefined;
  /** After a window whose end emitted, open the key's next window at once (a flood then ends one window per period). */
  readonly chain: boolean;
}

/**
 * Per-key time windows for rate-limited reporting: an event of a key without an open window opens
 * one of `periodMs` (time from `scheduler`); `fold` says what the window keeps and emits. On
 * completion the open windows end at once, in the order they opened; on error or unsubscription
 * they are dropped with their timers.
 *
 *   events: -a-a-a--b------|    (period 5, a and b are keys)
 *   ends:   ------A------B-|    each window ends once, `fold.end` decides what it emits
 */
export function keyedWindows<T, K, S, R>(periodMs: number, scheduler: SchedulerLike, fold: WindowFold<T, K, S, R>): OperatorFunction<T, R> {
  return (source) =>
    new Observable<R>((subscriber) => {
      const open = new Map<K, { state: S; timer: Subscription }>();
      const emit = (r: R | undefined): void => {
        if (r !== undefined) subscriber.next(r);
      };
      const openWindow = (key: K, chained: boolean): { state: S; timer: Subscription } => {
        const timer = scheduler.schedule(() => {
          const w = open.get(key);
          open.delete(key);
          if (w === undefined) return;
          const r = fold.end(key, w.state);
          emit(r);
          if (r !== undefined && fold.chain) openWindow(key, true);
        }, periodMs);
        const w = { state: fold.start(chained), timer };
        open.set(key, w);
        return w;
      };
      const inner = source.subscribe({
        next(event) {
          const key = fold.keyOf(event);
          emit(fold.add((open.get(key) ?? openWindow(key, false)).state, event));
        },
        error: (e) => subscriber.error(e),
        complete() {
          for (const [key, w] of open) {
            w.timer.unsubscribe();
            emit(fold.end(key, w.state));
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
