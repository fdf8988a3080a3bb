// summarizeRepeats (operators/summarizeRepeats.ts): the first event of a key at once, then at most
// one count of held-back events per key per window.
import test from 'ava';
import { Subject } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { summarizeRepeats, type Repeated } from '../operators/summarizeRepeats.js';
import { marbles, recordingScheduler } from './helpers/marbles.js';

interface Ev {
  readonly reason: string;
  readonly n: number;
}
const events = {
  a: { reason: 'ip-conflict', n: 1 },
  b: { reason: 'ip-conflict', n: 2 },
  c: { reason: 'ip-conflict', n: 3 },
  x: { reason: 'not-tls', n: 9 },
} satisfies Record<string, Ev>;
const keyOf = (e: Ev): string => e.reason;
const pass = (e: Ev): Repeated<Ev, string> => ({ kind: 'event', event: e });
const held = (count: number, last: Ev): Repeated<Ev, string> => ({ kind: 'held', key: last.reason, count, last });

test('the first event passes at once; the rest of its window are counted into one summary at the window end', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const input = cold('-a-b-c-------|', events);
    const out = '       -a----H------|';
    expectObservable(input.pipe(summarizeRepeats(keyOf, 5, 1, scheduler))).toBe(out, { a: pass(events.a), H: held(2, events.c) });
  });
});

test('a flood gives one summary per period; a window that held nothing closes and the next event passes at once', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const input = cold('-a-b-c--a----------b-|', events);
    const out = '       -a----H----I-------b-|';
    expectObservable(input.pipe(summarizeRepeats(keyOf, 5, 1, scheduler))).toBe(out, {
      a: pass(events.a),
      H: held(2, events.c),
      I: held(1, events.a),
      b: pass(events.b),
    });
  });
});

test('with a burst of 2 the first two events of a fresh window pass; the window after a summary only counts', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const input = cold('-a-b-c--a-b---------c-a-c-|', events);
    const out = '       -a-b--H----I--------c-a--J|';
    expectObservable(input.pipe(summarizeRepeats(keyOf, 5, 2, scheduler))).toBe(out, {
      a: pass(events.a),
      b: pass(events.b),
      H: held(1, events.c),
      I: held(2, events.b),
      c: pass(events.c),
      J: held(1, events.c),
    });
  });
});

test('keys have their own windows', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const input = cold('-a-x-b-x-----|', events);
    const out = '       -a-x--A-X----|';
    expectObservable(input.pipe(summarizeRepeats(keyOf, 5, 1, scheduler))).toBe(out, {
      a: pass(events.a),
      x: pass(events.x),
      A: held(1, events.b),
      X: held(1, events.x),
    });
  });
});

test('completion emits the held counts at once and cancels the windows', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const input = cold('-a-b-x-|', events);
    const out = '       -a---x-(H|)';
    expectObservable(input.pipe(summarizeRepeats(keyOf, 10, 1, rec))).toBe(out, { a: pass(events.a), x: pass(events.x), H: held(1, events.b) });
    flush();
    t.deepEqual(rec.ran, []);
  });
});

test('an error is mirrored and unsubscribing cancels the windows', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const err = new Error('boom');
    expectObservable(cold('-a-b-#', events, err).pipe(summarizeRepeats(keyOf, 10, 1, rec))).toBe('-a---#', { a: pass(events.a) }, err);
    expectObservable(cold('-a-b-----', events).pipe(summarizeRepeats(keyOf, 10, 1, rec)), '^--!').toBe('-a--', { a: pass(events.a) });
    flush();
    t.deepEqual(rec.ran, []);
  });
});

test('10,000 events of one key spread over one second give two items: the first event and one count of the rest', (t) => {
  const scheduler = new TestScheduler((a, b) => t.deepEqual(a, b));
  const out: Array<{ at: number; item: Repeated<Ev, string> }> = [];
  scheduler.run(() => {
    const flood$ = new Subject<Ev>();
    for (let i = 0; i < 10_000; i++) scheduler.schedule(() => flood$.next({ reason: 'ip-conflict', n: i }), Math.floor(i / 10));
    const sub = flood$.pipe(summarizeRepeats(keyOf, 1000, 1, scheduler)).subscribe((item) => out.push({ at: scheduler.now(), item }));
    scheduler.schedule(() => sub.unsubscribe(), 5000);
  });
  t.deepEqual(out, [
    { at: 0, item: pass({ reason: 'ip-conflict', n: 0 }) },
    { at: 1000, item: held(9999, { reason: 'ip-conflict', n: 9999 }) },
  ]);
});
