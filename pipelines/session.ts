// Pieces both pipelines build their sessions from.
import { EMPTY, asyncScheduler, interval, map, tap, type Observable, type SchedulerLike } from 'rxjs';
import type { TunStats } from './events.js';
import { deframe } from '../operators/deframe.js';
import { detectIdle } from '../operators/detectIdle.js';
import { keepalive } from '../operators/keepalive.js';
import type { DropCounts, Inbound } from '../operators/core/packet.js';
import { FrameType, encodeFrame, encodePackets, KEEPALIVE_FRAME, MAX_BODY_COMPAT, MAX_PACKET_COMPAT, type PacketEncoding } from '../operators/core/wire/frames.js';
import type { ConnectionPort, PacketBatch, PacketSink } from './ports.js';
import type { CommonSettings } from './settings.js';

/** The tick value keepalive adds to a session's inbound stream. */
export const TICK: Inbound = Object.freeze({ kind: 'tick' });

/** How a session starts encoding for its peer: DATA frames only, 2.x-sized (see negotiated()). */
export function compatEncoding(): PacketEncoding {
  return { superFrames: false, maxPacket: MAX_PACKET_COMPAT };
}

/**
 * Updates `enc` from what the peer announced: SUPER frames when both sides offer `gso`; segments
 * no larger than the peer's MTU (when it told one) and, without SUPER frames, the 2.x limit.
 */
export function negotiate(enc: PacketEncoding, bothGso: boolean, peerMtu: number | undefined): void {
  enc.superFrames = bothGso;
  const mtu = peerMtu !== undefined && peerMtu >= 576 ? peerMtu : MAX_PACKET_COMPAT;
  enc.maxPacket = bothGso ? mtu : Math.min(mtu, MAX_PACKET_COMPAT);
}

/**
 * A connection as a packet sink: each accepted batch is encoded for the peer as `enc` says
 * (encodePackets: DATA frames, SUPER frames or segmented super-packets) into one buffer and written
 * with one call. It accepts nothing while the connection is above its high-water mark, so at most
 * one batch beyond that mark is ever buffered by the socket. `enc` is read at every write. Outputs
 * of 4 KiB and more are encoded into a reused slab (no allocation and no fresh pages per batch).
 */
export function frameSink(conn: ConnectionPort, enc: PacketEncoding = compatEncoding()): PacketSink {
  const slab = new Slab(() => conn.pendingBytes === 0);
  return {
    write(packets: PacketBatch): number {
      if (conn.needsDrain || packets.length === 0) return 0;
      const bytes = encodePackets(packets, enc, slab.take);
      if (bytes !== undefined) conn.write(bytes);
      return packets.length;
    },
    ready$: conn.drain$,
  };
}

/** Bytes of a frameSink slab (a larger batch gets a slab of its own size, reused in turn). */
const SLAB_BYTES = 512 * 1024;
/** Outputs smaller than this bypass the slab (Node pools allocations below 4 KiB). */
const SLAB_MIN_REQUEST = 4096;

/**
 * Output buffers carved one after another out of a slab allocated on the first large request. Everything carved
 * before is free again once `flushed()` says the connection holds none of it (then carving starts
 * over); a request that does not fit gets a new slab (at least as large as the request), leaving
 * the old one to whatever still references it.
 */
class Slab {
  private buf: Buffer | undefined;
  private at = 0;

  constructor(private readonly flushed: () => boolean) {}

  readonly take = (bytes: number): Buffer => {
    // Small outputs come from Node's shared buffer pool: cheap, and a lightly used connection never
    // holds a slab.
    if (bytes < SLAB_MIN_REQUEST) return Buffer.allocUnsafe(bytes);
    if (this.buf !== undefined && this.flushed()) this.at = 0;
    if (this.buf === undefined || this.at + bytes > this.buf.length) {
      this.buf = Buffer.allocUnsafe(Math.max(SLAB_BYTES, bytes));
      this.at = 0;
    }
    const out = this.buf.subarray(this.at, this.at + bytes);
    this.at += bytes;
    return out;
  };
}

/** Sends a KEEPALIVE unless the connection is already busy (then data is flowing anyway). */
export function sendKeepalive(conn: ConnectionPort): void {
  if (!conn.needsDrain) conn.write(KEEPALIVE_FRAME);
}

/**
 * A session's inbound items: chunks decoded (FrameError beyond the 2.x body limit), checked for
 * silence (IdleError when no complete frame arrived for `timeoutMs`: a peer trickling bytes of a
 * frame it never finishes is as good as silent), with keepalive ticks added every `keepaliveMs`.
 * SUPER frames are data while `superFrames()` says they were negotiated.
 * `onChunk` runs for every item from the peer.
 */
export function inboundItems(
  conn: ConnectionPort,
  settings: CommonSettings,
  hooks: { readonly onDrops: (drops: DropCounts) => void; readonly onChunk: () => void; readonly superFrames?: () => boolean },
  scheduler: SchedulerLike = asyncScheduler,
): Observable<Inbound> {
  return conn.data$.pipe(
    deframe({ maxBody: MAX_BODY_COMPAT, onDrops: hooks.onDrops, ...(hooks.superFrames === undefined ? {} : { superFrames: hooks.superFrames }) }),
    detectIdle<Inbound>(settings.timeoutMs, scheduler),
    tap(hooks.onChunk),
    keepalive(settings.keepaliveMs, TICK, scheduler),
  );
}

/** Mutable traffic counters of one direction (read into a Traffic snapshot for stats events). */
export interface Counter {
  packets: number;
  bytes: number;
}

/** A zeroed counter. */
export function counter(): Counter {
  return { packets: 0, bytes: 0 };
}

/** Adds a batch to a counter. */
export function count(c: Counter, packets: PacketBatch, from = 0, to = packets.length): void {
  c.packets += to - from;
  for (let i = from; i < to; i++) c.bytes += packets[i]!.length;
}

/** A sink that counts what `inner` accepted into `c`. */
export function countingSink(inner: PacketSink, c: Counter): PacketSink {
  return {
    write(packets) {
      const n = inner.write(packets);
      count(c, packets, 0, n);
      return n;
    },
    ready$: inner.ready$,
    ...(inner.rejected === undefined ? {} : { rejected: inner.rejected }),
  };
}

/** A PING carrying the sender's clock, to be echoed in a PONG. */
export function encodePing(now: number): Buffer {
  const payload = Buffer.allocUnsafe(8);
  payload.writeDoubleBE(now, 0);
  return encodeFrame(FrameType.Ping, payload);
}

/** The round-trip time a PONG payload tells, or undefined for a malformed one. */
export function rttOf(payload: Uint8Array, now: number): number | undefined {
  if (payload.length !== 8) return undefined;
  const sent = Buffer.from(payload.buffer, payload.byteOffset, 8).readDoubleBE(0);
  return Number.isFinite(sent) && sent <= now ? now - sent : undefined;
}

/** A TunStats snapshot of the TUN device's counters. */
export function tunStats(read: Counter, written: Counter, gauge: { depth: number }): TunStats {
  return { read: { ...read }, written: { ...written }, queued: gauge.depth };
}

/** `make(now)` every `intervalMs` on `scheduler`; nothing when `intervalMs` is undefined (stats off). */
export function statsTicks<E>(intervalMs: number | undefined, scheduler: SchedulerLike, make: (at: number) => E): Observable<E> {
  return intervalMs === undefined ? EMPTY : interval(intervalMs, scheduler).pipe(map(() => make(scheduler.now())));
}

/**
 * A sink that reports, after each write, how many packets its device refused during that write
 * (as `tun-write-error` drops), so a refusal is never silent.
 */
export function reportingRejections(inner: PacketSink, onDrops: (drops: DropCounts) => void): PacketSink {
  const rejected = inner.rejected;
  if (rejected === undefined) return inner;
  let seen = rejected();
  return {
    write(packets) {
      const n = inner.write(packets);
      const now = rejected();
      if (now > seen) onDrops({ 'tun-write-error': now - seen });
      seen = now;
      return n;
    },
    ready$: inner.ready$,
    rejected,
  };
}
