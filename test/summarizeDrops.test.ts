// summarizeDrops (operators/summarizeDrops.ts): at most one summary per key per window.
import test from 'ava';
import { summarizeDrops, type DropReport } from '../operators/summarizeDrops.js';
import { marbles, recordingScheduler } from './helpers/marbles.js';


const reports = {
  a: { key: 'A', drops: { 'queue-full': 1 } },
  b: { key: 'A', drops: { 'queue-full': 2, 'no-route': 1 } },
  c: { key: 'A', drops: { 'no-route': 4 } },
  x: { key: 'X', drops: { isolation: 7 } },
  y: { key: 'X', drops: { isolation: 1, 'not-ipv4': 1 } },
} satisfies Record<string, DropReport<string>>;

test('reports in one window are summed per reason and emitted once at the window end', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const input = cold('-a-b-c--x------|', reports);
    const out = '       ------A------X-|';
    expectObservable(input.pipe(summarizeDrops<string>(5, scheduler))).toBe(out, {
      A: { key: 'A', drops: { 'queue-full': 3, 'no-route': 5 } },
      X: { key: 'X', drops: { isolation: 7 } },
    });
  });
});

test('a report after the window closed opens a new window', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const input = cold('-a-----c------|', reports);
    const out = '       ----A-----C---|';
    expectObservable(input.pipe(summarizeDrops<string>(3, scheduler))).toBe(out, {
      A: { key: 'A', drops: { 'queue-full': 1 } },
      C: { key: 'A', drops: { 'no-route': 4 } },
    });
  });
});

test('keys have independent windows', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const input = cold('-a-x-b-y-------|', reports);
    const out = '       ------A-X------|';
    expectObservable(input.pipe(summarizeDrops<string>(5, scheduler))).toBe(out, {
      A: { key: 'A', drops: { 'queue-full': 3, 'no-route': 1 } },
      X: { key: 'X', drops: { isolation: 8, 'not-ipv4': 1 } },
    });
  });
});

test('a steady stream of reports gives one summary per period, never one per report', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const input = cold('a-a-a-a-a-a-|', reports);
    const out = '       -----S-----S|';
    const three = { key: 'A', drops: { 'queue-full': 3 } };
    expectObservable(input.pipe(summarizeDrops<string>(5, scheduler))).toBe(out, { S: three });
  });
});

test('completion flushes the open windows at once, in the order they opened', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const input = cold('-x-a-|', reports);
    const out = '       -----(XA|)';
    expectObservable(input.pipe(summarizeDrops<string>(10, rec))).toBe(out, {
      X: { key: 'X', drops: { isolation: 7 } },
      A: { key: 'A', drops: { 'queue-full': 1 } },
    });
    flush();
    t.deepEqual(rec.ran, []);
  });
});

test('completion with no open window just completes', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const input = cold('-a--------|', reports);
    const out = '       ---A------|';
    expectObservable(input.pipe(summarizeDrops<string>(2, scheduler))).toBe(out, { A: { key: 'A', drops: { 'queue-full': 1 } } });
  });
});

test('an error is mirrored and the open windows are dropped with their timers', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const err = new Error('boom');
    const input = cold('-a-#', reports, err);
    const out = '       ---#';
    expectObservable(input.pipe(summarizeDrops<string>(5, rec))).toBe(out, undefined, err);
    flush();
    t.deepEqual(rec.ran, []);
  });
});

test('unsubscribing cancels the open windows', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const rec = recordingScheduler(scheduler);
    const input = cold('-a-x-----', reports);
    const unsub = '     ^---!';
    const out = '       -----';
    expectObservable(input.pipe(summarizeDrops<string>(5, rec)), unsub).toBe(out);
    flush();
    t.deepEqual(rec.ran, []);
  });
});

test('the reports given are not modified', (t) => {
  const first = { key: 'A', drops: { 'queue-full': 1 } };
  const second = { key: 'A', drops: { 'queue-full': 2 } };
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const input = cold('-f-s-|', { f: first, s: second });
    expectObservable(input.pipe(summarizeDrops<string>(10, scheduler))).toBe('-----(S|)', { S: { key: 'A', drops: { 'queue-full': 3 } } });
  });
  t.deepEqual(first, { key: 'A', drops: { 'queue-full': 1 } });
  t.deepEqual(second, { key: 'A', drops: { 'queue-full': 2 } });
});

test('by default time comes from asyncScheduler, which run mode virtualises', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const input = cold('-a-b----|', reports);
    const out = '       ----A---|';
    expectObservable(input.pipe(summarizeDrops<string>(3))).toBe(out, { A: { key: 'A', drops: { 'queue-full': 3, 'no-route': 1 } } });
  });
});
