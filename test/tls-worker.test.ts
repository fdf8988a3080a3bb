// Contract tests of the TLS worker listener (src/drivers/tls-worker.ts) over real loopback
// sockets, with a throwaway PKI (helpers/pki.ts): the same events and checks as makeTlsListener,
// plus backpressure through the worker, the room a slow connection reports, and the thread's life cycle.
import test, { type ExecutionContext } from 'ava';
import net from 'node:net';
import tls from 'node:tls';
import { firstValueFrom } from 'rxjs';
import { TlsSetupError, makeTlsDialer, type TlsListenerOptions } from '../src/drivers/tls.js';
import { makeTlsWorkerListener } from '../src/drivers/tls-worker.js';
import { SOCKET_HIGH_WATER_MARK } from '../src/drivers/net.js';
import { ROOM_MAX_LIMIT } from '../src/drivers/unsent.js';
import type { ConnectionPort } from '../pipelines/ports.js';
import { collect, listening, type Listening } from './helpers/listening.js';
import { createPki, type Pki } from './helpers/pki.js';
import { DEADLINE_MS, sleep, waitUntil } from './helpers/wait.js';

const LOOPBACK = '127.0.0.1';

let pki: Pki;
test.before(async () => {
  pki = await createPki({ hubIp: LOOPBACK });
});
test.after.always(() => pki?.dispose());

const pem = (file: string): string => pki.read(file);
const hubMaterial = (): Pick<TlsListenerOptions, 'cert' | 'key'> => ({ cert: pem(pki.hub.cert), key: pem(pki.hub.key) });

/** A TLS worker listener on loopback with `options` (port 0: any free port). */
function listen(t: ExecutionContext, options: Omit<TlsListenerOptions, 'host' | 'port'>, port = 0): Promise<Listening> {
  return listening(t, makeTlsWorkerListener({ host: LOOPBACK, port, ...options }));
}


async function dial(t: ExecutionContext, port: number, o: Partial<Parameters<typeof makeTlsDialer>[0]> = {}): Promise<ConnectionPort> {
  const conn = await firstValueFrom(makeTlsDialer({ connectTimeoutMs: DEADLINE_MS, skipVerify: false, ca: pem(pki.ca.cert), ...o }).dial(LOOPBACK, port));
  t.teardown(() => conn.close());
  return conn;
}

function rawTls(t: ExecutionContext, port: number, o: tls.ConnectionOptions): Promise<{ socket: tls.TLSSocket; error?: Error }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: LOOPBACK, port, ca: pem(pki.ca.cert), ...o });
    t.teardown(() => socket.destroy());
    socket.once('secureConnect', () => resolve({ socket }));
    socket.once('error', (error) => resolve({ socket, error }));
  });
}

test('worker listener carries bytes both ways; a graceful close ends the peer stream', async (t) => {
  const hub = await listen(t, hubMaterial());
  const client = await dial(t, hub.port);
  const { connection: server } = await hub.next('connection');
  t.is(server.peerIdentity, undefined);
  t.regex(server.remote, /^127\.0\.0\.1:\d+$/);
  const atServer = collect(t, server);
  const atClient = collect(t, client);
  const up = Buffer.from('hello hub, from the client');
  const down = Buffer.alloc(100_000, 7);
  client.write(up);
  server.write(down);
  t.deepEqual(await atServer.waitFor(up.length), up);
  t.deepEqual(await atClient.waitFor(down.length), down);
  client.close();
  t.is(await atServer.ended, 'complete');
  await waitUntil(() => server.pendingBytes === 0, 'everything written to be reported written');
});

test('a 1 MiB echo through the worker comes back byte for byte', async (t) => {
  const hub = await listen(t, hubMaterial());
  const client = await dial(t, hub.port);
  const { connection: server } = await hub.next('connection');
  // The hub echoes what it gets; the chunk is only valid during its emission, and write keeps it: copy.
  const echo = server.data$.subscribe((chunk) => server.write(Buffer.from(chunk)));
  t.teardown(() => echo.unsubscribe());
  const atClient = collect(t, client);
  const payload = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >> 8)) & 0xff;
  for (let at = 0; at < payload.length; at += 50_000) client.write(payload.subarray(at, at + 50_000));
  t.true((await atClient.waitFor(payload.length)).equals(payload));
});

test('the sender may reuse its buffer once pendingBytes is 0 (writes are copied, never detached)', async (t) => {
  const hub = await listen(t, hubMaterial());
  const client = await dial(t, hub.port);
  const { connection: server } = await hub.next('connection');
  const atClient = collect(t, client);
  const slab = Buffer.alloc(4096, 1); // owns its whole ArrayBuffer
  server.write(slab);
  t.is(slab.length, 4096, 'not detached by a transfer');
  slab.fill(2);
  server.write(slab);
  const got = await atClient.waitFor(8192);
  t.deepEqual(got, Buffer.concat([Buffer.alloc(4096, 1), Buffer.alloc(4096, 2)]));
});

test('with a client CA, peerIdentity is the common name of the verified certificate', async (t) => {
  const hub = await listen(t, { ...hubMaterial(), clientCa: pem(pki.clientCa.cert) });
  await Promise.all([
    dial(t, hub.port, { cert: pem(pki.alice.cert), key: pem(pki.alice.key) }),
    dial(t, hub.port, { cert: pem(pki.bob.cert), key: pem(pki.bob.key) }),
  ]);
  const ids = [(await hub.next('connection')).connection.peerIdentity, (await hub.next('connection')).connection.peerIdentity].sort();
  t.deepEqual(ids, ['alice', 'bob']);
});

test('a plaintext client gets handshake-failed not-tls with its own address', async (t) => {
  const hub = await listen(t, hubMaterial());
  const socket = net.connect({ host: LOOPBACK, port: hub.port });
  t.teardown(() => socket.destroy());
  socket.on('error', () => undefined);
  await new Promise<void>((r) => socket.once('connect', () => r()));
  socket.write(Buffer.from([0, 0, 0, 20, 0x10, ...Buffer.from('{"version":1}')]));
  const failed = await hub.next('handshake-failed');
  t.is(failed.reason, 'not-tls');
  t.regex(failed.detail, /does not speak TLS/);
  t.is(failed.remote, `${LOOPBACK}:${socket.localPort}`);
  t.deepEqual(hub.pending('connection'), []);
});

test('a client certificate of an unrelated CA, or none, is refused with tls-error', async (t) => {
  const hub = await listen(t, { ...hubMaterial(), clientCa: pem(pki.clientCa.cert) });
  const rogue = await rawTls(t, hub.port, { cert: pem(pki.rogueAlice.cert), key: pem(pki.rogueAlice.key) });
  rogue.socket.on('error', () => undefined);
  const failed = await hub.next('handshake-failed');
  t.is(failed.reason, 'tls-error');
  t.regex(failed.detail, /client certificate (was not accepted|is not signed by the hub's client CA)/);
  const none = await rawTls(t, hub.port, {});
  none.socket.on('error', () => undefined);
  const failed2 = await hub.next('handshake-failed');
  t.regex(failed2.detail, /presented no certificate/);
  await sleep(100);
  t.deepEqual(hub.pending('connection'), []);
});

test('TLS 1.2 in the worker takes the same suites as the main-thread hub: ECDHE with AEAD, not CBC', async (t) => {
  const hub = await listen(t, hubMaterial());
  const cbc = await rawTls(t, hub.port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA' });
  t.truthy(cbc.error, 'a CBC suite was agreed on');
  t.is((await hub.next('handshake-failed')).reason, 'tls-error');
  const gcm = await rawTls(t, hub.port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
  t.is(gcm.error, undefined);
  t.is(gcm.socket.getCipher().name, 'ECDHE-ECDSA-AES128-GCM-SHA256');
  await hub.next('connection');
});

test('backpressure: with a reader that does not read, needsDrain turns true; drain$ emits once it reads', async (t) => {
  const hub = await listen(t, hubMaterial());
  const { socket } = await rawTls(t, hub.port, {});
  socket.pause();
  const { connection: server } = await hub.next('connection');
  let drained = 0;
  const d = server.drain$.subscribe(() => drained++);
  t.teardown(() => d.unsubscribe());
  const chunk = Buffer.alloc(64 * 1024, 3);
  let sent = 0;
  let refused = false;
  for (let i = 0; i < 200 && !refused; i++) {
    refused = !server.write(chunk);
    sent += chunk.length;
    if (!refused) await sleep(5);
  }
  t.true(refused, 'write() returns false once the peer stops reading');
  t.true(server.needsDrain);
  t.true((server.pendingBytes ?? 0) > SOCKET_HIGH_WATER_MARK);
  await sleep(200);
  t.is(drained, 0, 'no drain while the peer does not read');
  let got = 0;
  socket.on('data', (c: Buffer) => (got += c.length));
  socket.resume();
  await waitUntil(() => drained > 0, 'drain$ to emit once the peer reads');
  t.false(server.needsDrain);
  await waitUntil(() => got === sent, () => `the peer to read all ${sent} bytes (${got} so far)`);
  await waitUntil(() => server.pendingBytes === 0, () => `pendingBytes to be 0 (${server.pendingBytes})`);
});

test('a slow reader: the worker reports the unsent limit it set, and room bounds what the main thread hands it', async (t) => {
  const hub = await listen(t, hubMaterial());
  const { socket } = await rawTls(t, hub.port, {});
  const { connection: server } = await hub.next('connection');
  t.is(server.room, undefined, 'a new connection has no limit yet (the kernel default)');
  // The reader takes a chunk, then rests 10 ms: a few MB/s, far below what loopback does.
  let got = 0;
  const rest = (): void => {
    socket.pause();
    setTimeout(() => socket.resume(), 10);
  };
  socket.on('data', (c: Buffer) => {
    got += c.length;
    rest();
  });
  const chunk = Buffer.alloc(64 * 1024, 5);
  let sent = 0;
  let stop = false;
  const pump = (): void => {
    while (!stop && server.write(chunk)) sent += chunk.length;
    if (!stop) sent += chunk.length;
  };
  const d = server.drain$.subscribe(pump);
  t.teardown(() => {
    stop = true;
    d.unsubscribe();
  });
  pump();
  await waitUntil(() => server.room !== undefined, 'the worker to report a limit for the slow connection');
  const room = server.room ?? Number.POSITIVE_INFINITY;
  t.true(room <= ROOM_MAX_LIMIT, `room ${room} is at most ROOM_MAX_LIMIT`);
  t.true(room + (server.pendingBytes ?? 0) <= ROOM_MAX_LIMIT, 'room is the limit less what is in flight to the worker');
  stop = true;
  socket.removeAllListeners('data');
  socket.on('data', (c: Buffer) => (got += c.length));
  socket.resume();
  await waitUntil(() => got === sent, () => `the reader to get all ${sent} bytes (${got} so far)`);
});

test('unsubscribing data$ destroys the connection; the peer sees it close', async (t) => {
  const hub = await listen(t, hubMaterial());
  const { socket } = await rawTls(t, hub.port, {});
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  socket.on('error', () => undefined);
  const { connection: server } = await hub.next('connection');
  server.data$.subscribe().unsubscribe();
  await closed;
  await waitUntil(() => !server.write(Buffer.from('x')), 'a closed connection to refuse writes');
  t.false(server.write(Buffer.from('x')), 'a closed connection refuses writes');
});

test('a bad key throws TlsSetupError on subscription; a taken port errors with EADDRINUSE', async (t) => {
  const bad = makeTlsWorkerListener({ host: LOOPBACK, port: 0, cert: pem(pki.hub.cert), key: pem(pki.alice.key) });
  const setup = await t.throwsAsync(firstValueFrom(bad.events$), { instanceOf: TlsSetupError });
  t.regex(setup?.message ?? '', /does not match/);
  const taken = await listen(t, hubMaterial());
  const second = makeTlsWorkerListener({ host: LOOPBACK, port: taken.port, ...hubMaterial() });
  const inUse = await t.throwsAsync(firstValueFrom(second.events$));
  t.is((inUse as Error & { code?: string }).code, 'EADDRINUSE');
});

test('unsubscribing the listener closes its connections and frees the port', async (t) => {
  const hub = await listen(t, hubMaterial());
  const client = await dial(t, hub.port);
  const atClient = collect(t, client);
  await hub.next('connection');
  hub.subscription.unsubscribe();
  t.regex(await atClient.ended, /complete|error/);
  const again = await listen(t, hubMaterial(), hub.port);
  t.is(again.port, hub.port);
});
