import test from 'ava';
import { coalesce } from '../operators/core/wire/gro.js';
import { SuperPacket, segmentSuper } from '../operators/core/wire/gso.js';

// An independent TCPv4 segment builder (complete checksums), so the expectations do not lean on
// the code under test.
interface Seg {
  src?: number;
  dst?: number;
  sport?: number;
  dport?: number;
  seq: number;
  ack?: number;
  id: number;
  flags?: number;
  window?: number;
  ts?: number; // adds a 12-byte timestamp option block when set
  payload: Uint8Array;
}

const ACK = 0x10;
const PSH = 0x08;

function csum(bytes: Uint8Array, seed = 0): number {
  let s = seed;
  for (let i = 0; i + 1 < bytes.length; i += 2) s += bytes[i]! * 256 + bytes[i + 1]!;
  if (bytes.length % 2 === 1) s += bytes[bytes.length - 1]! * 256;
  while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  return s;
}

function tcp(o: Seg): Uint8Array {
  const opts = o.ts === undefined ? 0 : 12;
  const thl = 20 + opts;
  const total = 20 + thl + o.payload.length;
  const p = new Uint8Array(total);
  const dv = new DataView(p.buffer);
  p[0] = 0x45;
  dv.setUint16(2, total);
  dv.setUint16(4, o.id & 0xffff);
  p[6] = 0x40; // DF
  p[8] = 64;
  p[9] = 6;
  dv.setUint32(12, o.src ?? 0x0a000002);
  dv.setUint32(16, o.dst ?? 0x0a000001);
  dv.setUint16(10, ~csum(p.subarray(0, 20)) & 0xffff);
  dv.setUint16(20, o.sport ?? 40000);
  dv.setUint16(22, o.dport ?? 5201);
  dv.setUint32(24, o.seq >>> 0);
  dv.setUint32(28, o.ack ?? 777);
  p[32] = (thl / 4) << 4;
  p[33] = o.flags ?? ACK;
  dv.setUint16(34, o.window ?? 512);
  if (o.ts !== undefined) {
    p[40] = 1;
    p[41] = 1;
    p[42] = 8;
    p[43] = 10;
    dv.setUint32(44, o.ts);
    dv.setUint32(48, 99);
  }
  p.set(o.payload, 20 + thl);
  const pseudo = new Uint8Array(12);
  pseudo.set(p.subarray(12, 20), 0);
  pseudo[9] = 6;
  new DataView(pseudo.buffer).setUint16(10, thl + o.payload.length);
  dv.setUint16(36, ~csum(p.subarray(20), csum(pseudo)) & 0xffff);
  return p;
}

function bytes(n: number, salt: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + salt) & 0xff;
  return b;
}

/** A flow of `n` segments of `mss` payload bytes (the last `last` bytes when given). */
function flow(n: number, mss: number, o: Partial<Seg> & { last?: number; seq0?: number; id0?: number } = {}): Uint8Array[] {
  const out: Uint8Array[] = [];
  let seq = o.seq0 ?? 1000;
  for (let k = 0; k < n; k++) {
    const len = k === n - 1 && o.last !== undefined ? o.last : mss;
    out.push(tcp({ ...o, seq, id: (o.id0 ?? 100) + k, payload: bytes(len, k) }));
    seq = (seq + len) >>> 0;
  }
  return out;
}

test('a run of one flow becomes one super-packet that segments back into the very same bytes', (t) => {
  const segs = flow(10, 1348, { ts: 5, last: 700 });
  const counts: number[] = [];
  const out = coalesce(segs, counts);
  t.is(out.length, 1);
  t.deepEqual(counts, [10]);
  const sp = out[0]!;
  t.true(sp instanceof SuperPacket);
  t.is((sp as SuperPacket).gsoSize, 1348);
  t.is(sp.length, 52 + 9 * 1348 + 700);
  t.is((sp[2]! << 8) | sp[3]!, sp.length);
  t.is(csum(sp.subarray(0, 20)), 0xffff, 'IP header checksum is valid');
  const back: Uint8Array[] = [];
  t.is(segmentSuper(sp as SuperPacket, 1400, back), 10);
  t.deepEqual(
    back.map((b) => Buffer.from(b).toString('hex')),
    segs.map((b) => Buffer.from(b).toString('hex')),
  );
});

test('the TCP checksum field of a coalesced packet holds the pseudo-header sum over its whole length', (t) => {
  const segs = flow(3, 1000);
  const sp = coalesce(segs, [])[0]!;
  const pseudo = new Uint8Array(12);
  pseudo.set(sp.subarray(12, 20), 0);
  pseudo[9] = 6;
  new DataView(pseudo.buffer).setUint16(10, sp.length - 20);
  t.is((sp[36]! << 8) | sp[37]!, csum(pseudo));
});

test('PSH ends a run and stays on the merged packet; the next segment starts a new run', (t) => {
  const segs = flow(6, 500);
  segs[2]![33] = ACK | PSH;
  const fixed = segs.map((s, i) => (i === 2 ? tcp({ seq: 1000 + 2 * 500, id: 102, flags: ACK | PSH, payload: bytes(500, 2) }) : s));
  const counts: number[] = [];
  const out = coalesce(fixed, counts);
  t.deepEqual(counts, [3, 3]);
  t.is(out[0]![33]! & PSH, PSH);
  t.is(out[1]![33]! & PSH, 0);
});

test('segments that must not merge pass through unchanged and in order', (t) => {
  const a = flow(2, 600);
  const cases: [string, Uint8Array][] = [
    ['another flow', tcp({ seq: 2200, id: 102, sport: 40001, payload: bytes(600, 9) })],
    ['a sequence gap', tcp({ seq: 2300, id: 102, payload: bytes(600, 9) })],
    ['another ack', tcp({ seq: 2200, id: 102, ack: 778, payload: bytes(600, 9) })],
    ['another window', tcp({ seq: 2200, id: 102, window: 600, payload: bytes(600, 9) })],
    ['a FIN', tcp({ seq: 2200, id: 102, flags: ACK | 0x01, payload: bytes(600, 9) })],
    ['an IP id that does not count up', tcp({ seq: 2200, id: 150, payload: bytes(600, 9) })],
    ['a larger payload', tcp({ seq: 2200, id: 102, payload: bytes(700, 9) })],
    ['other TCP options', tcp({ seq: 2200, id: 102, ts: 6, payload: bytes(600, 9) })],
  ];
  for (const [what, third] of cases) {
    const counts: number[] = [];
    const out = coalesce([...a, third], counts);
    t.deepEqual(counts, [2, 1], what);
    t.is(out[1], third, `${what}: passed as it is`);
  }
});

test('after a shorter segment the run ends', (t) => {
  const segs = [...flow(3, 800, { last: 100 }), tcp({ seq: 1000 + 1700, id: 103, payload: bytes(800, 3) })];
  t.deepEqual((coalesce(segs, []) as Uint8Array[]).length, 2);
});

test('a batch with nothing to merge is returned as it is, and non-TCP packets are never merged', (t) => {
  const udp = new Uint8Array(60);
  udp[0] = 0x45;
  udp[3] = 60;
  udp[9] = 17;
  const batch = [udp, udp.slice(), tcp({ seq: 1, id: 1, payload: bytes(10, 1) })];
  const counts: number[] = [];
  t.is(coalesce(batch, counts), batch);
  t.deepEqual(counts, []);
});

test('a run longer than 64 KiB is split into super-packets of at most 65535 bytes', (t) => {
  const segs = flow(100, 1360);
  const counts: number[] = [];
  const out = coalesce(segs, counts);
  t.true(out.length >= 3);
  t.is(counts.reduce((a, b) => a + b, 0), 100);
  for (const p of out) t.true(p.length <= 65535);
  const back: Uint8Array[] = [];
  for (const p of out) segmentSuper(p as SuperPacket, 1400, back);
  t.deepEqual(
    back.map((b) => Buffer.from(b).toString('hex')),
    segs.map((b) => Buffer.from(b).toString('hex')),
  );
});

test('sequence numbers and IP ids that wrap around still merge', (t) => {
  const segs = flow(4, 1000, { seq0: 0xffffff00, id0: 0xfffe });
  const counts: number[] = [];
  const out = coalesce(segs, counts);
  t.deepEqual(counts, [4]);
  const back: Uint8Array[] = [];
  segmentSuper(out[0] as SuperPacket, 1400, back);
  t.deepEqual(
    back.map((b) => Buffer.from(b).toString('hex')),
    segs.map((b) => Buffer.from(b).toString('hex')),
  );
});

test('runs of two flows interleaved with other packets keep the batch order', (t) => {
  const a = flow(3, 500);
  const b = flow(3, 500, { sport: 41000, seq0: 9000 });
  const other = tcp({ seq: 5, id: 5, flags: 0x02, payload: new Uint8Array(0) });
  const counts: number[] = [];
  const out = coalesce([...a, other, ...b], counts);
  t.deepEqual(counts, [3, 1, 3]);
  t.is(out[1], other);
  t.is((out[2]![20]! << 8) | out[2]![21]!, 41000);
});
