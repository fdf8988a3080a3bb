// Driver: TCP sockets as ConnectionPorts, a listening server as a ListenerPort, outgoing
// connections as a DialerPort. All Node socket handling of the project lives here.
import * as net from 'node:net';
import * as tls from 'node:tls';
import { TLS_EXPORTER_LABEL } from '../udp/channels.js';
import { UnsentLimit } from './unsent.js';
import { Observable, Subject, type Subscriber } from 'rxjs';
import type { ConnectionPort, DialerPort, ListenerEvent, ListenerPort } from '../../pipelines/ports.js';
import { PendingConnections, type PendingLimits, type RefusedEvent } from './pending.js';

/** How long close() waits for a graceful end before destroying the socket. */
const CLOSE_GRACE_MS = 2000;
/** Socket send buffer high-water mark: large enough for a few batches, small enough to bound latency. */
export const SOCKET_HIGH_WATER_MARK = 256 * 1024;
/** Bytes of the read buffer that every plain TCP connection of the process reads into. */
const READ_BUFFER_BYTES = 256 * 1024;
let readBuffer: Buffer | undefined;

/**
 * Where a connection that reads into the shared buffer delivers its chunks: to `deliver` once
 * `data$` is subscribed; copies wait in `early` until then.
 */
export interface SharedReads {
  deliver: ((chunk: Buffer) => void) | undefined;
  early: Buffer[];
}

/**
 * Node's `onread` option for a socket that reads into one buffer shared by every plain TCP
 * connection of the process, instead of a fresh 64 KiB allocation per read: reads are handled one
 * at a time on the event loop and each chunk is consumed (decoded, and what is kept copied) before
 * the next read, so sharing is safe, and the external-memory pressure that made V8 run a full
 * mark-compact every ~120 ms at 2 Gb/s is gone.
 */
export function sharedReads(): { target: SharedReads; onread: { buffer: Buffer; callback: (n: number, buf: Buffer) => boolean } } {
  const target: SharedReads = { deliver: undefined, early: [] };
  readBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES);
  return {
    target,
    onread: {
      buffer: readBuffer,
      callback: (n, buf) => {
        const chunk = buf.subarray(0, n);
        if (target.deliver !== undefined) target.deliver(chunk);
        else target.early.push(Buffer.from(chunk));
        return true;
      },
    },
  };
}

/** Formats a socket's peer as `ip:port` (`[v6]:port` for IPv6). */
export function remoteOf(socket: net.Socket): string {
  const a = socket.remoteAddress ?? '?';
  return `${a.includes(':') ? `[${a}]` : a}:${socket.remotePort ?? '?'}`;
}

/**
 * Wraps a connected socket as a ConnectionPort. Errors before `data$` is subscribed are kept and
 * delivered on subscription (a socket error never goes unhandled). With `reads`, the socket was
 * made with sharedReads()' onread: chunks are views of the shared buffer, valid during their
 * emission (the ConnectionPort contract), and nothing arrives as 'data' events. `admitted` becomes
 * the port's `admitted` (an accepted connection's pending slot).
 */
export function socketConnection(socket: net.Socket, id: number, reads?: SharedReads, admitted?: () => void): ConnectionPort {
  socket.setNoDelay(true);
  const unsent = new UnsentLimit(socket);
  const drain$ = new Subject<void>();
  let failure: Error | undefined;
  let ended = false;
  let sink: { error(e: Error): void; complete(): void } | undefined;
  let closeTimer: NodeJS.Timeout | undefined;
  socket.on('drain', () => drain$.next());
  socket.on('error', (err) => {
    failure = err;
    sink?.error(err);
  });
  socket.on('end', () => {
    ended = true;
    sink?.complete();
  });
  socket.on('close', () => {
    if (closeTimer) clearTimeout(closeTimer);
    if (sink !== undefined) {
      if (failure !== undefined) sink.error(failure);
      else sink.complete();
    }
    drain$.complete();
  });
  const remote = remoteOf(socket);
  const data$ = new Observable<Uint8Array>((subscriber) => {
    if (failure !== undefined) {
      subscriber.error(failure);
      return;
    }
    if (ended || socket.destroyed) {
      subscriber.complete();
      return;
    }
    sink = subscriber;
    const onData = (chunk: Buffer): void => subscriber.next(chunk);
    if (reads !== undefined) {
      for (const chunk of reads.early.splice(0)) subscriber.next(chunk);
      reads.deliver = onData;
    } else {
      socket.on('data', onData);
    }
    return () => {
      sink = undefined;
      if (reads !== undefined) reads.deliver = undefined;
      else socket.off('data', onData);
      socket.destroy();
    };
  });
  const tlsSecret = tlsSecretOf(socket);
  return {
    id,
    remote,
    ...(tlsSecret === undefined ? {} : { tlsSecret }),
    data$,
    write: (chunk) => {
      if (socket.destroyed || !socket.writable) return false;
      unsent.wrote(chunk.byteLength, socket.writableLength);
      return socket.write(chunk);
    },
    get needsDrain() {
      return socket.writableNeedDrain;
    },
    get pendingBytes() {
      return socket.writableLength;
    },
    get room() {
      return unsent.room(socket.writableLength);
    },
    drain$,
    close() {
      if (socket.destroyed) return;
      socket.end();
      closeTimer ??= setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    },
    ...(admitted === undefined ? {} : { admitted }),
  };
}

/**
 * The gate of a listener's accept: counts the socket just accepted as pending in `pending` and
 * returns the slot's release, which the caller runs when the connection closes or is admitted. Over
 * a cap the socket is destroyed at once, `refused` hears why, and the result is undefined.
 */
export function admitPending(pending: PendingConnections, socket: net.Socket, refused: (e: RefusedEvent) => void): (() => void) | undefined {
  const slot = pending.acquire(socket.remoteAddress ?? '?');
  if (slot.ok) return slot.release;
  const remote = remoteOf(socket);
  socket.destroy();
  refused({ type: 'refused', remote, reason: slot.reason, detail: slot.detail });
  return undefined;
}

/**
 * The session secret a TLS connection's two ends derive alike (RFC 5705 exporter, label
 * TLS_EXPORTER_LABEL, no context): the UDP data path's keys come from it. Undefined for plain TCP
 * or a TLS socket that cannot export (the hub then sends a random secret in WELCOME).
 */
export function tlsSecretOf(socket: net.Socket): Uint8Array | undefined {
  if (!(socket instanceof tls.TLSSocket)) return undefined;
  try {
    return new Uint8Array(socket.exportKeyingMaterial(32, TLS_EXPORTER_LABEL, Buffer.alloc(0)));
  } catch {
    return undefined;
  }
}

/** Options of makeNetListener. */
export interface NetListenerOptions {
  readonly host: string;
  readonly port: number;
  /** Caps on connections not admitted yet; DEFAULT_PENDING_LIMITS when absent. */
  readonly pending?: PendingLimits;
}

/**
 * A TCP listener. Subscribing binds (emitting `listening` with the bound address) and emits each
 * accepted connection; errors when binding fails (for example EADDRINUSE). Unsubscribing closes
 * the server; open connections are closed by their sessions. A connection counts as pending from
 * its accept until it is admitted or closes; one that would exceed `options.pending` is destroyed
 * at once and reported as `refused`.
 */
export function makeNetListener(options: NetListenerOptions): ListenerPort {
  const pending = new PendingConnections(options.pending);
  return {
    pending: () => pending.count,
    events$: new Observable<ListenerEvent>((subscriber) => {
      let nextId = 1;
      // Paused on accept, so that the socket can be re-made around its handle with the shared read
      // buffer before anything is read (Node has no onread option for accepted sockets).
      const server = net.createServer({ noDelay: true, highWaterMark: SOCKET_HIGH_WATER_MARK, pauseOnConnect: true });
      server.on('connection', (accepted) => {
        const release = admitPending(pending, accepted, (e) => subscriber.next(e));
        if (release === undefined) return;
        const handle = (accepted as unknown as { _handle?: unknown })._handle;
        if (handle === undefined || handle === null) {
          accepted.once('close', release);
          accepted.resume();
          subscriber.next({ type: 'connection', connection: socketConnection(accepted, nextId++, undefined, release) });
          return;
        }
        const { target, onread } = sharedReads();
        (accepted as unknown as { _handle: unknown })._handle = null;
        const socket = new net.Socket({ handle, onread, readable: true, writable: true, highWaterMark: SOCKET_HIGH_WATER_MARK } as net.SocketConstructorOpts);
        socket.once('close', release);
        subscriber.next({ type: 'connection', connection: socketConnection(socket, nextId++, target, release) });
      });
      return listen(server, options, subscriber);
    }),
  };
}

/**
 * Binds `server` and reports `listening` with the bound address (`[v6]:port` for IPv6); a server
 * error (EADDRINUSE, ...) errors `subscriber`. Returns the teardown that closes the server.
 */
export function listen(server: net.Server, at: { readonly host: string; readonly port: number }, subscriber: Subscriber<ListenerEvent>): () => void {
  server.on('error', (err) => subscriber.error(err));
  server.listen({ host: at.host, port: at.port }, () => {
    const a = server.address();
    const address = typeof a === 'string' || a === null ? String(a) : `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    subscriber.next({ type: 'listening', address });
  });
  return () => {
    server.close();
  };
}

/** Options of makeNetDialer. */
export interface NetDialerOptions {
  /** A connect attempt that takes longer fails. */
  readonly connectTimeoutMs: number;
}

/** Outgoing TCP connections; the host name is resolved on every dial. */
export function makeNetDialer(options: NetDialerOptions): DialerPort {
  let nextId = 1;
  return {
    dial: (host, port) =>
      dialSocket((reads) => net.connect({ host, port, noDelay: true, ...(reads === undefined ? {} : { onread: reads.onread }) }), 'connect', {
        label: `${host}:${port}`,
        sharedReads: true,
        timeoutMs: options.connectTimeoutMs,
        nextId: () => nextId++,
      }),
  };
}

/**
 * One connect attempt as an Observable: emits the connection once `readyEvent` fires, then
 * completes; errors on a socket error (through `explain`) or after `timeoutMs`; unsubscribing before
 * that destroys the socket. Shared by the TCP and TLS dialers.
 */
export function dialSocket(
  open: (reads: ReturnType<typeof sharedReads> | undefined) => net.Socket,
  readyEvent: 'connect' | 'secureConnect',
  o: {
    readonly label: string;
    readonly timeoutMs: number;
    readonly nextId: () => number;
    readonly explain?: (err: Error & { code?: string }) => Error;
    /** Read into the shared buffer (`open` passes `reads.onread` to net.connect or tls.connect). */
    readonly sharedReads?: boolean;
  },
): Observable<ConnectionPort> {
  return new Observable<ConnectionPort>((subscriber) => {
    let handed = false;
    const reads = o.sharedReads === true ? sharedReads() : undefined;
    const socket = open(reads);
    const timer = setTimeout(
      () => socket.destroy(Object.assign(new Error(`connect to ${o.label} timed out after ${o.timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })),
      o.timeoutMs,
    );
    const onError = (err: Error & { code?: string }): void => {
      clearTimeout(timer);
      subscriber.error(o.explain ? o.explain(err) : err);
    };
    socket.once('error', onError);
    socket.once(readyEvent, () => {
      clearTimeout(timer);
      socket.off('error', onError);
      handed = true;
      subscriber.next(socketConnection(socket, o.nextId(), reads?.target));
      subscriber.complete();
    });
    return () => {
      clearTimeout(timer);
      if (!handed) socket.destroy();
    };
  });
}
