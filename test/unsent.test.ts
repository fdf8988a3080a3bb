// The kernel's unsent limit of tunnel TCP connections (src/drivers/unsent.ts): set on plain and TLS
// connections at both ends, and kept to about UNSENT_TARGET_MS of the connection's send rate
// (docs/performance.md, "Queues").
import test from 'ava';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { KERNEL_BACKLOG_BYTES, RATE_WINDOW_MS, ROOM_MAX_LIMIT, UNSENT_MIN_BYTES, UNSENT_TARGET_MS, UNSENT_UNLIMITED, UnsentLimit, kernelUnsent, limitUnsent, unsentFor } from '../src/drivers/unsent.js';
import { waitUntil } from './helpers/wait.js';
import { createPki } from './helpers/pki.js';

const LOOPBACK = '127.0.0.1';
const KIB = 1024;

/** Both ends of one connection to `server` (accepted on `event`). */
async function pair<S extends net.Socket>(server: net.Server, event: string, connect: (port: number) => S): Promise<{ near: S; far: S }> {
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  const far = once(server, event);
  const near = connect((server.address() as net.AddressInfo).port);
  const [accepted] = (await far) as [S];
  return { near, far: accepted };
}

async function plainPair(t: import('ava').ExecutionContext): Promise<{ near: net.Socket; far: net.Socket }> {
  const server = net.createServer();
  const p = await pair(server, 'connection', (port) => net.connect(port, LOOPBACK));
  t.teardown(() => {
    p.near.destroy();
    p.far.destroy();
    server.close();
  });
  return p;
}

test('plain TCP: both ends take a limit, and the kernel reports the one set last', async (t) => {
  const { near, far } = await plainPair(t);
  t.is(limitUnsent(near, UNSENT_MIN_BYTES), UNSENT_MIN_BYTES);
  t.is(limitUnsent(far, UNSENT_MIN_BYTES), UNSENT_MIN_BYTES);
  t.is(limitUnsent(near, 16 * KIB), 16 * KIB);
});

test('TLS: the TCP connection under both ends takes a limit', async (t) => {
  const pki = await createPki({ hubIp: LOOPBACK });
  t.teardown(() => pki.dispose());
  const server = tls.createServer({ cert: pki.read(pki.hub.cert), key: pki.read(pki.hub.key) });
  const { near, far } = await pair(server, 'secureConnection', (port) => tls.connect({ port, host: LOOPBACK, ca: pki.read(pki.ca.cert) }));
  t.teardown(() => {
    near.destroy();
    far.destroy();
    server.close();
  });
  t.is(limitUnsent(near, UNSENT_MIN_BYTES), UNSENT_MIN_BYTES);
  t.is(limitUnsent(far, UNSENT_MIN_BYTES), UNSENT_MIN_BYTES);
  t.is(new UnsentLimit(near).current, UNSENT_UNLIMITED, 'no limit until a window says the connection is slow');
});

test('a socket with no descriptor yet is left alone (undefined), not an error', (t) => {
  t.is(limitUnsent(new net.Socket(), UNSENT_MIN_BYTES), undefined);
  const limit = new UnsentLimit(new net.Socket());
  t.is(limit.current, undefined);
  limit.wrote(1 << 20, 1 << 20);
  t.is(limit.current, undefined);
});

test('unsentFor: UNSENT_TARGET_MS of the rate in 64 KiB steps, at least the floor; no limit above 2 MiB', (t) => {
  const mbit = (m: number): number => (m * 1e6) / 8 / 1000; // bytes per ms
  t.is(unsentFor(0), UNSENT_MIN_BYTES);
  t.is(unsentFor(mbit(200)), UNSENT_MIN_BYTES, '200 Mbit/s: 5 ms are 125 kB, below the floor');
  t.is(unsentFor(mbit(1000)), 640 * KIB, '1 Gbit/s: 625 kB → 640 KiB');
  t.is(unsentFor(mbit(3000)), 1856 * KIB, '3 Gbit/s: 1.875 MB → 1856 KiB');
  t.is(unsentFor(mbit(5000)), UNSENT_UNLIMITED, '5 Gbit/s: 3.1 MB, more than the kernel buffer holds in 5 ms anyway: no limit');
  t.is(UNSENT_TARGET_MS, 5);
});

const BACKLOG = 64 * 1024;

test('UnsentLimit follows the send rate: up for a fast sender, down again for a slow one, unchanged within a quarter and within a window', async (t) => {
  const { near } = await plainPair(t);
  let now = 0;
  const limit = new UnsentLimit(near, () => now);
  t.is(limit.current, UNSENT_UNLIMITED, 'starts without a limit');
  // 200 Mbit/s, backlogged, for one window: the floor.
  limit.wrote(25_000 * RATE_WINDOW_MS, BACKLOG);
  now += RATE_WINDOW_MS;
  limit.wrote(0, BACKLOG);
  t.is(limit.current, UNSENT_MIN_BYTES, 'a slow connection gets the floor');
  // 5 Gbit/s for one window: 625 000 bytes per ms.
  for (let i = 0; i < 10; i++) {
    limit.wrote(625_000 * (RATE_WINDOW_MS / 10), BACKLOG);
    now += RATE_WINDOW_MS / 10;
  }
  t.is(limit.current, UNSENT_MIN_BYTES, 'no change before a window has passed');
  limit.wrote(0, BACKLOG);
  t.is(limit.current, UNSENT_UNLIMITED, 'a window at 5 Gbit/s: no limit');
  // 2.5 Gbit/s: 1.5625 MB → 1536 KiB.
  limit.wrote(312_500 * RATE_WINDOW_MS, BACKLOG);
  now += RATE_WINDOW_MS;
  limit.wrote(0, BACKLOG);
  t.is(limit.current, 1536 * KIB);
  // A little slower (2.2 Gbit/s: within a quarter): no setsockopt.
  limit.wrote(275_000 * RATE_WINDOW_MS, BACKLOG);
  now += RATE_WINDOW_MS;
  limit.wrote(0, BACKLOG);
  t.is(limit.current, 1536 * KIB);
  // 200 Mbit/s: back to the floor (the kernel confirms what was set).
  now += 1;
  limit.wrote(25_000 * RATE_WINDOW_MS, BACKLOG);
  now += RATE_WINDOW_MS;
  limit.wrote(0, BACKLOG);
  t.is(limit.current, UNSENT_MIN_BYTES);
  t.is(limitUnsent(near, UNSENT_MIN_BYTES), UNSENT_MIN_BYTES);
});

test('room: none while the connection has no limit or one above ROOM_MAX_LIMIT (a fast one takes whole batches); the limit less what is buffered while it has a small one', async (t) => {
  const { near } = await plainPair(t);
  let now = 0;
  const limit = new UnsentLimit(near, () => now);
  t.is(limit.room(0), undefined, 'no limit yet');
  limit.wrote(25_000 * RATE_WINDOW_MS, BACKLOG);
  now += RATE_WINDOW_MS;
  limit.wrote(0, BACKLOG);
  t.is(limit.current, UNSENT_MIN_BYTES);
  t.is(limit.room(0), UNSENT_MIN_BYTES);
  t.is(limit.room(100 * KIB), UNSENT_MIN_BYTES - 100 * KIB);
  t.is(limit.room(UNSENT_MIN_BYTES + 1), 0, 'never negative');
  // 2.5 Gbit/s: a limit (1536 KiB), but above ROOM_MAX_LIMIT: whole batches again.
  limit.wrote(312_500 * RATE_WINDOW_MS, BACKLOG);
  now += RATE_WINDOW_MS;
  limit.wrote(0, BACKLOG);
  t.is(limit.current, 1536 * KIB);
  t.true(limit.current! > ROOM_MAX_LIMIT);
  t.is(limit.room(0), undefined, 'a fast connection takes whole batches');
  t.is(new UnsentLimit(new net.Socket()).room(0), undefined, 'no descriptor: no limit, no room');
});

test('UnsentLimit: a pause does not take the limit back to the floor; only a backlogged window lowers it', async (t) => {
  const { near } = await plainPair(t);
  let now = 0;
  const limit = new UnsentLimit(near, () => now);
  // A fast transfer: 5 Gbit/s for a window, backlogged: no limit.
  limit.wrote(625_000 * RATE_WINDOW_MS, BACKLOG);
  now += RATE_WINDOW_MS;
  limit.wrote(0, BACKLOG);
  t.is(limit.current, UNSENT_UNLIMITED);
  // Ten idle seconds with a keepalive now and then, then the next transfer's first write: the
  // window's rate is the application's, not the connection's; the limit stays.
  for (let i = 0; i < 10; i++) {
    now += 1000;
    limit.wrote(16, 0);
  }
  limit.wrote(1 << 20, 0);
  now += RATE_WINDOW_MS;
  limit.wrote(0, 0);
  t.is(limit.current, UNSENT_UNLIMITED, 'an application-limited window never lowers the limit');
  // A backlogged window at 200 Mbit/s does.
  limit.wrote(25_000 * RATE_WINDOW_MS, BACKLOG);
  now += RATE_WINDOW_MS;
  limit.wrote(0, BACKLOG);
  t.is(limit.current, UNSENT_MIN_BYTES);
  // And an application-limited window that is fast raises it (1 Gbit/s: 640 KiB).
  limit.wrote(125_000 * RATE_WINDOW_MS, 0);
  now += RATE_WINDOW_MS;
  limit.wrote(0, 0);
  t.is(limit.current, 640 * KIB);
});

test('a backlog in the kernel counts: with no limit the kernel takes everything, and a slow window still lowers it', async (t) => {
  const { near, far } = await plainPair(t);
  t.is(kernelUnsent(near), 0, 'nothing written yet');
  let now = 0;
  const limit = new UnsentLimit(near, () => now);
  t.is(limit.current, UNSENT_UNLIMITED);
  // A window of keepalives with nothing unsent: application-limited, no change.
  limit.wrote(16, 0);
  now += RATE_WINDOW_MS;
  limit.wrote(16, 0);
  t.is(limit.current, UNSENT_UNLIMITED);
  // The peer stops reading: the kernel's buffer fills with bytes it cannot send.
  far.pause();
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < 32 && kernelUnsent(near) < KERNEL_BACKLOG_BYTES; i++) {
    near.write(chunk);
    await waitUntil(() => near.writableLength === 0 || kernelUnsent(near) >= KERNEL_BACKLOG_BYTES, 'the kernel to take the write or hold it unsent', 10_000);
  }
  t.true(kernelUnsent(near) >= KERNEL_BACKLOG_BYTES, `kernel unsent ${kernelUnsent(near)}`);
  // A slow window (200 Mbit/s) while the kernel holds a backlog, Node's buffer empty: measured.
  limit.wrote(25_000 * RATE_WINDOW_MS, 0);
  now += RATE_WINDOW_MS;
  limit.wrote(0, 0);
  t.is(limit.current, UNSENT_MIN_BYTES);
});
