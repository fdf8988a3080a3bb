// ReplayWindow (operators/core/replayWindow.ts): the RFC 6479 anti-replay bitmap, at its edges and
// against a reference model (a plain set of everything seen, with the same window rule).
import test from 'ava';
import { REPLAY_WINDOW, ReplayWindow, type ReplayVerdict } from '../operators/core/replayWindow.js';
import { Prng } from './helpers/prng.js';

/** The reference: every counter ever accepted, and the window rule spelled out. */
class Reference {
  readonly seen = new Set<number>();
  top = -1;
  check(c: number): ReplayVerdict {
    if (c > this.top) return 'ok';
    if (this.top - c >= REPLAY_WINDOW) return 'too-old';
    return this.seen.has(c) ? 'replay' : 'ok';
  }
  accept(c: number): ReplayVerdict {
    const v = this.check(c);
    if (v === 'ok') {
      this.seen.add(c);
      this.top = Math.max(this.top, c);
    }
    return v;
  }
}

const steps = test.macro({
  exec(t, script: readonly (readonly [number, ReplayVerdict])[]) {
    const w = new ReplayWindow();
    t.deepEqual(
      script.map(([c]) => [c, w.accept(c)]),
      script.map(([c, v]) => [c, v]),
    );
  },
  title: (provided = '') => `the window: ${provided}`,
});

test('the first counter (0 included) is accepted once', steps, [
  [0, 'ok'],
  [0, 'replay'],
  [1, 'ok'],
  [1, 'replay'],
]);
test('in order, out of order inside the window, duplicates refused', steps, [
  [10, 'ok'],
  [12, 'ok'],
  [11, 'ok'],
  [9, 'ok'],
  [12, 'replay'],
  [9, 'replay'],
]);
test('the oldest counter still inside the window is accepted; one older is too old', steps, [
  [REPLAY_WINDOW + 100, 'ok'],
  [101, 'ok'],
  [100, 'too-old'],
  [101, 'replay'],
]);
test('block boundaries (31, 32, 33) are separate bits', steps, [
  [31, 'ok'],
  [32, 'ok'],
  [33, 'ok'],
  [31, 'replay'],
  [32, 'replay'],
  [33, 'replay'],
]);
test('a jump far ahead forgets the old bits: the ring wraps without leaving stale marks', steps, [
  [5, 'ok'],
  [5 + 32 * 128, 'ok'],
  [5 + 32 * 128 - 1, 'ok'],
  [5 + 32 * 128 - REPLAY_WINDOW + 1, 'ok'],
  [5, 'too-old'],
  [5 + 32 * 128, 'replay'],
]);
test('a jump of exactly one ring lap does not see the old block as seen', steps, [
  [40, 'ok'],
  [40 + 4096, 'ok'],
  [40 + 4096 - 64, 'ok'],
]);
test('negative, fractional and unsafe counters are refused', steps, [
  [-1, 'too-old'],
  [1.5, 'too-old'],
  [2 ** 53, 'too-old'],
]);

test('check never changes anything; accept records only what check allows', (t) => {
  const w = new ReplayWindow();
  t.is(w.check(7), 'ok');
  t.is(w.check(7), 'ok');
  t.is(w.highest, -1);
  t.is(w.accept(7), 'ok');
  t.is(w.highest, 7);
  t.is(w.check(7), 'replay');
});

test('random streams (in order, reordered, duplicated, jumping) agree with the reference model', (t) => {
  for (const seed of [1, 2, 3, 0x5eed]) {
    const rng = new Prng(seed);
    const w = new ReplayWindow();
    const ref = new Reference();
    let next = rng.int(1000);
    for (let i = 0; i < 50_000; i++) {
      const r = rng.int(100);
      let c: number;
      if (r < 60) c = next++;
      else if (r < 80) c = Math.max(0, next - 1 - rng.int(200));
      else if (r < 95) c = Math.max(0, next - 1 - rng.int(REPLAY_WINDOW + 500));
      else {
        next += rng.int(20_000);
        c = next;
      }
      const got = w.accept(c);
      const want = ref.accept(c);
      if (got !== want) return t.fail(`seed ${seed} step ${i}: counter ${c} (top ${ref.top}): window said ${got}, reference ${want}`);
    }
  }
  t.pass();
});
