// A batched, non-blocking IPv4 UDP socket over the lwt_udp addon, for the UDP data path: reads
// with recvmmsg (UDP GRO split natively) into a reused DatagramBatch with ONE callback per batch,
// sends with sendmmsg and UDP GSO (UDP_SEGMENT) runs, DF on every datagram. Like TunDevice, this is
// the imperative shell: the pipelines see batches, never the socket.
import util from 'node:util';
import { formatIpv4, parseIpv4 } from '../../operators/core/address.js';
import type { UdpEndpoint } from '../../pipelines/ports.js';
import { AeadKey, DatagramBatch, type SealHeader } from './aead.js';
import { UdpError, toAeadError, toUdpError } from './errors.js';
import { udpBinding, type NativeUdpSocket } from './native.js';

/** How sealAndSend segments super-packets: their segment sizes (gso[i] > 0 for a super-packet, indexed like the payloads) and the largest datagram payload. */
export interface SegmentPlan {
  readonly gso: Uint32Array;
  readonly maxPacket: number;
}

/** A UDP destination or source: IPv4 as u32 host order (10.0.0.1 = 0x0a000001) and a port (the ports' UdpEndpoint). */
export type Endpoint = UdpEndpoint;

/** Options of UdpSocket.open. */
export interface UdpSocketOptions {
  /** Local IPv4 address to bind (default '0.0.0.0'). */
  readonly host?: string;
  /** Local port (default 0: any free one, see localPort). */
  readonly port?: number;
  /** Most datagrams (messages) read per recvmmsg, 1..1024 (default 64). */
  readonly batch?: number;
  /** Ask for UDP GRO (default true): 64 KiB slots, coalesced datagrams are split natively. */
  readonly gro?: boolean;
  /** Use UDP GSO where the kernel offers it (default true). */
  readonly gso?: boolean;
  /** Bytes per slot without GRO, 1..65536 (default 2048); a longer datagram is dropped (truncated). */
  readonly maxDatagram?: number;
  /** SO_RCVBUF / SO_SNDBUF to ask for, in bytes (default 4 MiB each; forced past the sysctl limit
   * with CAP_NET_ADMIN). See rcvbuf/sndbuf for what the kernel granted. */
  readonly rcvbuf?: number;
  readonly sndbuf?: number;
  /** Bytes of the arena sealAndSend seals into (default 256 KiB, at least 128 KiB: room for a 64 KiB super-packet's segments). */
  readonly sendArena?: number;
  /**
   * Called synchronously, from inside a send method, once per datagram the kernel refused on its
   * own: `index` is its index in the caller's array (or batch row), `code` the errno name. EMSGSIZE
   * means larger than the path MTU (DF is always set): answer with ICMP "fragmentation needed",
   * see pathMtu. Absent: refusals are only counted (stats).
   */
  readonly onRejected?: (index: number, code: string, to: Endpoint) => void;
}

/** Counters of a socket since it was opened. */
export interface UdpSocketStats {
  /** Datagrams the kernel took. */
  readonly sent: number;
  /** Messages sent with UDP_SEGMENT (each carrying several datagrams). */
  readonly gsoMessages: number;
  /** Datagrams refused with EMSGSIZE (larger than the path MTU). */
  readonly tooBig: number;
  /** Datagrams refused with another error of their own (unreachable, filtered, ...). */
  readonly sendRejected: number;
  /** sendmmsg/sendmsg system calls. */
  readonly sendCalls: number;
  /** Send calls cut short by EAGAIN. */
  readonly sendBlocked: number;
  /** Datagrams delivered to the read callback. */
  readonly received: number;
  /** Received messages holding several coalesced (GRO) datagrams. */
  readonly groMessages: number;
  /** Received datagrams longer than a slot, dropped. */
  readonly truncated: number;
  /** Ignored receive errors (ICMP errors surfacing on the socket). */
  readonly recvErrors: number;
  /** recvmmsg system calls. */
  readonly recvCalls: number;
  /** Read callbacks made. */
  readonly batches: number;
  /** UDP_SEGMENT messages the kernel refused, sent again one by one. */
  readonly gsoFallbacks: number;
  /** Received messages dropped because reading stopped inside a batch. */
  readonly dropped: number;
}

// Indexes of the native stats array (native/udp.cc, enum Stat).
const STAT = {
  sent: 0,
  gsoMessages: 1,
  tooBig: 2,
  sendRejected: 3,
  sendCalls: 4,
  sendBlocked: 5,
  received: 6,
  groMessages: 7,
  truncated: 8,
  recvErrors: 9,
  recvCalls: 10,
  batches: 11,
  lastRejected: 12,
  gsoFallbacks: 13,
  dropped: 14,
} as const;

const DEFAULT_BATCH = 64;
const MAX_BATCH = 1024;
const GRO_SLOT = 65536;
const DEFAULT_SLOT = 2048;
const DEFAULT_BUFFER = 4 << 20;
const DEFAULT_SEND_ARENA = 256 << 10;
const MIN_SEND_ARENA = 128 << 10;
/** Most datagrams UDP GRO coalesces into one message (the kernel's UDP_GRO_CNT_MAX). */
const GRO_SEGMENTS = 64;

/** errno number -> name ('EMSGSIZE'), for per-datagram refusals. */

function optionError(message: string): UdpError {
  return new UdpError(message, 'EINVAL', 'options');
}

function intIn(value: number | undefined, fallback: number, min: number, max: number, what: string): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw optionError(`${what} must be an integer in ${min}..${max}, got ${String(v)}`);
  return v;
}

/**
 * A non-blocking IPv4 UDP socket moving batches. Reads: one callback per recvmmsg with every
 * datagram in a reused DatagramBatch. Sends: many datagrams per system call, each run of
 * equal-sized datagrams to one destination as one UDP GSO message. Every datagram has DF set.
 */
export class UdpSocket {
  /** The bound address, dotted. */
  readonly localAddress: string;
  /** The bound port (the kernel's choice for port 0). */
  readonly localPort: number;
  /** SO_RCVBUF / SO_SNDBUF as the kernel reports them (twice what it accounts as payload). */
  readonly rcvbuf: number;
  readonly sndbuf: number;
  /** UDP GRO is on: one read may hold many datagrams of one sender, split into rows. */
  readonly gro: boolean;
  /** The kernel offers UDP GSO (and it was asked for). */
  readonly gsoSupported: boolean;
  /** The batch every read callback describes. */
  readonly receive: DatagramBatch;

  readonly #native: NativeUdpSocket;
  readonly #stats: Float64Array;
  readonly #errors: Uint16Array;
  readonly #maxSend: number;
  readonly #onRejected: ((index: number, code: string, to: Endpoint) => void) | undefined;
  #waiters: (() => void)[] = [];

  private constructor(native: NativeUdpSocket, onRejected: UdpSocketOptions['onRejected']) {
    this.#native = native;
    this.#stats = native.stats;
    this.#errors = native.sendErrors;
    this.#maxSend = native.maxSend;
    this.#onRejected = onRejected;
    this.localAddress = formatIpv4(native.localAddress);
    this.localPort = native.localPort;
    this.rcvbuf = native.rcvbuf;
    this.sndbuf = native.sndbuf;
    this.gro = native.gro;
    this.gsoSupported = native.gsoSupported;
    this.receive = new DatagramBatch(native.receive);
  }

  /** Opens and binds a socket; throws UdpError (EINVAL for options, EADDRINUSE, EACCES, ...). */
  static open(options: UdpSocketOptions = {}): UdpSocket {
    const host = options.host ?? '0.0.0.0';
    const address = parseIpv4(host);
    if (address === undefined) throw optionError(`UDP socket host must be an IPv4 address, got ${JSON.stringify(host)}`);
    const port = intIn(options.port, 0, 0, 65535, 'UDP port');
    const slots = intIn(options.batch, DEFAULT_BATCH, 1, MAX_BATCH, 'UDP read batch');
    const gro = options.gro ?? true;
    const slotSize = gro ? GRO_SLOT : intIn(options.maxDatagram, DEFAULT_SLOT, 1, GRO_SLOT, 'UDP maxDatagram');
    const rcvbuf = intIn(options.rcvbuf, DEFAULT_BUFFER, 1, 1 << 30, 'UDP rcvbuf');
    const sndbuf = intIn(options.sndbuf, DEFAULT_BUFFER, 1, 1 << 30, 'UDP sndbuf');
    const sendArena = intIn(options.sendArena, DEFAULT_SEND_ARENA, MIN_SEND_ARENA, 1 << 28, 'UDP sendArena');
    try {
      const binding = udpBinding();
      const receive = new binding.DatagramBatch(slots * (gro ? GRO_SEGMENTS : 1), slots * slotSize);
      const send = new binding.DatagramBatch(MAX_BATCH, sendArena);
      const native = new binding.UdpSocket({ address, port, slots, slotSize, gro, gso: options.gso ?? true, rcvbuf, sndbuf, receive, send });
      return new UdpSocket(native, options.onRejected);
    } catch (err) {
      throw toUdpError(err);
    }
  }

  /** UDP GSO is in use (false when not offered, or after the kernel refused it on this path). */
  get gso(): boolean {
    return this.#native.gso;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#native.closed;
  }

  /**
   * Starts reading (calling again replaces the callbacks). `onBatch(batch, count)` gets rows
   * 0..count-1 of `this.receive`: their bytes and table entries are valid only during the call
   * (the next read overwrites them; copy what must outlive it). Open them in place with
   * AeadKey.open during the call. A throw from onBatch is an uncaught exception, as from an event
   * listener. A socket error stops reading and calls onError once. A reading socket keeps the
   * process alive.
   */
  read(onBatch: (batch: DatagramBatch, count: number) => void, onError: (err: UdpError) => void): void {
    const batch = this.receive;
    try {
      this.#native.start(
        (count) => onBatch(batch, count),
        (err) => onError(toUdpError(err)),
      );
    } catch (err) {
      throw toUdpError(err);
    }
  }

  /** Stops reading; idempotent. */
  stopReading(): void {
    if (!this.closed) this.#native.stop();
  }

  /**
   * Sends rows from..to-1 of `batch`, row i to batch.addrs[i]:batch.ports[i], and returns how many
   * were consumed (sent, or refused on their own: see onRejected); fewer means EAGAIN, see
   * onWritable. Throws UdpError for a closed socket or an error of the socket itself.
   */
  sendBatch(batch: DatagramBatch, from = 0, to = batch.capacity): number {
    let done = 0;
    while (from + done < to) {
      const want = Math.min(to - from - done, this.#maxSend);
      let k: number;
      try {
        k = this.#native.sendBatch(batch.native, from + done, from + done + want);
      } catch (err) {
        throw toUdpError(err);
      }
      this.#reportRejected(from + done, k, (i) => ({ address: batch.addrs[i]!, port: batch.ports[i]! }));
      done += k;
      if (k < want) break;
    }
    return done;
  }

  /** Sends datagrams[from..] to one destination, straight from their memory; returns how many were
   * consumed (fewer: EAGAIN, see onWritable). Throws UdpError. */
  send(datagrams: readonly Uint8Array[], to: Endpoint, from = 0): number {
    return this.#chunked(datagrams.length, from, to, (at) => this.#native.send(datagrams, at, to.address, to.port));
  }

  /**
   * Seals payloads[from..] with `key` straight into the socket's send arena and sends them to one
   * destination: one native call per 1024 payloads. Returns how many payloads were consumed
   * (sent or refused on their own, see onRejected); fewer means EAGAIN (see onWritable): send the
   * rest later, they get new counters. Counter of the first: `counter` (default key.nextCounter).
   * With `segments`, payload i with segments.gso[i] > 0 is a TCPv4 super-packet of that segment
   * size: it leaves as one datagram per segment of at most segments.maxPacket bytes (segmented in
   * the addon as segmentSuper does), consumed once all of them left (one refused: the payload is).
   * Throws AeadError (ECOUNTER, EMSGSIZE, EINVAL for a super-packet that does not segment) or UdpError.
   */
  sealAndSend(key: AeadKey, payloads: readonly Uint8Array[], header: SealHeader, to: Endpoint, from = 0, counter = -1, segments?: SegmentPlan): number {
    const nativeKey = AeadKey.native(key);
    let first = true;
    return this.#chunked(payloads.length, from, to, (at) => {
      const c = first ? counter : -1;
      first = false;
      try {
        return segments === undefined
          ? this.#native.sealAndSend(nativeKey, payloads, at, header.type, header.epoch, header.receiverId, c, to.address, to.port)
          : this.#native.sealAndSend(nativeKey, payloads, at, header.type, header.epoch, header.receiverId, c, to.address, to.port, segments.gso, segments.maxPacket);
      } catch (err) {
        const code = (err as { syscall?: unknown }).syscall;
        throw code === 'seal' || code === undefined ? toAeadError(err) : toUdpError(err);
      }
    });
  }

  /** Calls `cb` once, the next time the socket can take datagrams; every callback registered
   * before then is called, in order. Never called after close(). */
  onWritable(cb: () => void): void {
    if (this.closed) return;
    this.#waiters.push(cb);
    if (this.#waiters.length > 1) return;
    try {
      this.#native.onWritable(() => {
        const waiters = this.#waiters;
        this.#waiters = [];
        for (const waiter of waiters) waiter();
      });
    } catch (err) {
      this.#waiters = [];
      throw toUdpError(err);
    }
  }

  /** The path MTU the kernel knows toward `to` (device MTU, or less after ICMP "fragmentation
   * needed"); a payload sealed for it may be at most pathMtu - IPV4_DATAGRAM_OVERHEAD bytes. Makes
   * a throwaway connected socket: for the EMSGSIZE answer, not per packet. Throws UdpError. */
  pathMtu(to: Endpoint): number {
    try {
      return this.#native.pathMtu(to.address, to.port);
    } catch (err) {
      throw toUdpError(err);
    }
  }

  /** The counters since the socket was opened. */
  stats(): UdpSocketStats {
    const s = this.#stats;
    return {
      sent: s[STAT.sent]!,
      gsoMessages: s[STAT.gsoMessages]!,
      tooBig: s[STAT.tooBig]!,
      sendRejected: s[STAT.sendRejected]!,
      sendCalls: s[STAT.sendCalls]!,
      sendBlocked: s[STAT.sendBlocked]!,
      received: s[STAT.received]!,
      groMessages: s[STAT.groMessages]!,
      truncated: s[STAT.truncated]!,
      recvErrors: s[STAT.recvErrors]!,
      recvCalls: s[STAT.recvCalls]!,
      batches: s[STAT.batches]!,
      gsoFallbacks: s[STAT.gsoFallbacks]!,
      dropped: s[STAT.dropped]!,
    };
  }

  /** Stops reading and closes the socket (the port is free at once); idempotent. */
  close(): void {
    this.#waiters = [];
    this.#native.close();
  }

  // Runs `call(at)` over [from, length) in native-sized chunks (each returns how many it consumed)
  // until EAGAIN or the end, reporting refusals; one destination for all.
  #chunked(length: number, from: number, to: Endpoint, call: (at: number) => number): number {
    let done = 0;
    while (from + done < length) {
      const want = Math.min(length - from - done, this.#maxSend);
      let k: number;
      try {
        k = call(from + done);
      } catch (err) {
        throw err instanceof Error && (err.name === 'AeadError' || err.name === 'UdpError') ? err : toUdpError(err);
      }
      this.#reportRejected(from + done, k, () => to);
      done += k;
      if (k < want) break;
    }
    return done;
  }

  #reportRejected(base: number, count: number, destination: (index: number) => Endpoint): void {
    if (this.#stats[STAT.lastRejected] === 0 || this.#onRejected === undefined) return;
    const errors = this.#errors;
    for (let i = 0; i < count; i++) {
      const errno = errors[i]!;
      if (errno !== 0) this.#onRejected(base + i, util.getSystemErrorName(-errno), destination(base + i));
    }
  }
}
