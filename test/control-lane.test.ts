// The control lane (issue 11): a member whose socket is saturated by bulk traffic still receives a
// route withdrawal within a second of the socket draining. Over real loopback sockets against the
// real hub pipeline (test/helpers/live-hub.ts): the member stops reading, the hub's TUN device
// floods it until its send queue overflows, another member announces a LAN and leaves; when the
// saturated member reads again, the latest ROUTES (the withdrawal) reaches it ahead of the queued
// data, and the stale announcement never does.
import test from 'ava';
import { parseIpv4 } from '../operators/core/address.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { RoutesCodec, decodeControl } from '../operators/core/wire/control.js';
import { RecordingTun, WireClient, startLiveHub } from './helpers/live-hub.js';
import { DEADLINE_MS, waitUntil } from './helpers/wait.js';
import { ipv4Packet } from './helpers/marbles.js';


test('a member with a saturated socket gets the route withdrawal within a second of draining, ahead of its queued data, and never the stale announcement', async (t) => {
  const tun = new RecordingTun();
  const hub = await startLiveHub({ tun, settings: { allowRoutes: [{ address: parseIpv4('192.168.0.0')!, prefix: 16 }], sendQueueSize: 256 } });
  t.teardown(() => hub.stop());

  // B: a member that takes ROUTES, and then stops reading.
  const b = await WireClient.connect(hub.port);
  t.teardown(() => b.destroy());
  const seen: { at: number; type: number; routes?: string[] }[] = [];
  b.onControl = (type, payload) => {
    const r = type === FrameType.Routes ? decodeControl(FrameType.Routes, RoutesCodec, payload) : undefined;
    seen.push({ at: Date.now(), type, ...(r === undefined || r instanceof Error ? {} : { routes: RoutesCodec.encode(r).routes.map((x) => x.cidr) }) });
  };
  let dataAfterResume = 0;
  let firstDataAt: number | undefined;
  b.onData = () => {
    dataAfterResume++;
    firstDataAt ??= Date.now();
  };
  b.hello('10.0.0.3', { caps: ['rtt', 'routes'] });
  await b.awaitWelcome(DEADLINE_MS);
  b.socket.pause();
  dataAfterResume = 0;
  firstDataAt = undefined;

  // Bulk traffic from the hub's TUN device to B until B's send queue overflows (the socket is full).
  const big = ipv4Packet('10.0.0.1', '10.0.0.3', new Uint8Array(1300));
  const queueFull = (): number => hub.log.dropTotals['queue-full'] ?? 0;
  await waitUntil(() => {
      for (let i = 0; i < 20; i++) tun.read(...Array.from({ length: 32 }, () => big));
      return queueFull() > 0;
    },
    () => `B's queue to overflow (queue-full ${queueFull()})`,
  );

  // A announces a LAN (a ROUTES for B waits in its control lane), then leaves (a newer ROUTES, the
  // withdrawal, replaces it there).
  const a = await WireClient.connect(hub.port);
  a.hello('10.0.0.2', { caps: ['rtt', 'routes'], routes: ['192.168.77.0/24'] });
  await a.awaitWelcome(DEADLINE_MS);
  a.end();
  await waitUntil(() => hub.log.left >= 1, 'A to leave');
  const routesBefore = seen.filter((s) => s.type === FrameType.Routes).length;

  // B reads again.
  const resumedAt = Date.now();
  b.socket.resume();
  await waitUntil(() => seen.some((s) => s.type === FrameType.Routes && s.at >= resumedAt), 'a ROUTES frame after B resumed reading');
  const routes = seen.filter((s) => s.type === FrameType.Routes);
  const withdrawal = routes.at(-1)!;
  t.deepEqual(withdrawal.routes, [], 'the latest set: the route is withdrawn');
  t.true(withdrawal.at - resumedAt <= 1000, `the withdrawal came ${withdrawal.at - resumedAt} ms after B read again`);
  t.is(routesBefore, 0, 'nothing got through while the socket was saturated');
  t.deepEqual(
    routes.map((r) => r.routes),
    [[]],
    'the stale announcement was replaced in the lane, never sent',
  );
  // The data the socket and the queue held comes after it (what was in the kernel's buffers before
  // the lane filled may come first; the queued data may not).
  await waitUntil(() => dataAfterResume > 0, 'data after the ROUTES');
  t.true(hub.log.members >= 1);
});
