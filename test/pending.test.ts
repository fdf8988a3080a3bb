// Connections not admitted yet (issue 10): the count itself (src/drivers/pending.ts), and the
// contract every listener keeps over real loopback sockets: plain TCP, TLS and the TLS worker. With
// caps of 3 per source and 5 in all, the next connection is closed at once (before any TLS) with a
// `refused` event; an admitted connection no longer counts; a closed one frees its slot. Several
// sources are several loopback addresses (all of 127.0.0.0/8 is local on Linux).
import test, { type ExecutionContext } from 'ava';
import net from 'node:net';
import tls from 'node:tls';
import { PendingConnections } from '../src/drivers/pending.js';
import { makeNetListener } from '../src/drivers/net.js';
import { makeTlsListener, type TlsListenerOptions } from '../src/drivers/tls.js';
import { makeTlsWorkerListener } from '../src/drivers/tls-worker.js';
import type { ConnectionPort, ListenerPort } from '../pipelines/ports.js';
import { collect, listening, type Listening } from './helpers/listening.js';
import { createPki, type Pki } from './helpers/pki.js';
import { waitUntil } from './helpers/wait.js';

// ---------------------------------------------------------------------------------------------
// The count

test('the source cap is checked first, then the total; a refusal says which cap and how many wait', (t) => {
  const p = new PendingConnections({ perSource: 2, total: 3 });
  t.true(p.acquire('192.0.2.1').ok);
  t.true(p.acquire('192.0.2.1').ok);
  t.like(p.acquire('192.0.2.1'), { ok: false, reason: 'pending-source-limit', detail: '2 connections from 192.0.2.1 are already waiting to be admitted (max_pending_per_source 2)' });
  t.true(p.acquire('192.0.2.2').ok);
  t.like(p.acquire('192.0.2.3'), { ok: false, reason: 'pending-limit', detail: '3 connections are already waiting to be admitted (max_pending 3)' });
  t.is(p.count, 3);
});

test('a release frees one slot once, however often it is called; sources without pending connections are forgotten', (t) => {
  const changes: number[] = [];
  const p = new PendingConnections({ perSource: 1, total: 10 }, (n) => changes.push(n));
  const a = p.acquire('192.0.2.1');
  if (!a.ok) return t.fail('refused');
  t.false(p.acquire('192.0.2.1').ok);
  a.release();
  a.release();
  t.is(p.count, 0);
  t.is(p.sources, 0);
  t.true(p.acquire('192.0.2.1').ok);
  t.deepEqual(changes, [1, 0, 1]);
});

test('the map of sources never holds more entries than the total cap', (t) => {
  const p = new PendingConnections({ perSource: 64, total: 100 });
  for (let i = 0; i < 10_000; i++) p.acquire(`198.51.${i >> 8}.${i & 255}`);
  t.is(p.count, 100);
  t.is(p.sources, 100);
});

// ---------------------------------------------------------------------------------------------
// The listeners

const LOOPBACK = '127.0.0.1';
const LIMITS = { perSource: 3, total: 5 };

let pki: Pki;
test.before(async () => {
  pki = await createPki({ hubIp: LOOPBACK });
});
test.after.always(() => pki?.dispose());

type Kind = 'plain' | 'tls' | 'tls-worker';

function makeListener(kind: Kind): ListenerPort {
  const material: Omit<TlsListenerOptions, 'host' | 'port'> = { cert: pki.read(pki.hub.cert), key: pki.read(pki.hub.key), pending: LIMITS };
  switch (kind) {
    case 'plain':
      return makeNetListener({ host: LOOPBACK, port: 0, pending: LIMITS });
    case 'tls':
      return makeTlsListener({ host: LOOPBACK, port: 0, ...material });
    case 'tls-worker':
      return makeTlsWorkerListener({ host: LOOPBACK, port: 0, ...material });
  }
}

/** A client socket from `source` that says nothing (for a TLS hub: a handshake never begun). */
interface Idle {
  readonly socket: net.Socket;
  /** Resolves when the hub closed it. */
  readonly closed: Promise<void>;
}

function idle(t: ExecutionContext, port: number, source: string): Promise<Idle> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: LOOPBACK, port, localAddress: source });
    t.teardown(() => socket.destroy());
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, closed }));
    socket.once('close', () => reject(new Error(`the connection from ${source} closed before it connected`)));
  });
}

/** A connection from `source` that reaches the hub's pipeline: plain TCP, or a finished TLS handshake. */
async function member(t: ExecutionContext, kind: Kind, hub: Listening, source: string): Promise<{ client: net.Socket; conn: ConnectionPort }> {
  const client =
    kind === 'plain'
      ? await idle(t, hub.port, source).then((i) => i.socket)
      : await new Promise<net.Socket>((resolve, reject) => {
          const s = tls.connect({ socket: net.connect({ host: LOOPBACK, port: hub.port, localAddress: source }), host: LOOPBACK, ca: pki.read(pki.ca.cert) });
          t.teardown(() => s.destroy());
          s.once('secureConnect', () => resolve(s));
          s.once('error', reject);
        });
  const { connection } = await hub.next('connection');
  t.teardown(() => connection.close());
  return { client, conn: connection };
}

/** Resolves once the listener counts `n` pending connections (the worker reports its count asynchronously). */
const pendingIs = (listener: ListenerPort, n: number): Promise<void> =>
  waitUntil(() => listener.pending?.() === n, () => `${n} pending connections (the listener counts ${listener.pending?.()})`);

for (const kind of ['plain', 'tls', 'tls-worker'] as const) {
  test(`${kind}: the next connection from a source at its cap is closed at once and reported refused; other sources still get in`, async (t) => {
    const listener = makeListener(kind);
    const hub = await listening(t, listener);
    const first = [await idle(t, hub.port, '127.0.0.2'), await idle(t, hub.port, '127.0.0.2'), await idle(t, hub.port, '127.0.0.2')];
    await pendingIs(listener, 3);
    const over = await idle(t, hub.port, '127.0.0.2');
    await over.closed;
    const refused = await hub.next('refused');
    t.is(refused.reason, 'pending-source-limit');
    t.regex(refused.remote, /^127\.0\.0\.2:\d+$/);
    t.regex(refused.detail, /max_pending_per_source 3/);
    await idle(t, hub.port, '127.0.0.3');
    await pendingIs(listener, 4);
    t.deepEqual(hub.pending('handshake-failed'), [], 'the refused connection never reached TLS');
    t.false(first.some((c) => c.socket.destroyed), 'the connections within the cap stay open');
  });

  test(`${kind}: over the total cap every source is refused; a closed connection frees its slot`, async (t) => {
    const listener = makeListener(kind);
    const hub = await listening(t, listener);
    const open: Idle[] = [];
    for (const source of ['127.0.0.2', '127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']) open.push(await idle(t, hub.port, source));
    await pendingIs(listener, 5);
    const over = await idle(t, hub.port, '127.0.0.6');
    await over.closed;
    t.like(await hub.next('refused'), { reason: 'pending-limit', detail: '5 connections are already waiting to be admitted (max_pending 5)' });

    open[0]!.socket.destroy();
    await pendingIs(listener, 4);
    const again = await idle(t, hub.port, '127.0.0.6');
    await pendingIs(listener, 5);
    t.false(again.socket.destroyed, 'the freed slot was given to the next connection');
    t.deepEqual(hub.pending('refused'), []);
  });

  test(`${kind}: an admitted connection no longer counts, and its close does not free a second slot`, async (t) => {
    const listener = makeListener(kind);
    const hub = await listening(t, listener);
    const a = await member(t, kind, hub, '127.0.0.2');
    await member(t, kind, hub, '127.0.0.2');
    await member(t, kind, hub, '127.0.0.2');
    await pendingIs(listener, 3);
    a.conn.admitted?.();
    await pendingIs(listener, 2);
    const b = await member(t, kind, hub, '127.0.0.2');
    await pendingIs(listener, 3);
    t.false(b.client.destroyed);
    const aEnded = collect(t, a.conn).ended;
    a.client.destroy();
    await aEnded;
    const over = await idle(t, hub.port, '127.0.0.2');
    await over.closed;
    t.is((await hub.next('refused')).reason, 'pending-source-limit');
    t.is(listener.pending?.(), 3, 'closing an admitted connection left the count alone');
  });
}
