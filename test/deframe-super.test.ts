// deframe with negotiated SUPER frames (operators/deframe.ts, the `superFrames` option): SUPER
// frames join the data items as SuperPackets, are decoded however the stream is chunked (64 KiB
// frames spanning chunks included), are refused beyond MAX_BODY_SUPER, and stay unknown control
// frames with the 0.0.1-era limit while not negotiated.
import test from 'ava';
import { from, type Observable } from 'rxjs';
import { deframe } from '../operators/deframe.js';
import type { DropCounts, Inbound } from '../operators/core/packet.js';
import { FrameError } from '../operators/core/wire/decoder.js';
import { MAX_BODY_SUPER } from '../operators/core/wire/frames.js';
import { SuperPacket } from '../operators/core/wire/gso.js';
import { marbles } from './helpers/marbles.js';
import { ACK, DEFAULT_FLOW, streamBytes, superPacketBytes, tcpSegment, timestampOption } from './helpers/tcp-reference.js';

const FLOW = { ...DEFAULT_FLOW, tcpOptions: timestampOption(1, 2) };

/** Frames written by hand: 4-byte big-endian length, type, payload (independent of the encoder). */
function frame(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  const len = 1 + payload.length;
  out[0] = len >>> 24;
  out[1] = (len >>> 16) & 255;
  out[2] = (len >>> 8) & 255;
  out[3] = len & 255;
  out[4] = type;
  out.set(payload, 5);
  return out;
}

/** A SUPER frame (0x16): the u16 segment size, then the packet. */
function superFrame(gso: number, packet: Uint8Array): Uint8Array {
  const payload = new Uint8Array(2 + packet.length);
  payload[0] = gso >>> 8;
  payload[1] = gso & 255;
  payload.set(packet, 2);
  return frame(0x16, payload);
}

const data = (p: Uint8Array): Uint8Array => frame(0x01, p);

function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

/** A super-packet of `payloadBytes` payload (IPv4 + TCP with timestamps: 52 header bytes). */
const superBytes = (payloadBytes: number, seed: number): Uint8Array =>
  superPacketBytes(FLOW, { seq: seed * 100_000, id: seed, flags: ACK, payload: streamBytes(payloadBytes, seed) });

const plain1 = tcpSegment(FLOW, { seq: 1, id: 1, flags: ACK, payload: streamBytes(100, 1) });
const plain2 = tcpSegment(FLOW, { seq: 2, id: 2, flags: ACK, payload: streamBytes(7, 2) });
const small = superBytes(3000, 3);
/** The largest packet: 65535 bytes, so its SUPER frame body is exactly MAX_BODY_SUPER. */
const biggest = superBytes(65535 - 52, 4);

/** What a test compares: kind, and per packet whether it is a SuperPacket, its gsoSize and bytes. */
type Seen =
  | { kind: 'data'; packets: Array<{ super: boolean; gso?: number; hex: string }> }
  | { kind: 'control'; type: number; hex: string }
  | { kind: 'error'; name: string; limit?: number; length?: number }
  | { kind: 'complete' };

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');

/** Runs `chunks` through deframe synchronously, copying what each emission carries while it is valid. */
function run(chunks: readonly Uint8Array[], superFrames: () => boolean, drops: DropCounts[] = []): Seen[] {
  const seen: Seen[] = [];
  const source: Observable<Uint8Array> = from(chunks);
  source.pipe(deframe({ maxBody: 1496, superFrames, onDrops: (d) => drops.push(d) })).subscribe({
    next: (item: Inbound) => {
      if (item.kind === 'data') {
        seen.push({
          kind: 'data',
          packets: item.packets.map((p) => (p instanceof SuperPacket ? { super: true, gso: p.gsoSize, hex: hex(p) } : { super: false, hex: hex(p) })),
        });
      } else if (item.kind === 'control') seen.push({ kind: 'control', type: item.type, hex: hex(item.payload) });
    },
    error: (err: unknown) =>
      seen.push(err instanceof FrameError ? { kind: 'error', name: err.name, limit: err.limit, length: err.length } : { kind: 'error', name: String(err) }),
    complete: () => seen.push({ kind: 'complete' }),
  });
  return seen;
}

/** The data packets of `seen`, flattened (where the item boundaries fall depends on the chunking). */
function packetsOf(seen: readonly Seen[]): Array<{ super: boolean; gso?: number; hex: string }> {
  return seen.flatMap((s) => (s.kind === 'data' ? s.packets : []));
}

const on = (): boolean => true;
const off = (): boolean => false;

test('negotiated SUPER frames join the data item as SuperPackets with their segment size, between DATA packets', (t) => {
  const seen = run([concat(data(plain1), superFrame(1448, small), data(plain2))], on);
  t.deepEqual(seen, [
    {
      kind: 'data',
      packets: [
        { super: false, hex: hex(plain1) },
        { super: true, gso: 1448, hex: hex(small) },
        { super: false, hex: hex(plain2) },
      ],
    },
    { kind: 'complete' },
  ]);
});

test('a SUPER frame within one chunk is a view into that chunk (no copy)', (t) => {
  const chunk = concat(data(plain1), superFrame(1000, small));
  let view: Uint8Array | undefined;
  from([chunk])
    .pipe(deframe({ maxBody: 1496, superFrames: on }))
    .subscribe((item) => {
      if (item.kind === 'data') view = item.packets[1];
    });
  t.true(view instanceof SuperPacket);
  t.is(view!.buffer, chunk.buffer);
  t.is(view!.byteOffset, chunk.byteOffset + data(plain1).length + 7);
  t.is(view!.length, small.length);
});

test('a control frame between SUPER frames splits the data items and keeps the order', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const chunks = cold('-a-----|', { a: concat(superFrame(1448, small), frame(0x02, new Uint8Array(0)), superFrame(500, small)) });
    const items = '     -(xyz)-|';
    const view = chunks.pipe(deframe({ maxBody: 1496, superFrames: on }));
    expectObservable(view).toBe(items, {
      x: { kind: 'data', packets: [new SuperPacket(Uint8Array.from(small).buffer, 0, small.length, 1448)] },
      y: { kind: 'control', type: 0x02, payload: new Uint8Array(0) },
      z: { kind: 'data', packets: [new SuperPacket(Uint8Array.from(small).buffer, 0, small.length, 500)] },
    } satisfies Record<string, Inbound>);
  });
});

// ---------------------------------------------------------------------------------------------
// The chunking matrix for 64 KiB SUPER frames

const STREAM = concat(data(plain1), superFrame(1448, biggest), superFrame(1000, small), superFrame(1448, superBytes(40_000, 5)), data(plain2), superFrame(1448, biggest));
const EXPECTED = [
  { super: false, hex: hex(plain1) },
  { super: true, gso: 1448, hex: hex(biggest) },
  { super: true, gso: 1000, hex: hex(small) },
  { super: true, gso: 1448, hex: hex(superBytes(40_000, 5)) },
  { super: false, hex: hex(plain2) },
  { super: true, gso: 1448, hex: hex(biggest) },
];

/** Frame boundaries of STREAM. */
function boundaries(stream: Uint8Array): number[] {
  const out = [0];
  let at = 0;
  while (at < stream.length) {
    at += 4 + (((stream[at]! * 256 + stream[at + 1]!) * 256 + stream[at + 2]!) * 256 + stream[at + 3]!);
    out.push(at);
  }
  return out;
}

const chunked = test.macro({
  exec(t, split: (stream: Uint8Array) => Uint8Array[]) {
    const chunks = split(STREAM);
    t.is(Buffer.concat(chunks).length, STREAM.length, 'the chunks cover the stream');
    const seen = run(chunks, on);
    t.deepEqual(packetsOf(seen), EXPECTED);
    t.deepEqual(seen.at(-1), { kind: 'complete' });
  },
  title: (provided = '') => `64 KiB SUPER frames decode the same ${provided}`,
});

test('with one frame per chunk', chunked, (s) => {
  const b = boundaries(s);
  return b.slice(1).map((end, i) => s.subarray(b[i]!, end));
});

test('with everything in one chunk', chunked, (s) => [s]);

test('with one byte per chunk', chunked, (s) => Array.from({ length: s.length }, (_, i) => s.subarray(i, i + 1)));

test('with the length prefix, type byte and segment size split at every offset', chunked, (s) => {
  // Cut every frame at each offset 1..7 of its first 7 bytes (length, type, u16 segment size).
  const b = boundaries(s);
  const cuts: number[] = [];
  b.slice(0, -1).forEach((start, i) => cuts.push(start, start + 1 + (i % 7)));
  cuts.push(s.length);
  return cuts.slice(0, -1).map((c, i) => s.subarray(c, cuts[i + 1]));
});

test('with chunks of 1448 bytes (a TCP segment)', chunked, (s) => Array.from({ length: Math.ceil(s.length / 1448) }, (_, i) => s.subarray(i * 1448, (i + 1) * 1448)));

test('with 200 seeded random splits', chunked, (s) => {
  let x = 0x5eed;
  const rnd = (): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0), x / 2 ** 32);
  const cuts = new Set<number>([0, s.length]);
  while (cuts.size < 202) cuts.add(1 + Math.floor(rnd() * (s.length - 1)));
  const sorted = [...cuts].sort((a, b) => a - b);
  return sorted.slice(0, -1).map((c, i) => s.subarray(c, sorted[i + 1]));
});

test('every 64 KiB SUPER frame split in two at every 4099th offset decodes alone', (t) => {
  const f = superFrame(1448, biggest);
  const failures: number[] = [];
  for (let cut = 1; cut < f.length; cut += 4099) {
    const seen = run([f.subarray(0, cut), f.subarray(cut)], on);
    const got = packetsOf(seen);
    if (got.length !== 1 || got[0]!.hex !== hex(biggest) || got[0]!.gso !== 1448) failures.push(cut);
  }
  t.deepEqual(failures, []);
});

// ---------------------------------------------------------------------------------------------
// Limits

test('a SUPER frame body of exactly MAX_BODY_SUPER bytes is accepted', (t) => {
  const f = superFrame(1448, biggest);
  t.is(f.length - 4, MAX_BODY_SUPER);
  t.deepEqual(packetsOf(run([f], on)), [{ super: true, gso: 1448, hex: hex(biggest) }]);
});

test('a length above MAX_BODY_SUPER is a FrameError even when SUPER frames are negotiated', (t) => {
  const header = Uint8Array.of(0, 1, 0, 3, 0x16); // 65539 = MAX_BODY_SUPER + 1
  t.is(0x10003, MAX_BODY_SUPER + 1);
  t.deepEqual(run([concat(data(plain1)), header], on), [
    { kind: 'data', packets: [{ super: false, hex: hex(plain1) }] },
    { kind: 'error', name: 'FrameError', limit: MAX_BODY_SUPER, length: MAX_BODY_SUPER + 1 },
  ]);
});

test('without negotiation a 2000-byte DATA body is a FrameError at the 0.0.1-era limit', (t) => {
  const body = tcpSegment(FLOW, { seq: 1, id: 1, flags: ACK, payload: streamBytes(2000 - 1 - 52, 1) });
  t.deepEqual(run([data(body)], off), [{ kind: 'error', name: 'FrameError', limit: 1496, length: 2000 }]);
});

test('without negotiation a 2000-byte SUPER frame is a FrameError, without the option too', (t) => {
  const f = superFrame(1448, superBytes(2000 - 3 - 52, 6));
  t.deepEqual(run([f], off), [{ kind: 'error', name: 'FrameError', limit: 1496, length: 2000 }]);
  const seen: string[] = [];
  from([f])
    .pipe(deframe({ maxBody: 1496 }))
    .subscribe({ error: (e: unknown) => seen.push((e as FrameError).name) });
  t.deepEqual(seen, ['FrameError']);
});

test('without negotiation a small SUPER frame is passed on as a control frame (the pipelines count it unknown-type)', (t) => {
  const tiny = superBytes(100, 7);
  const payload = concat(Uint8Array.of(0x05, 0xa8), tiny);
  t.deepEqual(run([concat(data(plain1), superFrame(1448, tiny), data(plain2))], off), [
    { kind: 'data', packets: [{ super: false, hex: hex(plain1) }] },
    { kind: 'control', type: 0x16, hex: hex(payload) },
    { kind: 'data', packets: [{ super: false, hex: hex(plain2) }] },
    { kind: 'complete' },
  ]);
});

test('superFrames is asked per chunk: the same SUPER frame is control before and data after negotiation', (t) => {
  let negotiated = false;
  const tiny = superBytes(100, 8);
  const f = superFrame(1448, tiny);
  const seen: Seen[] = [];
  const chunks = [f, f];
  from(chunks)
    .pipe(deframe({ maxBody: 1496, superFrames: () => negotiated }))
    .subscribe((item) => {
      seen.push(item.kind === 'data' ? { kind: 'data', packets: item.packets.map((p) => ({ super: p instanceof SuperPacket, hex: hex(p) })) } : { kind: 'control', type: (item as { type: number }).type, hex: '' });
      negotiated = true;
    });
  t.deepEqual(seen, [
    { kind: 'control', type: 0x16, hex: '' },
    { kind: 'data', packets: [{ super: true, hex: hex(tiny) }] },
  ]);
});

// ---------------------------------------------------------------------------------------------
// Malformed SUPER frames

test('malformed SUPER frames are dropped and counted as malformed-super; the good packets around them pass', (t) => {
  const drops: DropCounts[] = [];
  const udp = Uint8Array.from(small, (b, i) => (i === 9 ? 17 : b));
  const seen = run(
    [
      concat(
        data(plain1),
        superFrame(0, small), // segment size 0
        superFrame(1448, udp), // not TCP
        frame(0x16, Uint8Array.of(5)), // shorter than the segment size
        superFrame(1448, small),
        superFrame(1448, small.subarray(0, 30)), // truncated headers
        data(plain2),
      ),
    ],
    on,
    drops,
  );
  t.deepEqual(seen, [
    {
      kind: 'data',
      packets: [
        { super: false, hex: hex(plain1) },
        { super: true, gso: 1448, hex: hex(small) },
        { super: false, hex: hex(plain2) },
      ],
    },
    { kind: 'complete' },
  ]);
  t.deepEqual(drops, [{ 'malformed-super': 4 }]);
});

test('a chunk holding only malformed SUPER frames emits nothing but the count', (t) => {
  const drops: DropCounts[] = [];
  t.deepEqual(run([superFrame(0, small)], on, drops), [{ kind: 'complete' }]);
  t.deepEqual(drops, [{ 'malformed-super': 1 }]);
});

test('SUPER frames with a segment size below MIN_GSO_SIZE are refused as gso-too-small, never expanded', (t) => {
  const drops: DropCounts[] = [];
  const seen = run([concat(superFrame(1, small), superFrame(255, small), superFrame(0, small), data(plain1))], on, drops);
  t.deepEqual(packetsOf(seen), [{ super: false, hex: hex(plain1) }]);
  t.deepEqual(drops, [{ 'gso-too-small': 2, 'malformed-super': 1 }]);
});
