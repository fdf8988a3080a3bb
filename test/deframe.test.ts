// deframe (operators/deframe.ts): chunks in, Inbound items out, in virtual time.
import test from 'ava';
import { of } from 'rxjs';
import { deframe } from '../operators/deframe.js';
import type { DropCounts, Inbound } from '../operators/core/packet.js';
import { FrameError } from '../operators/core/wire/decoder.js';
import { FrameType, encodeFrame } from '../operators/core/wire/frames.js';
import { bytes, marbles } from './helpers/marbles.js';

function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

const p1 = bytes(0x45, 1);
const p2 = bytes(0x45, 2, 2);
const p3 = bytes(0x45, 3, 3, 3, 3, 3, 3, 3);
/** Frames as plain Uint8Arrays (the encoder returns Buffers; a socket driver may hand over either). */
const plainFrame = (type: number, payload?: Uint8Array): Uint8Array => new Uint8Array(encodeFrame(type, payload));
const data = (p: Uint8Array): Uint8Array => plainFrame(FrameType.Data, p);
const KEEPALIVE = plainFrame(FrameType.Keepalive);
/** A zero-length body: a header announcing 0 bytes. */
const EMPTY_FRAME = bytes(0, 0, 0, 0);

test('DATA frames of one chunk are grouped; other frames split the groups; order is kept', (t) => {
  const whole3 = data(p3);
  marbles(t, ({ cold, expectObservable }) => {
    const chunks = cold('-a----b-c--|', {
      a: concat(data(p1), KEEPALIVE, data(p2)),
      b: whole3.subarray(0, 6),
      c: whole3.subarray(6),
    });
    const items = '     -(xyz)--w--|';
    expectObservable(chunks.pipe(deframe({ maxBody: 1496 }))).toBe(items, {
      x: { kind: 'data', packets: [p1] },
      y: { kind: 'control', type: FrameType.Keepalive, payload: bytes() },
      z: { kind: 'data', packets: [p2] },
      w: { kind: 'data', packets: [p3] },
    } satisfies Record<string, Inbound>);
  });
});

test('consecutive DATA frames in one chunk become one data item with every packet', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const chunks = cold('-a-|', { a: concat(data(p1), data(p2), data(p3)) });
    const items = '     -x-|';
    expectObservable(chunks.pipe(deframe({ maxBody: 1496 }))).toBe(items, {
      x: { kind: 'data', packets: [p1, p2, p3] },
    });
  });
});

test('DATA frames completed by different chunks are separate items', (t) => {
  const two = data(p2);
  marbles(t, ({ cold, expectObservable }) => {
    const chunks = cold('-a--b-|', { a: concat(data(p1), two.subarray(0, 3)), b: two.subarray(3) });
    const items = '     -x--y-|';
    expectObservable(chunks.pipe(deframe({ maxBody: 1496 }))).toBe(items, {
      x: { kind: 'data', packets: [p1] },
      y: { kind: 'data', packets: [p2] },
    });
  });
});

test('control and unknown frame types come out as control items with their payload', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const chunks = cold('-a-b-|', { a: plainFrame(FrameType.Hello, bytes(0x7b, 0x7d)), b: plainFrame(0x66, bytes(1, 2)) });
    const items = '     -h-u-|';
    expectObservable(chunks.pipe(deframe({ maxBody: 1496 }))).toBe(items, {
      h: { kind: 'control', type: FrameType.Hello, payload: bytes(0x7b, 0x7d) },
      u: { kind: 'control', type: 0x66, payload: bytes(1, 2) },
    });
  });
});

test('a chunk that completes no frame emits nothing', (t) => {
  const whole = data(p3);
  marbles(t, ({ cold, expectObservable }) => {
    const chunks = cold('-a-b-c-|', { a: whole.subarray(0, 2), b: whole.subarray(2, 5), c: whole.subarray(5) });
    const items = '     -----w-|';
    expectObservable(chunks.pipe(deframe({ maxBody: 1496 }))).toBe(items, { w: { kind: 'data', packets: [p3] } });
  });
});

test('an oversize length ends the stream with FrameError and unsubscribes the source', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }) => {
    const chunks = cold('-a-b-c-|', { a: data(p1), b: bytes(0, 0, 5, 0xd9, 1), c: data(p2) });
    const subs = '       ^--!';
    const items = '      -x-#';
    expectObservable(chunks.pipe(deframe({ maxBody: 1496 }))).toBe(items, { x: { kind: 'data', packets: [p1] } }, new FrameError('oversize', 1497, 1496));
    expectSubscriptions(chunks.subscriptions).toBe(subs);
  });
});

test('the error is a FrameError carrying the claimed length and the limit in force', (t) => {
  let caught: unknown;
  of(bytes(0, 0, 0, 200)).pipe(deframe({ maxBody: 100 })).subscribe({ error: (e: unknown) => (caught = e) });
  t.true(caught instanceof FrameError);
  t.like(caught as FrameError, { reason: 'oversize', length: 200, limit: 100 });
});

test('completion and errors of the source are mirrored', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const err = new Error('socket reset');
    const completes = cold('-a--|', { a: data(p1) });
    const fails = cold('    -a--#', { a: data(p1) }, err);
    const done = '          -x--|';
    const failed = '        -x--#';
    expectObservable(completes.pipe(deframe({ maxBody: 1496 }))).toBe(done, { x: { kind: 'data', packets: [p1] } });
    expectObservable(fails.pipe(deframe({ maxBody: 1496 }))).toBe(failed, { x: { kind: 'data', packets: [p1] } }, err);
  });
});

test('a source that completes inside a frame completes without emitting the partial frame', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const chunks = cold('-a-|', { a: data(p3).subarray(0, 7) });
    const items = '     ---|';
    expectObservable(chunks.pipe(deframe({ maxBody: 1496 }))).toBe(items);
  });
});

test('onDrops receives the count of zero-length bodies per chunk, and is not called otherwise', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const calls: Array<[number, DropCounts]> = [];
    const chunks = cold('-a-b--c-|', { a: concat(EMPTY_FRAME, data(p1), EMPTY_FRAME), b: data(p2), c: EMPTY_FRAME.subarray(0, 2) });
    const items = '     -x-y----|';
    const out = chunks.pipe(deframe({ maxBody: 1496, onDrops: (d) => calls.push([scheduler.now(), { ...d }]) }));
    expectObservable(out).toBe(items, { x: { kind: 'data', packets: [p1] }, y: { kind: 'data', packets: [p2] } });
    flush();
    t.deepEqual(calls, [[1, { 'empty-frame': 2 }]]);
  });
});

test('a zero-length body whose header is split is counted when the header completes', (t) => {
  marbles(t, ({ cold, expectObservable, flush }, scheduler) => {
    const calls: Array<[number, DropCounts]> = [];
    const chunks = cold('-a-b-|', { a: EMPTY_FRAME.subarray(0, 1), b: concat(EMPTY_FRAME.subarray(1), data(p1)) });
    const items = '     ---x-|';
    const out = chunks.pipe(deframe({ maxBody: 1496, onDrops: (d) => calls.push([scheduler.now(), { ...d }]) }));
    expectObservable(out).toBe(items, { x: { kind: 'data', packets: [p1] } });
    flush();
    t.deepEqual(calls, [[3, { 'empty-frame': 1 }]]);
  });
});

test('data packets are views into the received chunk, not copies', (t) => {
  const chunk = concat(data(p1), data(p2));
  const items: Inbound[] = [];
  of(chunk)
    .pipe(deframe({ maxBody: 1496 }))
    .subscribe((i) => items.push(i));
  const item = items[0];
  t.is(items.length, 1);
  if (item?.kind !== 'data') return t.fail('expected a data item');
  for (const p of item.packets) t.is(p.buffer, chunk.buffer);
  t.deepEqual(item.packets, [p1, p2]);
});

test('each subscription decodes with its own state', (t) => {
  const whole = data(p2);
  marbles(t, ({ cold, expectObservable }) => {
    const chunks = cold('-a-b-|', { a: whole.subarray(0, 3), b: whole.subarray(3) });
    const out = chunks.pipe(deframe({ maxBody: 1496 }));
    const items = '     ---y-|';
    expectObservable(out).toBe(items, { y: { kind: 'data', packets: [p2] } });
    expectObservable(out).toBe(items, { y: { kind: 'data', packets: [p2] } });
  });
});
