// The UDP socket where loopback cannot show it, in a lab of network namespaces
// (test/helpers/lab.ts; nothing in the root namespace): EMSGSIZE per datagram behind a veth with
// MTU 1280 (DF is always set), EAGAIN then onWritable with a tiny SO_SNDBUF behind a slow qdisc,
// and two members whose sockets each carry a hub channel and a pair channel, with a smaller path
// MTU toward the peer than toward the hub. The sockets run in test/fixtures/ inside the namespaces.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Lab, type LabProcess } from './helpers/lab.js';
import { DEADLINE_MS } from './helpers/wait.js';
import type { UdpChannelNsResult } from './fixtures/udp-channel-ns.js';
import type { UdpNsResult } from './fixtures/udp-ns.js';
import type { UdpPairHubStats, UdpPairMemberResult } from './fixtures/udp-pair-ns.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/udp-ns.js', import.meta.url));
const CHANNEL_FIXTURE = fileURLToPath(new URL('./fixtures/udp-channel-ns.js', import.meta.url));
const PAIR_FIXTURE = fileURLToPath(new URL('./fixtures/udp-pair-ns.js', import.meta.url));
const supported = Lab.supported();
const labTest = supported.ok ? test.serial : test.skip;

async function run(lab: Lab, mode: 'emsgsize' | 'eagain'): Promise<UdpNsResult> {
  const proc = lab.host('a').spawnNode(FIXTURE, [mode, lab.address('b'), '9']);
  const line = await proc.waitForLine(/^RESULT /, 90_000);
  await proc.exited;
  return JSON.parse(line.slice('RESULT '.length)) as UdpNsResult;
}

labTest('EMSGSIZE: a datagram over the path MTU is refused on its own and counted; GSO runs fall back per datagram', async (t) => {
  const lab = await Lab.create({ hosts: ['a', 'b'], prefix: 'lwtu' });
  t.teardown(() => lab.dispose());
  await lab.host('a').exec('ip', ['link', 'set', 'dev', 'eth0', 'mtu', '1280'], { check: true });
  const r = await run(lab, 'emsgsize');
  t.log(JSON.stringify(r.stats));
  t.is(r.mtu, 1280);
  // Every payload is consumed: sent, or refused with EMSGSIZE (1300 + 60 > 1280; 1220 + 60 fits, 1221 + 60 does not).
  t.deepEqual(r.consumed, [3, 3, 4, 2]);
  t.deepEqual(r.refused, [
    [0, 1, 'EMSGSIZE'],
    [1, 0, 'EMSGSIZE'],
    [1, 1, 'EMSGSIZE'],
    [1, 2, 'EMSGSIZE'],
    [3, 1, 'EMSGSIZE'],
  ]);
  t.is(r.stats.tooBig, 5);
  t.is(r.stats.sent, 2 + 0 + 4 + 1);
  t.true(r.gso, 'a size refusal does not turn GSO off');
  t.true(r.stats.gsoMessages >= 1, 'the 1000-byte run went as one UDP_SEGMENT message');
  // [1300, 1000] of the first call and the 1300-byte run were refused whole and sent again one by one.
  t.is(r.stats.gsoFallbacks, 2);
});

labTest('EAGAIN: a tiny SO_SNDBUF behind a slow qdisc gives short counts, onWritable resumes until all are sent', async (t) => {
  const lab = await Lab.create({ hosts: ['a', 'b'], prefix: 'lwtu' });
  t.teardown(() => lab.dispose());
  // tbf holds what it cannot send yet (up to 5 s of it), charged to the sender's SO_SNDBUF.
  await lab.host('a').exec('tc', ['qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf', 'rate', '40mbit', 'burst', '16kb', 'latency', '5s'], { check: true });
  const r = await run(lab, 'eagain');
  t.log(`sndbuf ${r.sndbuf}: ${r.consumed.length} calls, ${r.writable} onWritable wake-ups, ${r.stats.sendBlocked} short counts`);
  t.is(
    r.consumed.reduce((a, b) => a + b, 0),
    400,
  );
  t.is(r.stats.sent, 400);
  t.true(r.stats.sendBlocked >= 1, 'the kernel said EAGAIN');
  t.is(r.writable, r.consumed.length - 1, 'every short count was resumed by onWritable');
  t.deepEqual(r.refused, []);
});

labTest('a channel counts as sent only what the kernel took: a datagram refused with EMSGSIZE is a too-big drop, not UDP traffic', async (t) => {
  const lab = await Lab.create({ hosts: ['a', 'b'], prefix: 'lwtu' });
  t.teardown(() => lab.dispose());
  await lab.host('a').exec('ip', ['link', 'set', 'dev', 'eth0', 'mtu', '1280'], { check: true });
  const proc = lab.host('a').spawnNode(CHANNEL_FIXTURE, [lab.address('b'), '9']);
  const line = await proc.waitForLine(/^RESULT /, 90_000);
  await proc.exited;
  const r = JSON.parse(line.slice('RESULT '.length)) as UdpChannelNsResult;
  t.log(JSON.stringify(r));
  t.is(r.consumed, 3, 'the refused one is consumed too (it is not to be sent again)');
  t.deepEqual(r.drops, [{ 'too-big': 1 }]);
  // Before the fix the refused datagram was counted as sent as well: tx {3, 3300}, so the status
  // showed it both as UDP traffic and as a drop.
  t.deepEqual(r.stats.tx, { packets: 2, bytes: 2000 });
});

/** The text after `prefix` on the first line of `proc` that starts with it. */
async function lineAfter(proc: LabProcess, prefix: string): Promise<string> {
  const line = await proc.waitForLine(new RegExp(`^${prefix} `), DEADLINE_MS);
  return line.slice(prefix.length + 1);
}

labTest('two members in their own namespaces talk over a pair channel beside their hub channels on one socket each; the path MTU is per endpoint', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'], prefix: 'lwtu' });
  t.teardown(() => lab.dispose());
  const [hubIp, c1Ip, c2Ip] = [lab.address('hub'), lab.address('c1'), lab.address('c2')];
  // c1's route to c2 (only) has a smaller MTU: its pair channel must see it, its hub channel not.
  await lab.host('c1').exec('ip', ['route', 'add', `${c2Ip}/32`, 'dev', 'eth0', 'mtu', '1280'], { check: true });
  const hub = lab.host('hub').spawnNode(PAIR_FIXTURE, ['hub', '9100'], { stdin: 'pipe', label: 'hub' });
  await hub.waitForLine(/^READY$/, DEADLINE_MS);
  const c1 = lab.host('c1').spawnNode(PAIR_FIXTURE, ['member', '1', hubIp, '9100'], { stdin: 'pipe', label: 'c1' });
  const c2 = lab.host('c2').spawnNode(PAIR_FIXTURE, ['member', '2', hubIp, '9100'], { stdin: 'pipe', label: 'c2' });
  const [port1, port2] = await Promise.all([lineAfter(c1, 'PORT'), lineAfter(c2, 'PORT')]);
  const seen = new Map<string, string>();
  for (const line of await Promise.all([hub.waitForLine(/^ENDPOINT 1 /, DEADLINE_MS), hub.waitForLine(/^ENDPOINT 2 /, DEADLINE_MS)])) {
    const [, id, at] = line.split(' ');
    seen.set(id!, at!);
  }
  t.deepEqual([seen.get('1'), seen.get('2')], [`${c1Ip}:${port1}`, `${c2Ip}:${port2}`], 'the hub saw each member at its socket');

  // The introduction as the hub would make it: the observed endpoint first, then candidates that never answer.
  const key = randomBytes(32).toString('hex');
  const nowhere = lab.address('hub').replace(/\.\d+$/, '.250');
  const candidates = (at: string, ip: string, port: string): string => [at, `${ip}:${Number(port) === 65535 ? 1 : Number(port) + 1}`, `${nowhere}:${port}`].join(',');
  c1.write(`INTRO 11 22 ${key} ${candidates(seen.get('2')!, c2Ip, port2)}\n`);
  c2.write(`INTRO 22 11 ${key} ${candidates(seen.get('1')!, c1Ip, port1)}\n`);
  t.is(await lineAfter(c1, 'DIRECT'), `${c2Ip}:${port2}`, "c1 goes direct to c2's socket");
  t.is(await lineAfter(c2, 'DIRECT'), `${c1Ip}:${port1}`);
  const [r1, r2] = (await Promise.all([lineAfter(c1, 'RESULT'), lineAfter(c2, 'RESULT')])).map((l) => JSON.parse(l) as UdpPairMemberResult);
  hub.write('STATS\n');
  const stats = JSON.parse(await lineAfter(hub, 'STATS')) as UdpPairHubStats;
  t.log(JSON.stringify({ r1, r2, stats }));

  t.like(r1, { fromPeer: 200, fromHub: 201, peerFromDirect: true }, 'c1 heard all of c2 directly and all of the hub');
  t.like(r2, { fromPeer: 200, fromHub: 201, peerFromDirect: true });
  t.deepEqual(stats.rx, { 1: 201, 2: 201 }, 'the hub got its own packets and none of the pair\'s');
  t.is(r1.pairMax, 1280 - 60, "c1's pair follows its route's MTU toward c2");
  t.is(r1.hubMax, 1500 - 60, "c1's hub channel keeps the hub's");
  t.is(r2.pairMax, 1500 - 60);
  t.deepEqual(r1.drops.pair, [{ 'too-big': 1 }], "c1's 1300-byte packet to c2 was refused and counted on the pair alone");
  t.deepEqual([r1.drops.hub, r1.drops.socket, r2.drops.pair, r2.drops.hub, r2.drops.socket], [[], [], [], [], []]);
  await Promise.all([c1.exited, c2.exited]);
  await hub.stop();
});
