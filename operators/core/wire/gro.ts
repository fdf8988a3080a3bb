// Receive coalescing (GRO) for an offloading TUN device: consecutive TCP segments of one flow in a
// batch become one SuperPacket, so the kernel takes one 64 KiB write instead of dozens of small
// ones. This is what lets a peer without offload (a 0.0.1-era client, -offload=false) profit from the
// hub's offloading device. Pure: no I/O.
import { MAX_SUPER_PACKET, SuperPacket } from './gso.js';
import { fillIpv4HeaderChecksum, foldSum, onesSum } from './ipv4.js';

const newBuffer = (bytes: number): Uint8Array<ArrayBuffer> => new Uint8Array(bytes);

/** TCP flags that end a run: a segment carrying one is never merged (FIN, SYN, RST, URG, ECE, CWR). */
const NO_MERGE_FLAGS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40 | 0x80;
const PSH = 0x08;

/** The payload offset of a plain TCPv4 segment that may be merged, else 0. */
function mergeable(p: Uint8Array): number {
  if (p instanceof SuperPacket || p.length < 40 || p[0] !== 0x45 || p[9] !== 6) return 0;
  // Fragments (MF or an offset) are never merged.
  if ((p[6]! & 0x3f) !== 0 || p[7] !== 0) return 0;
  if (((p[2]! << 8) | p[3]!) !== p.length) return 0;
  const hdr = 20 + (p[32]! >> 4) * 4;
  if (hdr < 40 || hdr >= p.length || (p[33]! & NO_MERGE_FLAGS) !== 0) return 0;
  return hdr;
}

/** True when `b` continues `a`'s flow right after it: same addresses, ports, ack, window, IP
 * TOS/TTL/DF, header length and options, id + 1, sequence number right after a's payload. */
function continues(a: Uint8Array, aHdr: number, aSeq: number, aPayload: number, aId: number, b: Uint8Array, bHdr: number): boolean {
  if (bHdr !== aHdr) return false;
  if (a[1] !== b[1] || a[6] !== b[6] || a[8] !== b[8]) return false;
  for (let i = 12; i < 20; i++) if (a[i] !== b[i]) return false; // addresses
  for (let i = 20; i < 24; i++) if (a[i] !== b[i]) return false; // ports
  for (let i = 28; i < 32; i++) if (a[i] !== b[i]) return false; // ack
  if (a[34] !== b[34] || a[35] !== b[35]) return false; // window
  for (let i = 40; i < aHdr; i++) if (a[i] !== b[i]) return false; // options
  if ((((b[4]! << 8) | b[5]!) & 0xffff) !== ((aId + 1) & 0xffff)) return false;
  const seq = ((b[24]! << 24) | (b[25]! << 16) | (b[26]! << 8) | b[27]!) >>> 0;
  return seq === ((aSeq + aPayload) >>> 0);
}

/**
 * Coalesces runs of consecutive segments of one TCP flow in `packets` (as Linux GRO would: equal
 * payload sizes but for a shorter last one, nothing but ACK/PSH set, contiguous sequence numbers,
 * IP ids counting up) into SuperPackets of at most 64 KiB, each in memory from `alloc` (default: a
 * new buffer each; a producer may hand out memory it reuses after the emission, as PacketBatch
 * allows). Other packets pass as they are, in order. `counts[i]` tells how many input packets
 * output `i` stands for, so a writer can map a short write back to the input. Returns `packets`
 * itself when nothing merged.
 */
export function coalesce(packets: readonly Uint8Array[], counts: number[], alloc: (bytes: number) => Uint8Array<ArrayBuffer> = newBuffer): readonly Uint8Array[] {
  counts.length = 0;
  let out: Uint8Array[] | undefined;
  let i = 0;
  const n = packets.length;
  while (i < n) {
    const first = packets[i]!;
    const hdr = mergeable(first);
    let j = i + 1;
    if (hdr > 0) {
      const mss = first.length - hdr;
      let total = first.length;
      let prev = first;
      let prevSeq = ((first[24]! << 24) | (first[25]! << 16) | (first[26]! << 8) | first[27]!) >>> 0;
      let prevId = (first[4]! << 8) | first[5]!;
      let prevPayload = mss;
      // A run grows while segments continue the flow with the first one's payload size; a shorter
      // (or PSH) segment ends it, included.
      while (j < n && (prev[33]! & PSH) === 0 && prevPayload === mss) {
        const next = packets[j]!;
        const nextHdr = mergeable(next);
        if (nextHdr === 0 || next.length - nextHdr > mss || total + next.length - hdr > MAX_SUPER_PACKET) break;
        if (!continues(prev, hdr, prevSeq, prevPayload, prevId, next, nextHdr)) break;
        total += next.length - hdr;
        prevSeq = (prevSeq + prevPayload) >>> 0;
        prevId = (next[4]! << 8) | next[5]!;
        prevPayload = next.length - hdr;
        prev = next;
        j++;
      }
      if (j - i > 1) {
        out ??= packets.slice(0, i) as Uint8Array[];
        for (let k = counts.length; k < out.length; k++) counts.push(1);
        const buf = alloc(total);
        buf.set(first, 0);
        let at = first.length;
        for (let k = i + 1; k < j; k++) {
          const seg = packets[k]!;
          buf.set(seg.subarray(hdr), at);
          at += seg.length - hdr;
        }
        buf[2] = total >>> 8;
        buf[3] = total & 0xff;
        buf[33] = (buf[33]! & ~PSH) | (prev[33]! & PSH);
        fillIpv4HeaderChecksum(buf, 20);
        // The pseudo-header sum only (not inverted): the CHECKSUM_PARTIAL form of a super-packet.
        const pseudo = foldSum(onesSum(buf, 12, 20, 6 + total - 20));
        buf[36] = pseudo >>> 8;
        buf[37] = pseudo & 0xff;
        out.push(new SuperPacket(buf.buffer, buf.byteOffset, total, mss));
        counts.push(j - i);
        i = j;
        continue;
      }
    }
    if (out !== undefined) {
      out.push(first);
      counts.push(1);
    }
    i++;
  }
  if (out === undefined) return packets;
  return out;
}
