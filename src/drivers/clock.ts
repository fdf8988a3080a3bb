// Driver: a scheduler whose clock reads finer than a millisecond, for the client's pipeline: the
// round trip of a direct path on one LAN is a fraction of a millisecond, which Date.now() (what
// asyncScheduler reads) rounds to 0 or 1. Timers stay asyncScheduler's.
import { performance } from 'node:perf_hooks';
import { asyncScheduler, type SchedulerAction, type SchedulerLike, type Subscription } from 'rxjs';

/** How far the fine clock may drift from Date.now() before it is anchored to it again (NTP steps and slews the wall clock; the monotonic one follows neither). */
const MAX_DRIFT_MS = 1;
/** How often (in monotonic ms) the fine clock compares itself with Date.now(): a read between two checks costs one clock read, not two (it is read on the client's data path). */
const CHECK_EVERY_MS = 1000;

/** Wall-clock time in ms with sub-millisecond resolution: performance.now() anchored to Date.now(), anchored again (at the next read at least checkEveryMs after the last check) whenever they drift more than MAX_DRIFT_MS apart. */
export function fineNow(wall: () => number = Date.now, mono: () => number = () => performance.now(), checkEveryMs = CHECK_EVERY_MS): () => number {
  let offset = wall() - mono();
  let checkAt = mono() + checkEveryMs;
  return () => {
    const m = mono();
    if (m < checkAt) return m + offset;
    checkAt = m + checkEveryMs;
    const w = wall();
    // Date.now() is whole ms: the fine clock may be up to 1 ms ahead of it and still be right.
    if (m + offset < w - MAX_DRIFT_MS || m + offset > w + 1 + MAX_DRIFT_MS) offset = w - m;
    return m + offset;
  };
}

/** asyncScheduler with fineNow() as its clock (timers and their lateness unchanged). */
export function fineScheduler(now: () => number = fineNow()): SchedulerLike {
  return {
    now,
    schedule<T>(work: (this: SchedulerAction<T>, state?: T) => void, delay?: number, state?: T): Subscription {
      return asyncScheduler.schedule(work, delay, state);
    },
  };
}
