// A tunnel TCP connection's send side (src/drivers/net.ts socketConnection): its congestion control
// (src/drivers/congestion.ts; docs/performance.md, "Queues").
import test from 'ava';
import net from 'node:net';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { socketConnection } from '../src/drivers/net.js';
import { TUNNEL_CONGESTION_CONTROL, useCongestionControl } from '../src/drivers/congestion.js';

const LOOPBACK = '127.0.0.1';
const asRoot = process.getuid?.() === 0;

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

/** The congestion control the kernel reports for `socket`'s connection (`ss -ti`). */
function kernelCongestion(socket: net.Socket): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('ss', ['-Htin', `sport = :${socket.localPort}`], (err, stdout) => resolve(err === null ? /\b(cubic|bbr|reno)\b/.exec(stdout)?.[1] : undefined));
  });
}

test('every tunnel connection asks for CUBIC, and the kernel uses it', async (t) => {
  t.is(TUNNEL_CONGESTION_CONTROL, 'cubic');
  const { near, far } = await plainPair(t);
  const got = useCongestionControl(near);
  if (!asRoot && got === undefined) {
    t.log('not root: a restricted congestion control may be refused, and then the default stays');
    t.pass();
    return;
  }
  t.is(got, 'cubic');
  t.is(await kernelCongestion(near), 'cubic');
  socketConnection(far, 1);
  t.is(await kernelCongestion(far), 'cubic', 'socketConnection sets it too');
});
