import { Observable, type OperatorFunction, type Subscription } from 'rxjs';
import type { ByteSink, DropCounts, PacketBatch } from './core/packet.js';
import { encodePackets, type PacketEncoding } from './core/wire/frames.js';
import { copyPacket } from './core/wire/gso.js';

/** What a session sends: a control frame (never dropped) or packets (through the bounded data queue). */
export type Outgoing =
  /**
   * An encoded control frame. With a `key`, a newer frame of that key replaces an older one that has
   * not gone out yet (ROUTES, PONG). `whenIdle` frames (KEEPALIVE, PING) are sent only when nothing
   * waits and the connection is not busy; otherwise they are not needed (data is flowing) and skipped.
   */
  | { readonly kind: 'control'; readonly frame: Uint8Array; readonly key?: string; readonly whenIdle?: boolean }
  /** Packets for the peer, encoded as `encoding` says when they go out (views are copied if they must wait). */
  | { readonly kind: 'data'; readonly packets: PacketBatch };

/** Options of writeSession. */
export interface WriteSessionOptions {
  /** The connection's send side. */
  readonly sink: ByteSink;
  /** How packets are encoded for this peer; read at every write (negotiation may change it). */
  readonly encoding: PacketEncoding;
  /** Packets that may wait for the connection; beyond, new packets are dropped as `queue-full`. */
  readonly limit: number;
  /** Kept equal to the packets waiting (for the status). */
  readonly gauge?: { depth: number };
  /** Called with the number of packets each successful data write handed to the connection. */
  readonly sent?: (packets: PacketBatch, count: number) => void;
}

/** Control frames that may wait at once: one per key plus the few one-off frames of a session. */
const MAX_CONTROL_WAITING = 16;

/**
 * The one writer of a session: every frame a session sends goes through it, in two lanes. Control
 * frames wait in a small lane ahead of data and are never dropped (keyed ones are replaced by a
 * newer frame of the same key while they wait, so a member under load gets the latest ROUTES, not
 * a stale one; the lane holds at most 16, and an unkeyed frame beyond that replaces the oldest unkeyed one);
 * packets go out only when no control frame waits, else wait in a queue of `limit` packets
 * (copied, since views may point into reused buffers) where newer ones are dropped when it is full
 * (tail drop). Nothing is written while the connection is above its high-water mark; everything
 * waiting goes out, control first, as `drain$` fires; control frames still waiting at unsubscribe are
 * written then (a REJECT before the close). Large batches are encoded into a reused slab,
 * freed as soon as the connection holds none of it (`pendingBytes`). Emits the packets dropped per
 * input batch that lost any (as `queue-full`); completes with the source.
 *
 *   in:   -c1-[a,b]-c2-[c]--D--|    connection busy from the start; D = drain; limit 2
 *   out:  ------------------(x)|   at D: c1, c2 written, then a, b; c was dropped (x = queue-full 1)
 */
export function writeSession(options: WriteSessionOptions): OperatorFunction<Outgoing, DropCounts> {
  const { sink, encoding, limit, gauge, sent } = options;
  return (source) =>
    new Observable<DropCounts>((subscriber) => {
      const lane: { frame: Uint8Array; key: string | undefined }[] = [];
      let queue: Uint8Array[] = [];
      const slab = new Slab(() => sink.pendingBytes === 0);
      let drains: Subscription | undefined;

      const writeData = (packets: PacketBatch): void => {
        const bytes = encodePackets(packets, encoding, slab.take);
        if (bytes !== undefined) sink.write(bytes);
        sent?.(packets, packets.length);
      };
      /** Writes what waits, control first; true when nothing waits any more. */
      const flush = (): boolean => {
        while (lane.length > 0 && !sink.needsDrain) sink.write(lane.shift()!.frame);
        if (lane.length === 0 && queue.length > 0 && !sink.needsDrain) {
          const batch = queue;
          queue = [];
          writeData(batch);
        }
        if (gauge !== undefined) gauge.depth = queue.length;
        return lane.length === 0 && queue.length === 0;
      };
      const awaitDrain = (): void => {
        if (drains !== undefined) return;
        drains = sink.drain$.subscribe(() => {
          if (flush()) {
            drains?.unsubscribe();
            drains = undefined;
          }
        });
      };
      const enqueueControl = (frame: Uint8Array, key: string | undefined): void => {
        if (key !== undefined) {
          const i = lane.findIndex((w) => w.key === key);
          if (i >= 0) {
            lane[i] = { frame, key };
            return;
          }
        }
        if (lane.length >= MAX_CONTROL_WAITING) {
          // Only a peer that never reads gets here; its oldest one-off frame is the least useful.
          const i = lane.findIndex((w) => w.key === undefined);
          lane.splice(i < 0 ? 0 : i, 1);
        }
        lane.push({ frame, key });
      };

      const inner = source.subscribe({
        next(item) {
          if (item.kind === 'control') {
            if (lane.length === 0 && queue.length === 0 && !sink.needsDrain) sink.write(item.frame);
            else if (item.whenIdle !== true) {
              enqueueControl(item.frame, item.key);
              awaitDrain();
            }
            return;
          }
          const packets = item.packets;
          if (packets.length === 0) return;
          if (lane.length === 0 && queue.length === 0 && !sink.needsDrain) {
            writeData(packets);
            return;
          }
          const room = limit - queue.length;
          const keep = Math.max(0, Math.min(room, packets.length));
          for (let i = 0; i < keep; i++) queue.push(copyPacket(packets[i]!));
          if (gauge !== undefined) gauge.depth = queue.length;
          awaitDrain();
          if (keep < packets.length) subscriber.next({ 'queue-full': packets.length - keep });
        },
        error: (e) => subscriber.error(e),
        complete: () => subscriber.complete(),
      });
      return () => {
        inner.unsubscribe();
        drains?.unsubscribe();
        // Control frames are never dropped: what still waits (a REJECT, a last ROUTES) goes to the
        // connection now, above its high-water mark if need be (at most the lane's 16 frames), before
        // the owner closes it.
        for (const w of lane.splice(0)) sink.write(w.frame);
        queue = [];
        if (gauge !== undefined) gauge.depth = 0;
      };
    });
}

/** Bytes of a slab (a larger batch gets a slab of its own size, reused in turn). */
const SLAB_BYTES = 512 * 1024;
/** Outputs smaller than this bypass the slab (Node pools allocations below 4 KiB). */
const SLAB_MIN_REQUEST = 4096;

/**
 * Output buffers carved one after another out of a slab allocated on the first large request.
 * Everything carved before is free again once `flushed()` says the connection holds none of it
 * (then carving starts over); a request that does not fit gets a new slab (at least as large as
 * the request), leaving the old one to whatever still references it.
 */
class Slab {
  private buf: Buffer | undefined;
  private at = 0;

  constructor(private readonly flushed: () => boolean) {}

  readonly take = (bytes: number): Buffer => {
    // Small outputs come from the shared allocator: cheap, and a lightly used connection never holds a slab.
    if (bytes < SLAB_MIN_REQUEST) return allocate(bytes);
    if (this.buf !== undefined && this.flushed()) this.at = 0;
    if (this.buf === undefined || this.at + bytes > this.buf.length) {
      this.buf = allocate(Math.max(SLAB_BYTES, bytes));
      this.at = 0;
    }
    const out = this.buf.subarray(this.at, this.at + bytes);
    this.at += bytes;
    return out;
  };
}

/** An uninitialised buffer from Node's pooled allocator (the encoder overwrites every byte). */
const allocate = (bytes: number): Buffer => Buffer.allocUnsafe(bytes);
