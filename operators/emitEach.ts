import { Observable, type OperatorFunction } from 'rxjs';

/**
 * Maps each value to an array and emits its elements in order, synchronously: what
 * `mergeMap(fn)` does for a function that returns an array, without an inner subscription per
 * value (a session's pipeline runs it once per frame, and every idle member keeps one).
 * Errors thrown by `fn` go to the subscriber.
 *
 *   in:  -a--b-|      fn: a → [1, 2], b → []
 *   out: -(12)--|
 */
export function emitEach<T, R>(fn: (value: T) => readonly R[]): OperatorFunction<T, R> {
  return (source) =>
    new Observable<R>((subscriber) =>
      source.subscribe({
        next(value) {
          let out: readonly R[];
          try {
            out = fn(value);
          } catch (err) {
            subscriber.error(err);
            return;
          }
          for (const r of out) {
            if (subscriber.closed) return;
            subscriber.next(r);
          }
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      }),
    );
}
