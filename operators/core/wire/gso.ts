// TCP segmentation offload on the wire: super-packets (TCPv4 segments of up to 64 KiB that the
// kernel hands over with IFF_VNET_HDR + TUNSETOFFLOAD) and the software segmentation that turns one
// into the packets a peer without offload can take. See docs/protocol.md ("Offload").
import { fillIpv4HeaderChecksum, foldSum, onesSum } from './ipv4.js';

/** The largest super-packet (an IPv4 packet's total length is 16 bits). */
export const MAX_SUPER_PACKET = 65535;
/** Bytes in front of the packet in a SUPER frame's payload: the segment size (u16, big-endian). */
export const SUPER_PREFIX = 2;
/**
 * The smallest segment size a SUPER frame may carry. A real TCP MSS over IPv4 is at least 500 or so
 * (576-byte minimum MTU, 552-byte minimum PMTU, minus headers and options); 256 leaves room for odd
 * stacks and bounds a 64 KiB super-packet to 256 segments, so a SUPER frame never turns into more
 * packets than the same bytes sent as DATA frames would (a segment size of 1 made 65,000).
 */
export const MIN_GSO_SIZE = 256;

/**
 * A TCPv4 super-packet: one IPv4 header and one TCP header in front of the payload of many
 * segments of `gsoSize` bytes each (the last may be shorter). Its TCP checksum field holds the
 * pseudo-header sum only (the kernel's CHECKSUM_PARTIAL form); IP total length covers the whole.
 * Views derived from it (subarray, slice) are plain Uint8Arrays.
 */
export class SuperPacket extends Uint8Array {
  static get [Symbol.species](): Uint8ArrayConstructor {
    return Uint8Array;
  }

  constructor(
    buffer: ArrayBuffer,
    byteOffset: number,
    length: number,
    /** Payload bytes per segment. */
    readonly gsoSize: number,
  ) {
    super(buffer, byteOffset, length);
  }
}

/** A copy of `p` that stays valid after the emission carrying `p` (keeps a SuperPacket's segment size). */
export function copyPacket(p: Uint8Array): Uint8Array {
  if (p instanceof SuperPacket) {
    const copy = new Uint8Array(p);
    return new SuperPacket(copy.buffer, 0, copy.length, p.gsoSize);
  }
  return new Uint8Array(p);
}

/** IPv4 + TCP header bytes of a TCPv4 packet, or 0 when `p` is not one (or is truncated). */
export function tcpHeaderBytes(p: Uint8Array): number {
  if (p.length < 40 || p[0]! >> 4 !== 4 || p[9] !== 6) return 0;
  const ihl = (p[0]! & 0x0f) * 4;
  if (ihl < 20 || p.length < ihl + 20) return 0;
  const hdr = ihl + (p[ihl + 12]! >> 4) * 4;
  return hdr <= p.length && hdr >= ihl + 20 ? hdr : 0;
}

/** How many packets `p` is once segmented to at most `maxPacket` bytes each (1 for a plain packet). */
export function segmentCount(p: Uint8Array, maxPacket: number): number {
  if (!(p instanceof SuperPacket)) return 1;
  const hdr = tcpHeaderBytes(p);
  const mss = Math.min(p.gsoSize, maxPacket - hdr);
  if (hdr === 0 || mss <= 0) return 0;
  return Math.max(1, Math.ceil((p.length - hdr) / mss));
}

/**
 * Writes the complete IPv4 header checksum and TCP checksum of the TCPv4 packet `p` (whose IP
 * header is `ihl` bytes), in place; whatever the fields held before is ignored.
 */
export function fillTcpChecksums(p: Uint8Array, ihl: number): void {
  fillIpv4HeaderChecksum(p, ihl);
  p[ihl + 16] = 0;
  p[ihl + 17] = 0;
  const pseudo = onesSum(p, 12, 20, 0) + 6 + (p.length - ihl);
  const tcp = ~foldSum(onesSum(p, ihl, p.length, pseudo)) & 0xffff;
  p[ihl + 16] = tcp >>> 8;
  p[ihl + 17] = tcp & 0xff;
}

/**
 * Segments a super-packet into TCP segments of at most `maxPacket` bytes (and at most its own
 * segment size of payload), as the kernel's software GSO does: the headers repeated, IP total
 * length and checksum per segment, IP id incremented per segment, the sequence number advanced by
 * the payload before it, FIN and PSH only on the last segment and CWR only on the first, complete
 * TCP checksums. Pushes the segments (views into one new buffer) onto `out` and returns how many;
 * 0 when `p` is not a TCPv4 packet or `maxPacket` leaves no room for payload (nothing pushed).
 */
export function segmentSuper(p: SuperPacket, maxPacket: number, out: Uint8Array[]): number {
  const hdr = tcpHeaderBytes(p);
  if (hdr === 0) return 0;
  const mss = Math.min(p.gsoSize, maxPacket - hdr);
  if (mss <= 0) return 0;
  const ihl = (p[0]! & 0x0f) * 4;
  const payload = p.length - hdr;
  const n = Math.max(1, Math.ceil(payload / mss));
  const buf = new Uint8Array(n * hdr + payload);
  const id0 = (p[4]! << 8) | p[5]!;
  const seq0 = ((p[ihl + 4]! << 24) | (p[ihl + 5]! << 16) | (p[ihl + 6]! << 8) | p[ihl + 7]!) >>> 0;
  const flags = p[ihl + 13]!;
  const headers = p.subarray(0, hdr);
  let at = 0;
  for (let k = 0; k < n; k++) {
    const off = k * mss;
    const len = Math.min(mss, payload - off);
    const seg = buf.subarray(at, at + hdr + len);
    seg.set(headers, 0);
    seg.set(p.subarray(hdr + off, hdr + off + len), hdr);
    const total = hdr + len;
    seg[2] = total >>> 8;
    seg[3] = total & 0xff;
    const id = (id0 + k) & 0xffff;
    seg[4] = id >>> 8;
    seg[5] = id & 0xff;
    const seq = (seq0 + off) >>> 0;
    seg[ihl + 4] = seq >>> 24;
    seg[ihl + 5] = (seq >>> 16) & 0xff;
    seg[ihl + 6] = (seq >>> 8) & 0xff;
    seg[ihl + 7] = seq & 0xff;
    let f = flags;
    if (k < n - 1) f &= ~0x09; // FIN, PSH: only the last segment
    if (k > 0) f &= ~0x80; // CWR: only the first
    seg[ihl + 13] = f;
    fillTcpChecksums(seg, ihl);
    out.push(seg);
    at += hdr + len;
  }
  return n;
}
