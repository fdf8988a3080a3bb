// The lightweight-tunnel frame format (compatible with 2.x): a 4-byte big-endian body length, then
// the body; the body's first byte is the frame type. See docs/protocol.md.

/** Frame types. 0x01 and 0x02 are 2.x's; the 0x10 range is ignored by 2.x peers. */
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
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Bytes of the length prefix. */
export const HEADER_BYTES = 4;
/** The largest body a 2.x peer accepts; it closes the connection on anything longer. */
export const MAX_BODY_COMPAT = 1496;
/** The largest IPv4 packet a DATA frame can carry within MAX_BODY_COMPAT. */
export const MAX_PACKET_COMPAT = MAX_BODY_COMPAT - 1;

/** One decoded frame: its type byte and a view of its payload (the body after the type byte). */
export interface Frame {
  readonly type: number;
  readonly payload: Uint8Array;
}

/** Encodes `payloads` as consecutive frames of one type into a single new buffer (one copy). */
export function encodeFrames(type: number, payloads: readonly Uint8Array[], from = 0): Buffer {
  let total = 0;
  for (let i = from; i < payloads.length; i++) total += HEADER_BYTES + 1 + payloads[i]!.length;
  const out = Buffer.allocUnsafe(total);
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
