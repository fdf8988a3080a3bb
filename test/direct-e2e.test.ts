// End to end (issue 12): direct paths between members with the real CLI in lab namespaces. A hub
// and two clients on one underlay: once c1 talks to c2 the hub introduces them, both say
// `direct IP:PORT` in their status, and a transfer between them does not move the hub's counters
// of either member (nor its UDP port's packet counter); with -direct=false on the clients they
// stay relayed and the hub carries the transfer. Every process, namespace and nftables table lives
// in the lab the test creates (and deletes, also on failure).
import test, { type ExecutionContext } from 'ava';
import { fileURLToPath } from 'node:url';
import { DIRECT, STATUS, memberOf, peerOf, waitStatus } from './helpers/direct.js';
import { Lab, NFT_BIN, type LabProcess } from './helpers/lab.js';
import { BIN, ECHO_PORT, startClient, startHub, statusOf } from './helpers/vpn.js';
import { DEADLINE_MS } from './helpers/wait.js';

const C1 = '10.0.0.2';
const C2 = '10.0.0.3';
const BULK_PORT = 7100;
const MIB = 1024 * 1024;
const TCP_SHA = fileURLToPath(new URL('./fixtures/tcp-sha.js', import.meta.url));

const supported = Lab.supported();
const labTest = supported.ok ? test.serial : test.skip;

async function newLab(t: ExecutionContext, hosts: readonly string[]): Promise<Lab> {
  const lab = await Lab.create({ hosts });
  t.teardown(() => lab.dispose());
  return lab;
}

/** Starts tcp-sha's server on `host`:BULK_PORT; resolves once it listens. */
async function bulkSink(lab: Lab, host: string): Promise<LabProcess> {
  const p = lab.host(host).spawnNode(TCP_SHA, ['serve', String(BULK_PORT)], { label: `${host}:sink` });
  await p.waitForLine(/^ready/);
  return p;
}

/** Sends `bytes` from `from` to `to`:BULK_PORT through the sink; resolves with `BYTES SHA256` as both ends saw it. */
async function transfer(lab: Lab, from: string, to: string, sink: LabProcess, bytes: number): Promise<{ sent: string; received: string }> {
  const mark = sink.mark();
  const source = lab.host(from).spawnNode(TCP_SHA, ['send', to, String(BULK_PORT), String(bytes)], { label: `${from}:source` });
  const sent = await source.waitForLine(/^(sent|error)/);
  const got = await sink.waitForLine(/^(received|error)/, DEADLINE_MS, { after: mark });
  return { sent: sent.replace(/^sent /, ''), received: got.replace(/^received /, '') };
}

labTest('two members on one underlay go direct: both statuses say direct, and a transfer between them moves none of the hub’s counters', async (t) => {
  const lab = await newLab(t, ['hub', 'c1', 'c2']);
  const hub = await startHub(lab, ['-status', STATUS]);
  const [c1, c2] = await Promise.all([startClient(lab, 'c1', C1, ['-status', STATUS]), startClient(lab, 'c2', C2, ['-status', STATUS])]);
  await waitStatus(lab, 'hub', 'both members on UDP', (s) => [C1, C2].every((a) => memberOf(s, a)?.transport === 'udp'));

  // c1 talks to c2: the hub (which forwards it) introduces them; both probe and go direct.
  await lab.startEchoServers('c2', ECHO_PORT);
  t.true(await lab.canReach('c1', C2, ECHO_PORT), 'c1 reaches c2');
  const s1 = await waitStatus(lab, 'c1', 'a direct path to c2', (s) => DIRECT.test(peerOf(s, C2)?.path ?? ''));
  const s2 = await waitStatus(lab, 'c2', 'a direct path to c1', (s) => DIRECT.test(peerOf(s, C1)?.path ?? ''));
  t.is(peerOf(s1, C2)!.path, `direct ${lab.host('c2').ip}:${peerOf(s1, C2)!.endpoint!.split(':')[1]}`, "c1's path goes to c2's underlay address");
  t.is(peerOf(s2, C1)!.path, `direct ${lab.host('c1').ip}:${peerOf(s2, C1)!.endpoint!.split(':')[1]}`);
  // Each side measures the direct path's round trip (PING/PONG over the pair, once a second): on one
  // bridge, well under a millisecond plus two processes' turns; 50 ms only tells a hub hop (or a
  // wrong clock) from a loaded machine.
  for (const [host, peer] of [['c1', C2], ['c2', C1]] as const) {
    const s = await waitStatus(lab, host, `a round trip to ${peer}`, (x) => (peerOf(x, peer)?.smoothedRttMs ?? null) !== null && DIRECT.test(peerOf(x, peer)!.path));
    const { rttMs, smoothedRttMs } = peerOf(s, peer)!;
    t.log(`${host}: round trip to ${peer} over the direct path: latest ${rttMs} ms, smoothed ${smoothedRttMs} ms`);
    for (const ms of [rttMs, smoothedRttMs]) t.true(ms !== null && Number.isFinite(ms) && ms > 0 && ms < 50, `${host}: a round trip of ${ms} ms`);
  }
  const table = await lab.host('c1').exec(process.execPath, [BIN, 'status', STATUS]);
  t.regex(table.stdout, /^PEER\s+PATH\s+RTT\s/m);
  t.regex(table.stdout, new RegExp(`^10\\.0\\.0\\.3\\s+direct \\S+\\s+\\d+(\\.\\d)? ms\\s`, 'm'), 'the PEER table shows it');
  await hub.waitForLine(/introduced 10\.0\.0\.2 and 10\.0\.0\.3 for a direct path/);
  // Both members report their path direct (DIRECT-PATH): the hub shows the pair so.
  const hubView = await waitStatus(lab, 'hub', 'the pair shown direct', (x) => x.pairs.some((p) => p.path === 'direct'));
  t.deepEqual(hubView.pairs.map((p) => [p.a, p.b, p.path]), [[C1, C2, 'direct']], 'the hub shows the pair, direct');
  const hubTable = await lab.host('hub').exec(process.execPath, [BIN, 'status', STATUS]);
  t.regex(hubTable.stdout, /^PAIR\s+PATH\s+SINCE$/m);
  t.regex(hubTable.stdout, /^10\.0\.0\.2\s+10\.0\.0\.3\s+direct\s/m, "the hub's PAIR table says direct");
  await hub.waitForLine(/pair 10\.0\.0\.2 and 10\.0\.0\.3: direct/);

  // What the hub's underlay carries from here on.
  if (NFT_BIN !== undefined) {
    const r = await lab.host('hub').exec(NFT_BIN, ['-f', '-'], {
      input: 'table inet lwtcount {\n  counter udp9000 {}\n  chain in { type filter hook input priority 0; policy accept; udp dport 9000 counter name udp9000; }\n}\n',
      timeoutMs: DEADLINE_MS,
    });
    t.is(r.code, 0, r.stderr);
  }
  // Counters reach the status with each second's stats: wait for one taken after the path went direct.
  const before = await waitStatus(lab, 'hub', 'fresh counters', (s) => Date.parse(s.now) > Date.parse(s1.now) + 1500);
  const udpBefore = NFT_BIN === undefined ? undefined : await lab.nftCounter('hub', 'inet lwtcount', 'udp9000');
  const sink = await bulkSink(lab, 'c2');
  const bytes = 8 * MIB;
  const { sent, received } = await transfer(lab, 'c1', C2, sink, bytes);
  t.is(received, sent, 'every byte arrives, in order');
  t.regex(sent, new RegExp(`^${bytes} [0-9a-f]{64}$`));

  // The pair carried it: c1's counters toward c2 cover the transfer.
  const after1 = await waitStatus(lab, 'c1', 'pair counters covering the transfer', (s) => (peerOf(s, C2)?.tx.bytes ?? 0) - (peerOf(s1, C2)?.tx.bytes ?? 0) >= bytes);
  t.regex(peerOf(after1, C2)!.path, DIRECT, 'still direct');
  const after = await waitStatus(lab, 'hub', 'counters after the transfer', (s) => Date.parse(s.now) > Date.parse(after1.now) + 1500);
  const moved = (d: 'rx' | 'tx', a: string): number => memberOf(after, a)![d].bytes - memberOf(before, a)![d].bytes;
  const udpAfter = NFT_BIN === undefined ? undefined : await lab.nftCounter('hub', 'inet lwtcount', 'udp9000');
  t.log(`hub counters during an ${bytes / MIB} MiB c1→c2 transfer: c1 rx ${moved('rx', C1)} B, c2 tx ${moved('tx', C2)} B, c2 rx ${moved('rx', C2)} B, c1 tx ${moved('tx', C1)} B; hub UDP port: ${udpBefore === undefined ? '-' : `${udpAfter!.packets - udpBefore.packets} datagrams, ${udpAfter!.bytes - udpBefore.bytes} B`}`);
  for (const [d, a] of [['rx', C1], ['tx', C2], ['rx', C2], ['tx', C1]] as const) t.is(moved(d, a), 0, `the hub's ${d} counter of ${a} did not move`);
  // Keepalives of the members' own UDP paths still reach the hub: a few per second, never the data.
  if (udpBefore !== undefined) t.true(udpAfter!.bytes - udpBefore.bytes < bytes / 100, 'the hub received none of the data');
  t.log([...hub.stderr.filter((l) => / introduced | withdrew | pair /.test(l)), ...c1.stderr.filter((l) => / path to /.test(l))].join('\n'));
  t.true(c1.running && c2.running && hub.running);
});

labTest('with -direct=false on the clients nobody is introduced: their statuses show no peers, and the hub carries their traffic', async (t) => {
  const lab = await newLab(t, ['hub', 'c1', 'c2']);
  const hub = await startHub(lab, ['-status', STATUS]);
  await Promise.all([startClient(lab, 'c1', C1, ['-status', STATUS, '-direct=false']), startClient(lab, 'c2', C2, ['-status', STATUS, '-direct=false'])]);
  await waitStatus(lab, 'hub', 'both members on UDP', (s) => [C1, C2].every((a) => memberOf(s, a)?.transport === 'udp'));
  await lab.startEchoServers('c2', ECHO_PORT);
  t.true(await lab.canReach('c1', C2, ECHO_PORT));
  const before = await statusOf(lab, 'hub', STATUS);
  const sink = await bulkSink(lab, 'c2');
  const bytes = 2 * MIB;
  const { sent, received } = await transfer(lab, 'c1', C2, sink, bytes);
  t.is(received, sent);
  const after = await waitStatus(lab, 'hub', 'counters covering the transfer', (s) => memberOf(s, C1)!.rx.bytes - memberOf(before, C1)!.rx.bytes >= bytes);
  t.true(memberOf(after, C2)!.tx.bytes - memberOf(before, C2)!.tx.bytes >= bytes, 'the hub forwarded the transfer to c2');
  t.deepEqual(after.pairs, []);
  t.deepEqual((await statusOf(lab, 'c1', STATUS)).peers, []);
  t.deepEqual((await statusOf(lab, 'c2', STATUS)).peers, []);
  t.false(hub.stderr.some((l) => / introduced /.test(l)), 'no introduction');
});
