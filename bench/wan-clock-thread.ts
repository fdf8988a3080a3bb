/**
 * The thread of bench/wan-clock.ts's PreciseTimer: sleeps until the due time in the shared buffer
 * (Atomics.wait with a fractional timeout, woken early when the main thread sets a new one), then
 * posts one message per due time (at least due[1] ms after the previous one). Exits when the
 * generation goes negative.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { clockMs } from './wan-clock.js';

const data = workerData as { readonly generation: SharedArrayBuffer; readonly due: SharedArrayBuffer };
const generation = new Int32Array(data.generation);
const due = new Float64Array(data.due);
const port = parentPort;
if (port === null) throw new Error('wan-clock-thread runs as a worker thread');

/** The generation whose due time has been reported (reported once; a set() makes a new one). */
let fired = -1;
let firedAt = Number.NEGATIVE_INFINITY;
for (;;) {
  const g = Atomics.load(generation, 0);
  if (g < 0) break;
  const now = clockMs();
  const wait = Math.max(due[0]!, firedAt + due[1]!) - now;
  if (g !== fired && wait <= 0) {
    fired = g;
    firedAt = now;
    port.postMessage(null);
    continue;
  }
  // Sleep until the due time, or until set() or close() changes the generation.
  Atomics.wait(generation, 0, g, g === fired || !Number.isFinite(wait) ? Number.POSITIVE_INFINITY : wait);
}
