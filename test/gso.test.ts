// Software segmentation of super-packets (operators/core/wire/gso.ts) and their framing
// (encodePackets, superPacketOf in operators/core/wire/frames.ts). Every expectation is built by the
// independent reference in helpers/tcp-reference.ts (own header builder, own checksum).
import test from 'ava';
import { MIN_GSO_SIZE, SuperPacket, copyPacket, segmentCount, segmentSuper, tcpHeaderBytes } from '../operators/core/wire/gso.js';
import { FrameType, MAX_PACKET_COMPAT, encodeFrames, encodePackets, superPacketOf } from '../operators/core/wire/frames.js';
import {
  ACK,
  CWR,
  DEFAULT_FLOW,
  ECE,
  FIN,
  PSH,
  URG,
  expectedSegments,
  get16,
  streamBytes,
  superPacketBytes,
  tcpSegment,
  timestampOption,
  udpPacket,
  verifyTcpPacket,
  type Flow,
  type SegmentFields,
} from './helpers/tcp-reference.js';

/** A SuperPacket over a fresh buffer holding `bytes` at a non-zero offset (as views from a read arena are). */
function asSuper(bytes: Uint8Array, gso: number): SuperPacket {
  const arena = new Uint8Array(bytes.length + 13);
  arena.set(bytes, 7);
  return new SuperPacket(arena.buffer, 7, bytes.length, gso);
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');

interface Case {
  readonly flow?: Partial<Flow>;
  readonly seq?: number;
  readonly id?: number;
  readonly flags?: number;
  readonly payloadBytes: number;
  readonly gso: number;
  readonly maxPacket: number;
  /** The payload per segment the result must have (gso, or less when maxPacket forces it). */
  readonly mss: number;
}

const segments = test.macro({
  exec(t, c: Case) {
    const flow: Flow = { ...DEFAULT_FLOW, ...c.flow };
    const fields: SegmentFields = { seq: c.seq ?? 1_000_000, id: c.id ?? 0x1234, flags: c.flags ?? ACK | PSH, payload: streamBytes(c.payloadBytes, c.payloadBytes) };
    const input = asSuper(superPacketBytes(flow, fields), c.gso);
    const before = hex(input);
    const expected = expectedSegments(flow, fields, c.mss);
    const out: Uint8Array[] = [];
    const n = segmentSuper(input, c.maxPacket, out);
    t.is(n, expected.length, 'segments returned');
    t.is(out.length, expected.length, 'segments pushed');
    t.is(segmentCount(input, c.maxPacket), expected.length, 'segmentCount agrees');
    for (let k = 0; k < out.length; k++) {
      t.is(hex(out[k]!), hex(expected[k]!), `segment ${k} of ${out.length}`);
      t.false(out[k] instanceof SuperPacket, `segment ${k} is a plain packet`);
      t.true(out[k]!.length <= c.maxPacket, `segment ${k} fits maxPacket`);
      t.deepEqual(verifyTcpPacket(out[k]!), { ipChecksum: true, tcpChecksum: true, totalLength: true }, `segment ${k} checksums`);
    }
    // The payloads, in order, are the stream.
    const hdr = tcpHeaderBytes(input);
    t.is(hex(Buffer.concat(out.map((s) => s.subarray(hdr)))), hex(fields.payload), 'payloads concatenate to the stream');
    t.is(hex(input), before, 'the input is not modified');
  },
  title: (provided = '') => provided,
});

// 20-byte IP + 32-byte TCP header (timestamps), as Linux sends; gso 1448 is its MSS at MTU 1500.
const TS = { tcpOptions: timestampOption(0xa1b2c3d4, 0x01020304) };

test('a payload of exactly three segments gives three full segments', segments, { flow: TS, payloadBytes: 3 * 1448, gso: 1448, maxPacket: 1500, mss: 1448 });
test('a payload with a remainder gives a short last segment', segments, { flow: TS, payloadBytes: 3 * 1448 + 700, gso: 1448, maxPacket: 1500, mss: 1448 });
test('a payload of one byte more than a segment gives a 1-byte tail', segments, { flow: TS, payloadBytes: 1449, gso: 1448, maxPacket: 1500, mss: 1448 });
test('a payload smaller than one segment gives one segment', segments, { flow: TS, payloadBytes: 300, gso: 1448, maxPacket: 1500, mss: 1448 });
test('a payload of exactly one segment gives that segment', segments, { flow: TS, payloadBytes: 1448, gso: 1448, maxPacket: 1500, mss: 1448 });
test('a 64 KiB super-packet gives 46 segments', segments, { flow: TS, payloadBytes: 65535 - 52, gso: 1448, maxPacket: 1500, mss: 1448 });
test('without options (20 + 20 header bytes) segments carry gso bytes each', segments, { payloadBytes: 5000, gso: 1000, maxPacket: 1400, mss: 1000 });
test('IPv4 options (ihl 6) are repeated in every segment and counted in the header', segments, {
  flow: { ...TS, ipOptions: Uint8Array.of(0x94, 0x04, 0x00, 0x00) }, // router alert
  payloadBytes: 4000,
  gso: 1400,
  maxPacket: 1500,
  mss: 1400,
});
test('the longest IPv4 and TCP options (ihl 15, doff 15) are repeated in every segment', segments, {
  flow: { ipOptions: Uint8Array.from({ length: 40 }, () => 1), tcpOptions: Uint8Array.from({ length: 40 }, (_, i) => (i < 38 ? 1 : 0)) },
  payloadBytes: 3000,
  gso: 1000,
  maxPacket: 1500,
  mss: 1000,
});
test('FIN and PSH are on the last segment only, CWR on the first only, ECE and URG on all', segments, {
  flow: TS,
  flags: ACK | PSH | FIN | CWR | ECE | URG,
  payloadBytes: 4 * 1448 + 10,
  gso: 1448,
  maxPacket: 1500,
  mss: 1448,
});
test('with one segment FIN, PSH and CWR all stay on it', segments, { flow: TS, flags: ACK | PSH | FIN | CWR, payloadBytes: 100, gso: 1448, maxPacket: 1500, mss: 1448 });
test('sequence numbers wrap past 2^32', segments, { flow: TS, seq: 2 ** 32 - 2000, payloadBytes: 6000, gso: 1448, maxPacket: 1500, mss: 1448 });
test('IP ids wrap at 0xffff', segments, { flow: TS, id: 0xfffe, payloadBytes: 5 * 1448, gso: 1448, maxPacket: 1500, mss: 1448 });
test('a maxPacket below header + gso lowers the segment size to fit', segments, { flow: TS, payloadBytes: 10_000, gso: 1448, maxPacket: 1000, mss: 1000 - 52 });
test('the 0.0.1-era packet limit (1495) as maxPacket lowers gso 1448 to 1443 with 52 header bytes', segments, { flow: TS, payloadBytes: 10_000, gso: 1448, maxPacket: MAX_PACKET_COMPAT, mss: 1443 });
test('a maxPacket of header + 1 gives one payload byte per segment', segments, { payloadBytes: 7, gso: 1448, maxPacket: 41, mss: 1 });

test('whatever the super-packet checksum fields hold, the segments get complete checksums', (t) => {
  const fields: SegmentFields = { seq: 5, id: 9, flags: ACK, payload: streamBytes(3000, 3) };
  const bytes = superPacketBytes(DEFAULT_FLOW, fields);
  bytes[10] = 0xde;
  bytes[11] = 0xad; // IP checksum
  bytes[36] = 0xbe;
  bytes[37] = 0xef; // TCP checksum
  const out: Uint8Array[] = [];
  segmentSuper(asSuper(bytes, 1000), 1500, out);
  t.deepEqual(out.map(hex), expectedSegments(DEFAULT_FLOW, fields, 1000).map(hex));
});

const refuses = test.macro({
  exec(t, input: Uint8Array, gso: number, maxPacket: number) {
    const out: Uint8Array[] = [Uint8Array.of(7)];
    t.is(segmentSuper(asSuper(input, gso), maxPacket, out), 0);
    t.is(out.length, 1, 'nothing pushed');
    t.is(segmentCount(asSuper(input, gso), maxPacket), 0);
  },
  title: (provided = '') => provided,
});

const plainTcp = superPacketBytes({ ...DEFAULT_FLOW, ...TS }, { seq: 1, id: 1, flags: ACK, payload: streamBytes(3000, 1) });
test('a maxPacket equal to the headers leaves no room and gives 0', refuses, plainTcp, 1448, 52);
test('a maxPacket below the headers gives 0', refuses, plainTcp, 1448, 40);
test('a UDP packet is not segmented', refuses, udpPacket('10.0.0.2', '10.0.0.3', streamBytes(3000, 2)), 1000, 1500);
test('an IPv6 packet is not segmented', refuses, Uint8Array.from(plainTcp, (b, i) => (i === 0 ? 0x60 : b)), 1448, 1500);
test('a TCP header with data offset below 5 is not segmented', refuses, Uint8Array.from(plainTcp, (b, i) => (i === 32 ? 0x40 : b)), 1448, 1500);
test('a packet truncated inside its TCP header is not segmented', refuses, plainTcp.slice(0, 30), 1448, 1500);
test('a data offset pointing past the end is not segmented', refuses, Uint8Array.from(plainTcp.subarray(0, 50), (b, i) => (i === 32 ? 0xf0 : b)), 1448, 1500);

test('segmentCount of a plain packet is 1 whatever maxPacket is', (t) => {
  t.is(segmentCount(tcpSegment(DEFAULT_FLOW, { seq: 1, id: 1, flags: ACK, payload: streamBytes(3000, 1) }), 100), 1);
});

// ---------------------------------------------------------------------------------------------
// SuperPacket, copyPacket

test('copyPacket of a SuperPacket is a SuperPacket with the same gsoSize and its own bytes', (t) => {
  const p = asSuper(plainTcp, 1448);
  const c = copyPacket(p);
  t.true(c instanceof SuperPacket);
  t.is((c as SuperPacket).gsoSize, 1448);
  t.is(hex(c), hex(p));
  t.not(c.buffer, p.buffer);
  p[60] = p[60]! ^ 0xff;
  t.not(c[60], p[60], 'changing the original leaves the copy alone');
});

test('copyPacket of a plain packet is a plain copy', (t) => {
  const p = plainTcp.subarray(0, 100);
  const c = copyPacket(p);
  t.false(c instanceof SuperPacket);
  t.is(hex(c), hex(p));
  t.not(c.buffer, p.buffer);
});

test('subarray and slice of a SuperPacket are plain Uint8Arrays', (t) => {
  const p = asSuper(plainTcp, 1448);
  t.false(p.subarray(0, 40) instanceof SuperPacket);
  t.false(p.slice(0, 40) instanceof SuperPacket);
  t.is(p.subarray(0, 40).constructor, Uint8Array);
  t.is(hex(p.subarray(52, 60)), hex(plainTcp.subarray(52, 60)));
});

// ---------------------------------------------------------------------------------------------
// encodePackets, superPacketOf

interface WireFrame {
  readonly type: number;
  /** The SUPER frame's segment size, or undefined for other frames. */
  readonly gso?: number;
  readonly packet: string;
}

/** Parses frames by hand (4-byte length, type, for SUPER a u16 segment size) from a whole buffer. */
function parseFrames(buf: Uint8Array): WireFrame[] {
  const out: WireFrame[] = [];
  let at = 0;
  while (at < buf.length) {
    const len = ((buf[at]! * 256 + buf[at + 1]!) * 256 + buf[at + 2]!) * 256 + buf[at + 3]!;
    const type = buf[at + 4]!;
    const body = buf.subarray(at + 5, at + 4 + len);
    out.push(type === 0x16 ? { type, gso: get16(body, 0), packet: hex(body.subarray(2)) } : { type, packet: hex(body) });
    at += 4 + len;
  }
  if (at !== buf.length) throw new Error('trailing bytes');
  return out;
}

const FLOW: Flow = { ...DEFAULT_FLOW, ...TS };
const FIELDS: SegmentFields = { seq: 77, id: 500, flags: ACK | PSH, payload: streamBytes(20_000, 9) };
const SUPER_BYTES = superPacketBytes(FLOW, FIELDS);
const superPkt = (): SuperPacket => asSuper(SUPER_BYTES, 1448);
const plainA = tcpSegment(FLOW, { seq: 1, id: 1, flags: ACK, payload: streamBytes(100, 1) });
const plainB = udpPacket('10.0.0.2', '10.0.0.9', streamBytes(33, 2));

test('a batch of plain packets encodes to the same bytes as encodeFrames(DATA), whatever the encoding', (t) => {
  const want = hex(encodeFrames(FrameType.Data, [plainA, plainB]));
  t.is(hex(encodePackets([plainA, plainB], { superFrames: false, maxPacket: 1495 })!), want);
  t.is(hex(encodePackets([plainA, plainB], { superFrames: true, maxPacket: 9000 })!), want);
});

test('an empty batch encodes to nothing', (t) => {
  t.is(encodePackets([], { superFrames: true, maxPacket: 1400 }), undefined);
  t.is(encodePackets([], { superFrames: false, maxPacket: 1400 }), undefined);
});

test('a super-packet for a peer taking SUPER frames is one SUPER frame: length, 0x16, u16 segment size, the packet', (t) => {
  const buf = encodePackets([superPkt()], { superFrames: true, maxPacket: 1500 })!;
  t.is(buf.length, 4 + 1 + 2 + SUPER_BYTES.length);
  t.is(buf.readUInt32BE(0), 1 + 2 + SUPER_BYTES.length);
  t.deepEqual(parseFrames(buf), [{ type: 0x16, gso: 1448, packet: hex(SUPER_BYTES) }]);
});

test('the segment size of a SUPER frame is lowered to fit the peer maxPacket', (t) => {
  const buf = encodePackets([superPkt()], { superFrames: true, maxPacket: 1400 })!;
  t.deepEqual(parseFrames(buf), [{ type: 0x16, gso: 1400 - 52, packet: hex(SUPER_BYTES) }]);
});

test('a super-packet for a peer without SUPER frames becomes DATA frames of its segments', (t) => {
  const buf = encodePackets([superPkt()], { superFrames: false, maxPacket: 1400 })!;
  t.deepEqual(
    parseFrames(buf),
    expectedSegments(FLOW, FIELDS, 1400 - 52).map((s) => ({ type: 0x01, packet: hex(s) })),
  );
});

test('without SUPER frames segments never exceed the 0.0.1-era packet limit, whatever maxPacket says', (t) => {
  const big = asSuper(SUPER_BYTES, 8000);
  const buf = encodePackets([big], { superFrames: false, maxPacket: 9000 })!;
  t.deepEqual(
    parseFrames(buf),
    expectedSegments(FLOW, FIELDS, MAX_PACKET_COMPAT - 52).map((s) => ({ type: 0x01, packet: hex(s) })),
  );
});

test('a mixed batch keeps its order: DATA, SUPER, DATA', (t) => {
  const buf = encodePackets([plainA, superPkt(), plainB], { superFrames: true, maxPacket: 1500 })!;
  t.deepEqual(parseFrames(buf), [
    { type: 0x01, packet: hex(plainA) },
    { type: 0x16, gso: 1448, packet: hex(SUPER_BYTES) },
    { type: 0x01, packet: hex(plainB) },
  ]);
});

test('a mixed batch for a peer without SUPER frames keeps its order with the segments (at most 1495 bytes) in the middle', (t) => {
  const buf = encodePackets([plainA, superPkt(), plainB], { superFrames: false, maxPacket: 1500 })!;
  t.deepEqual(parseFrames(buf), [
    { type: 0x01, packet: hex(plainA) },
    ...expectedSegments(FLOW, FIELDS, MAX_PACKET_COMPAT - 52).map((s) => ({ type: 0x01, packet: hex(s) })),
    { type: 0x01, packet: hex(plainB) },
  ]);
});

test('batches with super-packets are encoded into the buffer alloc returns, of exactly the bytes needed', (t) => {
  const asked: number[] = [];
  const slab = Buffer.alloc(100_000);
  const buf = encodePackets([plainA, superPkt()], { superFrames: true, maxPacket: 1500 }, (n) => {
    asked.push(n);
    return slab.subarray(10, 10 + n);
  })!;
  t.deepEqual(asked, [5 + plainA.length + 7 + SUPER_BYTES.length]);
  t.is(buf.buffer, slab.buffer);
  t.is(parseFrames(buf).length, 2);
});

test('superPacketOf gives a view of the packet with the segment size', (t) => {
  const payload = new Uint8Array(2 + SUPER_BYTES.length);
  payload[0] = 0x05;
  payload[1] = 0xa8; // 1448
  payload.set(SUPER_BYTES, 2);
  const p = superPacketOf(payload.subarray(0));
  if (!(p instanceof SuperPacket)) return t.fail(`refused: ${p}`);
  t.is(p.gsoSize, 1448);
  t.is(p.buffer, payload.buffer);
  t.is(p.byteOffset, payload.byteOffset + 2);
  t.is(hex(p), hex(SUPER_BYTES));
});

const malformed = test.macro({
  exec(t, payload: Uint8Array) {
    t.is(superPacketOf(payload), 'malformed-super');
  },
  title: (provided = '') => `superPacketOf refuses ${provided}`,
});

const withPrefix = (gso: number, packet: Uint8Array): Uint8Array => {
  const b = new Uint8Array(2 + packet.length);
  b[0] = gso >>> 8;
  b[1] = gso & 0xff;
  b.set(packet, 2);
  return b;
};

test('an empty payload', malformed, new Uint8Array(0));
test('a payload of the segment size only', malformed, Uint8Array.of(5, 0xa8));
test('a segment size of 0', malformed, withPrefix(0, SUPER_BYTES));
test('a UDP packet', malformed, withPrefix(1000, udpPacket('10.0.0.2', '10.0.0.3', streamBytes(3000, 4))));
test('a packet truncated inside its headers', malformed, withPrefix(1448, SUPER_BYTES.subarray(0, 45)));
test('a segment size that with the headers exceeds 65535', malformed, withPrefix(65535 - 52 + 1, SUPER_BYTES));
test('superPacketOf refuses a segment size below MIN_GSO_SIZE as gso-too-small, and takes MIN_GSO_SIZE itself', (t) => {
  t.is(superPacketOf(withPrefix(1, SUPER_BYTES)), 'gso-too-small');
  t.is(superPacketOf(withPrefix(MIN_GSO_SIZE - 1, SUPER_BYTES)), 'gso-too-small');
  const p = superPacketOf(withPrefix(MIN_GSO_SIZE, SUPER_BYTES));
  t.true(p instanceof SuperPacket && p.gsoSize === MIN_GSO_SIZE);
});

test('a super-packet whose segment size would fall below MIN_GSO_SIZE travels as DATA segments, never as a SUPER frame the peer refuses', (t) => {
  const small = asSuper(SUPER_BYTES, 100);
  const frames = parseFrames(encodePackets([small], { superFrames: true, maxPacket: 1500 })!);
  t.true(frames.length > 1);
  t.true(frames.every((f) => f.type === FrameType.Data));
  // A peer MTU that lowers the segment size below the floor: segments too.
  const lowered = parseFrames(encodePackets([superPkt()], { superFrames: true, maxPacket: 52 + MIN_GSO_SIZE - 1 })!);
  t.true(lowered.every((f) => f.type === FrameType.Data && f.packet.length / 2 <= 52 + MIN_GSO_SIZE - 1));
});

const tooLong = new Uint8Array(65536);
tooLong.set(SUPER_BYTES.subarray(0, 52));
test('a packet longer than 65535 bytes', malformed, withPrefix(1448, tooLong));
