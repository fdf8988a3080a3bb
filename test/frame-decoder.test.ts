// FrameDecoder (operators/core/wire/decoder.ts): table tests, then the chunking matrix.
import test from 'ava';
import { FrameDecoder, FrameError } from '../operators/core/wire/decoder.js';
import type { Frame } from '../operators/core/wire/frames.js';

/** A frame as the tests describe it; `type` undefined means a zero-length body (no type byte). */
interface Spec {
  readonly type?: number;
  readonly payload: Uint8Array;
}

/** Writes frames by hand (independent of encodeFrames): 4-byte big-endian length, type, payload. */
function wire(frames: readonly Spec[]): Uint8Array {
  const total = frames.reduce((n, f) => n + 4 + (f.type === undefined ? 0 : 1 + f.payload.length), 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const f of frames) {
    const len = f.type === undefined ? 0 : 1 + f.payload.length;
    out[at] = (len >>> 24) & 255;
    out[at + 1] = (len >>> 16) & 255;
    out[at + 2] = (len >>> 8) & 255;
    out[at + 3] = len & 255;
    at += 4;
    if (f.type === undefined) continue;
    out[at++] = f.type;
    out.set(f.payload, at);
    at += f.payload.length;
  }
  return out;
}

/** A 4-byte big-endian header claiming `len` bytes. */
function header(len: number): Uint8Array {
  return Uint8Array.of((len >>> 24) & 255, (len >>> 16) & 255, (len >>> 8) & 255, len & 255);
}

/** A payload of `n` bytes whose content depends on `seed`, so frames are told apart. */
function filler(n: number, seed: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (seed * 31 + i * 7) & 255;
  return p;
}

/** Plain values for deepEqual: the type and the payload bytes. */
function plain(frames: readonly Frame[]): Array<{ type: number; payload: number[] }> {
  return frames.map((f) => ({ type: f.type, payload: Array.from(f.payload) }));
}

function pushAll(decoder: FrameDecoder, chunks: readonly Uint8Array[]): Frame[] {
  const out: Frame[] = [];
  for (const c of chunks) out.push(...decoder.push(c));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Table tests

const decodes = test.macro({
  exec(t, maxBody: number, input: readonly Spec[], expected: Array<{ type: number; payload: number[] }>, empty: number) {
    const decoder = new FrameDecoder(maxBody);
    const frames = decoder.push(wire(input));
    t.deepEqual(plain(frames), expected);
    t.is(decoder.emptyFrames, empty);
    t.is(decoder.pending, 0);
  },
  title: (provided = '') => provided,
});

test('a single DATA frame decodes to its type and payload', decodes, 1496, [{ type: 0x01, payload: Uint8Array.of(9, 8, 7) }], [{ type: 1, payload: [9, 8, 7] }], 0);

test(
  'several frames in one chunk decode in order',
  decodes,
  1496,
  [
    { type: 0x01, payload: Uint8Array.of(1) },
    { type: 0x10, payload: Uint8Array.of(2, 2) },
    { type: 0x01, payload: Uint8Array.of(3, 3, 3) },
  ],
  [
    { type: 1, payload: [1] },
    { type: 0x10, payload: [2, 2] },
    { type: 1, payload: [3, 3, 3] },
  ],
  0,
);

test('a KEEPALIVE frame has an empty payload', decodes, 1496, [{ type: 0x02, payload: new Uint8Array(0) }], [{ type: 2, payload: [] }], 0);

test(
  'a zero-length body is skipped and counted',
  decodes,
  1496,
  [{ type: 0x01, payload: Uint8Array.of(5) }, { payload: new Uint8Array(0) }, { payload: new Uint8Array(0) }, { type: 0x01, payload: Uint8Array.of(6) }],
  [
    { type: 1, payload: [5] },
    { type: 1, payload: [6] },
  ],
  2,
);

test('an unknown frame type passes through', decodes, 1496, [{ type: 0x7f, payload: Uint8Array.of(1, 2) }], [{ type: 0x7f, payload: [1, 2] }], 0);

test('a body of exactly maxBody is accepted', decodes, 10, [{ type: 0x01, payload: Uint8Array.of(0, 1, 2, 3, 4, 5, 6, 7, 8) }], [{ type: 1, payload: [0, 1, 2, 3, 4, 5, 6, 7, 8] }], 0);

test('a 1496-byte body is accepted at the 0.0.1-era limit', (t) => {
  const decoder = new FrameDecoder(1496);
  const [f, ...rest] = decoder.push(wire([{ type: 0x01, payload: filler(1495, 3) }]));
  t.is(rest.length, 0);
  t.is(f?.payload.length, 1495);
  t.deepEqual(f?.payload, filler(1495, 3));
});

const refuses = test.macro({
  exec(t, maxBody: number, claimed: number) {
    const decoder = new FrameDecoder(maxBody);
    const err = t.throws(() => decoder.push(header(claimed)), { instanceOf: FrameError });
    t.is(err?.name, 'FrameError');
    t.is(err?.reason, 'oversize');
    t.is(err?.length, claimed);
    t.is(err?.limit, maxBody);
    t.true(err?.message.includes(String(claimed)));
  },
  title: (provided = '') => provided,
});

test('a body of maxBody + 1 throws FrameError with the claimed length', refuses, 1496, 1497);
test('a small limit is enforced as well', refuses, 10, 11);
test('the largest claimable length is refused as an unsigned number', refuses, 1496, 0xffffffff);

test('frames before an oversize header in earlier chunks are still delivered', (t) => {
  const decoder = new FrameDecoder(100);
  t.deepEqual(plain(decoder.push(wire([{ type: 1, payload: Uint8Array.of(4) }]))), [{ type: 1, payload: [4] }]);
  t.throws(() => decoder.push(header(101)), { instanceOf: FrameError });
});

// ---------------------------------------------------------------------------------------------
// Oversize lengths and allocation

/** Runs `body` while recording the sizes of every `new Uint8Array(n)` anywhere in the process. */
function recordAllocations(body: () => void): number[] {
  const Real = globalThis.Uint8Array;
  const sizes: number[] = [];
  globalThis.Uint8Array = new Proxy(Real, {
    construct(target, args, newTarget) {
      if (typeof args[0] === 'number') sizes.push(args[0]);
      return Reflect.construct(target, args, newTarget) as object;
    },
  });
  try {
    body();
  } finally {
    globalThis.Uint8Array = Real;
  }
  return sizes;
}

test('an oversize length in a split header throws when the header completes, without allocating', (t) => {
  const decoder = new FrameDecoder(1496);
  const claimed = header(0xffffffff);
  t.deepEqual(decoder.push(claimed.subarray(0, 1)), []);
  t.is(decoder.pending, 1);
  t.deepEqual(decoder.push(claimed.subarray(1, 3)), []);
  t.is(decoder.pending, 3);
  let err: FrameError | undefined;
  const sizes = recordAllocations(() => {
    err = t.throws(() => decoder.push(claimed.subarray(3, 4)), { instanceOf: FrameError });
  });
  t.is(err?.length, 0xffffffff);
  t.deepEqual(
    sizes.filter((n) => n > 1496),
    [],
  );
  t.true(decoder.pending <= 4);
});

test('a one-megabyte claim split after two bytes is refused before any allocation', (t) => {
  const decoder = new FrameDecoder(1496);
  const claimed = header(1_000_000);
  let err: FrameError | undefined;
  const sizes = recordAllocations(() => {
    decoder.push(claimed.subarray(0, 2));
    err = t.throws(() => decoder.push(Uint8Array.of(claimed[2]!, claimed[3]!, 0x01, 0, 0)), { instanceOf: FrameError });
  });
  t.is(err?.length, 1_000_000);
  t.false(sizes.some((n) => n >= 1_000_000));
  t.true(decoder.pending <= 4);
});

test('a body spanning chunks is buffered in exactly the announced size (the allocation probe sees it)', (t) => {
  // The positive control for the two tests above: the probe does see the decoder's allocations.
  const decoder = new FrameDecoder(1496);
  const stream = wire([{ type: 1, payload: filler(999, 1) }]);
  let frames: Frame[] = [];
  const sizes = recordAllocations(() => {
    frames = decoder.push(stream.subarray(0, 600));
  });
  t.deepEqual(frames, []);
  t.true(sizes.includes(1000));
  t.is(decoder.pending, 600);
  const [f] = decoder.push(stream.subarray(600));
  t.is(f?.payload.buffer.byteLength, 1000);
  t.deepEqual(f?.payload, filler(999, 1));
  t.is(decoder.pending, 0);
});

// ---------------------------------------------------------------------------------------------
// Views, not copies

test('payloads of frames inside one chunk are views into that chunk', (t) => {
  const chunk = wire([
    { type: 1, payload: Uint8Array.of(1, 2, 3) },
    { type: 2, payload: new Uint8Array(0) },
    { type: 1, payload: Uint8Array.of(4, 5) },
  ]);
  const frames = new FrameDecoder(1496).push(chunk);
  t.is(frames.length, 3);
  for (const f of frames) t.is(f.payload.buffer, chunk.buffer);
  t.deepEqual(
    frames.map((f) => [f.payload.byteOffset, f.payload.length]),
    [
      [5, 3],
      [13, 0],
      [18, 2],
    ],
  );
  chunk[5] = 0xaa; // a view sees a later change of the chunk: proof that nothing was copied
  t.is(frames[0]!.payload[0], 0xaa);
});

test('a frame whose header came in an earlier chunk is still a view when its body lies in one chunk', (t) => {
  const decoder = new FrameDecoder(1496);
  const stream = wire([{ type: 1, payload: Uint8Array.of(7, 7, 7) }]);
  t.deepEqual(decoder.push(stream.slice(0, 2)), []);
  const rest = stream.slice(2);
  const [f] = decoder.push(rest);
  t.is(f?.payload.buffer, rest.buffer);
  t.deepEqual(f?.payload, Uint8Array.of(7, 7, 7));
});

test('a frame spanning chunks owns its buffer, which later chunks do not change', (t) => {
  const decoder = new FrameDecoder(1496);
  const stream = wire([{ type: 1, payload: Uint8Array.of(1, 2, 3, 4) }]);
  const a = stream.slice(0, 7);
  const b = stream.slice(7);
  decoder.push(a);
  const [f] = decoder.push(b);
  t.not(f?.payload.buffer, a.buffer);
  t.not(f?.payload.buffer, b.buffer);
  a.fill(0);
  b.fill(0);
  t.deepEqual(f?.payload, Uint8Array.of(1, 2, 3, 4));
});

// ---------------------------------------------------------------------------------------------
// The chunking matrix: one byte stream, every way of cutting it, the same frames.

/** mulberry32: a small seeded PRNG returning numbers in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const MAX = 1496;

/** N mixed frames: body sizes 1..1496 (both ends included), DATA, KEEPALIVE, control, unknown, and empty bodies. */
function mixedFrames(): Spec[] {
  const rnd = prng(0x5eed);
  const bodies = [1, 2, 3, 4, 5, 1496, 1495, 20, 1400, 1, 1496];
  for (let i = 0; i < 40; i++) bodies.push(1 + Math.floor(rnd() * MAX));
  const types = [0x01, 0x01, 0x01, 0x02, 0x10, 0x11, 0x7f];
  const specs: Spec[] = [];
  bodies.forEach((size, i) => {
    const type = types[i % types.length]!;
    specs.push({ type, payload: filler(size - 1, i) });
    if (i % 13 === 6) specs.push({ payload: new Uint8Array(0) }); // a zero-length body now and then
  });
  return specs;
}

const SPECS = mixedFrames();
const STREAM = wire(SPECS);
const EXPECTED = SPECS.filter((s) => s.type !== undefined).map((s) => ({ type: s.type!, payload: s.payload }));
const EMPTY = SPECS.length - EXPECTED.length;
/** Byte offset where each frame (including empty ones) starts, plus the end of the stream. */
const STARTS = ((): number[] => {
  const starts: number[] = [];
  let at = 0;
  for (const s of SPECS) {
    starts.push(at);
    at += 4 + (s.type === undefined ? 0 : 1 + s.payload.length);
  }
  starts.push(at);
  return starts;
})();

/** Cuts the stream at the given offsets (any order) into independent chunks (copies, as sockets deliver). */
function cut(offsets: readonly number[]): Uint8Array[] {
  const inside = [...new Set(offsets)].filter((o) => o > 0 && o < STREAM.length).sort((a, b) => a - b);
  const points = [0, ...inside, STREAM.length];
  const chunks: Uint8Array[] = [];
  for (let i = 1; i < points.length; i++) chunks.push(STREAM.slice(points[i - 1], points[i]));
  return chunks;
}

/** Mismatches between decoded and expected frames, as readable lines (empty when equal). */
function differences(actual: readonly Frame[], expected: readonly { type: number; payload: Uint8Array }[]): string[] {
  const out: string[] = [];
  if (actual.length !== expected.length) out.push(`decoded ${actual.length} frames, expected ${expected.length}`);
  const n = Math.min(actual.length, expected.length);
  for (let i = 0; i < n; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (a.type !== e.type) out.push(`frame ${i}: type ${a.type}, expected ${e.type}`);
    if (Buffer.compare(a.payload, e.payload) !== 0) out.push(`frame ${i}: payload of ${a.payload.length} bytes differs from the expected ${e.payload.length}`);
  }
  return out;
}

const decodesSplit = test.macro({
  exec(t, chunksOf: () => Uint8Array[]) {
    const chunks = chunksOf();
    t.is(
      chunks.reduce((n, c) => n + c.length, 0),
      STREAM.length,
    );
    const decoder = new FrameDecoder(MAX);
    t.deepEqual(differences(pushAll(decoder, chunks), EXPECTED), []);
    t.is(decoder.emptyFrames, EMPTY);
    t.is(decoder.pending, 0);
  },
  title: (provided = '') => `the mixed stream decodes the same when cut ${provided}`,
});

test('the mixed stream covers bodies of 1 and 1496 bytes, several types and empty bodies', (t) => {
  const sizes = SPECS.map((s) => (s.type === undefined ? 0 : 1 + s.payload.length));
  t.true(sizes.includes(1));
  t.true(sizes.includes(1496));
  t.true(sizes.every((n) => n <= 1496));
  t.true(EMPTY >= 2);
  t.true(new Set(EXPECTED.map((f) => f.type)).size >= 5);
  t.true(EXPECTED.length >= 50);
});

test('into one chunk', decodesSplit, () => cut([]));
test('frame by frame', decodesSplit, () => cut(STARTS));
test('byte by byte', decodesSplit, () => cut(Array.from({ length: STREAM.length }, (_, i) => i)));
for (const k of [1, 2, 3]) {
  test(`with every header split after byte ${k}`, decodesSplit, () => cut(STARTS.flatMap((s) => [s, s + k])));
}
test('right after every header', decodesSplit, () => cut(STARTS.flatMap((s) => [s, s + 4])));
test('right after every type byte', decodesSplit, () => cut(STARTS.flatMap((s) => [s, s + 5])));
test('in the middle of every body', decodesSplit, () =>
  cut(
    STARTS.slice(0, -1).flatMap((s, i) => {
      const len = STARTS[i + 1]! - s;
      return [s, s + 4 + Math.floor((len - 4) / 2)];
    }),
  ),
);
test('in three pieces per frame, across header and body', decodesSplit, () =>
  cut(
    STARTS.slice(0, -1).flatMap((s, i) => {
      const end = STARTS[i + 1]!;
      return [s + 2, Math.min(end, s + 6), Math.max(s + 6, end - 1)];
    }),
  ),
);
test('seven frames per chunk', decodesSplit, () => cut(STARTS.filter((_, i) => i % 7 === 0)));
test('into chunks that each end inside a frame and hold many others', decodesSplit, () => cut(STARTS.filter((_, i) => i % 5 === 0).map((s) => s + 3)));
test('into fixed 1500-byte chunks', decodesSplit, () => cut(Array.from({ length: Math.ceil(STREAM.length / 1500) }, (_, i) => i * 1500)));

test('200 seeded random cuts of the mixed stream all decode the same', (t) => {
  const rnd = prng(20240611);
  const failures: string[] = [];
  for (let run = 0; run < 200; run++) {
    const offsets: number[] = [];
    // Mix tiny and large pieces: a third of the pieces are 1..8 bytes, the rest up to 3000.
    for (let at = 0; at < STREAM.length; ) {
      at += rnd() < 0.33 ? 1 + Math.floor(rnd() * 8) : 1 + Math.floor(rnd() * 3000);
      offsets.push(at);
    }
    const decoder = new FrameDecoder(MAX);
    const diff = differences(pushAll(decoder, cut(offsets)), EXPECTED);
    if (diff.length > 0 || decoder.emptyFrames !== EMPTY || decoder.pending !== 0) {
      failures.push(`run ${run} (${offsets.length} pieces): ${[...diff, `empty ${decoder.emptyFrames}`, `pending ${decoder.pending}`].join('; ')}`);
    }
  }
  t.deepEqual(failures, []);
});

test('an empty chunk changes nothing, even in the middle of a frame', (t) => {
  const decoder = new FrameDecoder(MAX);
  const stream = wire([{ type: 1, payload: Uint8Array.of(1, 2) }]);
  t.deepEqual(decoder.push(new Uint8Array(0)), []);
  t.deepEqual(decoder.push(stream.slice(0, 2)), []);
  t.deepEqual(decoder.push(new Uint8Array(0)), []);
  t.deepEqual(decoder.push(stream.slice(2, 6)), []);
  t.deepEqual(decoder.push(new Uint8Array(0)), []);
  t.deepEqual(plain(decoder.push(stream.slice(6))), [{ type: 1, payload: [1, 2] }]);
  t.is(decoder.pending, 0);
});

test('pending counts the held bytes of an unfinished frame', (t) => {
  const decoder = new FrameDecoder(MAX);
  const stream = wire([{ type: 1, payload: filler(99, 0) }]);
  decoder.push(stream.slice(0, 3));
  t.is(decoder.pending, 3);
  decoder.push(stream.slice(3, 50));
  t.is(decoder.pending, 50);
  decoder.push(stream.slice(50, 103));
  t.is(decoder.pending, 103);
  t.is(decoder.push(stream.slice(103)).length, 1);
  t.is(decoder.pending, 0);
});
