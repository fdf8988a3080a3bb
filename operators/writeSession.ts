import { Observable, asyncScheduler, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import type { ByteSink, DropCounts, PacketBatch } from './core/packet.js';
import { encodePackets, type PacketEncoding } from './core/wire/frames.js';
import { copyPacket } from './core/wire/gso.js';
import { Slab } from './core/slab.js';

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
  /** Bytes of packets that may wait; beyond, new packets are dropped as `queue-full` too. Default MAX_QUEUE_BYTES. */
  readonly byteLimit?: number;
  /** Kept equal to the packets waiting (for the status). */
  readonly gauge?: { depth: number };
  /** Called with the number of packets each successful data write handed to the connection. */
  readonly sent?: (packets: PacketBatch, count: number) => void;
  /**
   * Bounds the queue by time as well (CoDel, RFC 8289): once packets have waited longer than
   * `targetMs` for a whole `intervalMs`, the oldest are dropped (as `queue-delay`) at a rising
   * rate until the wait falls below the target. Default 5 ms and 100 ms; `false` turns it off.
   */
  readonly codel?: { readonly targetMs: number; readonly intervalMs: number } | false;
  /**
   * A hard limit on a packet's wait (ms): while the queue stands (CoDel's verdict: above its target
   * for an interval; always, with CoDel off), a packet that waited longer is dropped (as `queue-age`)
   * when it comes to the head. CoDel drops one packet at a time, which only slows a sender that
   * backs off on loss; against one that does not (BBR) its standing queue could stay up to the
   * packet limit. Bursts shorter than an interval pass. Default MAX_WAIT_MS; `false` turns it off.
   */
  readonly maxWaitMs?: number | false;
  /** Whose clock times the queue (CoDel); asyncScheduler by default. */
  readonly scheduler?: SchedulerLike;
}

/** CoDel's defaults (RFC 8289): the acceptable standing delay, and how long it may be exceeded. */
export const CODEL_TARGET_MS = 5;
export const CODEL_INTERVAL_MS = 100;
/**
 * The hard limit on a packet's wait in a standing send queue: twice CoDel's target. CoDel lets a
 * queue stand above its target for an interval and then drops one packet at a time; once it
 * stands, a packet that waited two targets goes, so what the queue adds to every packet behind it
 * (a ping beside a bulk transfer) stays within a few ms.
 */
export const MAX_WAIT_MS = 2 * CODEL_TARGET_MS;
/**
 * The bytes a session's data queue may hold by default: the packet limit alone let 1000 queued
 * super-packets (64 KiB each) hold 64 MiB for one member that does not read.
 */
export const MAX_QUEUE_BYTES = 8 * 1024 * 1024;
/** Packets written per step of a flush: what waits beyond the connection's high-water mark waits here, timed. */
const FLUSH_CHUNK = 64;

/** Control frames that may wait at once: one per key plus the few one-off frames of a session. */
const MAX_CONTROL_WAITING = 16;

/**
 * The one writer of a session: every frame a session sends goes through it, in two lanes. Control
 * frames wait in a small lane ahead of data and are never dropped (keyed ones are replaced by a
 * newer frame of the same key while they wait, so a member under load gets the latest ROUTES, not
 * a stale one; the lane holds at most 16, and an unkeyed frame beyond that replaces the oldest unkeyed one);
 * packets go out only when no control frame waits, else wait in a queue of `limit` packets and
 * `byteLimit` bytes
 * (copied, since views may point into reused buffers) where newer ones are dropped when it is full
 * (tail drop), and are bounded by time too (CoDel: a queue that stands above 5 ms for 100 ms
 * loses its oldest packets, counted as `queue-delay`, until it stops standing) and by a hard limit
 * (once the queue stands, a packet that waited longer than `maxWaitMs`, 10 ms, is dropped at the
 * head as `queue-age`).
 * Nothing is written while the connection is above its high-water mark, and no write is larger
 * than the connection's `room` (but at least one packet): the rest of a batch waits here; what
 * waits goes out as `drain$` fires, control first, data in chunks of at most 64 packets and `room`
 * bytes for as long as the connection takes them (so a standing queue stays here, where it is
 * timed, not in the socket's buffer); control frames still
 * waiting at unsubscribe are written then (a REJECT before the close). Large batches are encoded into a reused slab,
 * reused as a ring as the connection lets go of it (`pendingBytes`, operators/core/slab.ts). Emits the packets dropped (as
 * `queue-full` per input batch that lost any, as `queue-delay` per flush that dropped any);
 * completes with the source.
 *
 *   in:   -c1-[a,b]-c2-[c]--D--|    connection busy from the start; D = drain; limit 2
 *   out:  ------------------(x)|   at D: c1, c2 written, then a, b; c was dropped (x = queue-full 1)
 */
export function writeSession(options: WriteSessionOptions): OperatorFunction<Outgoing, DropCounts> {
  const { sink, encoding, limit, gauge, sent } = options;
  const byteLimit = options.byteLimit ?? MAX_QUEUE_BYTES;
  const scheduler = options.scheduler ?? asyncScheduler;
  const codel = options.codel === false ? undefined : (options.codel ?? { targetMs: CODEL_TARGET_MS, intervalMs: CODEL_INTERVAL_MS });
  const maxWait = options.maxWaitMs === false ? Number.POSITIVE_INFINITY : (options.maxWaitMs ?? MAX_WAIT_MS);
  return (source) =>
    new Observable<DropCounts>((subscriber) => {
      const lane: { frame: Uint8Array; key: string | undefined }[] = [];
      let queue: Uint8Array[] = [];
      /** Bytes of the packets in `queue`. */
      let queuedBytes = 0;
      /** When each queued packet arrived (scheduler time), parallel to `queue`. */
      let arrived: number[] = [];
      const state = { firstAbove: 0, dropNext: 0, count: 0, lastCount: 0, dropping: false, standing: false };
      const slab = new Slab(() => sink.pendingBytes ?? Number.POSITIVE_INFINITY);
      let drains: Subscription | undefined;

      const writeData = (packets: PacketBatch): void => {
        const bytes = encodePackets(packets, encoding, slab.take);
        if (bytes !== undefined) sink.write(bytes);
        sent?.(packets, packets.length);
      };
      /** How many packets from `from` on fit the connection's room (at least one). */
      const fitting = (packets: PacketBatch, from: number): number => {
        const room = sink.room;
        if (room === undefined) return packets.length - from;
        let i = from + 1;
        for (let bytes = packets[from]!.length; i < packets.length && bytes + packets[i]!.length <= room; i++) bytes += packets[i]!.length;
        return i - from;
      };
      /** Writes packets from the head of `packets` while the connection takes them, at most `room` bytes per write; returns how many went. */
      const writeWhileTaken = (packets: PacketBatch): number => {
        let at = 0;
        while (at < packets.length && !sink.needsDrain) {
          const n = fitting(packets, at);
          writeData(at === 0 && n === packets.length ? packets : packets.slice(at, at + n));
          at += n;
        }
        return at;
      };
      /**
       * CoDel's verdict on the head packet (RFC 8289 section 5, `dodequeue` and the control law):
       * true when it must be dropped because the queue has stood above the target too long.
       */
      const codelDrops = (now: number, sojourn: number): boolean => {
        if (codel === undefined) return false;
        let okToDrop = false;
        if (sojourn < codel.targetMs || queue.length <= 1) state.firstAbove = 0;
        else if (state.firstAbove === 0) state.firstAbove = now + codel.intervalMs;
        else if (now >= state.firstAbove) okToDrop = true;
        state.standing = okToDrop;
        if (state.dropping) {
          if (!okToDrop) {
            state.dropping = false;
            return false;
          }
          if (now < state.dropNext) return false;
          state.count++;
          state.dropNext += codel.intervalMs / Math.sqrt(state.count);
          return true;
        }
        if (!okToDrop) return false;
        state.dropping = true;
        const delta = state.count - state.lastCount;
        state.count = delta > 1 && now - state.dropNext < 16 * codel.intervalMs ? delta : 1;
        state.lastCount = state.count;
        state.dropNext = now + codel.intervalMs / Math.sqrt(state.count);
        return true;
      };
      /**
       * Takes up to `max` packets and the connection's room in bytes (at least one packet) from the
       * head of the queue, dropping those that waited past the hard limit and those CoDel says to (counted).
       */
      const dequeue = (max: number): Uint8Array[] => {
        const now = scheduler.now();
        const room = sink.room ?? Number.POSITIVE_INFINITY;
        const out: Uint8Array[] = [];
        let bytes = 0;
        let aged = 0;
        let dropped = 0;
        let i = 0;
        for (; i < queue.length && out.length < max; i++) {
          const sojourn = now - arrived[i]!;
          const size = queue[i]!.length;
          if (codelDrops(now, sojourn)) dropped++;
          // The hard limit acts on a standing queue (CoDel's verdict: above the target for an
          // interval), not on a burst: a batch of 64 KiB super-packets may take over 10 ms to leave
          // on a fast link, and dropping its tail would cost 45 segments each.
          else if (sojourn > maxWait && (codel === undefined || state.standing)) aged++;
          else {
            if (out.length > 0 && bytes + size > room) break;
            out.push(queue[i]!);
            bytes += size;
          }
          queuedBytes -= size;
        }
        queue = i === queue.length ? [] : queue.slice(i);
        arrived = i === arrived.length ? [] : arrived.slice(i);
        if (aged > 0 || dropped > 0) subscriber.next({ ...(aged > 0 ? { 'queue-age': aged } : {}), ...(dropped > 0 ? { 'queue-delay': dropped } : {}) });
        return out;
      };
      /** Writes what waits, control first, data in chunks while the connection takes it; true when nothing waits any more. */
      const flush = (): boolean => {
        while (lane.length > 0 && !sink.needsDrain) sink.write(lane.shift()!.frame);
        while (lane.length === 0 && queue.length > 0 && !sink.needsDrain) {
          const batch = dequeue(FLUSH_CHUNK);
          if (batch.length > 0) writeData(batch);
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
          const written = lane.length === 0 && queue.length === 0 ? writeWhileTaken(packets) : 0;
          if (written === packets.length) return;
          const free = limit - queue.length;
          const end = written + Math.max(0, Math.min(free, packets.length - written));
          const now = scheduler.now();
          let i = written;
          for (; i < end && queuedBytes + packets[i]!.length <= byteLimit; i++) {
            queue.push(copyPacket(packets[i]!));
            arrived.push(now);
            queuedBytes += packets[i]!.length;
          }
          const keep = i - written;
          if (gauge !== undefined) gauge.depth = queue.length;
          awaitDrain();
          if (written + keep < packets.length) subscriber.next({ 'queue-full': packets.length - written - keep });
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
        arrived = [];
        queuedBytes = 0;
        if (gauge !== undefined) gauge.depth = 0;
      };
    });
}
