// keepalive (operators/keepalive.ts): a tick every period while the source is active.
import test from 'ava';
import { keepalive } from '../operators/keepalive.js';
import type { Inbound } from '../operators/core/packet.js';
import { marbles as runMarbles, recordingScheduler } from './helpers/marbles.js';

/** The marble helper with a bound on virtual time: a timer that is never torn down fails the test
 * (its work shows up in the output or in `ran`) instead of spinning the run forever. */
const marbles: typeof runMarbles = (t, body) =>
  runMarbles(t, (helpers, scheduler) => {
    scheduler.maxFrames = 1000;
    body(helpers, scheduler);
  });

const TICK: Inbound = { kind: 'tick' };
const values = { a: 'a', b: 'b', t: TICK };


test('values pass through and a tick comes every period, independent of values', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const source = cold('-a-------b---|');
    const out = '        -a--t---tb--t|';
    expectObservable(source.pipe(keepalive(4, TICK, scheduler))).toBe(out, values);
  });
});

test('a silent source still gets ticks until unsubscribed', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const source = cold('-');
    const unsub = '      ^------------!';
    const out = '        ---t--t--t--t-';
    expectObservable(source.pipe(keepalive(3, TICK, scheduler)), unsub).toBe(out, values);
  });
});

test('ticking stops when the source completes', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const source = cold('-a--|');
    const out = '        -a-t|';
    expectObservable(source.pipe(keepalive(3, TICK, rec))).toBe(out, values);
    flush();
    t.deepEqual(rec.ran, [3]);
  });
});

test('ticking stops when the source errors, and the error is mirrored', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const err = new Error('socket closed');
    const source = cold('-a-----#', values, err);
    const out = '        -a-t--t#';
    expectObservable(source.pipe(keepalive(3, TICK, rec))).toBe(out, values, err);
    flush();
    t.deepEqual(rec.ran, [3, 6]);
  });
});

test('unsubscribing stops the ticks and the source', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const source = cold('-a------');
    const unsub = '      ^----!';
    const out = '        -a--t-';
    expectObservable(source.pipe(keepalive(4, TICK, rec)), unsub).toBe(out, values);
    expectSubscriptions(source.subscriptions).toBe(unsub);
    flush();
    t.deepEqual(rec.ran, [4]);
  });
});

test('a source that completes at once never ticks', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const source = cold('|');
    expectObservable(source.pipe(keepalive(1, TICK, scheduler))).toBe('|');
  });
});

test('by default time comes from asyncScheduler, which run mode virtualises', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const source = cold('------|');
    const out = '        --t-t-|';
    expectObservable(source.pipe(keepalive(2, TICK))).toBe(out, values);
  });
});
