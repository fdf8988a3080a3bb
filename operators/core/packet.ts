// Value types that flow between every layer: packet batches, packet sinks, drop reasons, what a
// session reads and what routing makes of a batch.
import type { Observable } from 'rxjs';

/**
 * A batch of raw IPv4 packets (no packet-information header); some may be SuperPackets when offload
 * is negotiated. Elements may be views into a buffer
 * that the producer reuses: they are valid only during the synchronous emission that carries them.
 * A consumer that keeps a packet past that emission copies it.
 */
export type PacketBatch = readonly Uint8Array[];

/**
 * A packet sink with explicit backpressure. `write` accepts a prefix of `packets` and returns its
 * length: all of them while the sink has room, fewer (possibly 0) once it is full. After a short
 * write, `ready$` emits when the sink accepts packets again. A sink never keeps a reference to a
 * packet it did not accept, and copies (or fully consumes) the ones it did accept before returning.
 */
export interface PacketSink {
  write(packets: PacketBatch): number;
  readonly ready$: Observable<void>;
  /** Packets `write` accepted but the device refused (malformed, interface down), counted since it
   * opened; absent for sinks that never refuse. */
  readonly rejected?: () => number;
}


/**
 * Where a session's bytes go (a connection's send side). `write` queues bytes and keeps (does not
 * copy) `chunk`; it returns false once the buffer is above its high-water mark (`needsDrain`), and
 * `drain$` emits each time it falls below again.
 */
export interface ByteSink {
  write(chunk: Uint8Array): boolean;
  /** True while the send buffer is above its high-water mark. */
  readonly needsDrain: boolean;
  /** Bytes written but not yet handed to the kernel; 0 means no chunk it was given is still referenced. Absent: unknown. */
  readonly pendingBytes?: number;
  /**
   * Bytes it takes now before it is above its high-water mark (≤ 0 while above it). A writer that
   * knows it writes no more than this (at least one packet) at a time, so that what does not fit
   * waits in its own timed queue, not in the send buffer. Absent: no such limit.
   */
  readonly room?: number;
  /** Emits each time the send buffer has drained below its high-water mark. */
  readonly drain$: Observable<void>;
}

/** Why a packet or frame was not delivered. Every drop is counted under one of these. */
export type DropReason =
  | 'no-route' // destination is in the tunnel subnet but no member has it
  | 'isolation' // client-to-client traffic while client isolation is on
  | 'spoofed-source' // a member sent a packet whose source is not its own address
  | 'queue-full' // a bounded queue was full
  | 'queue-delay' // a queue stood above its delay target too long (CoDel dropped the oldest)
  | 'queue-age' // a packet waited in a queue longer than its hard time limit (dropped when it came to the head)
  | 'not-ipv4' // not an IPv4 packet, or shorter than an IPv4 header
  | 'malformed-ipv4' // an IPv4 header whose length fields lie past the packet's bytes
  | 'too-big' // larger than the receiver takes, with DF set (the sender gets ICMP fragmentation-needed)
  | 'gso-too-small' // a SUPER frame whose segment size is below MIN_GSO_SIZE (it would multiply into tiny packets)
  | 'unregistered' // DATA from a connection that is not a member (refused or still unknown)
  | 'not-connected' // client: no session to the hub at the moment
  | 'broadcast' // subnet broadcast, which the hub does not replicate (it runs without -broadcast)
  | 'broadcast-limit' // a sender went over its broadcast/multicast packets-per-second limit
  | 'unknown-type' // a frame type this side does not know (ignored, as the Go program does)
  | 'empty-frame' // a zero-length frame body (ignored, as the Go program does)
  | 'unexpected-control' // a control frame that makes no sense in this direction or state
  | 'tun-write-error' // the TUN device refused a packet
  | 'malformed-super' // a SUPER frame that does not carry a TCPv4 super-packet
  | 'bad-tag' // a datagram that did not authenticate (forged, corrupted, or sealed with another key)
  | 'replay' // a datagram whose counter was seen already, or is behind the replay window
  | 'unknown-session' // a datagram for no session this side has
  | 'malformed-datagram' // a datagram too short or malformed to be a sealed one, or of an unknown type
  | 'udp-send-error' // the kernel refused to send a datagram (other than too-big)
  | 'trunk-down' // for a member of another hub of the cluster whose trunk is not up (docs/cluster.md)
  | 'trunk-transit'; // arrived on a trunk for an address this hub does not serve: a packet crosses one trunk only

/** Drop counts by reason. */
export type DropCounts = Partial<Record<DropReason, number>>;

/** Adds `n` drops of `reason` to `counts` (created when absent) and returns it. */
export function addDrop(counts: DropCounts | undefined, reason: DropReason, n = 1): DropCounts {
  const c = counts ?? {};
  c[reason] = (c[reason] ?? 0) + n;
  return c;
}

/** Adds every count of `more` to `counts` (created when absent and `more` has any) and returns it. */
export function addDrops(counts: DropCounts | undefined, more: DropCounts): DropCounts | undefined {
  let c = counts;
  for (const reason of Object.keys(more) as DropReason[]) c = addDrop(c, reason, more[reason] ?? 0);
  return c;
}

/** What a session reads from its peer, in arrival order. */
export type Inbound =
  /** Consecutive DATA (and negotiated SUPER) frames' packets: views into received chunks or the
   * decoder's reused buffers, valid only during the emission that carries them (copy to keep). */
  | { readonly kind: 'data'; readonly packets: Uint8Array[] }
  /** Any other non-empty frame. */
  | { readonly kind: 'control'; readonly type: number; readonly payload: Uint8Array }
  /** Added by learnSource: the peer's address, taken from its first IPv4 packet (0.0.1-era peers send no HELLO). */
  | { readonly kind: 'learned'; readonly address: number }
  /** Added by keepalive: time to send a KEEPALIVE. */
  | { readonly kind: 'tick' };

/** Packets bound for one target. */
export interface Routed<T> {
  readonly target: T;
  readonly packets: Uint8Array[];
}

/** A batch split by target, with what could not be routed. */
export interface RoutedBatch<T> {
  readonly routes: Routed<T>[];
  drops: DropCounts | undefined;
}

