// A tunnel TCP connection's send side (src/drivers/net.ts socketConnection): Node's writable buffer
// bounded by time (unsent.buffered), with a drain when a write completes below the bound
// (docs/performance.md, "Queues").
import test from 'ava';
import net from 'node:net';
import { once } from 'node:events';
import { firstValueFrom } from 'rxjs';
import { socketConnection } from '../src/drivers/net.js';
import { BUFFERED_MAX_BYTES, BUFFERED_MIN_BYTES, bufferedFor } from '../src/drivers/unsent.js';
import { DEADLINE_MS } from './helpers/wait.js';

const LOOPBACK = '127.0.0.1';
const KIB = 1024;

async function plainPair(t: import('ava').ExecutionContext): Promise<{ near: net.Socket; far: net.Socket }> {
  const server = net.createServer({ pauseOnConnect: true });
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const near = net.connect((server.address() as net.AddressInfo).port, LOOPBACK);
  await once(near, 'connect');
  const [far] = (await accepted) as [net.Socket];
  t.teardown(() => {
    near.destroy();
    far.destroy();
    server.close();
  });
  return { near, far };
}

test('bufferedFor: 2 ms of the send rate in 16 KiB steps, between 64 and 512 KiB', (t) => {
  const mbit = (m: number): number => (m * 1e6) / 8 / 1000; // bytes per ms
  t.is(bufferedFor(0), BUFFERED_MIN_BYTES);
  t.is(bufferedFor(mbit(200)), BUFFERED_MIN_BYTES, '200 Mbit/s: 2 ms are 50 kB, below the floor');
  t.is(bufferedFor(mbit(1000)), 256 * KIB, '1 Gbit/s: 250 kB → 256 KiB');
  t.is(bufferedFor(mbit(5000)), BUFFERED_MAX_BYTES);
});

test('Node\u2019s writable buffer holds at most its bound (plus the write that crossed it); room says what still fits; drain$ fires once a write completes below it', async (t) => {
  const { near, far } = await plainPair(t);
  const conn = socketConnection(near, 1);
  t.is(conn.room, BUFFERED_MIN_BYTES, 'empty: the whole bound');
  const chunk = Buffer.alloc(64 * KIB, 7);
  // The peer does not read: the kernel's buffers fill, then Node's, until the connection says stop.
  let writes = 0;
  while (!conn.needsDrain) {
    t.true(writes++ < 4096, 'the connection must say stop before 256 MiB');
    conn.write(chunk);
    if (!conn.needsDrain) await new Promise<void>((r) => setImmediate(r));
  }
  t.true(near.writableLength >= BUFFERED_MIN_BYTES, `stops at the bound: ${near.writableLength}`);
  t.true(near.writableLength < BUFFERED_MIN_BYTES + chunk.length, `not beyond the write that crossed it: ${near.writableLength}`);
  t.true((conn.room ?? 1) <= 0, 'no room while above');
  const drained = firstValueFrom(conn.drain$);
  far.resume();
  far.on('data', () => undefined);
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), DEADLINE_MS).unref());
  t.not(await Promise.race([drained, timeout]), 'timeout', 'drain$ fired');
  t.false(conn.needsDrain);
  t.true(near.writableLength < BUFFERED_MIN_BYTES, `below the bound at the drain: ${near.writableLength}`);
  t.true((conn.room ?? 0) > 0);
});
