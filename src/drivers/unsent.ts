// How much a tunnel TCP connection may leave unsent in the kernel (TCP_NOTSENT_LOWAT). Linux lets
// a connection's send buffer autotune to megabytes: a queue that nobody can drop from, which under
// a bulk transfer on a 200 Mbit/s link added over 100 ms to every packet behind it. A fixed small
// limit fixes that but costs a fast link a third of its throughput (the process must wake for every
// few hundred kilobytes). So the limit follows the connection's send rate: about UNSENT_TARGET_MS
// of it, never below UNSENT_MIN_BYTES nor above UNSENT_MAX_BYTES. The standing queue then builds in
// the session's own queue, where CoDel bounds its age (docs/performance.md, "Queues").
import type * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { udpBinding } from '../udp/native.js';
import { StartupPacing, kernelCongestion, type CongestionAccess } from './pacing.js';

/** The time the kernel may hold a connection's unsent bytes for, at the rate it sends. */
export const UNSENT_TARGET_MS = 5;
/** The least unsent limit: what a slow link needs to keep its rate. */
export const UNSENT_MIN_BYTES = 128 * 1024;
/**
 * The largest unsent limit. A connection fast enough to want more gets no limit at all: the
 * kernel's own send buffer (at most 4 MiB by default) is then itself only a few ms of its rate, and
 * any limit costs a fast link throughput (the process wakes for every limit's worth).
 */
export const UNSENT_MAX_BYTES = 2 * 1024 * 1024;
/** The value that lifts the limit (TCP_NOTSENT_LOWAT at its largest: the kernel's default). */
export const UNSENT_UNLIMITED = 0x7fffffff;
/** Unsent bytes in the kernel that make a write count as backlogged (a connection sending what it is given leaves about none). */
export const KERNEL_BACKLOG_BYTES = 16 * 1024;
/** The largest unsent limit under which a connection also bounds Node's buffer by it (UnsentLimit.room): UNSENT_TARGET_MS of ~840 Mbit/s. */
export const ROOM_MAX_LIMIT = 512 * 1024;
/** How long a window of writes the send rate is measured over. */
export const RATE_WINDOW_MS = 200;

/** The file descriptor of the TCP connection under `socket` (plain, or a TLS socket over one), when Node exposes it. */
function tcpFd(socket: net.Socket): number | undefined {
  type Handle = { readonly fd?: unknown; readonly _parent?: Handle } | null | undefined;
  const s = socket as unknown as { readonly _handle?: Handle; readonly _parent?: { readonly _handle?: Handle } | null };
  for (const h of [s._handle, s._handle?._parent, s._parent?._handle]) if (typeof h?.fd === 'number' && h.fd >= 0) return h.fd;
  return undefined;
}

/** The bytes the kernel holds unsent on the connection under `socket` (SIOCOUTQNSD); 0 when it cannot tell. */
export function kernelUnsent(socket: net.Socket): number {
  return unsentOf(tcpFd(socket));
}

/** The bytes the kernel holds unsent on TCP descriptor `fd`; 0 when it cannot tell. */
function unsentOf(fd: number | undefined): number {
  if (fd === undefined) return 0;
  try {
    return udpBinding().tcpUnsentBytes(fd);
  } catch {
    return 0;
  }
}

/** Sets TCP_NOTSENT_LOWAT on the connection under `socket`; returns what the kernel holds now, or undefined when it cannot be set (no descriptor, no addon). */
export function limitUnsent(socket: net.Socket, bytes: number): number | undefined {
  const fd = tcpFd(socket);
  if (fd === undefined) return undefined;
  try {
    return udpBinding().setTcpNotSentLowat(fd, bytes);
  } catch {
    return undefined;
  }
}

/** The unsent limit for a connection that sends `bytesPerMs`: UNSENT_TARGET_MS of it in 64 KiB steps, at least UNSENT_MIN_BYTES; UNSENT_UNLIMITED above UNSENT_MAX_BYTES. */
export function unsentFor(bytesPerMs: number): number {
  const step = 64 * 1024;
  const want = Math.ceil((bytesPerMs * UNSENT_TARGET_MS) / step) * step;
  return want > UNSENT_MAX_BYTES ? UNSENT_UNLIMITED : Math.max(UNSENT_MIN_BYTES, want);
}

/**
 * A connection's unsent limit, kept to its send rate: none at first (the kernel's default), then, at
 * the first write after each RATE_WINDOW_MS of writes, unsentFor(the window's rate) when that differs
 * by more than a quarter (one setsockopt; idle connections cost nothing). Only a window in which the
 * connection was backlogged (a write found bytes still waiting in front of the kernel, or at least
 * KERNEL_BACKLOG_BYTES the kernel had not sent yet) measures
 * what the connection can send; a window that never was measures what the application gave it
 * (idle time included) and may only raise the limit. Otherwise every transfer after a pause would
 * start again at the floor and spend its first windows climbing back (about a tenth of a fast LAN
 * transfer's throughput). Starting with no limit costs a slow link one window of the kernel's
 * queue; starting at the floor cost every fast one its first window, with the standing queue in
 * the session's own queue instead (copies of whole super-packets: a fifth more hub memory at peak).
 * At the same moment, once per window, the connection's StartupPacing takes its look (pacing.ts).
 */
export class UnsentLimit {
  /** The limit the kernel holds now (undefined: it could not be set, and is left alone). */
  current: number | undefined;
  private windowStart: number;
  private windowBytes = 0;
  private windowBacklogged = false;
  /** The connection's descriptor, found once. */
  private readonly fd: number | undefined;
  /** The connection's STARTUP pacing cap, looked at once per window. */
  readonly pacing: StartupPacing | undefined;

  constructor(
    private readonly socket: net.Socket,
    private readonly now: () => number = () => performance.now(),
    congestion: CongestionAccess = kernelCongestion,
  ) {
    this.fd = tcpFd(socket);
    this.pacing = this.fd === undefined ? undefined : new StartupPacing(this.fd, congestion);
    this.current = limitUnsent(socket, UNSENT_UNLIMITED);
    this.windowStart = now();
  }

  /**
   * How many more bytes the application may hand a socket that holds `buffered` bytes in front of
   * the kernel (the ByteSink's `room`): while the limit is at most ROOM_MAX_LIMIT (a connection
   * found slower than about 840 Mbit/s), the limit less `buffered`, so Node's buffer stays about as
   * short in time as the kernel's and the rest of a batch waits in the session's timed queue;
   * undefined otherwise (a faster connection takes whole batches: splitting them costs a copy of
   * the rest, a tenth of a TLS LAN transfer's throughput when it was tried at 1.4 MiB).
   */
  room(buffered: number): number | undefined {
    const c = this.current;
    return c === undefined || c > ROOM_MAX_LIMIT ? undefined : Math.max(0, c - buffered);
  }

  /** Counts `bytes` handed to the socket, which had `backlog` bytes still waiting in front of the kernel; may adjust the limit. */
  wrote(bytes: number, backlog: number): void {
    if (this.current === undefined) return;
    this.windowBytes += bytes;
    // With no limit (or a large one) the kernel takes whatever comes, and the backlog is there.
    if (!this.windowBacklogged && (backlog > 0 || unsentOf(this.fd) >= KERNEL_BACKLOG_BYTES)) this.windowBacklogged = true;
    const t = this.now();
    const elapsed = t - this.windowStart;
    if (elapsed < RATE_WINDOW_MS) return;
    this.pacing?.look(this.windowBytes);
    const want = unsentFor(this.windowBytes / elapsed);
    const measured = this.windowBacklogged;
    this.windowStart = t;
    this.windowBytes = 0;
    this.windowBacklogged = false;
    if (!measured && want <= this.current) return;
    if (Math.abs(want - this.current) * 4 <= this.current) return;
    this.current = limitUnsent(this.socket, want) ?? this.current;
  }
}
