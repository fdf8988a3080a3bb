// Three hubs of one cluster joined by trunks (docs/cluster.md, "Trunks"), with the real CLI: a
// three-member etcd cluster in namespaces (test/helpers/etcd-lab.ts), hubs a, b, c (10.0.0.1/2/3)
// and four clients, two on a (10.0.0.11, .12), one on b (.21), one on c (.31). Every client pings
// every other client and every hub; a UDP broadcast from a client of hub a reaches the clients of a,
// b and c exactly once each; the status of hub a shows its trunks up with counters that move; with
// the hubs restarted under -client-isolation a cross-hub ping between members fails while a ping
// to every hub still works. And two hubs with mutual TLS: the trunk is TLS, authenticated by the
// cluster token and the hubs' certificates (CN = hub name), and carries their members' packets.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import type { StatusSnapshot } from '../pipelines/status.js';
import { ETCD_BIN, ETCDCTL_BIN, startEtcdLab } from './helpers/etcd-lab.js';
import { Lab, type LabProcess } from './helpers/lab.js';
import { createPki } from './helpers/pki.js';
import { BIN, TEXT_LOGS, statusOf } from './helpers/vpn.js';
import { sleep, waitUntil } from './helpers/wait.js';

const labTest = Lab.supported().ok && ETCD_BIN !== undefined && ETCDCTL_BIN !== undefined ? test.serial : test.skip;

const BROADCAST_TOOL = fileURLToPath(new URL('./fixtures/udp-broadcast.js', import.meta.url));
const BROADCAST_PORT = 5353 + 7;
/** How long a broadcast round watches for a copy too many once the expected ones have arrived. */
const QUIET_MS = 500;
const STATUS = '127.0.0.1:9100';
const TOKEN = 'trunks-e2e-cluster-secret';
const HUBS = { a: '10.0.0.1', b: '10.0.0.2', c: '10.0.0.3' } as const;
const CLIENTS = { c1: ['a', '10.0.0.11'], c2: ['a', '10.0.0.12'], c3: ['b', '10.0.0.21'], c4: ['c', '10.0.0.31'] } as const;
type HubName = keyof typeof HUBS;
type ClientName = keyof typeof CLIENTS;

labTest('three hubs, four clients: every client reaches every client and every hub across the trunks, a broadcast reaches every member once, the status shows the trunks; isolation holds across hubs', async (t) => {
  const { lab, endpoints } = await startEtcdLab(t, [...Object.keys(HUBS), ...Object.keys(CLIENTS)]);
  const hub = (name: HubName, extra: readonly string[] = []): LabProcess =>
    lab.host(name).spawn(
      'node',
      [BIN, ...TEXT_LOGS, '-m', 'server', '-l', `${lab.host(name).ip}:9000`, '-t', `${HUBS[name]}/24`, '-etcd', endpoints.join(','), '-cluster', 'lab', '-cluster-token', TOKEN, '-hub-name', name, '-timeout', '6', '-keepalive', '2', '-broadcast', '-status', STATUS, ...extra],
      { label: `${name}(hub)` },
    );
  const client = (name: ClientName): LabProcess => {
    const [at, address] = CLIENTS[name];
    return lab.host(name).spawn('node', [BIN, ...TEXT_LOGS, '-m', 'client', '-r', `${lab.host(at).ip}:9000`, '-t', `${address}/24`, '-timeout', '6', '-keepalive', '2'], { label: `${name}(client)` });
  };
  /** One ping from `from` to `to` answered within a second. */
  const ping = async (from: string, to: string): Promise<boolean> => (await lab.host(from).exec('ping', ['-c', '1', '-W', '1', '-n', '-q', to], { timeoutMs: 5000 })).code === 0;
  /** Every pair of `pairs` answers a ping (tried again until DEADLINE_MS: a trunk may still be coming up). */
  const allReach = async (pairs: readonly (readonly [string, string])[]): Promise<void> => {
    let failing: (readonly [string, string])[] = [...pairs];
    await waitUntil(
      async () => {
        const results = await Promise.all(failing.map(async (p) => [p, await ping(p[0], p[1])] as const));
        failing = results.filter(([, ok]) => !ok).map(([p]) => p);
        return failing.length === 0;
      },
      () => `no answer: ${failing.map(([f, to]) => `${f}→${to}`).join(', ')}`,
    );
  };
  const clients = Object.keys(CLIENTS) as ClientName[];
  const hubs = Object.keys(HUBS) as HubName[];
  const toClients = clients.flatMap((f) => clients.filter((c) => c !== f).map((c) => [f, CLIENTS[c][1]] as const));
  const toHubs = clients.flatMap((f) => hubs.map((h) => [f, HUBS[h]] as const));

  let procs: Record<string, LabProcess> = Object.fromEntries(hubs.map((h) => [h, hub(h)]));
  await Promise.all(hubs.map((h) => procs[h]!.waitForLine(/joined the cluster/)));
  // One trunk per pair: a dials b and c, b dials c.
  await procs.a!.waitForLine(/trunk to hub b up \(dialed /);
  await procs.a!.waitForLine(/trunk to hub c up \(dialed /);
  await procs.b!.waitForLine(/trunk to hub c up \(dialed /);
  const cs = Object.fromEntries(clients.map((c) => [c, client(c)]));
  await Promise.all(clients.map((c) => cs[c]!.waitForLine(/joined the virtual LAN as/)));

  const started = Date.now();
  await allReach([...toClients, ...toHubs]);
  t.log(`${toClients.length + toHubs.length} pairs answered in ${Date.now() - started} ms`);

  // A broadcast from c1 (hub a): c2 (hub a), c3 (hub b), c4 (hub c) get each datagram once.
  const listeners = await Promise.all(
    (['c2', 'c3', 'c4'] as const).map(async (h) => {
      const p = lab.host(h).spawnNode(BROADCAST_TOOL, ['listen', String(BROADCAST_PORT)], { label: `${h}:listen` });
      await p.waitForLine(/"listening"/);
      return [h, p] as const;
    }),
  );
  const received = (): Record<string, number> => Object.fromEntries(listeners.map(([h, p]) => [h, p.stdout.filter((l) => l.startsWith('{"at"')).length]));
  const sent = await lab.host('c1').exec(process.execPath, [BROADCAST_TOOL, 'send', CLIENTS.c1[1], '10.0.0.255', String(BROADCAST_PORT), '3', '50'], { check: true });
  t.regex(sent.stdout, /"sent":3,"errors":0/);
  await waitUntil(() => Object.values(received()).every((n) => n >= 3), () => `3 each: ${JSON.stringify(received())}`);
  await sleep(QUIET_MS);
  t.deepEqual(received(), { c2: 3, c3: 3, c4: 3 }, 'each member of every hub got each broadcast once');

  // The status of hub a: its trunks to b and c up, their counters moving.
  const trunksOf = (s: StatusSnapshot): Record<string, { state: string; side: string; in: number; out: number }> =>
    Object.fromEntries((s.cluster?.trunks ?? []).map((x) => [x.hub, { state: x.state, side: x.side, in: x.rx.packets, out: x.tx.packets }]));
  let before: StatusSnapshot | undefined;
  await waitUntil(async () => {
    before = await statusOf(lab, 'a', STATUS);
    const tr = trunksOf(before);
    return tr.b?.state === 'up' && tr.c?.state === 'up' && tr.b.out > 0 && tr.c.out > 0;
  }, () => `a's trunks: ${JSON.stringify(before?.cluster)}`);
  t.like(before!.cluster, { hub: 'a', standing: 'up' });
  t.deepEqual(before!.cluster!.hubs.map((h) => `${h.name} ${h.tunnel} ${h.members} ${h.addresses.join(',')}`), ['a 10.0.0.1/24 2 10.0.0.11,10.0.0.12', 'b 10.0.0.2/24 1 10.0.0.21', 'c 10.0.0.3/24 1 10.0.0.31'], 'every hub with its members, from the view');
  t.like(trunksOf(before!), { b: { side: 'dialed' }, c: { side: 'dialed' } });
  await allReach([['c1', CLIENTS.c3[1]], ['c2', CLIENTS.c4[1]]]);
  let after: StatusSnapshot | undefined;
  await waitUntil(async () => {
    after = await statusOf(lab, 'a', STATUS);
    const [x, y] = [trunksOf(before!), trunksOf(after)];
    return y.b!.out > x.b!.out && y.b!.in > x.b!.in && y.c!.out > x.c!.out && y.c!.in > x.c!.in;
  }, () => `the counters did not move: ${JSON.stringify(trunksOf(before!))} then ${JSON.stringify(after === undefined ? {} : trunksOf(after))}`);
  const table = await lab.host('a').exec(process.execPath, [BIN, 'status', STATUS]);
  t.regex(table.stdout, /cluster: hub a, up/);
  t.regex(table.stdout, /\nb\s+dialed\s+up\s+\S+:9000\s/);
  t.regex(table.stdout, /\nc\s+dialed\s+up\s+\S+:9000\s/);
  const metrics = await lab.host('a').exec(process.execPath, ['-e', `fetch('http://${STATUS}/metrics').then((r) => r.text()).then((s) => process.stdout.write(s))`], { check: true });
  t.regex(metrics.stdout, /lwt_trunk_up\{hub="b"\} 1/);
  t.regex(metrics.stdout, /lwt_trunk_packets_total\{hub="c",dir="out"\} [1-9]/);
  for (const [, p] of listeners) p.kill('SIGTERM');

  // The hubs again, with client isolation: members of different hubs no longer reach each other; every hub stays reachable.
  for (const h of hubs) procs[h]!.kill('SIGTERM');
  await Promise.all(hubs.map((h) => procs[h]!.exited));
  procs = Object.fromEntries(hubs.map((h) => [h, hub(h, ['-client-isolation'])]));
  await procs.a!.waitForLine(/trunk to hub b up/);
  await procs.a!.waitForLine(/trunk to hub c up/);
  await procs.b!.waitForLine(/trunk to hub c up/);
  await allReach(toHubs);
  for (const [from, to] of [['c1', CLIENTS.c3[1]], ['c3', CLIENTS.c4[1]], ['c4', CLIENTS.c1[1]]] as const) t.false(await ping(from, to), `${from} → ${to} under isolation`);
  const isolated = async (): Promise<number> => (await Promise.all(hubs.map(async (h) => (await statusOf(lab, h, STATUS)).drops.isolation ?? 0))).reduce((x, y) => x + y, 0);
  await waitUntil(async () => (await isolated()) >= 3, 'the hubs count the three refused pings as isolation drops');

  for (const c of clients) cs[c]!.kill('SIGTERM');
  for (const h of hubs) procs[h]!.kill('SIGTERM');
  await Promise.all([...clients.map((c) => cs[c]!.exited), ...hubs.map((h) => procs[h]!.exited)]);
});

labTest('two hubs with mutual TLS: the trunk runs over TLS, authenticated by the cluster token and the hubs\' certificates, and carries their members\' packets', async (t) => {
  const { lab, endpoints } = await startEtcdLab(t, ['a', 'b', 'c1', 'c3']);
  const pki = await createPki({ hubIp: lab.host('a').ip, clusterHubs: { a: lab.host('a').ip, b: lab.host('b').ip }, clusterClients: ['c1', 'c3'] });
  t.teardown(() => pki.dispose());
  const hub = (name: 'a' | 'b'): LabProcess => {
    const own = pki.clusterHub(name);
    return lab.host(name).spawn(
      'node',
      [BIN, ...TEXT_LOGS, '-m', 'server', '-l', `${lab.host(name).ip}:9000`, '-t', `${HUBS[name]}/24`, '-etcd', endpoints.join(','), '-cluster', 'lab', '-cluster-token', TOKEN, '-hub-name', name, '-timeout', '6', '-keepalive', '2', '-tls', '-tls-cert', own.cert, '-tls-key', own.key, '-tls-client-ca', pki.ca.cert, '-status', STATUS],
      { label: `${name}(hub)` },
    );
  };
  const client = (name: 'c1' | 'c3', at: 'a' | 'b', address: string): LabProcess => {
    const own = pki.clusterClient(name);
    return lab.host(name).spawn('node', [BIN, ...TEXT_LOGS, '-m', 'client', '-r', `${lab.host(at).ip}:9000`, '-t', `${address}/24`, '-timeout', '6', '-keepalive', '2', '-tls', '-tls-ca', pki.ca.cert, '-tls-client-cert', own.cert, '-tls-client-key', own.key], { label: `${name}(client)` });
  };
  const a = hub('a');
  const b = hub('b');
  await a.waitForLine(/trunk to hub b up \(dialed /);
  await b.waitForLine(/trunk to hub a up \(accepted from /);
  const c1 = client('c1', 'a', '10.0.0.11');
  const c3 = client('c3', 'b', '10.0.0.21');
  await Promise.all([c1.waitForLine(/joined the virtual LAN as/), c3.waitForLine(/joined the virtual LAN as/)]);
  const ping = async (from: string, to: string): Promise<boolean> => (await lab.host(from).exec('ping', ['-c', '1', '-W', '1', '-n', '-q', to], { timeoutMs: 5000 })).code === 0;
  await waitUntil(async () => (await ping('c1', '10.0.0.21')) && (await ping('c3', '10.0.0.11')) && (await ping('c1', HUBS.b)), 'c1 and c3 reach each other and hub b over the TLS trunk');
  // The status is refreshed once a second: wait for it to hold the pings.
  let status = await statusOf(lab, 'b', STATUS);
  await waitUntil(async () => ((status = await statusOf(lab, 'b', STATUS)).cluster?.trunks[0]?.rx.packets ?? 0) > 0, "hub b's status counting the packets that came over the trunk");
  t.like(status.cluster?.trunks[0], { hub: 'a', side: 'accepted', state: 'up' });
  for (const p of [c1, c3, a, b]) p.kill('SIGTERM');
  await Promise.all([c1.exited, c3.exited, a.exited, b.exited]);
});
