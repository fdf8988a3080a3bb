// Driver: the hub's TLS listener in a worker thread (`-tls-workers 1`). The worker
// (tls-worker-thread.ts) accepts, decrypts and encrypts; the main thread sees each connection as a
// ConnectionPort fed by messages. What crosses the thread boundary is plaintext: one `data`
// message per connection per worker loop turn (one fresh, transferred buffer), and one `write`
// message per write (a copy).
import { Worker } from 'node:worker_threads';
import { Observable, Subject } from 'rxjs';
import type { ConnectionPort, HandshakeFailure, ListenerEvent, ListenerPort, PendingRefusal } from '../../pipelines/ports.js';
import { SOCKET_HIGH_WATER_MARK } from './net.js';
import { hubSecureContext, type TlsListenerOptions } from './tls.js';

/** How long close() waits in the worker for a graceful end before destroying the socket. */
export const CLOSE_GRACE_MS = 2000;
/** A `data` message carries at most about this many bytes (the worker posts early beyond it). */
export const MAX_DATA_MESSAGE_BYTES = 256 * 1024;
/** Bytes of one connection posted to the main thread and not yet consumed there before the worker stops reading it. */
export const READ_WINDOW_BYTES = 1024 * 1024;

/** What the worker thread is started with (structured-cloned). */
export type TlsWorkerData = TlsListenerOptions;

/** Messages from the worker thread to the main thread. */
export type WorkerMessage =
  | { readonly type: 'listening'; readonly address: string }
  | { readonly type: 'error'; readonly message: string; readonly code?: string }
  | { readonly type: 'connection'; readonly id: number; readonly remote: string; readonly peerIdentity?: string; readonly tlsSecret?: Uint8Array }
  | { readonly type: 'handshake-failed'; readonly remote: string; readonly reason: HandshakeFailure; readonly detail: string }
  | { readonly type: 'refused'; readonly remote: string; readonly reason: PendingRefusal; readonly detail: string }
  /** The worker's count of pending connections changed (posted at most once per worker loop turn). */
  | { readonly type: 'pending'; readonly count: number }
  | { readonly type: 'data'; readonly id: number; readonly bytes: Uint8Array }
  | { readonly type: 'written'; readonly id: number; readonly bytes: number; /** The connection's unsent limit while one is set (UnsentLimit.room(0)). */ readonly limit: number | undefined }
  | { readonly type: 'end'; readonly id: number }
  | { readonly type: 'closed'; readonly id: number; readonly error?: { readonly message: string; readonly code?: string } };

/** Messages from the main thread to the worker thread (`read` acknowledges consumed `data` bytes;
 * `admitted` ends the connection's pending slot, counted in the worker). */
export type MainMessage =
  | { readonly type: 'write'; readonly id: number; readonly bytes: Uint8Array }
  | { readonly type: 'admitted'; readonly id: number }
  | { readonly type: 'read'; readonly id: number; readonly bytes: number }
  | { readonly type: 'close'; readonly id: number }
  | { readonly type: 'destroy'; readonly id: number };

/** The TLS worker thread stopped (crashed or exited) while the listener was subscribed. */
export class TlsWorkerError extends Error {
  override readonly name = 'TlsWorkerError';
}

/**
 * A TLS listener whose TLS runs in a worker thread: the same events, checks, failure reasons and
 * caps as makeTlsListener. Pending connections are counted in the worker, where they are accepted;
 * `admitted()` posts a message there, and the worker reports its count at most once per loop turn
 * (what `pending()` returns). Subscribing starts the thread (after checking the material here, so a
 * bad key throws TlsSetupError at once); unsubscribing terminates it, which closes every
 * connection. A crash of the thread errors `events$` with TlsWorkerError and every open
 * connection's `data$`.
 */
export function makeTlsWorkerListener(options: TlsListenerOptions): ListenerPort {
  let pending = 0;
  return {
    pending: () => pending,
    events$: new Observable<ListenerEvent>((subscriber) => {
      hubSecureContext(options); // fails early with a clear TlsSetupError
      const worker = new Worker(new URL('./tls-worker-thread.js', import.meta.url), { workerData: options satisfies TlsWorkerData });
      const conns = new Map<number, WorkerConnection>();
      let stopping = false;
      const send = (m: MainMessage, transfer?: ArrayBuffer[]): void => {
        if (!stopping) worker.postMessage(m, transfer);
      };
      const fail = (err: Error): void => {
        if (stopping) return;
        stopping = true;
        pending = 0;
        for (const c of conns.values()) c.closed(err);
        conns.clear();
        void worker.terminate();
        subscriber.error(err);
      };
      worker.on('message', (m: WorkerMessage) => {
        switch (m.type) {
          case 'listening':
            subscriber.next({ type: 'listening', address: m.address });
            return;
          case 'error':
            fail(Object.assign(new Error(m.message), m.code === undefined ? {} : { code: m.code }));
            return;
          case 'handshake-failed':
          case 'refused':
            subscriber.next(m);
            return;
          case 'pending':
            pending = m.count;
            return;
          case 'connection': {
            const c = new WorkerConnection(m.id, m.remote, m.peerIdentity, send, m.tlsSecret);
            conns.set(m.id, c);
            subscriber.next({ type: 'connection', connection: c });
            return;
          }
          case 'data':
            conns.get(m.id)?.data(m.bytes);
            return;
          case 'written':
            conns.get(m.id)?.written(m.bytes, m.limit);
            return;
          case 'end':
            conns.get(m.id)?.ended();
            return;
          case 'closed': {
            const c = conns.get(m.id);
            conns.delete(m.id);
            c?.closed(m.error === undefined ? undefined : Object.assign(new Error(m.error.message), m.error.code === undefined ? {} : { code: m.error.code }));
            return;
          }
        }
      });
      worker.on('error', (err) => fail(new TlsWorkerError(`the TLS worker thread failed: ${err.message}`)));
      worker.on('exit', (code) => fail(new TlsWorkerError(`the TLS worker thread exited (code ${code})`)));
      return () => {
        stopping = true;
        pending = 0;
        for (const c of conns.values()) c.closed(undefined);
        conns.clear();
        void worker.terminate();
      };
    }),
  };
}

/** One connection of the worker, seen from the main thread. */
class WorkerConnection implements ConnectionPort {
  readonly drain$ = new Subject<void>();
  private inFlight = 0;
  /** The worker's unsent limit for this connection as it last reported it (undefined: none). */
  private limit: number | undefined;
  private early: Uint8Array[] = [];
  private sink: { next(c: Uint8Array): void; error(e: Error): void; complete(): void } | undefined;
  private failure: Error | undefined;
  private done = false; // the peer ended, or the connection closed
  private gone = false; // the connection closed
  readonly data$: Observable<Uint8Array>;

  constructor(
    readonly id: number,
    readonly remote: string,
    readonly peerIdentity: string | undefined,
    private readonly send: (m: MainMessage, transfer?: ArrayBuffer[]) => void,
    /** The TLS session's exported secret (see tlsSecretOf), derived in the worker. */
    readonly tlsSecret?: Uint8Array,
  ) {
    this.data$ = new Observable<Uint8Array>((subscriber) => {
      for (const chunk of this.early.splice(0)) {
        subscriber.next(chunk);
        this.send({ type: 'read', id: this.id, bytes: chunk.byteLength });
      }
      if (this.failure !== undefined) {
        subscriber.error(this.failure);
        return;
      }
      if (this.done) {
        subscriber.complete();
        return;
      }
      this.sink = subscriber;
      return () => {
        this.sink = undefined;
        if (!this.gone) this.send({ type: 'destroy', id: this.id });
      };
    });
  }

  get needsDrain(): boolean {
    return this.inFlight > SOCKET_HIGH_WATER_MARK;
  }

  get pendingBytes(): number {
    return this.inFlight;
  }

  /** The ByteSink's room: the worker's unsent limit less what is in flight to it, while the connection has one (a slow one); see UnsentLimit.room. */
  get room(): number | undefined {
    return this.limit === undefined ? undefined : Math.max(0, this.limit - this.inFlight);
  }

  write(chunk: Uint8Array): boolean {
    if (this.gone) return false;
    // A copy: the caller may reuse `chunk`'s memory once pendingBytes is 0, so its buffer is never transferred.
    const bytes = new Uint8Array(chunk);
    this.inFlight += bytes.byteLength;
    this.send({ type: 'write', id: this.id, bytes }, [bytes.buffer]);
    return !this.needsDrain;
  }

  close(): void {
    if (!this.gone) this.send({ type: 'close', id: this.id });
  }

  admitted(): void {
    if (!this.gone) this.send({ type: 'admitted', id: this.id });
  }

  /** @internal bytes decrypted by the worker. */
  data(bytes: Uint8Array): void {
    if (this.sink === undefined) {
      this.early.push(bytes);
      return;
    }
    this.sink.next(bytes);
    this.send({ type: 'read', id: this.id, bytes: bytes.byteLength });
  }

  /** @internal the worker handed `bytes` to the kernel; `limit` is the connection's unsent limit now. */
  written(bytes: number, limit: number | undefined): void {
    this.limit = limit;
    const wasAbove = this.needsDrain;
    this.inFlight = Math.max(0, this.inFlight - bytes);
    if (wasAbove && !this.needsDrain) this.drain$.next();
  }

  /** @internal the peer ended its stream. */
  ended(): void {
    this.done = true;
    this.sink?.complete();
  }

  /** @internal the socket closed (with its error, if any). */
  closed(error: Error | undefined): void {
    if (this.gone) return;
    this.gone = true;
    this.done = true;
    this.inFlight = 0;
    if (error !== undefined) this.failure = error;
    const sink = this.sink;
    this.sink = undefined;
    if (sink !== undefined) {
      if (error !== undefined) sink.error(error);
      else sink.complete();
    }
    this.drain$.complete();
  }
}
