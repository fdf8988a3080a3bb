// The lightweight-tunnel frame format (compatible with the Go program's TCP builds of December 2025): a 4-byte big-endian body length, then
// the body; the body's first byte is the frame type. See docs/protocol.md.
import { SUPER_PREFIX, MAX_SUPER_PACKET, MIN_GSO_SIZE, SuperPacket, segmentSuper, tcpHeaderBytes } from './gso.js';

/**
 * Frame types. 0x01 and 0x02 are the Go program's; 0.0.1-era peers ignore every other type. 0x10-0x15
 * are this project's first control messages, 0x16-0x1f its data-path frames, 0x20-0x2f its later
 * control messages (each sent only to a peer that offered the capability it belongs to).
 */
export const FrameType = {
  Data: 0x01,
  Keepalive: 0x02,
  Hello: 0x10,
  Welcome: 0x11,
  Reject: 0x12,
  /** RTT probe: 8-byte payload echoed back in a PONG; sent only to peers that offered the `rtt` capability. */
  Ping: 0x13,
  Pong: 0x14,
  /** The hub's current LAN routes of the other members (JSON), pushed to members that offered the `routes` capability. */
  Routes: 0x15,
  /** A TCPv4 super-packet (u16 segment size, then the packet); only between peers that both offered `gso`. */
  Super: 0x16,
  /** A member asks the hub for a direct path to another member, and says its own local endpoints (JSON); only to a hub that offered `direct`. */
  DirectRequest: 0x20,
  /** The hub introduces a member to another member: the peer's endpoints and LANs, a fresh pair key, the receiver ids (JSON); only to members that offered `direct`. */
  Introduction: 0x21,
  /** The hub ends (or refuses) a member's direct path to a peer, with the reason (JSON); only to members that offered `direct`. */
  Withdrawal: 0x22,
  /** A member tells the hub whether its path to an introduced peer is direct now (JSON); only to a hub that offered `direct`. */
  DirectPath: 0x23,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Bytes of the length prefix. */
export const HEADER_BYTES = 4;
/** The largest body a 0.0.1-era peer accepts; it closes the connection on anything longer. */
export const MAX_BODY_COMPAT = 1496;
/** The largest IPv4 packet a DATA frame can carry within MAX_BODY_COMPAT. */
export const MAX_PACKET_COMPAT = MAX_BODY_COMPAT - 1;
/** The largest body between peers that negotiated `gso`: a SUPER frame's type, segment size and packet. */
export const MAX_BODY_SUPER = 1 + SUPER_PREFIX + MAX_SUPER_PACKET;

/** One decoded frame: its type byte and a view of its payload (the body after the type byte). */
export interface Frame {
  readonly type: number;
  readonly payload: Uint8Array;
}

/** Encodes `payloads` as consecutive frames of one type into one buffer from `alloc` (a new one by default; one copy). */
export function encodeFrames(type: number, payloads: readonly Uint8Array[], from = 0, alloc: (bytes: number) => Buffer = Buffer.allocUnsafe): Buffer {
  let total = 0;
  for (let i = from; i < payloads.length; i++) total += HEADER_BYTES + 1 + payloads[i]!.length;
  const out = alloc(total);
  let at = 0;
  for (let i = from; i < payloads.length; i++) {
    const p = payloads[i]!;
    out.writeUInt32BE(p.length + 1, at);
    out[at + 4] = type;
    out.set(p, at + 5);
    at += 5 + p.length;
  }
  return out;
}

/** Encodes one frame. */
export function encodeFrame(type: number, payload: Uint8Array = EMPTY): Buffer {
  return encodeFrames(type, [payload]);
}

const EMPTY = new Uint8Array(0);

/** A KEEPALIVE frame, shared by every sender: never mutate it (a typed array with elements cannot be frozen). */
export const KEEPALIVE_FRAME: Uint8Array = encodeFrame(FrameType.Keepalive);

/** How a peer takes packets: SUPER frames or only DATA, and the largest packet it accepts. */
export interface PacketEncoding {
  /** The peer offered `gso`: super-packets travel as SUPER frames. */
  superFrames: boolean;
  /** The largest packet (and segment) the peer takes; at most MAX_PACKET_COMPAT without SUPER frames. */
  maxPacket: number;
}

/**
 * Encodes `packets` for a peer into one new buffer: plain packets as DATA frames; a SuperPacket as
 * one SUPER frame (its segment size lowered to fit `maxPacket`) when the peer takes them and that
 * size is at least MIN_GSO_SIZE, else segmented in software into DATA frames of at most `maxPacket`
 * bytes. Returns undefined for an
 * empty result. The frames are encoded into `alloc(bytes)` (a fresh buffer by default; frameSink
 * passes a reused slab).
 */
export function encodePackets(packets: readonly Uint8Array[], enc: PacketEncoding, alloc: (bytes: number) => Buffer = Buffer.allocUnsafe): Buffer | undefined {
  let plain = true;
  for (const p of packets) if (p instanceof SuperPacket) plain = false;
  if (plain) return packets.length === 0 ? undefined : encodeFrames(FrameType.Data, packets, 0, alloc);
  // The frames in order: a packet and its segment size (0: a DATA frame).
  const items: Uint8Array[] = [];
  const gsos: number[] = [];
  for (const p of packets) {
    if (!(p instanceof SuperPacket)) {
      items.push(p);
      gsos.push(0);
    } else if (enc.superFrames && Math.min(p.gsoSize, enc.maxPacket - tcpHeaderBytes(p)) >= MIN_GSO_SIZE) {
      items.push(p);
      gsos.push(Math.min(p.gsoSize, enc.maxPacket - tcpHeaderBytes(p)));
    } else {
      // No SUPER frames for this peer, or a segment size it would refuse (below MIN_GSO_SIZE):
      // DATA frames of segments.
      for (let n = segmentSuper(p, Math.min(enc.maxPacket, MAX_PACKET_COMPAT), items); n > 0; n--) gsos.push(0);
    }
  }
  let total = 0;
  for (let i = 0; i < items.length; i++) total += HEADER_BYTES + 1 + (gsos[i]! > 0 ? SUPER_PREFIX : 0) + items[i]!.length;
  if (total === 0) return undefined;
  const out = alloc(total);
  let at = 0;
  for (let i = 0; i < items.length; i++) {
    const p = items[i]!;
    const gso = gsos[i]!;
    const prefix = gso > 0 ? SUPER_PREFIX : 0;
    out.writeUInt32BE(1 + prefix + p.length, at);
    out[at + 4] = gso > 0 ? FrameType.Super : FrameType.Data;
    if (gso > 0) out.writeUInt16BE(gso, at + 5);
    out.set(p, at + 5 + prefix);
    at += 5 + prefix + p.length;
  }
  return out;
}

/**
 * The super-packet a SUPER frame's payload carries (a view), or why it is refused: `malformed-super`
 * (no TCPv4 packet of at most 64 KiB, a zero segment size, or one that does not fit with the
 * headers), `gso-too-small` (a segment size below MIN_GSO_SIZE).
 */
export function superPacketOf(payload: Uint8Array): SuperPacket | 'malformed-super' | 'gso-too-small' {
  if (payload.length <= SUPER_PREFIX || payload.length > SUPER_PREFIX + MAX_SUPER_PACKET) return 'malformed-super';
  const gso = (payload[0]! << 8) | payload[1]!;
  const p = new SuperPacket(payload.buffer as ArrayBuffer, payload.byteOffset + SUPER_PREFIX, payload.length - SUPER_PREFIX, gso);
  const hdr = tcpHeaderBytes(p);
  if (gso === 0 || hdr === 0 || hdr + gso > MAX_SUPER_PACKET) return 'malformed-super';
  return gso < MIN_GSO_SIZE ? 'gso-too-small' : p;
}
