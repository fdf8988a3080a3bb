// writeSession (operators/writeSession.ts): the one writer of a session, its control lane ahead of
// data, the bounded data queue, and what happens while the connection is busy, in virtual time.
import test from 'ava';
import { Subject } from 'rxjs';
import type { ByteSink } from '../operators/core/packet.js';
import { FrameDecoder } from '../operators/core/wire/decoder.js';
import { FrameType, encodeFrame } from '../operators/core/wire/frames.js';
import { writeSession, type Outgoing } from '../operators/writeSession.js';
import { bytes, ipv4Packet, marbles } from './helpers/marbles.js';

/** A connection's send side for tests: records the frames written (type and first payload byte), busy on demand. */
class Sink implements ByteSink {
  readonly written: string[] = [];
  needsDrain = false;
  pendingBytes = 0;
  readonly drain$ = new Subject<void>();
  private readonly decoder = new FrameDecoder(70_000);

  write(chunk: Uint8Array): boolean {
    for (const f of this.decoder.push(chunk)) this.written.push(f.type === FrameType.Data ? `D${f.payload[20]}` : `${f.type.toString(16)}:${f.payload[0] ?? ''}`);
    return !this.needsDrain;
  }

  drain(): void {
    this.needsDrain = false;
    this.drain$.next();
  }
}

const control = (type: number, tag: number, key?: string, whenIdle?: boolean): Outgoing => ({
  kind: 'control',
  frame: encodeFrame(type, bytes(tag)),
  ...(key === undefined ? {} : { key }),
  ...(whenIdle === undefined ? {} : { whenIdle }),
});
/** A DATA item whose packets carry `tags` as their first payload byte. */
const data = (...tags: number[]): Outgoing => ({ kind: 'data', packets: tags.map((n) => ipv4Packet('10.0.0.1', '10.0.0.2', bytes(n))) });
const encoding = { superFrames: false, maxPacket: 1495 };

test('while idle, control frames and packets go out at once, in the order they come', (t) => {
  const sink = new Sink();
  marbles(t, ({ cold, expectObservable }) => {
    const items = cold('-a-b-c-|', { a: control(0x15, 1), b: data(7, 8), c: control(0x11, 2) });
    expectObservable(items.pipe(writeSession({ sink, encoding, limit: 10 }))).toBe('-------|');
  });
  t.deepEqual(sink.written, ['15:1', 'D7', 'D8', '11:2']);
});

test('while busy, control waits in its lane ahead of data; packets wait up to the limit, newer ones drop; at drain control goes first', (t) => {
  const sink = new Sink();
  sink.needsDrain = true;
  const gauge = { depth: 0 };
  marbles(t, ({ cold, expectObservable, flush }) => {
    const items = cold('-a-b-c-d-', { a: data(1, 2), b: control(0x15, 9), c: data(3, 4), d: control(0x12, 5) });
    expectObservable(items.pipe(writeSession({ sink, encoding, limit: 3, gauge }))).toBe('-----x---', { x: { 'queue-full': 1 } });
    flush();
    t.is(gauge.depth, 3);
    t.deepEqual(sink.written, []);
    sink.drain();
  });
  t.deepEqual(sink.written, ['15:9', '12:5', 'D1', 'D2', 'D3'], 'control first, then the queued packets in order; 4 was dropped');
  t.is(gauge.depth, 0);
});

test('the queue is bounded in bytes as well: beyond byteLimit newer packets drop as queue-full', (t) => {
  const sink = new Sink();
  sink.needsDrain = true;
  const gauge = { depth: 0 };
  // Each test packet is 21 bytes (a 20-byte header and one payload byte): room for three in 70.
  marbles(t, ({ cold, expectObservable, flush }) => {
    const items = cold('-a-b-c', { a: data(1, 2), b: data(3, 4), c: data(5) });
    expectObservable(items.pipe(writeSession({ sink, encoding, limit: 100, byteLimit: 70, gauge }))).toBe('---x-y', { x: { 'queue-full': 1 }, y: { 'queue-full': 1 } });
    flush();
    t.is(gauge.depth, 3);
    sink.drain();
  });
  t.deepEqual(sink.written, ['D1', 'D2', 'D3'], 'the packets that fitted, in order');
});

test('a keyed control frame replaces an older one of its key while they wait (a member under load gets the latest ROUTES, not a stale one)', (t) => {
  const sink = new Sink();
  sink.needsDrain = true;
  marbles(t, ({ cold, expectObservable, flush }) => {
    const items = cold('-a-b-c-', { a: control(0x15, 1, 'routes'), b: control(0x14, 7, 'pong'), c: control(0x15, 2, 'routes') });
    expectObservable(items.pipe(writeSession({ sink, encoding, limit: 10 }))).toBe('-------');
    flush();
    sink.drain();
  });
  t.deepEqual(sink.written, ['15:2', '14:7'], 'the newer ROUTES took the older one\u2019s place in the lane');
});

test('frames sent only when idle (KEEPALIVE, PING) are skipped while the connection is busy, not queued', (t) => {
  const sink = new Sink();
  marbles(t, ({ cold, expectObservable, flush }) => {
    const items = cold('-a-b-|', { a: control(0x02, 0, 'keepalive', true), b: control(0x13, 1, 'ping', true) });
    expectObservable(items.pipe(writeSession({ sink, encoding, limit: 10 }))).toBe('-----|');
    flush();
    t.deepEqual(sink.written, ['2:0', '13:1'], 'idle: sent');
  });
  const busy = new Sink();
  busy.needsDrain = true;
  marbles(t, ({ cold, expectObservable, flush }) => {
    const items = cold('-a-b-', { a: control(0x02, 0, 'keepalive', true), b: data(1) });
    expectObservable(items.pipe(writeSession({ sink: busy, encoding, limit: 10 }))).toBe('-----');
    flush();
    busy.drain();
  });
  t.deepEqual(busy.written, ['D1'], 'busy: the keepalive was not needed');
});

test('control frames still waiting when the session ends are written then (a REJECT before the close); waiting data is not', (t) => {
  const sink = new Sink();
  sink.needsDrain = true;
  marbles(t, ({ cold, expectObservable }) => {
    const items = cold('-a-b-', { a: data(1), b: control(0x12, 3) });
    expectObservable(items.pipe(writeSession({ sink, encoding, limit: 10 })), '^---!').toBe('-----');
  });
  t.deepEqual(sink.written, ['12:3']);
});

test('the lane is bounded: a peer that never reads cannot make it grow (an older one-off frame gives way)', (t) => {
  const sink = new Sink();
  sink.needsDrain = true;
  marbles(t, ({ cold, expectObservable, flush }) => {
    const values: Record<string, Outgoing> = {};
    let marble = '';
    for (let i = 0; i < 20; i++) {
      const k = String.fromCharCode(97 + i);
      values[k] = control(0x12, i);
      marble += k;
    }
    expectObservable(cold(`(${marble})`, values).pipe(writeSession({ sink, encoding, limit: 10 }))).toBe('');
    flush();
    sink.drain();
  });
  t.is(sink.written.length, 16);
  t.deepEqual(sink.written.slice(-2), ['12:18', '12:19'], 'the newest stay');
});

test('packets the sink wrote are counted through `sent`', (t) => {
  const sink = new Sink();
  const counted: number[] = [];
  marbles(t, ({ cold, expectObservable }) => {
    expectObservable(cold('-a-|', { a: data(1, 2, 3) }).pipe(writeSession({ sink, encoding, limit: 10, sent: (_p, n) => counted.push(n) }))).toBe('---|');
  });
  t.deepEqual(counted, [3]);
});

/** A sink that takes one write per drain (busy again after each), like a link slower than the arrivals. */
class SlowSink extends Sink {
  override write(chunk: Uint8Array): boolean {
    super.write(chunk);
    this.needsDrain = true;
    return false;
  }
}

/** Feeds 100 packets every 10 ms and lets the sink take one chunk every 10 ms, until `until`; returns the drops seen and their times. */
function standingQueue(
  t: Parameters<typeof marbles>[0],
  codel: boolean,
  until: number,
  maxWaitMs: number | false = false,
): { at: number; drops: Record<string, number> }[] {
  const seen: { at: number; drops: Record<string, number> }[] = [];
  marbles(t, (_h, scheduler) => {
    const sink = new SlowSink();
    sink.needsDrain = true;
    const items = new Subject<Outgoing>();
    const sub = items.pipe(writeSession({ sink, encoding, limit: 100_000, scheduler, maxWaitMs, ...(codel ? {} : { codel: false }) })).subscribe((d) => seen.push({ at: scheduler.now(), drops: d }));
    for (let ms = 0; ms < until; ms += 10) {
      scheduler.schedule(() => items.next(data(...Array.from({ length: 100 }, (_, i) => i))), ms);
      scheduler.schedule(() => sink.drain(), ms + 5);
    }
    scheduler.schedule(() => sub.unsubscribe(), until);
    scheduler.flush();
  });
  return seen;
}

test('CoDel: a queue that stands above 5 ms for 100 ms loses its oldest packets as queue-delay; nothing is dropped before that', (t) => {
  const seen = standingQueue(t, true, 400);
  const delayDrops = seen.filter((s) => (s.drops['queue-delay'] ?? 0) > 0);
  t.true(delayDrops.length > 0, 'CoDel dropped');
  t.true(delayDrops[0]!.at >= 100, `not before the interval: first at ${delayDrops[0]!.at}`);
  t.deepEqual(seen.filter((s) => s.drops['queue-full'] !== undefined), [], 'the packet limit was never reached');
});

test('CoDel off: the same standing queue only grows (no queue-delay drops)', (t) => {
  t.deepEqual(standingQueue(t, false, 400), []);
});

test('the hard wait limit: a packet that waited more than 10 ms is dropped at the head as queue-age, with CoDel off too; younger ones go out', (t) => {
  const sink = new Sink();
  sink.needsDrain = true;
  marbles(t, ({ cold, expectObservable, flush }) => {
    // a, b arrive at 1 and 3 ms; the drain comes at 13 ms: a waited 12 ms (dropped), b 10 ms (written).
    const items = cold('-a-b-', { a: data(1), b: data(2) });
    const drain = cold('-------------d', { d: undefined });
    expectObservable(items.pipe(writeSession({ sink, encoding, limit: 10, codel: false }))).toBe('-------------x', { x: { 'queue-age': 1 } });
    drain.subscribe(() => sink.drain());
    flush();
  });
  t.deepEqual(sink.written, ['D2']);
});

test('a standing queue is bounded by the hard limit: nothing waits beyond 10 ms, the excess goes as queue-age, no queue-full', (t) => {
  const seen = standingQueue(t, false, 200, 10);
  const aged = seen.reduce((n, s) => n + (s.drops['queue-age'] ?? 0), 0);
  t.true(aged > 0, 'the hard limit dropped');
  t.true(seen[0]!.at > 10, `nothing before a packet could have waited 10 ms: first at ${seen[0]!.at}`);
  t.deepEqual(seen.filter((s) => s.drops['queue-full'] !== undefined || s.drops['queue-delay'] !== undefined), []);
});

test('with CoDel on, the hard limit spares a burst: a batch that waited 50 ms once (super-packets on a fast link) all goes out', (t) => {
  const sink = new Sink();
  sink.needsDrain = true;
  marbles(t, ({ cold, expectObservable, flush }) => {
    const items = cold('-a', { a: data(1, 2, 3, 4, 5) });
    const drain = cold('-' + '-'.repeat(50) + 'd', { d: undefined });
    expectObservable(items.pipe(writeSession({ sink, encoding, limit: 10 }))).toBe('');
    drain.subscribe(() => sink.drain());
    flush();
  });
  t.deepEqual(sink.written, ['D1', 'D2', 'D3', 'D4', 'D5']);
});

test('with CoDel on, the hard limit acts once the queue has stood for an interval: no queue-age before 100 ms, then it bounds the wait', (t) => {
  const seen = standingQueue(t, true, 400, 10);
  const aged = seen.filter((s) => (s.drops['queue-age'] ?? 0) > 0);
  t.true(aged.length > 0, 'the hard limit dropped');
  t.true(aged[0]!.at >= 100, `not before the interval: first at ${aged[0]!.at}`);
  t.deepEqual(seen.filter((s) => s.drops['queue-full'] !== undefined), []);
});

test('the hard limit off: the same standing queue is only CoDel\u2019s', (t) => {
  t.deepEqual(standingQueue(t, false, 200, false), []);
});

/** A sink that takes `room` bytes before it is above its mark, and empties at drain. */
class RoomSink extends Sink {
  readonly sizes: number[] = [];
  constructor(private readonly capacity: number) {
    super();
  }

  get room(): number {
    return this.capacity - this.pendingBytes;
  }

  override write(chunk: Uint8Array): boolean {
    super.write(chunk);
    this.sizes.push(chunk.length);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= this.capacity) this.needsDrain = true;
    return !this.needsDrain;
  }

  override drain(): void {
    this.pendingBytes = 0;
    super.drain();
  }
}

test('no write is larger than the connection\u2019s room (but at least a packet): the rest of a batch waits in the timed queue, not in the send buffer', (t) => {
  // Packets of 21 bytes (20 + one payload byte): a room of 50 bytes takes two per write and is then full.
  const sink = new RoomSink(50);
  const gauge = { depth: 0 };
  marbles(t, ({ cold, expectObservable, flush }) => {
    expectObservable(cold('-a-', { a: data(1, 2, 3, 4, 5) }).pipe(writeSession({ sink, encoding, limit: 10, gauge }))).toBe('---');
    flush();
    t.deepEqual(sink.written, ['D1', 'D2'], 'one write of what fits');
    t.is(gauge.depth, 3, 'the rest waits in the queue');
    sink.drain();
    t.deepEqual(sink.written, ['D1', 'D2', 'D3', 'D4']);
    sink.drain();
  });
  t.deepEqual(sink.written, ['D1', 'D2', 'D3', 'D4', 'D5']);
  t.is(sink.sizes.length, 3, 'three writes');
  const framed = sink.sizes.at(-1)!; // the last write carried one packet
  t.deepEqual(sink.sizes, [2 * framed, 2 * framed, framed], 'two framed packets per write at most');
  t.is(gauge.depth, 0);
});

test('a room smaller than one packet still takes one packet per write (no stall)', (t) => {
  const sink = new RoomSink(10);
  marbles(t, ({ cold, expectObservable, flush }) => {
    expectObservable(cold('-a-', { a: data(1, 2) }).pipe(writeSession({ sink, encoding, limit: 10 }))).toBe('---');
    flush();
    t.deepEqual(sink.written, ['D1']);
    sink.drain();
  });
  t.deepEqual(sink.written, ['D1', 'D2']);
});
