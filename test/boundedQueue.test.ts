// boundedQueue (operators/boundedQueue.ts): a fixed-size wait queue in front of a PacketSink.
import test from 'ava';
import { Observable, type SchedulerLike } from 'rxjs';
import { boundedQueue } from '../operators/boundedQueue.js';
import type { PacketBatch, PacketSink } from '../pipelines/ports.js';
import { marbles } from './helpers/marbles.js';

/** One-byte packets named by a letter, so the sink's log reads like the marbles. */
const p = (name: string): Uint8Array => Uint8Array.of(name.charCodeAt(0));

interface FakeSink extends PacketSink {
  /** Accepted packets as `name@frame`, in the order the sink took them. */
  readonly log: string[];
  /** Every array `write` was given, as passed. */
  readonly calls: PacketBatch[];
  /** Subscribers of ready$ at the moment. */
  readonly listeners: number;
}

/**
 * A sink that accepts `room` packets, copying them as a real sink does. `refills` is a hot marble of
 * new capacities: each value sets the room, then `ready$` fires (the fake listens first, so the room
 * is there when the queue hears ready$). `silentRefills` set the room without firing ready$.
 */
function fakeSink(scheduler: SchedulerLike, room: number, refills: Observable<number>, silentRefills?: Observable<number>): FakeSink {
  let listeners = 0;
  const log: string[] = [];
  const calls: PacketBatch[] = [];
  refills.subscribe((n) => (room = n));
  silentRefills?.subscribe((n) => (room = n)); // room that appears without ready$ firing
  return {
    log,
    calls,
    get listeners() {
      return listeners;
    },
    write(packets) {
      calls.push(packets);
      const n = Math.min(room, packets.length);
      for (let i = 0; i < n; i++) log.push(`${String.fromCharCode(...new Uint8Array(packets[i]!))}@${scheduler.now()}`);
      room -= n;
      return n;
    },
    ready$: new Observable<void>((subscriber) => {
      listeners++;
      const s = refills.subscribe(() => subscriber.next());
      return () => {
        listeners--;
        s.unsubscribe();
      };
    }),
  };
}

test('the marble of the contract: waiting packets flush on ready, the newest is dropped when full', (t) => {
  marbles(t, ({ cold, hot, expectObservable, flush }, scheduler) => {
    const batches = cold('-x-y-----|', { x: [p('a'), p('b')], y: [p('c'), p('d')] });
    const refills = hot(' ------r---', { r: 10 });
    const drops = '       ---1-----|';
    const sink = fakeSink(scheduler, 1, refills);
    expectObservable(batches.pipe(boundedQueue({ limit: 2, sink }))).toBe(drops, { 1: 1 });
    flush();
    t.deepEqual(sink.log, ['a@1', 'b@6', 'c@6']);
  });
});

test('a sink with room takes every batch at once and nothing is dropped', (t) => {
  marbles(t, ({ cold, hot, expectObservable, flush }, scheduler) => {
    const batches = cold('-x-y-|', { x: [p('a'), p('b')], y: [p('c')] });
    const refills = hot<number>(' ------');
    const drops = '       -----|';
    const sink = fakeSink(scheduler, Infinity, refills);
    expectObservable(batches.pipe(boundedQueue({ limit: 2, sink }))).toBe(drops);
    flush();
    t.deepEqual(sink.log, ['a@1', 'b@1', 'c@3']);
    t.is(sink.listeners, 0);
  });
});

test('the output counts the packets each batch lost to a full queue (tail drop)', (t) => {
  marbles(t, ({ cold, hot, expectObservable, flush }, scheduler) => {
    const batches = cold('-x-y-z-w--|', { x: [p('a'), p('b')], y: [p('c'), p('d')], z: [p('e'), p('f'), p('g')], w: [p('h')] });
    const refills = hot<number>(' ---------');
    const drops = '       ---1-3-1--|';
    const sink = fakeSink(scheduler, 0, refills);
    expectObservable(batches.pipe(boundedQueue({ limit: 3, sink }))).toBe(drops, { 1: 1, 3: 3 });
    flush();
    t.deepEqual(sink.log, []);
  });
});

test('the oldest waiting packets are written first, across partial refills', (t) => {
  marbles(t, ({ cold, hot, expectObservable, flush }, scheduler) => {
    const batches = cold('-x-y-------z---|', { x: [p('a'), p('b'), p('c')], y: [p('d'), p('e')], z: [p('f')] });
    const refills = hot(' -----r-r------r', { r: 2 });
    const drops = '       ---------------|';
    const sink = fakeSink(scheduler, 1, refills);
    expectObservable(batches.pipe(boundedQueue({ limit: 10, sink }))).toBe(drops);
    flush();
    // f finds the sink full again (the second refill's room went to d and e), so it waits for 14.
    t.deepEqual(sink.log, ['a@1', 'b@5', 'c@5', 'd@7', 'e@7', 'f@14']);
  });
});

test('a batch arriving while packets wait queues behind them even if the sink has room', (t) => {
  marbles(t, ({ cold, hot, expectObservable, flush }, scheduler) => {
    const batches = cold('-x-y----|', { x: [p('a'), p('b')], y: [p('c')] });
    const grows = hot('   --g------', { g: 5 });
    const refills = hot(' -----r---', { r: 5 });
    const drops = '       --------|';
    const sink = fakeSink(scheduler, 1, refills, grows);
    expectObservable(batches.pipe(boundedQueue({ limit: 10, sink }))).toBe(drops);
    flush();
    // Writing c at 3, when the sink had room again, would have put it before b.
    t.deepEqual(sink.log, ['a@1', 'b@5', 'c@5']);
  });
});

test('waiting packets are copies: changing the reused input buffer does not change them', (t) => {
  const reused = Uint8Array.of(0x61, 0x62, 0x63);
  const x = [reused.subarray(0, 1), reused.subarray(1, 2), reused.subarray(2, 3)];
  marbles(t, ({ cold, hot, expectObservable, flush }, scheduler) => {
    const batches = cold('-x-----|', { x });
    const refills = hot(' -----r--', { r: 10 });
    const drops = '       -------|';
    const sink = fakeSink(scheduler, 1, refills);
    // At frame 2, after the emission, the producer reuses its buffer.
    scheduler.schedule(() => reused.fill(0x7a), 2);
    expectObservable(batches.pipe(boundedQueue({ limit: 5, sink }))).toBe(drops);
    flush();
    t.deepEqual(sink.log, ['a@1', 'b@5', 'c@5']);
    t.is(sink.calls.length, 2);
    // The direct write gets the input batch itself (no copy on the fast path) ...
    t.is(sink.calls[0], x);
    // ... and the flush gets packets that live in buffers of their own.
    t.is(sink.calls[1]!.length, 2);
    for (const q of sink.calls[1]!) t.not(q.buffer, reused.buffer);
  });
});

test('nothing is written after unsubscribe, and ready$ is released', (t) => {
  marbles(t, ({ cold, hot, expectObservable, flush }, scheduler) => {
    const batches = cold('-x------', { x: [p('a'), p('b'), p('c')] });
    const refills = hot(' ------r-', { r: 10 });
    const unsub = '       ^---!';
    const drops = '       -----';
    const sink = fakeSink(scheduler, 1, refills);
    const listeners: number[] = [];
    scheduler.schedule(() => listeners.push(sink.listeners), 2);
    scheduler.schedule(() => listeners.push(sink.listeners), 5);
    expectObservable(batches.pipe(boundedQueue({ limit: 5, sink })), unsub).toBe(drops);
    flush();
    t.deepEqual(listeners, [1, 0]);
    t.is(sink.listeners, 0);
    t.deepEqual(sink.log, ['a@1']);
  });
});

test('packets still waiting when the source completes are discarded with the subscription', (t) => {
  marbles(t, ({ cold, hot, expectObservable, flush }, scheduler) => {
    const batches = cold('-x-|', { x: [p('a'), p('b')] });
    const refills = hot(' -----r', { r: 10 });
    const drops = '       ---|';
    const sink = fakeSink(scheduler, 1, refills);
    expectObservable(batches.pipe(boundedQueue({ limit: 5, sink }))).toBe(drops);
    flush();
    t.deepEqual(sink.log, ['a@1']);
    t.is(sink.listeners, 0);
  });
});

test('errors are mirrored', (t) => {
  marbles(t, ({ cold, hot, expectObservable }, scheduler) => {
    const err = new Error('tun failed');
    const batches = cold('-x-#', { x: [p('a')] }, err);
    const refills = hot<number>(' -----');
    const drops = '       ---#';
    expectObservable(batches.pipe(boundedQueue({ limit: 1, sink: fakeSink(scheduler, 0, refills) }))).toBe(drops, undefined, err);
  });
});

test('with a limit of 0 every packet the sink refuses is dropped', (t) => {
  marbles(t, ({ cold, hot, expectObservable, flush }, scheduler) => {
    const batches = cold('-x-y-|', { x: [p('a'), p('b'), p('c')], y: [p('d')] });
    const refills = hot(' --r---', { r: 0 });
    const drops = '       -2-1-|';
    const sink = fakeSink(scheduler, 1, refills);
    expectObservable(batches.pipe(boundedQueue({ limit: 0, sink }))).toBe(drops, { 1: 1, 2: 2 });
    flush();
    t.deepEqual(sink.log, ['a@1']);
  });
});

test('each subscription has its own queue', (t) => {
  marbles(t, ({ cold, hot, expectObservable, flush }, scheduler) => {
    const batches = cold('-x-y--', { x: [p('a')], y: [p('b')] });
    const refills = hot(' -----r', { r: 10 });
    const drops = '       ---1--';
    const sinkA = fakeSink(scheduler, 0, refills);
    const sinkB = fakeSink(scheduler, 0, refills);
    expectObservable(batches.pipe(boundedQueue({ limit: 1, sink: sinkA }))).toBe(drops, { 1: 1 });
    expectObservable(batches.pipe(boundedQueue({ limit: 1, sink: sinkB }))).toBe(drops, { 1: 1 });
    flush();
    t.deepEqual(sinkA.log, ['a@5']);
    t.deepEqual(sinkB.log, ['a@5']);
  });
});
