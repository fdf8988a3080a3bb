// ava as a marble runner: a TestScheduler whose assertion is t.deepEqual.
import type { ExecutionContext } from 'ava';
import type { SchedulerAction, SchedulerLike, Subscription } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';

/** Runs `body` in virtual time; marbles are compared with t.deepEqual at the end of the run. */
export function marbles<T>(t: ExecutionContext<T>, body: (helpers: Parameters<Parameters<TestScheduler['run']>[0]>[0], scheduler: TestScheduler) => void): void {
  const scheduler = new TestScheduler((actual, expected) => {
    t.deepEqual(actual, expected);
  });
  scheduler.run((helpers) => body(helpers, scheduler));
}

/** A packet-like buffer tagged with a readable id for marble values. */
export function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

/** A minimal IPv4 packet (20-byte header + payload) from `src` to `dst` (dotted quads). */
export function ipv4Packet(src: string, dst: string, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  p[0] = 0x45;
  p[2] = (p.length >> 8) & 255;
  p[3] = p.length & 255;
  p[8] = 64;
  p[9] = 17;
  src.split('.').forEach((o, i) => (p[12 + i] = Number(o)));
  dst.split('.').forEach((o, i) => (p[16 + i] = Number(o)));
  p.set(payload, 20);
  return p;
}

/** Wraps `inner`, recording how often work is scheduled and the virtual times at which it runs. */
export function recordingScheduler(inner: SchedulerLike): SchedulerLike & { scheduled: number; ran: number[] } {
  const rec = {
    scheduled: 0,
    ran: [] as number[],
    now: () => inner.now(),
    schedule<S>(work: (this: SchedulerAction<S>, state?: S) => void, delay?: number, state?: S): Subscription {
      rec.scheduled++;
      return inner.schedule<S>(
        function (this: SchedulerAction<S>, s?: S) {
          rec.ran.push(inner.now());
          work.call(this, s);
        },
        delay,
        state,
      );
    },
  };
  return rec;
}
