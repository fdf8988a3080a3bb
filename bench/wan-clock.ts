/**
 * A sub-millisecond one-shot timer for bench/wan-emu.ts. Node's timers count in whole milliseconds
 * of the event loop's clock, so a packet held by setTimeout leaves at the first millisecond tick
 * after its due time: 0 to 1 ms late (0.5–0.6 ms on average, measured), depending on where in the
 * millisecond it arrived. A ping-pong crosses the emulator twice, so every round trip carried 0–2 ms
 * of this rounding (the bare WAN's RTT spread from 61.5 to 63.1 ms, p10 to p90, for 60 ms of
 * delay), and a tunnel's sub-millisecond processing moved its packets across ticks: the "idle RTT
 * added by the tunnel" (a tunnel's p50 less the bare WAN's) compared two differently rounded
 * distributions, and swung by about a millisecond from run to run.
 *
 * This timer sleeps in a worker thread with Atomics.wait, whose timeout is a fraction of a
 * millisecond (a futex with a high-resolution timer), and wakes the event loop with a message when
 * the due time has come: packets leave within tens of microseconds of their schedule. The thread
 * blocks, it never spins.
 */
import { Worker } from 'node:worker_threads';

/** The clock of due times: CLOCK_MONOTONIC in milliseconds (fractional), the same in every thread. */
export function clockMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * Calls `onDue` once at (or just after) the time last given to set(); a new set() replaces it. Like
 * a Node timer, a pending due time keeps the process alive, and nothing else does.
 */
export class PreciseTimer {
  readonly #worker: Worker;
  /** [0]: generation, bumped by every set() (negative: closed); the worker waits on it. */
  readonly #generation: Int32Array;
  /** [0]: the due time (clockMs), Infinity for none; [1]: the least ms between two firings. */
  readonly #due: Float64Array;
  /** The thread reported a due time since the last notify: it may sleep until the next one. */
  #fired = false;
  #referenced = false;

  constructor(onDue: () => void) {
    const generation = new SharedArrayBuffer(4);
    const due = new SharedArrayBuffer(16);
    this.#generation = new Int32Array(generation);
    this.#due = new Float64Array(due);
    this.#due[0] = Number.POSITIVE_INFINITY;
    this.#worker = new Worker(new URL('./wan-clock-thread.js', import.meta.url), { workerData: { generation, due } });
    this.#worker.on('message', () => {
      this.#fired = true;
      this.#reference(false);
      onDue();
    });
    this.#worker.on('error', (err) => {
      process.stderr.write(`wan-emu: clock thread failed: ${err.message}\n`);
      process.exit(1);
    });
    this.#worker.unref();
  }

  #reference(on: boolean): void {
    if (on === this.#referenced) return;
    this.#referenced = on;
    if (on) this.#worker.ref();
    else this.#worker.unref();
  }

  /**
   * Fires at `at` (clockMs); Infinity: never (until the next set). With `pace` > 0 it fires no
   * sooner than `pace` ms after its previous firing, so that a busy caller handles a batch of due
   * times per firing instead of one.
   */
  set(at: number, pace = 0): void {
    const g = Atomics.load(this.#generation, 0);
    if (g < 0) return;
    const before = this.#due[0]!;
    const pacedBefore = this.#due[1]!;
    this.#due[0] = at;
    this.#due[1] = pace;
    this.#reference(Number.isFinite(at));
    // Only this thread writes the generation; it wraps long before it could turn negative.
    Atomics.store(this.#generation, 0, (g + 1) & 0x3fffffff);
    // The thread sleeps until the earlier due time (and pace) at the latest, and then looks again: it
    // needs waking only for a sooner time, or when it may be sleeping for good after a report.
    if (at < before || pace < pacedBefore || this.#fired) {
      this.#fired = false;
      Atomics.notify(this.#generation, 0);
    }
  }

  /** Stops the thread. */
  close(): void {
    this.#reference(false);
    Atomics.store(this.#generation, 0, -1);
    Atomics.notify(this.#generation, 0);
  }
}
