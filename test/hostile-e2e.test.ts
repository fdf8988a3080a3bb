// End to end (issue 10): what an authenticated but hostile member (or a careless admin) could do to
// the others, tried with real CLI processes and a scripted member (helpers/forge.ts) in lab
// namespaces: a LAN route that covers the underlay (the route hijack), a hub that pushes one,
// routes that outlive their member, oversize DATA towards 0.0.1-era members, and SUPER frames that
// would multiply into 65,000 packets. Every route the tests see is inside the lab's namespaces.
import test from 'ava';
import { FORGE_SCRIPT } from './helpers/forge.js';
import { Lab, NFT_BIN, type LabProcess } from './helpers/lab.js';
import { BIN, ECHO_PORT, TEXT_LOGS, droppedAt, interrupt, startClient, startHub } from './helpers/vpn.js';
import { DEADLINE_MS, SLACK_MS, waitUntil } from './helpers/wait.js';

const TIMING = ['-keepalive', '1', '-timeout', '3'];

/** The lab's underlay network, e.g. 172.31.17 (without the last octet). */
const underlayBase = (lab: Lab): string => lab.subnet.split('.').slice(0, 3).join('.');

/** `ip route show dev tun0` in `host`: the routes through the tunnel. */
async function tunnelRoutes(lab: Lab, host: string): Promise<string> {
  return (await lab.host(host).exec('ip', ['route', 'show', 'dev', 'tun0'])).stdout;
}

/** Runs forge.js `session` in `host` against the hub; resolves with its output lines. */
async function forge(lab: Lab, host: string, args: readonly string[]): Promise<string[]> {
  const r = await lab.host(host).exec(process.execPath, [FORGE_SCRIPT, 'session', '--hub', `${lab.host('hub').ip}:9000`, ...args]);
  if (r.code !== 0) throw new Error(`forge in ${host} failed (code ${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout.split('\n').filter((l) => l !== '');
}

/** The RX packet counter of `host`'s tun0 (what its kernel got from the tunnel). */
async function tunRxPackets(lab: Lab, host: string): Promise<number> {
  const r = await lab.host(host).exec('cat', ['/sys/class/net/tun0/statistics/rx_packets']);
  return Number(r.stdout.trim());
}

test('route hijack: a member announcing a LAN that covers the underlay (or lies in the hub’s network) is refused; nobody installs it and every other member keeps working', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2', 'mallory'] });
  t.teardown(() => lab.dispose());
  const base = underlayBase(lab);
  // The careless admin: the allow-list covers the underlay itself.
  const hub = await startHub(lab, [...TIMING, '-allow-routes', '172.31.0.0/16']);
  const c1 = await startClient(lab, 'c1', '10.0.0.2', TIMING);
  const c2 = await startClient(lab, 'c2', '10.0.0.3', TIMING);
  await lab.startEchoServers('c2', ECHO_PORT);
  await lab.waitReachable('c1', '10.0.0.3', ECHO_PORT);

  for (const [route, logged] of [
    [`${base}.0/26`, new RegExp(`covers address ${base.replace(/\./g, '\\.')}\\.1 on eth0`)], // the hub's, c1's, c2's underlay addresses
    [`${base}.128/25`, new RegExp(`covers network ${base.replace(/\./g, '\\.')}\\.0/24 on eth0`)], // no host address, but inside the hub's network
  ] as const) {
    const mallory = lab.host('mallory').spawn('node', [BIN, ...TEXT_LOGS, '-m', 'client', '-r', `${lab.host('hub').ip}:9000`, '-t', '10.0.0.66/24', '-routes', route, ...TIMING], {
      label: 'mallory(client)',
    });
    const exit = await mallory.exited;
    t.is(exit.code, 1, mallory.output());
    const refusal = mallory.output().split('\n').find((l) => /the hub refused this client/.test(l)) ?? '';
    t.regex(refusal, /route-not-allowed: .*covers an underlay address or network/);
    t.notRegex(refusal.replace(route, ''), /172\.31\.|eth0/, 'the member is told no underlay detail');
    await hub.waitForLine(logged);
  }
  for (const h of ['hub', 'c1', 'c2']) t.notRegex(await tunnelRoutes(lab, h), /172\.31\./, `${h} installed no underlay route`);
  t.true(await lab.canReach('c1', '10.0.0.3', ECHO_PORT), 'c1 still reaches c2 through the hub');
  t.false(/disconnected/.test(c1.output() + c2.output()), 'no member lost its session');
  for (const p of [c1, c2, hub]) t.is((await interrupt(p)).code, 0);
});

test('a hub that pushes a route covering the client’s way to it: the client installs only the harmless routes and keeps its session', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1'] });
  t.teardown(() => lab.dispose());
  const base = underlayBase(lab);
  const fakeHub = lab.host('hub').spawnNode(FORGE_SCRIPT, ['fake-hub', '9000', '--routes', `${base}.0/24,192.168.99.0/24`], { label: 'hub(fake)' });
  await fakeHub.waitForLine(/^ready tcp/);
  const c1 = await startClient(lab, 'c1', '10.0.0.2', ['-keepalive', '1', '-timeout', '5']);
  await c1.waitForLine(/kernel route 192\.168\.99\.0\/24 added/);
  t.regex(c1.output(), new RegExp(`not installed: ${base.replace(/\./g, '\\.')}\\.0/24 via 10\\.0\\.0\\.9 \\(it covers`));
  const routes = await tunnelRoutes(lab, 'c1');
  t.regex(routes, /192\.168\.99\.0\/24/);
  t.notRegex(routes, /172\.31\./);
  t.notRegex(c1.output(), /disconnected/);
  t.is((await interrupt(c1)).code, 0);
});

test('LAN routes disappear everywhere when their member crashes, and after a hub crash and restart without it', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'] });
  t.teardown(() => lab.dispose());
  let hub = await startHub(lab, [...TIMING, '-allow-routes', '192.168.0.0/16']);
  const c2 = await startClient(lab, 'c2', '10.0.0.3', TIMING);
  let c1: LabProcess = await startClient(lab, 'c1', '10.0.0.2', [...TIMING, '-routes', '192.168.77.0/24']);
  await c2.waitForLine(/kernel route 192\.168\.77\.0\/24 added/);

  // The member crashes: the hub notices within its timeout and withdraws the route everywhere.
  c1.kill('SIGKILL');
  await c2.waitForLine(/kernel route 192\.168\.77\.0\/24 removed/);
  t.notRegex(await tunnelRoutes(lab, 'c2'), /192\.168\.77/);
  t.notRegex(await tunnelRoutes(lab, 'hub'), /192\.168\.77/);

  // Back again, then the hub crashes and restarts while the member stays away.
  const mark = c2.mark();
  c1 = await startClient(lab, 'c1', '10.0.0.2', [...TIMING, '-routes', '192.168.77.0/24']);
  await c2.waitForLine(/kernel route 192\.168\.77\.0\/24 added/, undefined, { after: mark });
  t.regex(await tunnelRoutes(lab, 'c2'), /192\.168\.77/);
  c1.kill('SIGKILL');
  hub.kill('SIGKILL');
  await hub.exited;
  hub = await startHub(lab, [...TIMING, '-allow-routes', '192.168.0.0/16']);
  await waitUntil(async () => !/192\.168\.77/.test(await tunnelRoutes(lab, 'c2')), 'c2 to drop the stale route after rejoining', undefined, 100);
  t.pass();
  for (const p of [c2, hub]) t.is((await interrupt(p)).code, 0);
});

test('oversize DATA from a gso member never reaches a 0.0.1-era member: DF packets are dropped as too-big and answered with ICMP, others arrive as fragments', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'mallory'] });
  t.teardown(() => lab.dispose());
  const hub = await startHub(lab, TIMING);
  const c1 = await startClient(lab, 'c1', '10.0.0.2', [...TIMING, '-offload=false']);
  const sink = lab.host('c1').spawnNode(FORGE_SCRIPT, ['listen-udp', '7001'], { label: 'c1:sink' });
  await sink.waitForLine(/^ready udp/);
  const base = ['--hello', '10.0.0.66', '--caps', 'gso', '--mtu', '9000', '--src', '10.0.0.66', '--dst', '10.0.0.2', '--size', '5000', '--count', '20', '--interval', '5', '--linger', '1500'];
  // With DF: stay until the 20 ICMP answers are in.
  const withDf = await forge(lab, 'mallory', [...base, '--linger', String(DEADLINE_MS), '--until-icmp', '20']);
  t.true(withDf.some((l) => /welcome/.test(l)), withDf.join('\n'));
  const icmp = withDf.filter((l) => / icmp 3 4 1400$/.test(l));
  t.is(icmp.length, 20, `ICMP fragmentation-needed (MTU 1400) for each packet:\n${withDf.join('\n')}`);
  // The drop summaries come once a second: twenty may take two lines.
  await waitUntil(() => droppedAt(hub, '10.0.0.66', 'too-big') >= 20, () => `20 too-big drops at 10.0.0.66:\n${hub.output()}`);
  t.is(droppedAt(hub, '10.0.0.66', 'too-big'), 20);
  const noDf = await forge(lab, 'mallory', [...base, '--no-df']);
  t.false(noDf.some((l) => / icmp /.test(l)), 'no ICMP for packets the hub may fragment');
  await waitUntil(() => sink.output().split('\n').filter((l) => /^recv 10\.0\.0\.66/.test(l)).length === 20, 'the 20 fragmented datagrams to arrive whole at c1');
  t.notRegex(c1.output(), /disconnected|frame-error/);
  t.notRegex(hub.output(), /member 10\.0\.0\.2 .* left/);
  t.is((await interrupt(c1)).code, 0);
  t.is((await interrupt(hub)).code, 0);
});

test('SUPER frames with a tiny segment size are refused at the hub (gso-too-small), not multiplied into 65,000 packets for a member without offload', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2', 'c3', 'mallory'] });
  t.teardown(() => lab.dispose());
  const hub = await startHub(lab, TIMING);
  const c1 = await startClient(lab, 'c1', '10.0.0.2', [...TIMING, '-offload=false']);
  await startClient(lab, 'c2', '10.0.0.3', TIMING);
  await startClient(lab, 'c3', '10.0.0.4', TIMING);
  await lab.startEchoServers('c3', ECHO_PORT);
  await lab.waitReachable('c2', '10.0.0.4', ECHO_PORT);
  const before = await tunRxPackets(lab, 'c1');
  const [lines, probe] = await Promise.all([
    forge(lab, 'mallory', ['--hello', '10.0.0.66', '--caps', 'gso', '--src', '10.0.0.66', '--dst', '10.0.0.2', '--super', '1', '--count', '20', '--interval', '0', '--linger', '1500']),
    // An echo later than SLACK_MS counts as lost: a loaded machine may delay one by a second or more.
    lab.probeUdp('c2', '10.0.0.4', ECHO_PORT, { count: 20, timeoutMs: SLACK_MS }),
  ]);
  t.true(lines.some((l) => /welcome/.test(l)), lines.join('\n'));
  await waitUntil(() => droppedAt(hub, '10.0.0.66', 'gso-too-small') >= 20, () => `20 gso-too-small drops at 10.0.0.66:\n${hub.output()}`);
  t.is(droppedAt(hub, '10.0.0.66', 'gso-too-small'), 20);
  const delivered = (await tunRxPackets(lab, 'c1')) - before;
  t.true(delivered < 100, `c1's kernel got ${delivered} packets (65,000 per frame before the fix)`);
  t.is(probe.received, 20, `c2 ↔ c3 lost nothing meanwhile: ${JSON.stringify(probe)}`);
  t.notRegex(c1.output(), /disconnected/);
  t.is((await interrupt(hub)).code, 0);
});

test('isolation and ip_forward on the hub: members reach the hub’s LAN through its kernel, until the nftables rule of docs/security.md drops forwarded tunnel traffic', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'lan'] });
  t.teardown(() => lab.dispose());
  // The hub's own LAN (192.168.50.0/24), reachable only through the hub; the hub host forwards.
  const hub = lab.host('hub');
  const lan = lab.host('lan');
  await hub.exec('ip', ['link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', lan.ns], { check: true });
  await hub.exec('ip', ['addr', 'add', '192.168.50.1/24', 'dev', 'lan0'], { check: true });
  await hub.exec('ip', ['link', 'set', 'lan0', 'up'], { check: true });
  await hub.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'], { check: true });
  await lan.exec('ip', ['addr', 'add', '192.168.50.2/24', 'dev', 'lan0'], { check: true });
  await lan.exec('ip', ['link', 'set', 'lan0', 'up'], { check: true });
  await lan.exec('ip', ['route', 'add', '10.0.0.0/24', 'via', '192.168.50.1'], { check: true });
  await lab.startEchoServers('lan', ECHO_PORT);

  const hubProcess = await startHub(lab, [...TIMING, '-client-isolation']);
  const c1 = await startClient(lab, 'c1', '10.0.0.2', TIMING);
  await lab.host('c1').exec('ip', ['route', 'add', '192.168.50.0/24', 'dev', 'tun0'], { check: true });
  t.true(await lab.canReach('c1', '192.168.50.2', ECHO_PORT), 'isolation does not stop the hub kernel from forwarding');

  const nft = NFT_BIN;
  if (nft === undefined) return t.fail('nftables is not installed (.ci/run installs it)');
  await hub.exec(nft, ['add', 'table', 'inet', 'lwt'], { check: true });
  await hub.exec(nft, ['add', 'chain', 'inet', 'lwt', 'forward', '{ type filter hook forward priority 0; policy accept; }'], { check: true });
  await hub.exec(nft, ['add', 'rule', 'inet', 'lwt', 'forward', 'iifname', 'tun0', 'drop'], { check: true });
  const after = await lab.probeUdp('c1', '192.168.50.2', ECHO_PORT, { timeoutMs: 1000, count: 3 });
  t.is(after.received, 0, `the rule drops it: ${JSON.stringify(after)}`);
  await lab.startEchoServers('hub', ECHO_PORT);
  t.true(await lab.canReach('c1', '10.0.0.1', ECHO_PORT), 'the hub itself is still reachable');
  for (const p of [c1, hubProcess]) t.is((await interrupt(p)).code, 0);
});
