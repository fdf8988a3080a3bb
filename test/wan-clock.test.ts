// bench/wan-clock.ts: the WAN emulator's sub-millisecond timer. It must never release a packet
// before its due time, a sooner due time must replace a later one (the emulator re-arms it
// whenever a packet due sooner joins its pipes), and a pace must space its firings.
import test from 'ava';
import { PreciseTimer, clockMs } from '../bench/wan-clock.js';

/** A timer whose firings resolve, in order, the promises next() hands out. */
function timer(t: { teardown(fn: () => void): void }): { readonly timer: PreciseTimer; next(): Promise<number> } {
  const waiting: Array<(at: number) => void> = [];
  const fired: number[] = [];
  const timer = new PreciseTimer(() => {
    const at = clockMs();
    const w = waiting.shift();
    if (w === undefined) fired.push(at);
    else w(at);
  });
  t.teardown(() => timer.close());
  return {
    timer,
    next: () => {
      const at = fired.shift();
      return at !== undefined ? Promise.resolve(at) : new Promise<number>((resolve) => waiting.push(resolve));
    },
  };
}

test('fires at a fractional due time, never before it', async (t) => {
  const { timer: clock, next } = timer(t);
  for (const ahead of [0.3, 1.7, 4.25]) {
    const due = clockMs() + ahead;
    clock.set(due);
    const at = await next();
    t.true(at >= due, `fired ${(due - at).toFixed(3)} ms before a due time ${ahead} ms ahead`);
  }
});

test('a sooner due time replaces a later one, and a time already past fires at once', async (t) => {
  const { timer: clock, next } = timer(t);
  const late = clockMs() + 600_000;
  clock.set(late);
  const soon = clockMs() + 2;
  clock.set(soon);
  const at = await next();
  t.true(at >= soon && at < late, 'fired for the sooner time, not the replaced one');
  const past = clockMs() - 5;
  clock.set(past);
  t.true((await next()) >= past);
});

test('with a pace, it fires no sooner than the pace after its previous firing', async (t) => {
  const { timer: clock, next } = timer(t);
  clock.set(clockMs()); // the thread is up once it fired
  await next();
  const due = clockMs();
  clock.set(due, 3);
  await next(); // the thread fired at `due` or later
  clock.set(clockMs(), 3); // due at once, but paced
  t.true((await next()) >= due + 3);
});
