// The STARTUP pacing cap of tunnel TCP connections (src/drivers/pacing.ts): put on only while BBR
// is in STARTUP and losing, following BBR's estimate, lifted once out of STARTUP; and the two kernel
// calls under it on a real loopback connection.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { HEAVY_LOSS, PACING_HEADROOM, QUIET_LOOKS, StartupPacing, kernelCongestion, type CongestionAccess, type CongestionReading } from '../src/drivers/pacing.js';
import { UnsentLimit, RATE_WINDOW_MS } from '../src/drivers/unsent.js';

const STARTUP = 2.885;
const MB = 1e6;

/** A CongestionAccess whose readings a test sets, recording every cap. */
function fakeAccess(first: CongestionReading): CongestionAccess & { now: CongestionReading; caps: number[] } {
  const a = {
    now: first,
    caps: [] as number[],
    read: () => a.now,
    cap: (_fd: number, rate: number) => {
      a.caps.push(rate);
      return true;
    },
  };
  return a;
}

const MSS = 1000;
/** Bytes handed to the connection between two looks in these tests: 100 segments. */
const SENT = 100 * MSS;
/** Retransmitted segments in one window that are just heavy loss, and just not. */
const HEAVY = Math.floor((HEAVY_LOSS * SENT) / MSS) + 1;
const LIGHT = HEAVY - 1;
const bbr = (pacingGain: number, bytesPerSecond: number, retransmitted: number): CongestionReading => ({ bbr: true, pacingGain, bytesPerSecond, retransmitted, mss: MSS });

test('no cap in STARTUP without heavy loss (a LAN; 1% random loss), nor for a control that is not BBR', (t) => {
  const a = fakeAccess(bbr(STARTUP, 500 * MB, 0));
  const p = new StartupPacing(3, a);
  for (let i = 0; i < 5; i++) p.look(SENT);
  for (let i = 1; i <= 5; i++) {
    a.now = bbr(STARTUP, 500 * MB, i * LIGHT);
    p.look(SENT);
  }
  a.now = { bbr: false, pacingGain: 0, bytesPerSecond: 0, retransmitted: 40 * HEAVY, mss: MSS };
  p.look(SENT);
  p.look(SENT);
  t.deepEqual(a.caps, []);
  t.is(p.capped, undefined);
});

test('STARTUP with retransmissions: capped at the headroom over the estimate, following it, lifted out of STARTUP', (t) => {
  const a = fakeAccess(bbr(STARTUP, 20 * MB, 0));
  const p = new StartupPacing(3, a);
  p.look(SENT);
  t.deepEqual(a.caps, [], 'nothing retransmitted since the first look');
  a.now = bbr(STARTUP, 20 * MB, HEAVY);
  p.look(SENT);
  t.deepEqual(a.caps, [20 * MB * PACING_HEADROOM]);
  t.is(p.caps, 1);
  a.now = bbr(STARTUP, 21 * MB, HEAVY);
  p.look(SENT);
  t.is(a.caps.length, 1, 'an estimate within an eighth keeps the cap');
  a.now = bbr(STARTUP, 24 * MB, HEAVY);
  p.look(SENT);
  t.deepEqual(a.caps.slice(1), [24 * MB * PACING_HEADROOM], 'the cap follows the estimate while in STARTUP, losing or not');
  a.now = bbr(0.35, 24 * MB, 2 * HEAVY);
  p.look(SENT);
  t.deepEqual(a.caps.slice(2), [-1], 'out of STARTUP (DRAIN): lifted');
  t.is(p.capped, undefined);
  a.now = bbr(1.25, 25 * MB, 4 * HEAVY);
  p.look(SENT);
  t.is(a.caps.length, 3, 'PROBE_BW with losses is BBR\'s own business');
});

test('a cap is lifted after QUIET_LOOKS looks without a retransmission, and put on again at the next loss', (t) => {
  const a = fakeAccess(bbr(STARTUP, 20 * MB, 0));
  const p = new StartupPacing(3, a);
  p.look(SENT);
  a.now = bbr(STARTUP, 20 * MB, HEAVY);
  p.look(SENT);
  t.is(p.capped, 20 * MB * PACING_HEADROOM);
  for (let i = 1; i < QUIET_LOOKS; i++) {
    a.now = bbr(STARTUP, 20 * MB, HEAVY + i * LIGHT);
    p.look(SENT);
  }
  t.is(p.capped, 20 * MB * PACING_HEADROOM, 'one look short of quiet (light losses only): still capped');
  p.look(SENT);
  t.is(p.capped, undefined, 'quiet long enough: lifted (the path may have more to give)');
  t.deepEqual(a.caps, [20 * MB * PACING_HEADROOM, -1]);
  p.look(SENT);
  t.is(a.caps.length, 2, 'nothing more while quiet');
  a.now = bbr(STARTUP, 30 * MB, 2 * HEAVY + QUIET_LOOKS * LIGHT);
  p.look(SENT);
  t.is(p.capped, 30 * MB * PACING_HEADROOM, 'heavy loss in STARTUP caps it again');
  t.is(p.caps, 2);
});

test('a reading that fails or an estimate of 0 changes nothing; a cap the kernel refuses is not taken as set', (t) => {
  let refuse = true;
  const caps: number[] = [];
  let now: CongestionReading | undefined = bbr(STARTUP, 0, HEAVY);
  const a: CongestionAccess = { read: () => now, cap: (_fd, rate) => (caps.push(rate), !refuse) };
  const p = new StartupPacing(3, a);
  p.look(SENT);
  t.is(p.capped, undefined, 'no estimate yet');
  now = undefined;
  p.look(SENT);
  now = bbr(STARTUP, 10 * MB, 2 * HEAVY);
  p.look(SENT);
  t.is(p.capped, undefined, 'refused');
  refuse = false;
  now = bbr(STARTUP, 10 * MB, 3 * HEAVY);
  p.look(SENT);
  t.is(p.capped, 10 * MB * PACING_HEADROOM);
  t.is(p.caps, 1);
});

/** Both ends of a connected loopback TCP connection, closed at the test's end. */
async function loopbackPair(t: ExecutionContext): Promise<{ near: net.Socket; far: net.Socket }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const near = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  // Both events are awaited together: either may come first.
  const [[far]] = (await Promise.all([once(server, 'connection'), once(near, 'connect')])) as [[net.Socket], unknown];
  t.teardown(() => {
    near.destroy();
    far.destroy();
    server.close();
  });
  return { near, far };
}

test('UnsentLimit gives the connection one look per window of writes', async (t) => {
  const { near } = await loopbackPair(t);
  let looks = 0;
  const a: CongestionAccess = { read: () => (looks++, bbr(1, 1, 0)), cap: () => true };
  let clock = 0;
  const limit = new UnsentLimit(near, () => clock, a);
  t.truthy(limit.pacing);
  for (let i = 0; i < 10; i++) {
    clock += RATE_WINDOW_MS / 4;
    limit.wrote(1000, 0);
  }
  t.is(looks, 2, 'ten writes over two and a half windows: two looks');
});

test('over a real loopback connection: the kernel reports the control, and a pacing cap holds a transfer to its rate', async (t) => {
  const { near, far } = await loopbackPair(t);
  const fd = (near as unknown as { _handle: { fd: number } })._handle.fd;
  const warm = Buffer.alloc(1 << 20);
  let got = 0;
  far.on('data', (d: Buffer) => (got += d.length));
  near.write(warm);
  while (got < warm.length) await once(far, 'data');

  const r = kernelCongestion.read(fd);
  if (r === undefined) return t.fail('TCP_INFO could not be read');
  const control = fs.readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim();
  t.is(r.bbr, control === 'bbr', `the namespace's default control is ${control}`);
  if (r.bbr) {
    t.true(r.pacingGain > 0, 'BBR reports a pacing gain');
    t.true(r.bytesPerSecond > 0, 'and a bandwidth estimate after a megabyte');
  }
  t.true(r.mss > 0, 'and the segment size is known');

  // 2 MB at a cap of 4 MB/s cannot take less than about half a second, however idle the machine.
  t.true(kernelCongestion.cap(fd, 4 * MB));
  const body = Buffer.alloc(2 * MB);
  const start = performance.now();
  got = 0;
  near.write(body);
  while (got < body.length) await once(far, 'data');
  const took = performance.now() - start;
  t.true(took >= 400, `2 MB took ${took.toFixed(0)} ms under a 4 MB/s cap`);
  t.true(kernelCongestion.cap(fd, -1), 'the cap lifts');
  t.false(kernelCongestion.cap(-1, 1), 'a bad descriptor is refused, not thrown');
});
