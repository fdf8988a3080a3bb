// Failures of a cluster (docs/cluster.md, "Failover"), with the real CLI and a real three-member etcd
// cluster in namespaces (test/helpers/etcd-lab.ts): hubs a and b (`-timeout 6 -keepalive 2`),
// clients listing both (`-r a,b`: c1 with -t 10.0.0.5, c2 assigned) and c3 on hub b only (-t 10.0.0.7).
// - hub a SIGKILLed (every pair reachable before, across the trunk too): c1 and c2 are back on hub b
//   within 10 s with the same addresses, and reach each other, c3 and hub b;
// - the etcd leader SIGKILLed: pings through both hubs and across the trunk keep flowing, no session ends, no hub is
//   fenced (one may find its store unreachable while etcd elects a leader, and back), a new client joins;
// - hub a cut off from etcd by an nftables table in its namespace: it is fenced within its lease, its
//   clients move to hub b, every hub's status sampled every 200 ms never shows one address at two
//   hubs, and once the table is gone hub a joins the cluster again and is reached across the trunk.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { StatusSnapshot } from '../pipelines/status.js';
import { BIN, ECHO_PORT, TEXT_LOGS, logTime } from './helpers/vpn.js';
import { ETCD_BIN, ETCDCTL_BIN, startEtcdLab, type EtcdLab } from './helpers/etcd-lab.js';
import { Lab, NFT_BIN, type LabProcess } from './helpers/lab.js';
import { DEADLINE_MS, TIME_SCALE, sleep, waitUntil } from './helpers/wait.js';

const labTest = Lab.supported().ok && ETCD_BIN !== undefined && ETCDCTL_BIN !== undefined ? test.serial : test.skip;
const nftTest = Lab.supported().ok && ETCD_BIN !== undefined && ETCDCTL_BIN !== undefined && NFT_BIN !== undefined ? test.serial : test.skip;

/** The bound: a dead hub's clients are back within this of the kill (with -timeout 6 -keepalive 2). */
const REHOME_MS = 10_000 * TIME_SCALE;
const TIMING = ['-timeout', '6', '-keepalive', '2'];
const HUB_TUNNEL = { a: '10.0.0.1', b: '10.0.0.2' } as const;
const TOKEN = 'failover-e2e-cluster-secret';

/** The running cluster of one test: the etcd lab, the hubs and clients, a directory for state and status sockets. */
interface Cluster {
  readonly etcd: EtcdLab;
  readonly lab: Lab;
  readonly dir: string;
  hub(name: 'a' | 'b'): LabProcess;
  client(host: string, hubs: readonly ('a' | 'b')[], address?: string): LabProcess;
  /** The status socket of the hub or client on host `name`. */
  statusSocket(name: string): string;
}

/** Starts etcd, hubs a and b, echo servers everywhere; everything ends with `t`. */
async function startCluster(t: ExecutionContext, clients: readonly string[]): Promise<Cluster> {
  const etcd = await startEtcdLab(t, ['a', 'b', ...clients]);
  const { lab, endpoints } = etcd;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lwt-failover-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stateDir = (name: string): string => mkdtempSync(path.join(dir, `${name}-`));
  const statusSocket = (name: string): string => path.join(dir, `${name}.sock`);
  const cluster: Cluster = {
    etcd,
    lab,
    dir,
    statusSocket,
    hub: (name) =>
      lab
        .host(name)
        .spawn(
          'node',
          [BIN, ...TEXT_LOGS, '-m', 'server', '-l', `${lab.host(name).ip}:9000`, '-t', `${HUB_TUNNEL[name]}/24`, '-etcd', endpoints.join(','), '-cluster', 'lab', '-cluster-token', TOKEN, '-hub-name', name, '-state-dir', stateDir(name), '-status', `unix:${statusSocket(name)}`, ...TIMING],
          { label: `${name}(hub)` },
        ),
    client: (host, hubs, address) =>
      lab
        .host(host)
        .spawn(
          'node',
          [BIN, ...TEXT_LOGS, '-m', 'client', '-r', hubs.map((h) => `${lab.host(h).ip}:9000`).join(','), ...(address === undefined ? [] : ['-t', `${address}/24`]), '-state-dir', stateDir(host), '-status', `unix:${statusSocket(host)}`, ...TIMING],
          { label: `${host}(client)` },
        ),
  };
  await Promise.all(['a', 'b', ...clients].map((h) => lab.startEchoServers(h, ECHO_PORT)));
  return cluster;
}

/** The address in a client's last `joined the virtual LAN as A/24 (hub H...` line after `mark`, and the hub's tunnel address. */
async function joined(p: LabProcess, mark = 0): Promise<{ address: string; hub: string; at: number }> {
  const line = await p.waitForLine(/joined the virtual LAN as /, DEADLINE_MS, { after: mark });
  const m = /joined the virtual LAN as ([\d.]+)\/\d+ \(hub ([\d.]+)/.exec(line);
  if (m === null) throw new Error(`unexpected join line: ${line}`);
  return { address: m[1]!, hub: m[2]!, at: logTime(line) };
}

/** Every pair [from host, to tunnel address] gets an echo through the tunnel (each waited for, in parallel). */
async function reachable(lab: Lab, pairs: readonly (readonly [string, string])[]): Promise<void> {
  await Promise.all(pairs.map(([from, to]) => lab.waitReachable(from, to, ECHO_PORT)));
}

/** Starts hubs a, b and clients c1 (10.0.0.5), c2 (assigned) on hub a, c3 (10.0.0.7) on hub b; resolves once all joined. */
async function startMembers(c: Cluster): Promise<{ a: LabProcess; b: LabProcess; c1: LabProcess; c2: LabProcess; c3: LabProcess; c2Address: string }> {
  const a = c.hub('a');
  await a.waitForLine(/joined the cluster/);
  const b = c.hub('b');
  await b.waitForLine(/joined the cluster/);
  const c1 = c.client('c1', ['a', 'b'], '10.0.0.5');
  const c2 = c.client('c2', ['a', 'b']);
  const c3 = c.client('c3', ['b'], '10.0.0.7');
  const [j1, j2, j3] = await Promise.all([joined(c1), joined(c2), joined(c3)]);
  if (j1.hub !== HUB_TUNNEL.a || j2.hub !== HUB_TUNNEL.a || j3.hub !== HUB_TUNNEL.b) throw new Error(`clients on the wrong hubs: ${JSON.stringify([j1, j2, j3])}`);
  return { a, b, c1, c2, c3, c2Address: j2.address };
}

/** Lines that users would see of trouble: a client's session ended, a hub's member left, a hub fenced. */
function sessionEnds(p: LabProcess): number {
  return [...p.stdout, ...p.stderr].filter((l) => /disconnected from hub| left\b|fenced: /.test(l)).length;
}

/** A hub's lines about its store: unreachable, answering again. */
function storeLines(p: LabProcess): string[] {
  return [...p.stdout, ...p.stderr].filter((l) => /store is unreachable|store answers again/.test(l));
}

/** GET /status of a hub or client over its unix socket (reachable from the test's own namespace), bounded to 2 s. */
function hubStatus(socketPath: string): Promise<StatusSnapshot | undefined> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/status', timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as StatusSnapshot);
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** Samples every hub's members every 200 ms until stopped: at each moment, which addresses each hub serves. */
function sampleHubs(c: Cluster): { samples(): number; stop(): Promise<Array<{ at: number; members: Record<string, readonly string[]> }>> } {
  const samples: Array<{ at: number; members: Record<string, readonly string[]> }> = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      const [a, b] = await Promise.all([hubStatus(c.statusSocket('a')), hubStatus(c.statusSocket('b'))]);
      samples.push({ at, members: { a: a?.members.map((m) => m.address) ?? [], b: b?.members.map((m) => m.address) ?? [] } });
      await sleep(Math.max(0, at + 200 - Date.now()));
    }
  })();
  return {
    samples: () => samples.length,
    stop: async () => {
      running = false;
      await loop;
      return samples;
    },
  };
}

labTest('a hub killed with SIGKILL: its clients are back on the other hub within 10 s with the same addresses, and reach each other and it', async (t) => {
  const c = await startCluster(t, ['c1', 'c2', 'c3']);
  const { a, c1, c2, c3, c2Address } = await startMembers(c);
  // Every pair, across the trunk a-b too.
  await reachable(c.lab, [['c1', c2Address], ['c2', '10.0.0.5'], ['c1', HUB_TUNNEL.a], ['c3', HUB_TUNNEL.b], ['c1', '10.0.0.7'], ['c3', c2Address], ['c3', HUB_TUNNEL.a], ['c2', HUB_TUNNEL.b]]);

  const marks = { c1: c1.mark(), c2: c2.mark() };
  const c3Ends = sessionEnds(c3);
  const killedAt = Date.now();
  a.kill('SIGKILL');
  await a.exited;
  const [j1, j2] = await Promise.all([joined(c1, marks.c1), joined(c2, marks.c2)]);
  const rehomed = { c1: j1.at - killedAt, c2: j2.at - killedAt };
  t.log(`re-homed ${rehomed.c1} ms (c1, -t 10.0.0.5) and ${rehomed.c2} ms (c2, assigned ${c2Address}) after the SIGKILL`);
  t.deepEqual([j1.hub, j2.hub], [HUB_TUNNEL.b, HUB_TUNNEL.b]);
  t.is(j1.address, '10.0.0.5');
  t.is(j2.address, c2Address, 'the assigned client got its address again at the other hub (the cluster-wide sticky lease)');
  t.true(rehomed.c1 <= REHOME_MS && rehomed.c2 <= REHOME_MS, `re-homed within ${REHOME_MS} ms: ${JSON.stringify(rehomed)}`);
  // Until hub a's lease ended, hub b refused their addresses (ip-conflict), and the clients moved on.
  t.true([...c1.stdout, ...c1.stderr].some((l) => /did not take this client \(ip-conflict/.test(l)), "hub b refused 10.0.0.5 while hub a's claim lived, and c1 moved on");
  // The client's status shows the hub it is on.
  t.is((await hubStatus(c.statusSocket('c1')))?.remote, `${c.lab.host('b').ip}:9000`);

  // Every pair works again (all on hub b now).
  await reachable(c.lab, [['c1', c2Address], ['c2', '10.0.0.5'], ['c1', '10.0.0.7'], ['c3', c2Address], ['c1', HUB_TUNNEL.b], ['c2', HUB_TUNNEL.b], ['c3', HUB_TUNNEL.b]]);
  t.is(sessionEnds(c3), c3Ends, "the other hub's member never noticed");
});

labTest('the etcd leader killed with SIGKILL: nothing users see (pings keep flowing, no session ends, a new client joins)', async (t) => {
  const c = await startCluster(t, ['c1', 'c2', 'c3', 'c4']);
  const { a, b, c1, c2, c3 } = await startMembers(c);
  // Through each hub, and across the trunk a-b (c1 and c2 may talk over a direct path, which no hub carries).
  await reachable(c.lab, [['c1', HUB_TUNNEL.a], ['c3', HUB_TUNNEL.b], ['c1', '10.0.0.7']]);
  const pings = [c.lab.startPinger('c1', HUB_TUNNEL.a, ECHO_PORT, 100), c.lab.startPinger('c3', HUB_TUNNEL.b, ECHO_PORT, 100), c.lab.startPinger('c1', '10.0.0.7', ECHO_PORT, 100)];
  await waitUntil(() => pings.every((p) => p.samples().some((s) => s.rttMs !== undefined)), 'every pinger answered');
  const before = new Map([a, b, c1, c2, c3].map((p) => [p, sessionEnds(p)]));

  const leader = await c.etcd.leader(c.lab.host('c1'));
  const sentBefore = pings.map((p) => p.samples().length);
  await c.etcd.kill(leader);
  await waitUntil(async () => {
    try {
      return (await c.etcd.leader(c.lab.host('c1'))) !== leader;
    } catch {
      return false;
    }
  }, 'a new etcd leader');
  // Ten seconds of pings after the kill, past every hub's lease (6 s): the hubs renewed through the new leader, or they would be fenced.
  await waitUntil(() => pings.every((p, i) => p.samples().length >= sentBefore[i]! + 100), 'ten seconds of pings after the kill', DEADLINE_MS, 100);
  const c4 = c.client('c4', ['b', 'a'], '10.0.0.9');
  const j4 = await joined(c4);
  t.is(j4.address, '10.0.0.9');
  await c.lab.waitReachable('c4', HUB_TUNNEL.b, ECHO_PORT);
  await Promise.all(pings.map((p) => p.stop()));

  const after = pings.map((p, i) => p.samples().slice(sentBefore[i]));
  const lost = after.map((list) => list.filter((s) => s.rttMs === undefined).length);
  t.log(`etcd leader ${leader.name} killed; pings after it lost ${lost.join(' and ')} of ${after.map((l) => l.length).join(' and ')}`);
  /** The lost pings as runs of sequence numbers ("12-19, 40"), and the sent ones' range, for a failure's message. */
  const runs = (list: typeof after[number]): string => {
    const seqs = list.filter((s) => s.rttMs === undefined).map((s) => s.seq);
    const out: string[] = [];
    for (let i = 0; i < seqs.length; i++) {
      let j = i;
      while (j + 1 < seqs.length && seqs[j + 1] === seqs[j]! + 1) j++;
      out.push(i === j ? `${seqs[i]}` : `${seqs[i]}-${seqs[j]}`);
      i = j;
    }
    return `${out.join(', ') || 'none'} of ${list[0]?.seq}-${list.at(-1)?.seq}`;
  };
  t.true(lost.every((n) => n <= 3), `at most a tiny loss: ${after.map(runs).join('; ')}\n${a.output(30)}\n${c1.output(30)}`);
  for (const [p, n] of before) t.is(sessionEnds(p), n, `${p.label} saw a session end or a fence:\n${p.output(40)}`);
  // While etcd elects a leader it commits nothing: a hub may find its store unreachable for a moment
  // (joins then wait; the sessions go on), and must find it back.
  for (const [hub, lines] of [[a, storeLines(a)], [b, storeLines(b)]] as const) {
    if (lines.length > 0) t.log(`${hub.label}: ${lines.map((l) => l.slice(0, 90)).join(' / ')}`);
    t.true(lines.length === 0 || /answers again/.test(lines.at(-1)!), `${hub.label} has its store back`);
  }
});

nftTest('a hub cut off from etcd: fenced within its lease, its clients move, no address is ever served by two hubs, and it joins again once etcd is back', async (t) => {
  const c = await startCluster(t, ['c1', 'c2', 'c3']);
  const { a, c1, c2, c2Address } = await startMembers(c);
  const sampler = sampleHubs(c);
  let samples: Awaited<ReturnType<typeof sampler.stop>> = [];
  const rules = path.join(c.dir, 'cut.nft');
  writeFileSync(rules, `table inet lwtcut {\n  chain out {\n    type filter hook output priority 0; policy accept;\n    tcp dport 2379 drop\n  }\n}\n`);
  try {
    await waitUntil(() => sampler.samples() >= 3, 'the sampler running');
    const marks = { a: a.mark(), c1: c1.mark(), c2: c2.mark() };
    const cutAt = Date.now();
    await c.lab.host('a').exec(NFT_BIN!, ['-f', rules], { check: true });
    const fence = await a.waitForLine(/fenced: /, DEADLINE_MS, { after: marks.a });
    const fencedMs = logTime(fence) - cutAt;
    const [j1, j2] = await Promise.all([joined(c1, marks.c1), joined(c2, marks.c2)]);
    t.log(`hub a fenced ${fencedMs} ms after the cut; its clients joined hub b ${j1.at - cutAt} and ${j2.at - cutAt} ms after it`);
    t.true(fencedMs <= 6000 + 1000 * TIME_SCALE, `fenced within its lease (6 s): ${fencedMs} ms`);
    t.deepEqual([j1.hub, j1.address, j2.hub, j2.address], [HUB_TUNNEL.b, '10.0.0.5', HUB_TUNNEL.b, c2Address]);
    await reachable(c.lab, [['c1', c2Address], ['c2', HUB_TUNNEL.b]]);

    const back = a.mark();
    await c.lab.host('a').exec(NFT_BIN!, ['delete', 'table', 'inet', 'lwtcut'], { check: true });
    await a.waitForLine(/joined the cluster/, DEADLINE_MS, { after: back });
    // Back in the cluster, hub a is reached across its trunk again.
    await reachable(c.lab, [['c1', HUB_TUNNEL.a], ['c3', HUB_TUNNEL.a]]);
  } finally {
    await c.lab.host('a').exec(NFT_BIN!, ['delete', 'table', 'inet', 'lwtcut']);
    samples = await sampler.stop();
  }
  const twice = samples.filter((s) => s.members.a!.some((x) => s.members.b!.includes(x)));
  t.log(`${samples.length} samples of both hubs' members`);
  t.deepEqual(twice, [], 'no address served by two hubs at one sampled moment');
  t.true(samples.some((s) => s.members.a!.includes('10.0.0.5')) && samples.some((s) => s.members.b!.includes('10.0.0.5')), 'the samples saw 10.0.0.5 at hub a, then at hub b');
});
