// A store: the latest state of a reducer over events, read synchronously (the packet path reads the
// hub's membership per packet), with the changes as a stream for the effects that follow them
// (ROUTES pushed to members, kernel routes, the lease file, status events). Pure: no I/O.
import { Subject, type Observable } from 'rxjs';

/** One change: the state before, the events applied, the state after. */
export interface Change<S, E> {
  readonly before: S;
  readonly events: readonly E[];
  readonly after: S;
}

/** The latest state of a reducer, and its changes. */
export interface Store<S, E> {
  /** The state after every event dispatched so far. */
  readonly state: S;
  /** Applies `events` in order (synchronously); emits one change when there were any. */
  dispatch(events: readonly E[]): void;
  /** Every change, as it happens (hot). Completes with complete(). */
  readonly changes$: Observable<Change<S, E>>;
  /** Ends changes$ (the owner's teardown). */
  complete(): void;
}

/** A store starting at `initial` that folds events with `reduce` (which must not change the state it is given). */
export function createStore<S, E>(initial: S, reduce: (state: S, event: E) => S): Store<S, E> {
  let state = initial;
  const changes = new Subject<Change<S, E>>();
  return {
    get state() {
      return state;
    },
    dispatch(events) {
      if (events.length === 0) return;
      const before = state;
      for (const e of events) state = reduce(state, e);
      changes.next({ before, events, after: state });
    },
    changes$: changes.asObservable(),
    complete: () => changes.complete(),
  };
}
