// operators/wire/fragment.ts: IPv4 fragmentation (RFC 791), ICMP fragmentation-needed (RFC 792,
// 1191, 1812) and fitPackets, checked field by field and by reassembling with an independent
// reference (the checksum verifier is test/helpers/forge.ts's own RFC 1071 implementation).
import test from 'ava';
import { fitPackets, fragmentIpv4, icmpFragmentationNeeded } from '../operators/core/wire/fragment.js';
import { SuperPacket } from '../operators/core/wire/gso.js';
import { internetChecksum, udpPacket } from './helpers/forge.js';
import { parseIpv4 } from '../operators/core/address.js';

const HUB = parseIpv4('10.0.0.1')!;

/** A UDP packet of `size` bytes from 10.0.0.2 to 10.0.0.3 with a recognisable payload; DF as given. */
function udp(size: number, df: boolean, id = 0x1234): Uint8Array {
  const payload = Uint8Array.from({ length: size - 28 }, (_, i) => (i * 7 + 3) & 0xff);
  const p = Uint8Array.from(udpPacket('10.0.0.2', '10.0.0.3', 5000, 6000, payload, id));
  if (!df) {
    p[6] = 0;
    resum(p, 20);
  }
  return p;
}

/** Rewrites the header checksum of `p` (header of `ihl` bytes) after a test changed its fields. */
function resum(p: Uint8Array, ihl: number): void {
  p[10] = 0;
  p[11] = 0;
  const c = internetChecksum(p.subarray(0, ihl));
  p[10] = c >>> 8;
  p[11] = c & 0xff;
}

interface Frag {
  readonly ihl: number;
  readonly total: number;
  readonly mf: boolean;
  readonly df: boolean;
  /** In bytes. */
  readonly offset: number;
  readonly id: number;
}

function fields(f: Uint8Array): Frag {
  return {
    ihl: (f[0]! & 0x0f) * 4,
    total: (f[2]! << 8) | f[3]!,
    mf: (f[6]! & 0x20) !== 0,
    df: (f[6]! & 0x40) !== 0,
    offset: (((f[6]! & 0x1f) << 8) | f[7]!) * 8,
    id: (f[4]! << 8) | f[5]!,
  };
}

/** Reassembles fragments (any order) into the original payload; fails on gaps or overlaps. */
function reassemble(frags: readonly Uint8Array[]): Uint8Array {
  const parts = frags.map((f) => ({ ...fields(f), body: f.subarray(fields(f).ihl, fields(f).total) })).sort((a, b) => a.offset - b.offset);
  const size = parts.at(-1)!.offset + parts.at(-1)!.body.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    if (p.offset !== at) throw new Error(`gap or overlap at ${at} (fragment at ${p.offset})`);
    out.set(p.body, p.offset);
    at += p.body.length;
  }
  return out;
}

test('a 3000-byte packet without DF becomes fragments of at most 1400 bytes that reassemble into it', (t) => {
  const p = udp(3000, false);
  const out: Uint8Array[] = [];
  t.is(fragmentIpv4(p, 1400, out), 3);
  t.deepEqual(
    out.map((f) => fields(f)),
    [
      { ihl: 20, total: 1396, mf: true, df: false, offset: 0, id: 0x1234 },
      { ihl: 20, total: 1396, mf: true, df: false, offset: 1376, id: 0x1234 },
      { ihl: 20, total: 248, mf: false, df: false, offset: 2752, id: 0x1234 },
    ],
  );
  for (const f of out) {
    t.true(f.length <= 1400);
    t.is(f.length, fields(f).total);
    t.is(internetChecksum(f.subarray(0, 20)), 0, 'valid header checksum');
    t.deepEqual([...f.subarray(12, 20)], [...p.subarray(12, 20)], 'same addresses');
    t.is(f[9], 17);
  }
  t.deepEqual(reassemble(out), p.subarray(20));
});

test('a packet with DF set is not fragmented', (t) => {
  const out: Uint8Array[] = [];
  t.is(fragmentIpv4(udp(3000, true), 1400, out), 0);
  t.is(out.length, 0);
});

test('a fragment that is fragmented again keeps its offset base and, when it was not the last, its MF flag', (t) => {
  const p = udp(2000, false);
  p[6] = 0x20 | 0x00; // MF
  p[7] = 100; // offset 800 bytes
  resum(p, 20);
  const out: Uint8Array[] = [];
  t.is(fragmentIpv4(p, 1000, out), 3);
  t.deepEqual(out.map((f) => [fields(f).offset, fields(f).mf]), [
    [800, true],
    [800 + 976, true],
    [800 + 1952, true],
  ]);
});

test('options: the first fragment keeps them all, later ones only those marked copied, padded to 4 bytes', (t) => {
  // IHL 8: a record-route option (type 7, not copied, 7 bytes) then a copied option (type 0x88 stream id, 4 bytes), then EOL.
  const base = udp(1600, false);
  const p = new Uint8Array(base.length + 12);
  p.set(base.subarray(0, 20), 0);
  p.set([7, 7, 4, 0, 0, 0, 0, 0x88, 4, 0xab, 0xcd, 0], 20);
  p.set(base.subarray(20), 32);
  p[0] = 0x48;
  p[2] = p.length >>> 8;
  p[3] = p.length & 0xff;
  resum(p, 32);
  const out: Uint8Array[] = [];
  t.is(fragmentIpv4(p, 1000, out), 2);
  t.is(fields(out[0]!).ihl, 32);
  t.deepEqual([...out[0]!.subarray(20, 32)], [7, 7, 4, 0, 0, 0, 0, 0x88, 4, 0xab, 0xcd, 0]);
  t.is(fields(out[1]!).ihl, 24);
  t.deepEqual([...out[1]!.subarray(20, 24)], [0x88, 4, 0xab, 0xcd]);
  for (const f of out) t.is(internetChecksum(f.subarray(0, fields(f).ihl)), 0);
  t.deepEqual(reassemble(out), p.subarray(32));
});

test('malformed options are not fragmented', (t) => {
  const p = udp(1600, false);
  const q = new Uint8Array(p.length + 4);
  q.set(p.subarray(0, 20));
  q.set([0x83, 9, 0, 0], 20); // claims 9 bytes in a 4-byte option area
  q.set(p.subarray(20), 24);
  q[0] = 0x46;
  q[2] = q.length >>> 8;
  q[3] = q.length & 0xff;
  t.is(fragmentIpv4(q, 1000, []), 0);
});

test('ICMP fragmentation-needed: from the router to the sender, type 3 code 4, the next-hop MTU, the original header and data, valid checksums', (t) => {
  const p = udp(3000, true);
  const icmp = icmpFragmentationNeeded(p, HUB, 1400)!;
  t.is(icmp.length, 576, 'as much of the packet as fits in 576 bytes');
  t.is(icmp[0], 0x45);
  t.is((icmp[2]! << 8) | icmp[3]!, 576);
  t.is(icmp[9], 1);
  t.deepEqual([...icmp.subarray(12, 16)], [10, 0, 0, 1]);
  t.deepEqual([...icmp.subarray(16, 20)], [10, 0, 0, 2]);
  t.is(internetChecksum(icmp.subarray(0, 20)), 0);
  t.is(icmp[20], 3);
  t.is(icmp[21], 4);
  t.is((icmp[26]! << 8) | icmp[27]!, 1400);
  t.is(internetChecksum(icmp.subarray(20)), 0);
  t.deepEqual(icmp.subarray(28), p.subarray(0, 548));
});

test('no ICMP answer to an ICMP error, a non-first fragment, or a multicast, loopback or zero source', (t) => {
  const icmpError = udp(3000, true);
  icmpError[9] = 1;
  icmpError[20] = 3; // destination unreachable
  t.is(icmpFragmentationNeeded(icmpError, HUB, 1400), undefined);
  const echo = udp(3000, true);
  echo[9] = 1;
  echo[20] = 8; // echo request: answered
  t.not(icmpFragmentationNeeded(echo, HUB, 1400), undefined);
  const later = udp(3000, true);
  later[7] = 10;
  t.is(icmpFragmentationNeeded(later, HUB, 1400), undefined);
  for (const first of [0, 127, 224, 239, 255]) {
    const q = udp(3000, true);
    q[12] = first;
    t.is(icmpFragmentationNeeded(q, HUB, 1400), undefined, `source ${first}.x`);
  }
});

test('fitPackets returns undefined when every packet fits, and lets SuperPackets through whatever their size', (t) => {
  const small = udp(1000, true);
  const big = udp(3000, true);
  const sp = new SuperPacket(big.buffer as ArrayBuffer, big.byteOffset, big.length, 1448);
  t.is(fitPackets([small, small], 1400, HUB), undefined);
  t.is(fitPackets([sp], 1400, HUB), undefined);
});

test('fitPackets fragments what it may, drops and answers what it may not, keeps the order, counts too-big', (t) => {
  const a = udp(600, true);
  const dfBig = udp(3000, true, 1);
  const b = udp(700, true);
  const frag = udp(3000, false, 2);
  const fitted = fitPackets([a, dfBig, b, frag], 1400, HUB)!;
  t.is(fitted.packets.length, 2 + 3);
  t.is(fitted.packets[0], a);
  t.is(fitted.packets[1], b);
  t.true(fitted.packets.slice(2).every((f) => fields(f).id === 2 && f.length <= 1400));
  t.deepEqual(fitted.drops, { 'too-big': 1 });
  t.is(fitted.answers.length, 1);
  t.is((fitted.answers[0]![26]! << 8) | fitted.answers[0]![27]!, 1400);
  t.deepEqual(fitted.answers[0]!.subarray(28, 48), dfBig.subarray(0, 20));
});

test('fitPackets without a router address drops too-big packets without answering', (t) => {
  const fitted = fitPackets([udp(3000, true)], 1400, undefined)!;
  t.deepEqual(fitted.drops, { 'too-big': 1 });
  t.deepEqual(fitted.answers, []);
  t.deepEqual(fitted.packets, []);
});

test('fitPackets counts an oversize packet that is not valid IPv4 under its own reason', (t) => {
  const bad = udp(3000, true);
  bad[2] = 0xff; // total length past its bytes
  bad[3] = 0xff;
  t.deepEqual(fitPackets([bad], 1400, HUB)!.drops, { 'malformed-ipv4': 1 });
});
