// The STARTUP pacing cap of tunnel TCP connections (src/drivers/pacing.ts): put on only while BBR
// is in STARTUP and losing, following BBR's estimate, lifted once out of STARTUP; BBR restarted
// when a connection carrying a transfer whose estimate fell far below its best; and the three kernel calls
// under them on a real loopback connection.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { HEAVY_LOSS, HEAVY_LOSS_SEGMENTS, PACING_HEADROOM, QUIET_LOOKS, RESTART_BELOW, RESTART_GAP_LOOKS, RESTART_MIN_BYTES, StartupPacing, kernelCongestion, type CongestionAccess, type CongestionReading } from '../src/drivers/pacing.js';
import { UnsentLimit, RATE_WINDOW_MS } from '../src/drivers/unsent.js';

const STARTUP = 2.885;
const MB = 1e6;

/** A CongestionAccess whose readings a test sets, recording every cap and counting restarts. */
function fakeAccess(first: CongestionReading): CongestionAccess & { now: CongestionReading; caps: number[]; restarted: number } {
  const a = {
    now: first,
    caps: [] as number[],
    restarted: 0,
    read: () => a.now,
    cap: (_fd: number, rate: number) => {
      a.caps.push(rate);
      return true;
    },
    restart: () => {
      a.restarted += 1;
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
const MIN_RTT_US = 60_000;
/** A smoothed RTT a full queue stands above the minimum, and one without a queue. */
const QUEUED = MIN_RTT_US + 10_000;
const UNQUEUED = MIN_RTT_US + 1_000;
const bbr = (pacingGain: number, bytesPerSecond: number, retransmitted: number, srttUs = QUEUED): CongestionReading => ({
  bbr: true,
  pacingGain,
  bytesPerSecond,
  retransmitted,
  mss: MSS,
  minRttUs: MIN_RTT_US,
  srttUs,
});
const OTHER = (retransmitted: number): CongestionReading => ({ bbr: false, pacingGain: 0, bytesPerSecond: 0, retransmitted, mss: MSS, minRttUs: 0, srttUs: MIN_RTT_US });

/** A StartupPacing over a fake access, capped in STARTUP at `rate` (one quiet look, then one with heavy loss to a queue). */
function cappedAt(t: ExecutionContext, rate: number): { a: ReturnType<typeof fakeAccess>; p: StartupPacing } {
  const a = fakeAccess(bbr(STARTUP, rate, 0));
  const p = new StartupPacing(3, a);
  p.look(SENT);
  a.now = bbr(STARTUP, rate, HEAVY);
  p.look(SENT);
  t.is(p.capped, rate * PACING_HEADROOM);
  return { a, p };
}

test('no cap in STARTUP without heavy loss to a queue (a LAN; random loss; a lost ping), nor for a control that is not BBR', (t) => {
  const a = fakeAccess(bbr(STARTUP, 500 * MB, 0));
  const p = new StartupPacing(3, a);
  for (let i = 0; i < 5; i++) p.look(SENT);
  for (let i = 1; i <= 5; i++) {
    a.now = bbr(STARTUP, 500 * MB, i * LIGHT);
    p.look(SENT);
  }
  // An idle connection that lost a ping: half its window's bytes, but one segment.
  a.now = bbr(STARTUP, 500 * MB, 5 * LIGHT + HEAVY_LOSS_SEGMENTS - 1);
  p.look(2 * MSS);
  t.is(p.capped, undefined, 'fewer than HEAVY_LOSS_SEGMENTS segments is not heavy loss');
  // Random loss: heavy, but the RTT stands at its minimum (no queue overflowing).
  a.now = bbr(STARTUP, 500 * MB, 5 * LIGHT + HEAVY_LOSS_SEGMENTS - 1 + 3 * HEAVY, UNQUEUED);
  p.look(SENT);
  t.is(p.capped, undefined, 'heavy loss without a queue (random loss) is not capped');
  a.now = OTHER(40 * HEAVY);
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
  const { a, p } = cappedAt(t, 20 * MB);
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
  const a: CongestionAccess = { read: () => now, cap: (_fd, rate) => (caps.push(rate), !refuse), restart: () => true };
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

test('a connection carrying a transfer out of STARTUP whose estimate fell below a quarter of its best is restarted, once per gap', (t) => {
  const a = fakeAccess(bbr(1, 100 * MB, 0));
  const p = new StartupPacing(3, a);
  p.look(SENT);
  const fallen = 100 * MB * RESTART_BELOW * 0.9;
  a.now = bbr(1.25, fallen, 0);
  p.look(RESTART_MIN_BYTES - 1);
  t.is(a.restarted, 0, 'pings and keepalives, not a transfer (an idle tunnel)');
  a.now = bbr(1, 100 * MB * RESTART_BELOW * 1.1, 0);
  p.look(SENT);
  t.is(a.restarted, 0, 'a transfer, but the estimate is above a quarter of the best');
  a.now = bbr(STARTUP, fallen, 0);
  p.look(SENT);
  t.is(a.restarted, 0, 'in STARTUP already');
  a.now = bbr(1, fallen, 0);
  p.look(SENT);
  t.is(a.restarted, 1, 'a transfer, out of STARTUP, below a quarter of its best: restarted');
  t.is(p.restarts, 1);
  // The best is measured afresh: a path that really became slower is not restarted again.
  a.now = bbr(1, fallen, 0);
  for (let i = 0; i < 3 * RESTART_GAP_LOOKS; i++) p.look(SENT);
  t.is(a.restarted, 1, 'its best since the restart is the estimate it has');
  // A second fall, from the best reached after the restart, restarts it again, but not before the gap.
  const q = new StartupPacing(4, a);
  a.now = bbr(1, 100 * MB, 0);
  q.look(SENT);
  a.now = bbr(1, fallen, 0);
  q.look(SENT);
  t.is(q.restarts, 1);
  a.now = bbr(1, 100 * MB, 0);
  q.look(SENT);
  a.now = bbr(1, fallen, 0);
  for (let i = 2; i < RESTART_GAP_LOOKS; i++) q.look(SENT);
  t.is(q.restarts, 1, 'within RESTART_GAP_LOOKS looks of the last restart');
  q.look(SENT);
  t.is(q.restarts, 2, 'restarted again once the gap has passed');
  a.now = OTHER(0);
  const other = new StartupPacing(5, a);
  for (let i = 0; i < 2 * RESTART_GAP_LOOKS; i++) other.look(SENT);
  t.is(other.restarts, 0, 'another control is left alone');
});

test('a restart lifts a cap left from STARTUP first, and one the kernel refuses is not counted', (t) => {
  const { a, p } = cappedAt(t, 100 * MB);
  a.now = bbr(1, 10 * MB, HEAVY);
  p.look(SENT);
  t.deepEqual(a.caps, [100 * MB * PACING_HEADROOM, -1], 'the cap lifted before the restart');
  t.is(p.capped, undefined);
  t.is(p.restarts, 1);
  let reading = bbr(1, 100 * MB, 0);
  const refusing: CongestionAccess = { read: () => reading, cap: () => true, restart: () => false };
  const q = new StartupPacing(4, refusing);
  q.look(SENT);
  reading = bbr(1, 1 * MB, 0);
  q.look(SENT);
  t.is(q.restarts, 0, 'the kernel refused the restart');
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
  const a: CongestionAccess = { read: () => (looks++, bbr(1, 1, 0)), cap: () => true, restart: () => true };
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

  // A restart puts the same control back, afresh: BBR in STARTUP again.
  t.is(kernelCongestion.restart(fd), control !== 'reno', `restarting ${control}`);
  const after = kernelCongestion.read(fd);
  if (after === undefined) return t.fail('TCP_INFO could not be read after the restart');
  t.is(after.bbr, r.bbr, 'the same control as before');
  if (after.bbr) t.is(after.bytesPerSecond, 0, 'BBR forgot its estimate');
  // A small write (application-limited: BBR cannot find its full bandwidth) shows the mode.
  const small = Buffer.alloc(16 * 1024);
  got = 0;
  near.write(small);
  while (got < small.length) await once(far, 'data');
  const then = kernelCongestion.read(fd);
  if (after.bbr) t.true((then?.pacingGain ?? 0) > 2, `BBR is in STARTUP after the restart (gain ${then?.pacingGain})`);
  t.false(kernelCongestion.restart(-1), 'a bad descriptor is refused, not thrown');
});
