// End to end: the real CLI with -status in a lab; /status, /metrics and /readyz are fetched from
// inside the namespaces (the status server listens on each namespace's own loopback) while traffic
// flows and packets are dropped.
import test from 'ava';
import { Lab } from './helpers/lab.js';
import { BIN, ECHO_PORT, HUB_TUNNEL, startClient, startHub } from './helpers/vpn.js';
import { waitUntil } from './helpers/wait.js';

const STATUS = '127.0.0.1:9100';
const C1 = '10.0.0.2';
const C2 = '10.0.0.3';
/** An address in the tunnel subnet that no member has. */
const UNUSED = '10.0.0.99';

interface Answer {
  status: number;
  type: string | null;
  body: string;
}

const FETCH = `
const [url] = process.argv.slice(1);
fetch(url).then(async (r) => console.log(JSON.stringify({ status: r.status, type: r.headers.get('content-type'), body: await r.text() })))
  .catch((e) => { console.error(String(e.cause ?? e)); process.exit(1); });
`;

async function fetchIn(lab: Lab, host: string, path: string): Promise<Answer> {
  const r = await lab.host(host).exec(process.execPath, ['-e', FETCH, `http://${STATUS}${path}`]);
  if (r.code !== 0) throw new Error(`fetch ${path} in ${host} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Answer;
}

interface Member {
  address: string;
  remote: string;
  rx: { packets: number; bytes: number };
  tx: { packets: number; bytes: number };
  drops: Record<string, number>;
}
interface Status {
  schema: number;
  mode: string;
  ready: boolean;
  tunnelAddress: string | null;
  members: Member[];
  drops: Record<string, number>;
}

async function statusIn(lab: Lab, host: string): Promise<Status> {
  return JSON.parse((await fetchIn(lab, host, '/status')).body) as Status;
}

/** Polls /status on `host` until `ok` holds (the counters are refreshed every second). */
async function waitStatus(lab: Lab, host: string, ok: (s: Status) => boolean, what: string): Promise<Status> {
  let s: Status | undefined;
  await waitUntil(async () => ok((s = await statusIn(lab, host))), () => `${host}: ${what}; last status: ${JSON.stringify(s)}`, undefined, 250);
  return s!;
}

const member = (s: Status, address: string): Member | undefined => s.members.find((m) => m.address === address);

test('/status, /metrics and /readyz follow a live hub with isolation; traffic moves the counters, drops are counted by reason; `status` prints the table', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'] });
  t.teardown(() => lab.dispose());
  const hub = await startHub(lab, ['-status', STATUS, '-client-isolation']);
  await hub.waitForLine(/status on http:\/\/127\.0\.0\.1:9100/);
  await startClient(lab, 'c1', C1, ['-status', STATUS]);
  await startClient(lab, 'c2', C2, ['-status', STATUS]);

  // Health and readiness, on the hub and on a client.
  t.is((await fetchIn(lab, 'hub', '/healthz')).status, 200);
  t.is((await fetchIn(lab, 'hub', '/readyz')).status, 200);
  t.is((await fetchIn(lab, 'c1', '/readyz')).status, 200);
  t.is((await fetchIn(lab, 'hub', '/nothing')).status, 404);

  const first = await waitStatus(lab, 'hub', (s) => s.members.length === 2, 'two members');
  t.like(first, { schema: 1, mode: 'server', ready: true, tunnelAddress: `${HUB_TUNNEL}/24` });
  t.deepEqual(first.members.map((m) => m.address), [C1, C2]);
  const before = member(first, C1)!;

  // Traffic to the hub moves c1's counters on the hub (rx: from c1, tx: to c1).
  await lab.startEchoServers('hub', ECHO_PORT);
  t.true(await lab.canReach('c1', HUB_TUNNEL, ECHO_PORT));
  const moved = await waitStatus(
    lab,
    'hub',
    (s) => (member(s, C1)?.rx.packets ?? 0) > before.rx.packets && (member(s, C1)?.tx.packets ?? 0) > before.tx.packets,
    "c1's rx and tx counters moving",
  );
  t.true(member(moved, C1)!.rx.bytes > before.rx.bytes);
  t.true(member(moved, C1)!.tx.bytes > before.tx.bytes);
  // The client sees the same session from its side.
  const client = await waitStatus(lab, 'c1', (s) => (s.members[0]?.tx.packets ?? 0) > 0 && (s.members[0]?.rx.packets ?? 0) > 0, "c1's session counters moving");
  t.like(client, { mode: 'client', ready: true, tunnelAddress: `${C1}/24` });
  t.is(client.members[0]?.address, HUB_TUNNEL);

  // c1 → c2 is dropped by isolation; c1 → an unused address is dropped as no-route.
  t.false(await lab.canReach('c1', C2, ECHO_PORT, { timeoutMs: 600 }));
  await lab.probeUdp('c1', UNUSED, ECHO_PORT, { timeoutMs: 300, count: 2 });
  const dropped = await waitStatus(
    lab,
    'hub',
    (s) => (s.drops.isolation ?? 0) > 0 && (s.drops['no-route'] ?? 0) > 0,
    'isolation and no-route drops',
  );
  t.true((member(dropped, C1)!.drops.isolation ?? 0) > 0, 'the isolation drop is attributed to c1');
  t.true((member(dropped, C1)!.drops['no-route'] ?? 0) > 0, 'the no-route drop is attributed to c1');

  const metrics = await fetchIn(lab, 'hub', '/metrics');
  t.is(metrics.status, 200);
  t.regex(metrics.type ?? '', /^text\/plain; version=0\.0\.4/);
  t.regex(metrics.body, /^lwt_drops_total\{reason="isolation"\} [1-9]\d*$/m);
  t.regex(metrics.body, /^lwt_drops_total\{reason="no-route"\} [1-9]\d*$/m);
  t.regex(metrics.body, /^lwt_member_drops_total\{member="10\.0\.0\.2",reason="isolation"\} [1-9]\d*$/m);
  t.regex(metrics.body, /^lwt_member_receive_packets_total\{member="10\.0\.0\.2"\} [1-9]\d*$/m);
  t.regex(metrics.body, /^lwt_members 2$/m);
  t.regex(metrics.body, /^lwt_ready 1$/m);

  // The status command, run inside the hub's namespace.
  const table = await lab.host('hub').exec('node', [BIN, 'status', STATUS]);
  t.is(table.code, 0, table.stderr);
  t.log(table.stdout);
  t.regex(table.stdout, /server, ready, up /);
  t.regex(table.stdout, /^MEMBER\s+IDENTITY\s+REMOTE\s+SINCE\s+LAST SEEN/m);
  t.regex(table.stdout, /^10\.0\.0\.2\s.*isolation \d+/m);
  t.regex(table.stdout, /^10\.0\.0\.3\s/m);
  const json = await lab.host('hub').exec('node', [BIN, 'status', STATUS, '--json']);
  t.is((JSON.parse(json.stdout) as Status).members.length, 2);
  // Where nothing listens: a clear error and exit 1.
  const none = await lab.host('hub').exec('node', [BIN, 'status', '127.0.0.1:9199']);
  t.is(none.code, 1);
  t.regex(none.stderr, /nothing answers on 127\.0\.0\.1:9199/);
});

test('a -status port that is in use stops the program with one clear line and exit 1', async (t) => {
  const lab = await Lab.create({ hosts: ['hub'] });
  t.teardown(() => lab.dispose());
  const squatter = lab.host('hub').spawn('node', ['-e', `require('node:net').createServer().listen(9100, '127.0.0.1', () => console.log('bound'))`], { label: 'squatter' });
  await squatter.waitForLine(/bound/);
  const hub = lab.host('hub').spawn('node', [BIN, '-m', 'server', '-l', '0.0.0.0:9000', '-t', `${HUB_TUNNEL}/24`, '-status', STATUS], { label: 'hub' });
  const exit = await hub.exited;
  t.is(exit.code, 1);
  t.regex(hub.output(), /status_addr: cannot listen on 127\.0\.0\.1:9100: the address is already in use/);
  squatter.kill('SIGKILL');
});
