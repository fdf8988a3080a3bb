// limitUnsent (src/drivers/net.ts): every tunnel connection, plain or TLS, either end, holds at
// most TCP_NOTSENT_LOWAT_BYTES unsent in the kernel (docs/performance.md, "Queues").
import test from 'ava';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { TCP_NOTSENT_LOWAT_BYTES, limitUnsent } from '../src/drivers/net.js';
import { createPki } from './helpers/pki.js';

const LOOPBACK = '127.0.0.1';

/** Both ends of one connection made by `listen`/`connect`. */
async function pair<S extends net.Socket>(server: net.Server, event: string, connect: (port: number) => S): Promise<{ near: S; far: S }> {
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  const far = once(server, event);
  const near = connect((server.address() as net.AddressInfo).port);
  const [accepted] = (await far) as [S];
  return { near, far: accepted };
}

test('plain TCP: both ends take the limit, and a second call changes it', async (t) => {
  const server = net.createServer();
  const { near, far } = await pair(server, 'connection', (port) => net.connect(port, LOOPBACK));
  t.teardown(() => { near.destroy(); far.destroy(); server.close(); });
  t.is(limitUnsent(near), TCP_NOTSENT_LOWAT_BYTES);
  t.is(limitUnsent(far), TCP_NOTSENT_LOWAT_BYTES);
  t.is(limitUnsent(near, 16 * 1024), 16 * 1024);
});

test('TLS: the TCP connection under both ends takes the limit', async (t) => {
  const pki = await createPki({ hubIp: LOOPBACK });
  t.teardown(() => pki.dispose());
  const server = tls.createServer({ cert: pki.read(pki.hub.cert), key: pki.read(pki.hub.key) });
  const { near, far } = await pair(server, 'secureConnection', (port) => tls.connect({ port, host: LOOPBACK, ca: pki.read(pki.ca.cert) }));
  t.teardown(() => { near.destroy(); far.destroy(); server.close(); });
  t.is(limitUnsent(near), TCP_NOTSENT_LOWAT_BYTES);
  t.is(limitUnsent(far), TCP_NOTSENT_LOWAT_BYTES);
});

test('a socket with no descriptor yet is left alone (undefined), not an error', (t) => {
  t.is(limitUnsent(new net.Socket()), undefined);
});
