// An independent reference for TCP segmentation tests: builds IPv4/TCP packets from scratch (own
// header layout, own RFC 1071 checksum) and checks checksums, without any code of operators/wire.
// The expected side of every segmentation test is built here, so a shared mistake in gso.ts cannot
// make a test pass.

/** TCP flag bits. */
export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;
export const URG = 0x20;
export const ECE = 0x40;
export const CWR = 0x80;

/** What stays the same in every packet of one TCP flow. */
export interface Flow {
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  /** IPv4 options (a multiple of 4 bytes, at most 40). */
  readonly ipOptions?: Uint8Array;
  /** TCP options (a multiple of 4 bytes, at most 40). */
  readonly tcpOptions?: Uint8Array;
  readonly ack?: number;
  readonly window?: number;
  readonly ttl?: number;
  readonly tos?: number;
  /** Don't-fragment bit (default true, as TCP sets it). */
  readonly df?: boolean;
}

/** The per-packet fields. */
export interface SegmentFields {
  readonly seq: number;
  readonly id: number;
  readonly flags: number;
  readonly payload: Uint8Array;
}

export const DEFAULT_FLOW: Flow = { src: '10.0.0.2', dst: '10.0.0.3', sport: 40001, dport: 5001, ack: 0x11223344, window: 501 };

/** The 12-byte timestamp option block kernels send on every segment (NOP NOP TS). */
export function timestampOption(tsval: number, tsecr: number): Uint8Array {
  const o = new Uint8Array(12);
  o[0] = 1;
  o[1] = 1;
  o[2] = 8;
  o[3] = 10;
  put32(o, 4, tsval);
  put32(o, 8, tsecr);
  return o;
}

function quad(text: string): number[] {
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`bad address ${text}`);
  return parts;
}

function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
}

function put32(b: Uint8Array, at: number, v: number): void {
  const u = v >>> 0;
  b[at] = u >>> 24;
  b[at + 1] = (u >>> 16) & 0xff;
  b[at + 2] = (u >>> 8) & 0xff;
  b[at + 3] = u & 0xff;
}

/** Big-endian 16-bit read. */
export function get16(b: Uint8Array, at: number): number {
  return b[at]! * 256 + b[at + 1]!;
}

/** Big-endian 32-bit read (unsigned). */
export function get32(b: Uint8Array, at: number): number {
  return ((b[at]! * 256 + b[at + 1]!) * 256 + b[at + 2]!) * 256 + b[at + 3]!;
}

/** The one's-complement sum (folded, not complemented) of the concatenation of `parts`, as 16-bit words. */
export function onesSum(...parts: Uint8Array[]): number {
  // Concatenate first: word alignment runs across parts.
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  let s = 0;
  for (let i = 0; i < all.length; i += 2) {
    s += all[i]! * 256 + (i + 1 < all.length ? all[i + 1]! : 0);
    s = (s % 65536) + Math.floor(s / 65536);
  }
  return s;
}

/** The Internet checksum (RFC 1071) over the concatenation of `parts`. */
export function internetChecksum(...parts: Uint8Array[]): number {
  return 0xffff - onesSum(...parts);
}

function pseudoHeader(packet: Uint8Array, tcpLength: number): Uint8Array {
  const ph = new Uint8Array(12);
  ph.set(packet.subarray(12, 20), 0);
  ph[9] = 6;
  put16(ph, 10, tcpLength);
  return ph;
}

/** Builds one complete TCPv4 packet of `flow` with both checksums right. */
export function tcpSegment(flow: Flow, f: SegmentFields): Uint8Array {
  return build(flow, f, 'complete');
}

function build(flow: Flow, f: SegmentFields, checksum: 'complete' | 'partial'): Uint8Array {
  const ipOpt = flow.ipOptions ?? new Uint8Array(0);
  const tcpOpt = flow.tcpOptions ?? new Uint8Array(0);
  if (ipOpt.length % 4 !== 0 || ipOpt.length > 40 || tcpOpt.length % 4 !== 0 || tcpOpt.length > 40) throw new Error('options must be multiples of 4 bytes, at most 40');
  const ihl = 20 + ipOpt.length;
  const thl = 20 + tcpOpt.length;
  const total = ihl + thl + f.payload.length;
  if (total > 65535) throw new Error(`packet of ${total} bytes`);
  const p = new Uint8Array(total);
  p[0] = 0x40 | (ihl / 4);
  p[1] = flow.tos ?? 0;
  put16(p, 2, total);
  put16(p, 4, f.id & 0xffff);
  p[6] = flow.df === false ? 0 : 0x40;
  p[8] = flow.ttl ?? 64;
  p[9] = 6;
  p.set(quad(flow.src), 12);
  p.set(quad(flow.dst), 16);
  p.set(ipOpt, 20);
  put16(p, 10, internetChecksum(p.subarray(0, ihl)));
  const t = p.subarray(ihl);
  put16(t, 0, flow.sport);
  put16(t, 2, flow.dport);
  put32(t, 4, f.seq);
  put32(t, 8, flow.ack ?? 0);
  t[12] = (thl / 4) << 4;
  t[13] = f.flags;
  put16(t, 14, flow.window ?? 1000);
  t.set(tcpOpt, 20);
  t.set(f.payload, thl);
  const ph = pseudoHeader(p, thl + f.payload.length);
  // CHECKSUM_PARTIAL, as the kernel hands a GSO packet over: the field holds the pseudo-header sum.
  put16(t, 16, checksum === 'complete' ? internetChecksum(ph, t) : onesSum(ph));
  return p;
}

/**
 * The bytes of a super-packet as the kernel hands it over: one IPv4/TCP header for the whole
 * payload, IP total length covering all of it, TCP checksum field holding the pseudo-header sum only.
 */
export function superPacketBytes(flow: Flow, f: SegmentFields): Uint8Array {
  return build(flow, f, 'partial');
}

/**
 * What segmenting that super-packet into segments of `mss` payload bytes must give, built from the
 * stream: segment k carries payload[k·mss, (k+1)·mss), seq + k·mss (mod 2^32), IP id + k (mod 2^16);
 * FIN and PSH only on the last, CWR only on the first, every other flag (ECE, URG, ACK) on all.
 */
export function expectedSegments(flow: Flow, f: SegmentFields, mss: number): Uint8Array[] {
  const n = Math.max(1, Math.ceil(f.payload.length / mss));
  const out: Uint8Array[] = [];
  for (let k = 0; k < n; k++) {
    let flags = f.flags;
    if (k !== n - 1) flags &= ~(FIN | PSH);
    if (k !== 0) flags &= ~CWR;
    out.push(
      tcpSegment(flow, {
        seq: (f.seq + k * mss) % 2 ** 32,
        id: (f.id + k) % 65536,
        flags,
        payload: f.payload.subarray(k * mss, Math.min(f.payload.length, (k + 1) * mss)),
      }),
    );
  }
  return out;
}

/** What an independent verifier says about one IPv4/TCP packet. */
export interface Verdict {
  readonly ipChecksum: boolean;
  readonly tcpChecksum: boolean;
  /** IP total length equals the packet's length. */
  readonly totalLength: boolean;
}

/** Checks the IPv4 header checksum, the TCP checksum (with the pseudo-header) and the total length. */
export function verifyTcpPacket(p: Uint8Array): Verdict {
  const ihl = (p[0]! & 0x0f) * 4;
  return {
    ipChecksum: onesSum(p.subarray(0, ihl)) === 0xffff,
    tcpChecksum: onesSum(pseudoHeader(p, p.length - ihl), p.subarray(ihl)) === 0xffff,
    totalLength: get16(p, 2) === p.length,
  };
}

/** A deterministic payload of `n` bytes (a simple LCG), different per `seed`. */
export function streamBytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** A UDP/IPv4 packet (for inputs that are not TCP). */
export function udpPacket(src: string, dst: string, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(28 + payload.length);
  p[0] = 0x45;
  put16(p, 2, p.length);
  p[8] = 64;
  p[9] = 17;
  p.set(quad(src), 12);
  p.set(quad(dst), 16);
  put16(p, 10, internetChecksum(p.subarray(0, 20)));
  put16(p, 20, 5353);
  put16(p, 22, 5353);
  put16(p, 24, 8 + payload.length);
  p.set(payload, 28);
  return p;
}
