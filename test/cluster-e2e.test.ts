// Two hubs of one cluster (docs/cluster.md) with the real CLI: a three-member etcd cluster, each
// member in its own namespace (test/helpers/etcd-lab.ts), hubs a and b and clients c1..c3 in
// namespaces beside them. Both hubs join the cluster; c1 takes 10.0.0.5 at hub a; c2 asking for
// 10.0.0.5 at hub b is refused with ip-conflict (only b's log names hub a), c3 asking for hub a's
// tunnel address at hub b with hub-address; once c1 leaves, its claim is released and c2's next
// attempt joins at hub b; both hubs stopped with SIGTERM revoke their leases (no key left).
import test from 'ava';
import { BIN, TEXT_LOGS } from './helpers/vpn.js';
import { ETCD_BIN, ETCDCTL_BIN, startEtcdLab } from './helpers/etcd-lab.js';
import { Lab, type LabHost, type LabProcess } from './helpers/lab.js';
import { DEADLINE_MS, waitUntil } from './helpers/wait.js';

const labTest = Lab.supported().ok && ETCD_BIN !== undefined && ETCDCTL_BIN !== undefined ? test.serial : test.skip;

/** The keys of cluster `lab` as `etcdctl get --prefix --keys-only` lists them from `host`. */
async function keys(host: LabHost, endpoints: readonly string[]): Promise<string[]> {
  const r = await host.exec(ETCDCTL_BIN!, ['--endpoints', endpoints.join(','), 'get', '--prefix', '--keys-only', '/lwt/lab/'], { timeoutMs: DEADLINE_MS });
  if (r.code !== 0) throw new Error(`etcdctl get failed: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '').sort();
}

labTest('two hubs of one cluster: an address held at one hub is refused at the other (ip-conflict), a hub address too, and free again once its member leaves', async (t) => {
  const etcd = await startEtcdLab(t, ['a', 'b', 'c1', 'c2', 'c3']);
  const { lab, endpoints } = etcd;
  const hub = (name: string, tunnel: string): LabProcess => {
    const ip = lab.host(name).ip;
    return lab.host(name).spawn('node', [BIN, ...TEXT_LOGS, '-m', 'server', '-l', `${ip}:9000`, '-t', `${tunnel}/24`, '-etcd', endpoints.join(','), '-cluster', 'lab', '-cluster-token', 'lab-cluster-secret', '-hub-name', name, '-timeout', '6', '-keepalive', '2'], { label: `${name}(hub)` });
  };
  const client = (host: string, hubHost: string, address: string): LabProcess =>
    lab.host(host).spawn('node', [BIN, ...TEXT_LOGS, '-m', 'client', '-r', `${lab.host(hubHost).ip}:9000`, '-t', `${address}/24`, '-timeout', '6', '-keepalive', '2'], { label: `${host}(client)` });

  const a = hub('a', '10.0.0.1');
  const b = hub('b', '10.0.0.2');
  await a.waitForLine(/joined the cluster \(lease \d+, revision \d+/);
  await b.waitForLine(/joined the cluster/);
  t.deepEqual(await keys(lab.host('c1'), endpoints), ['/lwt/lab/addr/10.0.0.1', '/lwt/lab/addr/10.0.0.2', '/lwt/lab/hub/a', '/lwt/lab/hub/b']);

  const c1 = client('c1', 'a', '10.0.0.5');
  await c1.waitForLine(/joined the virtual LAN as 10\.0\.0\.5/);
  await a.waitForLine(/member 10\.0\.0\.5 joined from/);
  t.true((await keys(lab.host('c1'), endpoints)).includes('/lwt/lab/addr/10.0.0.5'));

  const c2 = client('c2', 'b', '10.0.0.5');
  await c2.waitForLine(/refused this client: ip-conflict: 10\.0\.0\.5 is in use by another member/);
  await b.waitForLine(/refused 10\.0\.0\.5 from .*: ip-conflict: 10\.0\.0\.5 is in use by a member of hub a \(/);
  t.false([...c2.stdout, ...c2.stderr].some((l) => /hub a/.test(l)), 'the client is not told which hub holds it');

  const c3 = client('c3', 'b', '10.0.0.1');
  await c3.waitForLine(/refused this client: hub-address/);
  c3.kill('SIGTERM');

  // c1 leaves: hub a releases its claim, and c2's next attempt at hub b joins.
  const mark = c2.mark();
  c1.kill('SIGTERM');
  await a.waitForLine(/member 10\.0\.0\.5 .* left/);
  await waitUntil(async () => !(await keys(lab.host('c1'), endpoints)).includes('/lwt/lab/addr/10.0.0.5'), 'hub a released 10.0.0.5');
  await c2.waitForLine(/joined the virtual LAN as 10\.0\.0\.5/, DEADLINE_MS, { after: mark });
  await b.waitForLine(/member 10\.0\.0\.5 joined from/);

  // Both hubs stop cleanly: their leases are revoked, their keys gone at once.
  c2.kill('SIGTERM');
  a.kill('SIGTERM');
  b.kill('SIGTERM');
  await Promise.all([a.exited, b.exited, c2.exited]);
  await waitUntil(async () => (await keys(lab.host('c1'), endpoints)).length === 0, 'no key of the cluster left', 5000);
  t.pass();
});
