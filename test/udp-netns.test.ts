// The UDP socket where loopback cannot show it, in a lab of two network namespaces
// (test/helpers/lab.ts; nothing in the root namespace): EMSGSIZE per datagram behind a veth with
// MTU 1280 (DF is always set), and EAGAIN then onWritable with a tiny SO_SNDBUF behind a slow
// qdisc. The sockets run in test/fixtures/udp-ns.ts inside the namespace.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { Lab } from './helpers/lab.js';
import type { UdpChannelNsResult } from './fixtures/udp-channel-ns.js';
import type { UdpNsResult } from './fixtures/udp-ns.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/udp-ns.js', import.meta.url));
const CHANNEL_FIXTURE = fileURLToPath(new URL('./fixtures/udp-channel-ns.js', import.meta.url));
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
