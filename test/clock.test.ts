// The client's fine clock (src/drivers/clock.ts): wall-clock time finer than a millisecond,
// following the wall clock's steps; a scheduler with it whose timers are asyncScheduler's.
import test from 'ava';
import { firstValueFrom, map, timer } from 'rxjs';
import { fineNow, fineScheduler } from '../src/drivers/clock.js';

test('fineNow reads the monotonic clock anchored to the wall clock: fractions of a millisecond, and the wall clock again when it steps', (t) => {
  let wall = 1_000_000;
  let mono = 50.25;
  const now = fineNow(() => wall, () => mono, 0);
  t.is(now(), 1_000_000);
  mono = 50.65;
  t.true(Math.abs(now() - 1_000_000.4) < 1e-9, 'a 0.4 ms step of the monotonic clock shows while the wall clock has not ticked');
  mono = 51.95;
  wall = 1_000_001;
  t.true(Math.abs(now() - 1_000_001.7) < 1e-9, 'within a millisecond of the wall clock: the monotonic one decides');
  wall = 1_060_000; // the wall clock stepped a minute ahead (NTP)
  mono = 52;
  t.is(now(), 1_060_000, 'anchored again');
  mono = 52.3;
  t.true(Math.abs(now() - 1_060_000.3) < 1e-9);
  wall = 1_000_000; // and back
  t.is(now(), 1_000_000);
});

test('fineNow compares itself with the wall clock only once per check interval: a step shows at the first read after it, and reads between cost no wall-clock read', (t) => {
  let wall = 2_000_000;
  let mono = 10;
  let wallReads = 0;
  const now = fineNow(() => (wallReads++, wall), () => mono, 1000);
  const atStart = wallReads;
  wall = 2_060_000; // stepped at once
  mono = 500;
  t.is(now(), 2_000_490, 'before the check is due the step does not show');
  mono = 1009.5;
  t.is(now(), 2_000_999.5);
  t.is(wallReads, atStart, 'no wall-clock read between checks');
  mono = 1010;
  t.is(now(), 2_060_000, 'anchored again at the first read of the next check');
  t.is(wallReads, atStart + 1);
  mono = 1010.25;
  t.is(now(), 2_060_000.25);
});

test('the real fine clock stays within a couple of milliseconds of Date.now() and resolves below a millisecond', (t) => {
  const now = fineNow();
  const reads = Array.from({ length: 2000 }, () => now());
  t.true(Math.abs(now() - Date.now()) <= 2);
  t.true(reads.some((r) => !Number.isInteger(r)), 'fractions of a millisecond');
});

test('fineScheduler runs timers as asyncScheduler does and reads its own clock', async (t) => {
  const scheduler = fineScheduler();
  const start = scheduler.now();
  const at = await firstValueFrom(timer(5, scheduler).pipe(map(() => scheduler.now())));
  t.true(at - start >= 4, `the timer fired after ${at - start} ms`);
});
