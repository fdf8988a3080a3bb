// One peer session, shared by the hub and the client: the transport's frames in (deframed, idle
// detection, keepalive ticks), the one writer out (control lane ahead of data), KEEPALIVE and
// PING/PONG round-trip time, counters, and teardown. The hub and the client add only what differs:
// admission and forwarding (hub), WELCOME/REJECT/ROUTES handling (client).
//
// The transport seam: a session needs frames in and a writer out. Over a byte stream (TCP, TLS:
// ConnectionPort) that is deframe + writeSession, here. A datagram transport (a later UDP path)
// implements the same seam with a datagram decoder and a datagram writer; everything above it
// (admission, forwarding, the client's state) does not change.
import { EMPTY, Observable, Subject, asyncScheduler, concatWith, defer, finalize, interval, map, merge, startWith, tap, throwError, type SchedulerLike } from 'rxjs';
import { deframe } from '../operators/deframe.js';
import { emitEach } from '../operators/emitEach.js';
import { detectIdle } from '../operators/detectIdle.js';
import { keepalive } from '../operators/keepalive.js';
import { writeSession, type Outgoing } from '../operators/writeSession.js';
import type { DropCounts, Inbound } from '../operators/core/packet.js';
import { FrameType, KEEPALIVE_FRAME, MAX_BODY_COMPAT, MAX_PACKET_COMPAT, encodeFrame, type PacketEncoding } from '../operators/core/wire/frames.js';
import { SessionEnd, type SessionStats, type TunStats } from './events.js';
import type { ConnectionPort, PacketBatch, PacketSink } from './ports.js';
import type { CommonSettings } from './settings.js';
import { dataPath, type DataPath, type UdpLink } from './udpLink.js';

/** The tick value keepalive adds to a session's inbound stream. */
const TICK: Inbound = Object.freeze({ kind: 'tick' });

/** Control frame types the peer session handles itself or passes on; any other non-data frame (a SUPER frame that was not negotiated among them) is `unknown-type`. */
const KNOWN: ReadonlySet<number> = new Set([FrameType.Keepalive, FrameType.Hello, FrameType.Welcome, FrameType.Reject, FrameType.Ping, FrameType.Pong, FrameType.Routes, FrameType.DirectRequest, FrameType.Introduction, FrameType.Withdrawal, FrameType.DirectPath]);

/** How a session starts encoding for its peer: DATA frames only, of at most 1495 bytes (see negotiate). */
export function compatEncoding(): PacketEncoding {
  return { superFrames: false, maxPacket: MAX_PACKET_COMPAT };
}

/**
 * Updates `enc` from what the peer announced: SUPER frames when both sides offer `gso`; segments
 * no larger than the peer's MTU (when it told one) and, without SUPER frames, 1495 bytes.
 */
export function negotiate(enc: PacketEncoding, bothGso: boolean, peerMtu: number | undefined): void {
  enc.superFrames = bothGso;
  const mtu = peerMtu !== undefined && peerMtu >= 576 ? peerMtu : MAX_PACKET_COMPAT;
  enc.maxPacket = bothGso ? mtu : Math.min(mtu, MAX_PACKET_COMPAT);
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

/** Adds packets `from..to` of a batch to a counter. */
export function count(c: Counter, packets: PacketBatch, from = 0, to = packets.length): void {
  c.packets += to - from;
  for (let i = from; i < to; i++) c.bytes += packets[i]!.length;
}

/** What a peer session hands the side that owns it (KEEPALIVE, PING, PONG and ticks it handles itself). */
export type PeerItem =
  | Exclude<Inbound, { readonly kind: 'tick' }>
  /** The writer dropped packets for the peer: its data queue was full (`queue-full`) or stood too long (`queue-delay`). */
  | { readonly kind: 'send-drops'; readonly drops: DropCounts };

/** What peerSession needs besides the connection. */
export interface PeerOptions {
  readonly settings: CommonSettings;
  readonly scheduler?: SchedulerLike;
  /** Where this side counts what the peer sent that was dropped here (unknown types, empty or malformed frames, ...). */
  readonly onDrops: (drops: DropCounts) => void;
  /** SUPER frames from the peer are data (negotiated); asked before each chunk. */
  readonly superFrames: () => boolean;
  /** Sent before anything else (the client's HELLO). */
  readonly first?: Uint8Array;
  /** Why the session ends when the peer closes its side. */
  readonly closedDetail: string;
}

/** One session with a peer over a byte stream. */
export interface Peer {
  /** Sends a control frame through the session's one writer (never dropped; a keyed one replaces an older unsent one of its key). */
  control(frame: Uint8Array, key?: string): void;
  /** Queues packets for the peer on this connection (bounded by send_queue_size and by time; what is dropped comes out of `items$` as send-drops). */
  send(packets: PacketBatch): void;
  /** The session's UDP link, once one is open (its owner sets it; data goes over it while its path is up). */
  link: UdpLink | undefined;
  /** Where the owner sends data: over the link while its path is up, else `send` on this connection. */
  readonly data: DataPath;
  /** How packets are encoded for the peer; negotiate() updates it. */
  readonly encoding: PacketEncoding;
  /** The peer answers PING (it offered the `rtt` capability): set when that is known. */
  pings: boolean;
  /** scheduler.now() of the last frame from the peer. */
  readonly lastSeen: () => number;
  /** Counters and round-trip time, for stats events. */
  stats(address: string | undefined, identity?: string): SessionStats;
  /**
   * The session's life; subscribe once. Emits what the owner handles (data, learned, KEEPALIVE,
   * HELLO, WELCOME, REJECT and ROUTES frames, the writer's drops); handles ticks (KEEPALIVE, and PING
   * when the peer pings), PING (answered with PONG) and PONG (the round-trip time) itself, and counts
   * unknown frame types. Errors with why it ended (IdleError, FrameError, SessionEnd 'closed', a
   * socket error). Unsubscribing stops the writer and closes the connection.
   */
  readonly items$: Observable<PeerItem>;
}

/** Builds the peer session over `conn` (nothing happens until `items$` is subscribed). */
export function peerSession(conn: ConnectionPort, o: PeerOptions): Peer {
  const scheduler = o.scheduler ?? asyncScheduler;
  const settings = o.settings;
  const outgoing = new Subject<Outgoing>();
  const encoding = compatEncoding();
  const connectedAt = scheduler.now();
  let lastSeen = connectedAt;
  let rttMs: number | undefined;
  const rx = counter();
  const tx = counter();
  const gauge = { depth: 0 };

  const peer: Peer = {
    control: (frame, key) => outgoing.next(key === undefined ? { kind: 'control', frame } : { kind: 'control', frame, key }),
    send: (packets) => outgoing.next({ kind: 'data', packets }),
    link: undefined,
    data: dataPath({ send: (packets) => peer.send(packets), encoding }, () => peer.link),
    encoding,
    pings: false,
    lastSeen: () => lastSeen,
    stats: (address, identity) => {
      const udp = peer.link?.stats();
      return {
        id: conn.id,
        remote: conn.remote,
        address,
        ...(identity === undefined ? {} : { identity }),
        connectedAt,
        lastSeen,
        rx: udp === undefined ? { ...rx } : { packets: rx.packets + udp.rx.packets, bytes: rx.bytes + udp.rx.bytes },
        tx: udp === undefined ? { ...tx } : { packets: tx.packets + udp.tx.packets, bytes: tx.bytes + udp.tx.bytes },
        queued: gauge.depth,
        rttMs,
        transport: peer.link?.transport ?? 'tcp',
        ...(udp === undefined ? {} : { udp }),
      };
    },
    items$: defer(() => {
      const handle = (item: Inbound): PeerItem[] => {
        switch (item.kind) {
          case 'tick':
            // Only when idle: while the connection is busy, data is flowing and the peer hears us.
            outgoing.next({ kind: 'control', frame: KEEPALIVE_FRAME, key: 'keepalive', whenIdle: true });
            if (peer.pings) outgoing.next({ kind: 'control', frame: encodePing(scheduler.now()), key: 'ping', whenIdle: true });
            return [];
          case 'data':
            count(rx, item.packets);
            return [item];
          case 'learned':
            return [item];
          case 'control':
            switch (item.type) {
              case FrameType.Ping:
                if (item.payload.length !== 8) o.onDrops({ 'unexpected-control': 1 });
                else peer.control(encodeFrame(FrameType.Pong, item.payload), 'pong');
                return [];
              case FrameType.Pong: {
                const rtt = peer.pings ? rttOf(item.payload, scheduler.now()) : undefined;
                if (rtt === undefined) o.onDrops({ 'unexpected-control': 1 });
                else rttMs = rtt;
                return [];
              }
              default:
                if (KNOWN.has(item.type)) return [item];
                o.onDrops({ 'unknown-type': 1 });
                return [];
            }
        }
      };
      // The writer first: frames the inbound side sends while subscribing must not be lost.
      const written$ = outgoing.pipe(
        o.first === undefined ? (s: Observable<Outgoing>) => s : startWith<Outgoing>({ kind: 'control', frame: o.first }),
        writeSession({ sink: conn, encoding, limit: settings.sendQueueSize, gauge, sent: (packets, n) => count(tx, packets, 0, n), scheduler }),
        map((drops): PeerItem => ({ kind: 'send-drops', drops })),
      );
      const inbound$ = conn.data$.pipe(
        deframe({ maxBody: MAX_BODY_COMPAT, onDrops: o.onDrops, superFrames: o.superFrames }),
        detectIdle<Inbound>(settings.timeoutMs, scheduler),
        tap(() => (lastSeen = scheduler.now())),
        keepalive(settings.keepaliveMs, TICK, scheduler),
        emitEach(handle),
        concatWith(throwError(() => new SessionEnd('closed', o.closedDetail))),
      );
      return merge(written$, inbound$).pipe(
        finalize(() => {
          outgoing.complete();
          conn.close();
        }),
      );
    }),
  };
  return peer;
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

