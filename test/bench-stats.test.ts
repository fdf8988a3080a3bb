// The benchmark's order statistics (bench/stats.ts): what its targets are judged on.
import test from 'ava';
import { median, pairedRatio } from '../bench/stats.js';

test('median skips failed figures (NaN) and averages the two middle values of an even count', (t) => {
  t.is(median([3, Number.NaN, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2.5);
  t.true(Number.isNaN(median([Number.NaN])));
});

test('pairedRatio: the geometric mean of per-turn ratios, pairs with a failed or zero figure left out', (t) => {
  const r = pairedRatio([110, 90, 200, Number.NaN, 50], [100, 100, 200, 100, 0]);
  t.is(r.pairs, 3);
  t.is(r.above, 1, 'only 110/100 is above 1 (200/200 is not)');
  t.true(Math.abs(r.geomean - Math.cbrt(1.1 * 0.9 * 1)) < 1e-12);
  t.true(Number.isNaN(pairedRatio([], []).geomean));
});

test('pairedRatio differs from the ratio of medians where turns differ in load: pairing takes out what a turn shares', (t) => {
  // Two slow turns and two fast: in every turn the first figure is 5% above the second.
  const over = [105, 210, 105, 210];
  const under = [100, 200, 100, 200];
  t.true(Math.abs(pairedRatio(over, under).geomean - 1.05) < 1e-12);
  t.is(pairedRatio(over, under).above, 4);
});
