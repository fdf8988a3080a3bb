// Packets larger than a receiver takes, handled the way an IPv4 router handles them (RFC 791, RFC
// 1191, RFC 1812): fragmented when DF is clear, else dropped with an ICMP "fragmentation needed"
// carrying the next-hop MTU back to the sender, so its kernel lowers the path MTU. Pure: no I/O.
import { SuperPacket } from './gso.js';
import { fillIpv4HeaderChecksum, foldSum, ipv4Problem, onesSum } from './ipv4.js';
import type { DropCounts } from '../packet.js';

const DF = 0x40; // in byte 6
const MF = 0x20; // in byte 6
/** RFC 1812 4.3.2.3: an ICMP error carries as much of the packet as fits in 576 bytes. */
const ICMP_ERROR_MAX = 576;

/**
 * Fragments the IPv4 packet `p` (DF clear, header and total length valid: see ipv4Problem) into
 * fragments of at most `maxPacket` bytes, as RFC 791 says: the first keeps every option, the others
 * only the options marked "copied"; offsets in 8-byte units relative to `p`'s own offset; MF set on
 * all but the last (and on the last when `p` itself had it). Pushes the fragments (views into one
 * new buffer) onto `out` and returns how many; 0 (nothing pushed) when DF is set, the options are
 * malformed, or `maxPacket` leaves fewer than 8 bytes of payload per fragment.
 */
export function fragmentIpv4(p: Uint8Array, maxPacket: number, out: Uint8Array[]): number {
  if ((p[6]! & DF) !== 0) return 0;
  const ihl = (p[0]! & 0x0f) << 2;
  const total = (p[2]! << 8) | p[3]!;
  const copied = copiedOptions(p, ihl);
  if (copied === undefined) return 0;
  const laterIhl = 20 + copied.length;
  const firstChunk = (maxPacket - ihl) & ~7;
  const laterChunk = (maxPacket - laterIhl) & ~7;
  if (firstChunk < 8 || laterChunk < 8) return 0;
  const payload = total - ihl;
  const laterCount = payload <= firstChunk ? 0 : Math.ceil((payload - firstChunk) / laterChunk);
  const n = 1 + laterCount;
  const buf = new Uint8Array(ihl + Math.min(payload, firstChunk) + laterCount * laterIhl + Math.max(0, payload - firstChunk));
  const offset0 = ((p[6]! & 0x1f) << 8) | p[7]!;
  const lastHadMf = (p[6]! & MF) !== 0;
  let at = 0;
  let done = 0;
  for (let k = 0; k < n; k++) {
    const hdr = k === 0 ? ihl : laterIhl;
    const len = Math.min(k === 0 ? firstChunk : laterChunk, payload - done);
    const f = buf.subarray(at, at + hdr + len);
    f.set(p.subarray(0, 20), 0);
    if (k === 0) f.set(p.subarray(20, ihl), 20);
    else f.set(copied, 20);
    f[0] = 0x40 | (hdr >> 2);
    f[2] = (hdr + len) >>> 8;
    f[3] = (hdr + len) & 0xff;
    const offset = offset0 + (done >> 3);
    const more = k < n - 1 || lastHadMf;
    f[6] = (p[6]! & 0x80) | (more ? MF : 0) | ((offset >> 8) & 0x1f);
    f[7] = offset & 0xff;
    f.set(p.subarray(ihl + done, ihl + done + len), hdr);
    fillIpv4HeaderChecksum(f, hdr);
    out.push(f);
    at += hdr + len;
    done += len;
  }
  return n;
}

/** The options of `p`'s header marked "copied" (RFC 791), padded to 4 bytes; undefined when malformed. */
function copiedOptions(p: Uint8Array, ihl: number): Uint8Array | undefined {
  if (ihl === 20) return EMPTY;
  const kept: number[] = [];
  let i = 20;
  while (i < ihl) {
    const type = p[i]!;
    if (type === 0) break; // end of option list
    if (type === 1) {
      i++; // no-operation (not copied)
      continue;
    }
    const len = p[i + 1];
    if (len === undefined || len < 2 || i + len > ihl) return undefined;
    if ((type & 0x80) !== 0) for (let j = 0; j < len; j++) kept.push(p[i + j]!);
    i += len;
  }
  while (kept.length % 4 !== 0) kept.push(0);
  return Uint8Array.from(kept);
}

const EMPTY = new Uint8Array(0);

/**
 * The ICMP "destination unreachable, fragmentation needed and DF set" (type 3, code 4) that a
 * router at `router` sends to the source of `p` when the next hop takes at most `mtu` bytes: an
 * IPv4 packet from `router` to `p`'s source carrying `mtu` and as much of `p` as fits in 576 bytes.
 * Undefined when RFC 1122 forbids an answer: `p` is itself an ICMP error, a fragment other than the
 * first, or from a source that is not a unicast host (0/8, 127/8, multicast, reserved, broadcast).
 */
export function icmpFragmentationNeeded(p: Uint8Array, router: number, mtu: number): Uint8Array | undefined {
  const ihl = (p[0]! & 0x0f) << 2;
  const total = (p[2]! << 8) | p[3]!;
  if ((((p[6]! & 0x1f) << 8) | p[7]!) !== 0) return undefined;
  if (p[9] === 1) {
    const type = p[ihl];
    if (type === undefined || type === 3 || type === 4 || type === 5 || type === 11 || type === 12) return undefined;
  }
  const src = p[12]!;
  if (src === 0 || src === 127 || src >= 224) return undefined;
  const quoted = Math.min(total, ICMP_ERROR_MAX - 28);
  const out = new Uint8Array(28 + quoted);
  out[0] = 0x45;
  out[1] = 0xc0; // internetwork control, as kernels send ICMP errors
  out[2] = out.length >>> 8;
  out[3] = out.length & 0xff;
  out[8] = 64;
  out[9] = 1;
  out[12] = router >>> 24;
  out[13] = (router >>> 16) & 0xff;
  out[14] = (router >>> 8) & 0xff;
  out[15] = router & 0xff;
  out.set(p.subarray(12, 16), 16);
  fillIpv4HeaderChecksum(out, 20);
  out[20] = 3;
  out[21] = 4;
  out[26] = mtu >>> 8;
  out[27] = mtu & 0xff;
  out.set(p.subarray(0, quoted), 28);
  const c = ~foldSum(onesSum(out, 20, out.length, 0)) & 0xffff;
  out[22] = c >>> 8;
  out[23] = c & 0xff;
  return out;
}

/** What fitPackets made of a batch. */
export interface Fitted {
  /** The batch with every packet no larger than the limit: oversize ones fragmented or removed. */
  readonly packets: Uint8Array[];
  /** ICMP fragmentation-needed answers for the senders of removed packets (to route back to them). */
  readonly answers: Uint8Array[];
  /** Each removed packet: `too-big`, or `not-ipv4`/`malformed-ipv4` for one that is not valid IPv4. */
  readonly drops: DropCounts;
}

/**
 * Fits a batch for a receiver that takes plain packets of at most `maxPacket` bytes (SuperPackets
 * are the encoder's business and pass untouched): returns undefined when every packet fits (the
 * common case: one length comparison per packet, nothing allocated), else the batch with oversize
 * packets fragmented (DF clear) or removed and answered from `router` with ICMP
 * fragmentation-needed (DF set; no answer without a router address). An oversize packet that is
 * not valid IPv4 (ipv4Problem) is removed and counted under that reason.
 */
export function fitPackets(packets: readonly Uint8Array[], maxPacket: number, router: number | undefined): Fitted | undefined {
  let i = 0;
  for (; i < packets.length; i++) if (packets[i]!.length > maxPacket && !(packets[i] instanceof SuperPacket)) break;
  if (i === packets.length) return undefined;
  const out = packets.slice(0, i);
  const answers: Uint8Array[] = [];
  const drops: DropCounts = {};
  for (; i < packets.length; i++) {
    const p = packets[i]!;
    if (p.length <= maxPacket || p instanceof SuperPacket) {
      out.push(p);
      continue;
    }
    const problem = ipv4Problem(p);
    if (problem !== undefined) {
      drops[problem] = (drops[problem] ?? 0) + 1;
      continue;
    }
    if (fragmentIpv4(p, maxPacket, out) > 0) continue;
    drops['too-big'] = (drops['too-big'] ?? 0) + 1;
    const answer = (p[6]! & DF) !== 0 && router !== undefined ? icmpFragmentationNeeded(p, router, maxPacket) : undefined;
    if (answer !== undefined) answers.push(answer);
  }
  return { packets: out, answers, drops };
}
