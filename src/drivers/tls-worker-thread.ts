// The TLS worker thread of makeTlsWorkerListener (tls-worker.ts): it runs the hub's TLS server
// (createHubServer, the same checks as makeTlsListener), so that decryption, encryption and the
// buffers Node allocates per TLS read cost this thread, not the hub's main thread. It speaks the
// message protocol of tls-worker.ts with the main thread.
import type * as tls from 'node:tls';
import { parentPort, workerData } from 'node:worker_threads';
import { createHubServer } from './tls.js';
import { remoteOf, tlsSecretOf } from './net.js';
import { UnsentLimit } from './unsent.js';
import { PendingConnections } from './pending.js';
import { CLOSE_GRACE_MS, MAX_DATA_MESSAGE_BYTES, READ_WINDOW_BYTES, type MainMessage, type TlsWorkerData, type WorkerMessage } from './tls-worker.js';

const port = parentPort;
if (port === null) throw new Error('tls-worker-thread.js runs only as a worker thread');
const options = workerData as TlsWorkerData;

/** One accepted connection, as this thread sees it. */
interface Conn {
  readonly socket: tls.TLSSocket;
  /** Chunks read in this loop turn, not posted yet. */
  chunks: Buffer[];
  chunkBytes: number;
  /** Bytes written to the socket whose write callback ran in this turn, not reported yet. */
  written: number;
  /** Bytes posted as `data` that the main thread has not acknowledged (`read`). */
  unread: number;
  paused: boolean;
  closeTimer: NodeJS.Timeout | undefined;
  /** Ends the connection's pending slot (the main thread's `admitted`). */
  admitted: () => void;
  /** The kernel's unsent limit, kept to the connection's send rate. */
  unsent: UnsentLimit;
}

const conns = new Map<number, Conn>();
const dirty = new Set<Conn & { id: number }>();
let flushScheduled = false;
let nextId = 1;
/** The pending count the main thread was last told. */
let pendingPosted = 0;

const post = (m: WorkerMessage, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer);

/** Connections accepted here and not admitted yet; the count goes to the main thread with the next flush. */
const pending = new PendingConnections(options.pending, scheduleFlush);

function scheduleFlush(): void {
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

function schedule(c: Conn & { id: number }): void {
  dirty.add(c);
  scheduleFlush();
}

/** Posts what each connection got in this turn as one `data` message (one fresh buffer) and one
 * `written`, and the pending count if it changed. */
function flush(): void {
  flushScheduled = false;
  if (pending.count !== pendingPosted) {
    pendingPosted = pending.count;
    post({ type: 'pending', count: pendingPosted });
  }
  for (const c of dirty) {
    postData(c);
    if (c.written > 0) {
      post({ type: 'written', id: c.id, bytes: c.written, limit: c.unsent.room(0) });
      c.written = 0;
    }
  }
  dirty.clear();
}

function postData(c: Conn & { id: number }): void {
  if (c.chunkBytes === 0) return;
  const bytes = new Uint8Array(c.chunkBytes);
  let at = 0;
  for (const chunk of c.chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  c.unread += c.chunkBytes;
  c.chunks = [];
  c.chunkBytes = 0;
  post({ type: 'data', id: c.id, bytes }, [bytes.buffer]);
  if (c.unread >= READ_WINDOW_BYTES && !c.paused) {
    c.paused = true;
    c.socket.pause();
  }
}

const server = createHubServer(options, {
  connection(socket, peerIdentity, admitted) {
    const id = nextId++;
    socket.setNoDelay(true);
    const c: Conn & { id: number } = { id, socket, chunks: [], chunkBytes: 0, written: 0, unread: 0, paused: false, closeTimer: undefined, admitted, unsent: new UnsentLimit(socket) };
    conns.set(id, c);
    let failure: Error | undefined;
    socket.on('data', (chunk: Buffer) => {
      c.chunks.push(chunk);
      c.chunkBytes += chunk.length;
      if (c.chunkBytes >= MAX_DATA_MESSAGE_BYTES) postData(c);
      else schedule(c);
    });
    socket.on('error', (err) => (failure = err));
    socket.on('end', () => {
      postData(c);
      post({ type: 'end', id });
    });
    socket.on('close', () => {
      if (c.closeTimer) clearTimeout(c.closeTimer);
      postData(c);
      dirty.delete(c);
      conns.delete(id);
      post({ type: 'closed', id, ...(failure === undefined ? {} : { error: { message: failure.message, ...(codeOf(failure) === undefined ? {} : { code: codeOf(failure) }) } }) });
    });
    const tlsSecret = tlsSecretOf(socket);
    post({ type: 'connection', id, remote: remoteOf(socket), ...(peerIdentity === undefined ? {} : { peerIdentity }), ...(tlsSecret === undefined ? {} : { tlsSecret }) });
  },
  handshakeFailed(remote, reason, detail) {
    post({ type: 'handshake-failed', remote, reason, detail });
  },
  refused(e) {
    post(e);
  },
}, pending);

const codeOf = (err: Error): string | undefined => (err as Error & { code?: string }).code;

server.on('error', (err) => post({ type: 'error', message: err.message, ...(codeOf(err) === undefined ? {} : { code: codeOf(err) }) }));
server.listen({ host: options.host, port: options.port }, () => {
  const a = server.address();
  const address = typeof a === 'string' || a === null ? String(a) : `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  post({ type: 'listening', address });
});

port.on('message', (m: MainMessage) => {
  const c = conns.get(m.id);
  if (c === undefined) return;
  switch (m.type) {
    case 'write': {
      const n = m.bytes.byteLength;
      if (c.socket.destroyed || !c.socket.writable) return; // 'closed' follows (or came); the main side stops counting then
      c.unsent.wrote(n, c.socket.writableLength);
      c.socket.write(m.bytes, () => {
        c.written += n;
        schedule(c as Conn & { id: number });
      });
      return;
    }
    case 'read':
      c.unread -= m.bytes;
      if (c.paused && c.unread < READ_WINDOW_BYTES / 2) {
        c.paused = false;
        c.socket.resume();
      }
      return;
    case 'admitted':
      c.admitted();
      return;
    case 'close':
      if (c.socket.destroyed) return;
      c.socket.end();
      c.closeTimer ??= setTimeout(() => c.socket.destroy(), CLOSE_GRACE_MS).unref();
      return;
    case 'destroy':
      c.socket.destroy();
      return;
  }
});
