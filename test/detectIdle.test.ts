// detectIdle (operators/detectIdle.ts): errors when the peer is silent for the whole timeout.
import test from 'ava';
import { interval, map, take, type SchedulerAction, type SchedulerLike, type Subscription } from 'rxjs';
import { IdleError, detectIdle } from '../operators/detectIdle.js';
import { marbles as runMarbles, recordingScheduler } from './helpers/marbles.js';

/** The marble helper with a bound on virtual time: a timer that is never torn down fails the test
 * (its work shows up in the output or in `ran`) instead of spinning the run forever. */
const marbles: typeof runMarbles = (t, body) =>
  runMarbles(t, (helpers, scheduler) => {
    scheduler.maxFrames = 1000;
    body(helpers, scheduler);
  });


test('a source that never emits errors exactly timeout after subscription', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const source = cold('-');
    const out = '        -----#';
    expectObservable(source.pipe(detectIdle(5, scheduler))).toBe(out, undefined, new IdleError(5));
  });
});

test('the timeout counts from the subscription, not from time zero', (t) => {
  marbles(t, ({ hot, expectObservable }, scheduler) => {
    const source = hot('--------');
    const sub = '       ---^-------';
    const out = '       --------#';
    expectObservable(source.pipe(detectIdle(5, scheduler)), sub).toBe(out, undefined, new IdleError(5));
  });
});

test('it errors exactly timeout after the last value', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }, scheduler) => {
    const source = cold('-a-b-----------c');
    const subs = '       ^-------!';
    const out = '        -a-b----#';
    expectObservable(source.pipe(detectIdle(5, scheduler))).toBe(out, undefined, new IdleError(5));
    expectSubscriptions(source.subscriptions).toBe(subs);
  });
});

test('a value just before the deadline keeps the stream alive for another full timeout', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const source = cold('----a--------');
    const out = '        ----a----#';
    expectObservable(source.pipe(detectIdle(5, scheduler))).toBe(out, undefined, new IdleError(5));
  });
});

test('a busy stream never errors', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const source = cold('--a--a--a--a--a--a--a--a--a--a--|');
    const out = '        --a--a--a--a--a--a--a--a--a--a--|';
    expectObservable(source.pipe(detectIdle(5, scheduler))).toBe(out);
  });
});

test('gaps of exactly timeout minus one never error', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const source = cold('----a----a----a----a-|');
    const out = '        ----a----a----a----a-|';
    expectObservable(source.pipe(detectIdle(5, scheduler))).toBe(out);
  });
});

test('a busy stream costs far fewer timers than values', (t) => {
  marbles(t, ({ expectObservable, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const source = interval(1, scheduler).pipe(take(100), map(() => 'a'));
    const out = source.pipe(detectIdle(20, rec));
    expectObservable(out).toBe(`-${'a'.repeat(99)}(a|)`); // one value per frame, 1..100
    flush();
    t.true(rec.scheduled <= 10, `${rec.scheduled} timers for 100 values`);
  });
});

test('errors and completion of the source are mirrored and stop the timer', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const err = new Error('reset');
    const recA = recordingScheduler(scheduler);
    const recB = recordingScheduler(scheduler);
    const completes = cold('-a-|');
    const fails = cold('    -a-#', undefined, err);
    expectObservable(completes.pipe(detectIdle(5, recA))).toBe('-a-|');
    expectObservable(fails.pipe(detectIdle(5, recB))).toBe('    -a-#', undefined, err);
    flush();
    t.deepEqual(recA.ran, []);
    t.deepEqual(recB.ran, []);
  });
});

test('unsubscribing cancels the timer', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const source = cold('-a-----');
    const unsub = '      ^--!';
    const out = '        -a-';
    expectObservable(source.pipe(detectIdle(5, rec)), unsub).toBe(out);
    flush();
    t.true(rec.scheduled >= 1);
    t.deepEqual(rec.ran, []);
  });
});

test('the timer re-arms for the remainder rather than per value', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const source = cold('---a-----');
    const out = '        ---a----#';
    expectObservable(source.pipe(detectIdle(5, rec))).toBe(out, undefined, new IdleError(5));
    flush();
    // First check at 5 (silent 2 of 5), then once more for the remaining 3.
    t.deepEqual(rec.ran, [5, 8]);
  });
});

test('a long busy stream holds one timer at a time, not every expired one', (t) => {
  const scheduled: Subscription[] = [];
  const released = new Set<number>();
  marbles(t, ({ flush }, scheduler) => {
    // Track which scheduled timers are still referenced: the subscription's teardown releases those.
    const tracking: SchedulerLike = {
      now: () => scheduler.now(),
      schedule<S>(work: (this: SchedulerAction<S>, state?: S) => void, delay?: number, state?: S): Subscription {
        const action = scheduler.schedule<S>(work, delay, state);
        const index = scheduled.push(action) - 1;
        const release = action.unsubscribe.bind(action);
        action.unsubscribe = () => {
          released.add(index);
          release();
        };
        return action;
      },
    };
    const sub = interval(1, scheduler).pipe(detectIdle(10, tracking)).subscribe();
    scheduler.schedule(() => sub.unsubscribe(), 1000);
    flush();
  });
  t.true(scheduled.length >= 50, `${scheduled.length} timers`);
  // Only the timer pending at the end is released; expired ones were not kept alive until then.
  t.deepEqual([...released], [scheduled.length - 1]);
});

test('IdleError names the timeout in seconds', (t) => {
  const err = new IdleError(30_000);
  t.is(err.name, 'IdleError');
  t.is(err.timeoutMs, 30_000);
  t.is(err.message, 'peer silent for 30 s');
  t.true(err instanceof Error);
});

test('by default time comes from asyncScheduler, which run mode virtualises', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const source = cold('-a');
    const out = '        -a--#';
    expectObservable(source.pipe(detectIdle(3))).toBe(out, undefined, new IdleError(3));
  });
});
