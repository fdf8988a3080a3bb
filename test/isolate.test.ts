// isolate (operators/isolate.ts): client isolation on routed batches.
import test from 'ava';
import { isolate, isolateBatch } from '../operators/isolate.js';
import type { RoutedBatch } from '../operators/core/packet.js';
import { bytes, marbles } from './helpers/marbles.js';

interface Target {
  readonly name: string;
  readonly peer: boolean;
}
const HUB: Target = { name: 'hub', peer: false };
const P: Target = { name: 'p', peer: true };
const Q: Target = { name: 'q', peer: true };
const isPeer = (target: Target): boolean => target.peer;

const a = bytes(1);
const b = bytes(2);
const c = bytes(3);
const d = bytes(4);

/** Fresh batches per use: isolate works in place. */
function mixed(): RoutedBatch<Target> {
  return {
    routes: [
      { target: P, packets: [b, c] },
      { target: HUB, packets: [a] },
      { target: Q, packets: [d] },
    ],
    drops: undefined,
  };
}

test('when enabled, routes to peers are removed and their packets counted as isolation drops', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const routed = cold('-x-y-|', { x: mixed(), y: { routes: [{ target: P, packets: [a] }], drops: undefined } });
    const isolated = '   -X-Y-|';
    expectObservable(routed.pipe(isolate(true, isPeer))).toBe(isolated, {
      X: { routes: [{ target: HUB, packets: [a] }], drops: { isolation: 3 } },
      Y: { routes: [], drops: { isolation: 1 } },
    } satisfies Record<string, RoutedBatch<Target>>);
  });
});

test('when enabled, drops already counted are kept and added to', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const routed = cold('-x-|', { x: { ...mixed(), drops: { 'not-ipv4': 2, isolation: 1 } } });
    const isolated = '   -X-|';
    expectObservable(routed.pipe(isolate(true, isPeer))).toBe(isolated, {
      X: { routes: [{ target: HUB, packets: [a] }], drops: { 'not-ipv4': 2, isolation: 4 } },
    });
  });
});

test('when enabled, a batch only for the hub passes with no drops', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const routed = cold('-x-|', { x: { routes: [{ target: HUB, packets: [a, b] }], drops: undefined } });
    const isolated = '   -X-|';
    expectObservable(routed.pipe(isolate(true, isPeer))).toBe(isolated, {
      X: { routes: [{ target: HUB, packets: [a, b] }], drops: undefined },
    });
  });
});

test('when disabled, every batch passes through untouched', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const routed = cold('-x-y-|', { x: mixed(), y: { routes: [], drops: { 'no-route': 1 } } });
    const passed = '     -X-Y-|';
    expectObservable(routed.pipe(isolate(false, isPeer))).toBe(passed, { X: mixed(), Y: { routes: [], drops: { 'no-route': 1 } } });
  });
});

test('when disabled, isPeer is never asked and the very same object is emitted', (t) => {
  let asked = 0;
  const input = mixed();
  const out: RoutedBatch<Target>[] = [];
  marbles(t, ({ cold, flush }) => {
    cold('-x-|', { x: input })
      .pipe(
        isolate(false, (target: Target) => {
          asked++;
          return target.peer;
        }),
      )
      .subscribe((rb) => out.push(rb));
    flush();
  });
  t.is(asked, 0);
  t.is(out.length, 1);
  t.is(out[0], input);
});

test('errors and completion are mirrored', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const err = new Error('boom');
    const routed = cold('-x-#', { x: { routes: [{ target: HUB, packets: [a] }], drops: undefined } }, err);
    const isolated = '   -X-#';
    expectObservable(routed.pipe(isolate(true, isPeer))).toBe(isolated, { X: { routes: [{ target: HUB, packets: [a] }], drops: undefined } }, err);
  });
});

test('isolateBatch keeps the order of the remaining routes', (t) => {
  const rb: RoutedBatch<Target> = {
    routes: [
      { target: { name: 'h1', peer: false }, packets: [a] },
      { target: P, packets: [b] },
      { target: { name: 'h2', peer: false }, packets: [c] },
      { target: Q, packets: [d] },
      { target: { name: 'h3', peer: false }, packets: [a] },
    ],
    drops: undefined,
  };
  const out = isolateBatch(rb, isPeer);
  t.deepEqual(
    out.routes.map((r) => r.target.name),
    ['h1', 'h2', 'h3'],
  );
  t.deepEqual(out.drops, { isolation: 2 });
});
