// The status server driver over real loopback HTTP and a unix socket.
import test from 'ava';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PeerStats, ServerEvent } from '../pipelines/events.js';
import { makeStatusServer, StatusServerError, type StatusServer } from '../src/status/server.js';
import { fetchStatus, formatStatusTable } from '../src/status/command.js';
import { parseStatusAddr, type StatusAddr } from '../src/config/schema.js';

interface Answer {
  status: number;
  type: string | undefined;
  body: string;
}

function get(addr: StatusAddr, path: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { method, path, ...(addr.kind === 'unix' ? { socketPath: addr.path } : { host: addr.host, port: addr.port }) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const LOOPBACK: StatusAddr = { kind: 'tcp', host: '127.0.0.1', port: 0 };

async function started(t: { teardown(fn: () => unknown): void }, addr: StatusAddr = LOOPBACK, mode: 'server' | 'client' = 'server'): Promise<{ server: StatusServer; at: StatusAddr }> {
  const server = makeStatusServer({ addr, version: '9.9.9', mode });
  t.teardown(() => server.close());
  const text = await server.listening;
  return { server, at: parseStatusAddr(text)! };
}

const listening: ServerEvent = { type: 'listening', address: '0.0.0.0:9000', tun: 'tun0', hub: '10.0.0.1/24' };
const joined = (id: number, address: string): ServerEvent => ({ type: 'joined', id, remote: `192.0.2.${id}:4000${id}`, address, via: 'hello', members: id });
const left = (id: number, address: string): ServerEvent => ({ type: 'left', id, remote: `192.0.2.${id}:4000${id}`, address, reason: 'closed', detail: '', members: 0 });

test('GET /status answers the JSON document (schema 1) on a loopback port', async (t) => {
  const { server, at } = await started(t);
  server.update(listening);
  server.update(joined(1, '10.0.0.2'));
  const a = await get(at, '/status');
  t.is(a.status, 200);
  t.is(a.type, 'application/json; charset=utf-8');
  const doc = JSON.parse(a.body) as { schema: number; version: string; mode: string; ready: boolean; members: { address: string }[] };
  t.like(doc, { schema: 1, version: '9.9.9', mode: 'server', ready: true });
  t.deepEqual(doc.members.map((m) => m.address), ['10.0.0.2']);
});

test('/healthz is 200 while running; /readyz is 503 until ready and 200 after', async (t) => {
  const { server, at } = await started(t);
  t.is((await get(at, '/healthz')).status, 200);
  const before = await get(at, '/readyz');
  t.is(before.status, 503);
  t.is(before.type, 'text/plain; charset=utf-8');
  server.update(listening);
  t.is((await get(at, '/readyz')).status, 200);
});

test('a client is ready once welcomed and not after it is disconnected', async (t) => {
  const { server, at } = await started(t, LOOPBACK, 'client');
  server.update({ type: 'connected', id: 1, remote: '192.0.2.1:9000' });
  t.is((await get(at, '/readyz')).status, 503);
  server.update({ type: 'welcomed', address: '10.0.0.2', prefix: 24, hub: '10.0.0.1' });
  t.is((await get(at, '/readyz')).status, 200);
  server.update({ type: 'disconnected', remote: '192.0.2.1:9000', reason: 'reset', detail: 'x' });
  t.is((await get(at, '/readyz')).status, 503);
});

test('other paths are 404, other methods 405, HEAD answers without a body', async (t) => {
  const { at } = await started(t);
  t.is((await get(at, '/')).status, 404);
  t.is((await get(at, '/status/x')).status, 404);
  t.is((await get(at, '/status', 'POST')).status, 405);
  t.is((await get(at, '/status', 'DELETE')).status, 405);
  const head = await get(at, '/status', 'HEAD');
  t.is(head.status, 200);
  t.is(head.body, '');
  t.is((await get(at, '/status?pretty=1')).status, 200);
});

test('GET /metrics is Prometheus text with per-member series that disappear when the member leaves', async (t) => {
  const { server, at } = await started(t);
  server.update(listening);
  server.update(joined(1, '10.0.0.2'));
  server.update(joined(2, '10.0.0.3'));
  server.update({
    type: 'stats',
    at: Date.now(),
    sessions: [
      { id: 1, remote: '192.0.2.1:40001', address: '10.0.0.2', connectedAt: Date.now(), lastSeen: Date.now(), rx: { packets: 5, bytes: 500 }, tx: { packets: 6, bytes: 600 }, queued: 2, rttMs: 4, transport: 'tcp' },
    ],
    tun: { read: { packets: 1, bytes: 84 }, written: { packets: 2, bytes: 168 }, queued: 0 },
  });
  server.update({ type: 'drops', who: '10.0.0.2', drops: { isolation: 3 } });
  server.update({ type: 'drops', who: 'tun', drops: { 'no-route': 1 } });
  const a = await get(at, '/metrics');
  t.is(a.status, 200);
  t.regex(a.type ?? '', /^text\/plain; version=0\.0\.4/);
  t.regex(a.body, /^lwt_info\{version="9\.9\.9",mode="server"\} 1$/m);
  t.regex(a.body, /^lwt_ready 1$/m);
  t.regex(a.body, /^lwt_members 2$/m);
  t.regex(a.body, /^lwt_member_receive_bytes_total\{member="10\.0\.0\.2"\} 500$/m);
  t.regex(a.body, /^lwt_member_transmit_packets_total\{member="10\.0\.0\.2"\} 6$/m);
  t.regex(a.body, /^lwt_member_queue_packets\{member="10\.0\.0\.2"\} 2$/m);
  t.regex(a.body, /^lwt_member_rtt_seconds\{member="10\.0\.0\.2"\} 0\.004$/m);
  t.regex(a.body, /^lwt_member_drops_total\{member="10\.0\.0\.2",reason="isolation"\} 3$/m);
  t.regex(a.body, /^lwt_drops_total\{reason="isolation"\} 3$/m);
  t.regex(a.body, /^lwt_drops_total\{reason="no-route"\} 1$/m);
  t.regex(a.body, /^lwt_drops_total\{reason="queue-full"\} 0$/m);
  t.regex(a.body, /^lwt_tun_read_packets_total 1$/m);
  t.regex(a.body, /^lwt_member_receive_bytes_total\{member="10\.0\.0\.3"\} 0$/m);

  server.update({ type: 'introduced', a: '10.0.0.2', b: '10.0.0.3', by: 'flow' });
  t.regex((await get(at, '/metrics')).body, /^lwt_direct_pairs\{state="relayed"\} 1$/m);
  server.update({ type: 'pair-path', a: '10.0.0.2', b: '10.0.0.3', path: 'direct' });
  const direct = (await get(at, '/metrics')).body;
  t.regex(direct, /^lwt_direct_pairs\{state="direct"\} 1$/m);
  t.regex(direct, /^lwt_direct_pairs\{state="relayed"\} 0$/m);

  server.update(left(1, '10.0.0.2'));
  const after = (await get(at, '/metrics')).body;
  t.notRegex(after, /member="10\.0\.0\.2"/);
  t.regex(after, /member="10\.0\.0\.3"/);
  t.regex(after, /^lwt_drops_total\{reason="isolation"\} 3$/m, 'totals keep the drops of members that left');
  t.regex(after, /^lwt_members 1$/m);
});

test("a client's metrics carry a series per peer of its direct paths: direct or not, counters, drops", async (t) => {
  const { server, at } = await started(t, LOOPBACK, 'client');
  server.update({ type: 'connected', id: 1, remote: '192.0.2.1:9000' });
  server.update({ type: 'welcomed', address: '10.0.0.2', prefix: 24, hub: '10.0.0.1' });
  server.update({
    type: 'stats',
    at: Date.now(),
    session: undefined,
    tun: { read: { packets: 0, bytes: 0 }, written: { packets: 0, bytes: 0 }, queued: 0 },
    peers: [
      { address: '10.0.0.3', path: 'direct 192.0.2.7:41641', endpoint: '192.0.2.7:41641', rtt: { ms: 0.5, smoothedMs: 0.25 }, rx: { packets: 4, bytes: 400 }, tx: { packets: 5, bytes: 500 }, drops: { 'spoofed-source': 2 } },
      { address: '10.0.0.4', path: 'relayed (probing)', endpoint: undefined, rtt: undefined, rx: { packets: 0, bytes: 0 }, tx: { packets: 0, bytes: 0 }, drops: {} },
    ],
  });
  const body = (await get(at, '/metrics')).body;
  t.regex(body, /^lwt_peer_direct\{peer="10\.0\.0\.3"\} 1$/m);
  t.regex(body, /^lwt_peer_direct\{peer="10\.0\.0\.4"\} 0$/m);
  t.regex(body, /^lwt_peer_rtt_seconds\{peer="10\.0\.0\.3"\} 0\.00025$/m, 'the smoothed round trip of a direct peer');
  t.notRegex(body, /^lwt_peer_rtt_seconds\{peer="10\.0\.0\.4"\}/m, 'none for a relayed one');
  t.regex(body, /^lwt_peer_receive_bytes_total\{peer="10\.0\.0\.3"\} 400$/m);
  t.regex(body, /^lwt_peer_transmit_packets_total\{peer="10\.0\.0\.3"\} 5$/m);
  t.regex(body, /^lwt_peer_drops_total\{peer="10\.0\.0\.3",reason="spoofed-source"\} 2$/m);
  t.regex(body, /^lwt_direct_pairs\{state="direct"\} 0$/m, 'a client introduces no pairs');
  t.regex(body, /^lwt_direct_pairs\{state="relayed"\} 0$/m);
});

test("a hub of a cluster: the status's cluster section, the trunk series of /metrics and the CLUSTER and TRUNK tables; none without a cluster", async (t) => {
  const { server, at } = await started(t);
  server.update(listening);
  const plain = JSON.parse((await get(at, '/status')).body) as { cluster: unknown };
  t.is(plain.cluster, null, 'no cluster section before the hub reports one');
  t.notRegex((await get(at, '/metrics')).body, /^lwt_trunk_/m);
  const since = Date.parse('2026-12-06T09:00:00.000Z');
  server.update({
    type: 'cluster-stats',
    me: 'a',
    standing: 'up',
    hubs: [
      { name: 'a', tunnel: '10.0.0.1/24', advertise: '10.77.0.1:9000', members: 2, addresses: ['10.0.0.10', '10.0.0.11'] },
      { name: 'b', tunnel: '10.0.0.2/24', advertise: '10.77.0.2:9000', members: 1, addresses: ['10.0.0.20'] },
    ],
    trunks: [{ hub: 'b', side: 'dialed', state: 'up', peer: '10.77.0.2:9000', since, rx: { packets: 7, bytes: 700 }, tx: { packets: 9, bytes: 900 }, drops: { 'spoofed-source': 3 } }],
    refusedTrunks: { 'auth-failed': 2 },
  });
  const doc = JSON.parse((await get(at, '/status')).body) as import('../pipelines/status.js').StatusSnapshot;
  t.deepEqual(doc.cluster, {
    hub: 'a',
    standing: 'up',
    hubs: [
      { name: 'a', tunnel: '10.0.0.1/24', advertise: '10.77.0.1:9000', members: 2, addresses: ['10.0.0.10', '10.0.0.11'] },
      { name: 'b', tunnel: '10.0.0.2/24', advertise: '10.77.0.2:9000', members: 1, addresses: ['10.0.0.20'] },
    ],
    trunks: [{ hub: 'b', side: 'dialed', state: 'up', peer: '10.77.0.2:9000', since: '2026-12-06T09:00:00.000Z', rx: { packets: 7, bytes: 700 }, tx: { packets: 9, bytes: 900 }, drops: { 'spoofed-source': 3 } }],
    refusedTrunks: { 'auth-failed': 2 },
  });
  const body = (await get(at, '/metrics')).body;
  t.regex(body, /^lwt_trunk_up\{hub="b"\} 1$/m);
  t.regex(body, /^lwt_trunk_packets_total\{hub="b",dir="in"\} 7$/m);
  t.regex(body, /^lwt_trunk_packets_total\{hub="b",dir="out"\} 9$/m);
  t.regex(body, /^lwt_trunk_bytes_total\{hub="b",dir="out"\} 900$/m);
  t.regex(body, /^lwt_trunk_drops_total\{hub="b",reason="spoofed-source"\} 3$/m);
  t.regex(body, /^lwt_cluster_hubs 2$/m);
  const lines = formatStatusTable(doc);
  t.true(lines.includes('cluster: hub a, up; trunk HELLOs refused: auth-failed 2'), lines.join('\n'));
  t.truthy(lines.find((l) => /^a \(this hub\)\s+10\.0\.0\.1\/24\s+10\.77\.0\.1:9000\s+2\s+10\.0\.0\.10,10\.0\.0\.11$/.test(l)), lines.join('\n'));
  t.truthy(lines.find((l) => /^b\s+dialed\s+up\s+10\.77\.0\.2:9000\s+\S.*\s7\s+700 B\s+9\s+900 B\s+spoofed-source 3$/.test(l)), lines.join('\n'));
});

test('two status servers in one process have separate registries', async (t) => {
  const one = await started(t);
  const two = await started(t);
  one.server.update(joined(1, '10.0.0.2'));
  t.regex((await get(one.at, '/metrics')).body, /^lwt_members 1$/m);
  t.regex((await get(two.at, '/metrics')).body, /^lwt_members 0$/m);
});

test('on a unix socket: same endpoints, mode 0660, a stale socket file is replaced, the file is removed on close', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lwt-status-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'status.sock');
  // A stale socket: a process bound it and was killed, so nothing removed the file.
  spawnSync(process.execPath, ['-e', "require('node:net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))", path]);
  t.true(statSync(path).isSocket(), 'a stale socket file is there');

  const addr: StatusAddr = { kind: 'unix', path };
  const server = makeStatusServer({ addr, version: '9.9.9', mode: 'server' });
  t.is(await server.listening, path);
  t.is(statSync(path).mode & 0o777, 0o660);
  server.update(listening);
  const a = await get(addr, '/status');
  t.is(a.status, 200);
  t.is(a.type, 'application/json; charset=utf-8');
  t.is((await get(addr, '/readyz')).status, 200);
  t.is((await get(addr, '/nope')).status, 404);
  const fetched = await fetchStatus(addr);
  t.is(fetched.status, 200);
  await server.close();
  t.throws(() => statSync(path), { code: 'ENOENT' });
});

test('a unix socket path that is a regular file is not removed: a clear error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lwt-status-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'not-a-socket');
  writeFileSync(path, 'keep me');
  const server = makeStatusServer({ addr: { kind: 'unix', path }, version: '1', mode: 'server' });
  const err = await t.throwsAsync(server.listening, { instanceOf: StatusServerError });
  t.regex(err?.message ?? '', /^status_addr: cannot listen on .*not-a-socket: the file exists and is not a socket$/);
  t.true(statSync(path).isFile());
});

test('a port in use is a StatusServerError with a one-line message', async (t) => {
  const { at } = await started(t);
  const second = makeStatusServer({ addr: at, version: '1', mode: 'server' });
  const err = await t.throwsAsync(second.listening, { instanceOf: StatusServerError });
  t.is(err?.code, 'EADDRINUSE');
  t.regex(err?.message ?? '', /^status_addr: cannot listen on 127\.0\.0\.1:\d+: the address is already in use/);
  await second.close();
});

test('a live unix socket is not taken over', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lwt-status-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 's.sock');
  const { server } = await started(t, { kind: 'unix', path });
  const second = makeStatusServer({ addr: { kind: 'unix', path }, version: '1', mode: 'server' });
  const err = await t.throwsAsync(second.listening, { instanceOf: StatusServerError });
  t.is(err?.code, 'EADDRINUSE');
  t.is((await get({ kind: 'unix', path }, '/healthz')).status, 200, 'the first server still answers');
  await server.close();
});

test('close() stops answering; fetchStatus then says nothing answers', async (t) => {
  const { server, at } = await started(t);
  await server.close();
  const err = await t.throwsAsync(fetchStatus(at));
  t.regex(err?.message ?? '', /^nothing answers on 127\.0\.0\.1:\d+ \(is lightweight-tunnel running with -status 127\.0\.0\.1:\d+\?\)$/);
});

test('the status table lists every member with its figures', async (t) => {
  const { server } = await started(t);
  server.update(listening);
  server.update(joined(1, '10.0.0.2'));
  server.update(joined(2, '10.0.0.3'));
  server.update({ type: 'drops', who: '10.0.0.3', drops: { 'no-route': 2 } });
  const lines = formatStatusTable(server.snapshot());
  t.regex(lines[0]!, /^lightweight-tunnel 9\.9\.9 server, ready, up \d+s$/);
  t.is(lines[1], 'tunnel 10.0.0.1/24, listening on 0.0.0.0:9000, 2 members');
  const header = lines.find((l) => l.startsWith('MEMBER'));
  t.truthy(header);
  t.regex(header!, /MEMBER\s+IDENTITY\s+REMOTE\s+SINCE\s+LAST SEEN\s+RX PKTS\s+RX\s+TX PKTS\s+TX\s+QUEUE\s+RTT\s+DROPS/);
  t.truthy(lines.find((l) => /^10\.0\.0\.2\s+-\s+192\.0\.2\.1:40001\s/.test(l)));
  t.truthy(lines.find((l) => /^10\.0\.0\.3\s.*no-route 2$/.test(l)));
  t.is(lines.at(-1), 'drops: no-route 2');
});

test('the status table lists a client’s peers with their paths and a hub’s introduced pairs', async (t) => {
  const { server: client } = await started(t, LOOPBACK, 'client');
  client.update({ type: 'connected', id: 1, remote: '192.0.2.1:9000' });
  client.update({ type: 'welcomed', address: '10.0.0.2', prefix: 24, hub: '10.0.0.1' });
  client.update({ type: 'direct-path', peer: '10.0.0.3', path: 'direct 192.0.2.7:41641', why: 'the peer answered' });
  client.update({ type: 'direct-path', peer: '10.0.0.4', path: 'relayed (no direct path: symmetric NAT)', why: 'no answer' });
  const peer = (address: string, path: string, rtt: { ms: number; smoothedMs: number } | undefined): PeerStats => ({ address, path, endpoint: path.startsWith('direct ') ? path.slice(7) : undefined, rtt, rx: { packets: 0, bytes: 0 }, tx: { packets: 0, bytes: 0 }, drops: {} });
  client.update({ type: 'stats', at: Date.now(), session: undefined, tun: { read: { packets: 0, bytes: 0 }, written: { packets: 0, bytes: 0 }, queued: 0 }, peers: [peer('10.0.0.3', 'direct 192.0.2.7:41641', { ms: 0.4, smoothedMs: 0.36 }), peer('10.0.0.4', 'relayed (no direct path: symmetric NAT)', undefined)] });
  const lines = formatStatusTable(client.snapshot());
  t.truthy(lines.find((l) => /^PEER\s+PATH\s+RTT\s+RX PKTS\s+RX\s+TX PKTS\s+TX\s+DROPS$/.test(l)));
  t.truthy(lines.find((l) => /^10\.0\.0\.3\s+direct 192\.0\.2\.7:41641\s+0\.4 ms\s+0\s+0 B\s+0\s+0 B\s+-$/.test(l)), 'the smoothed round trip, as the MEMBER table shows its RTT');
  t.truthy(lines.find((l) => /^10\.0\.0\.4\s+relayed \(no direct path: symmetric NAT\)\s+-\s/.test(l)), 'none while relayed');
  t.truthy(lines.find((l) => /^10\.0\.0\.4\s+relayed \(no direct path: symmetric NAT\)\s/.test(l)));

  const { server: hub } = await started(t);
  hub.update(listening);
  hub.update({ type: 'introduced', a: '10.0.0.2', b: '10.0.0.3', by: 'flow' });
  hub.update({ type: 'introduced', a: '10.0.0.2', b: '10.0.0.4', by: 'flow' });
  hub.update({ type: 'pair-path', a: '10.0.0.2', b: '10.0.0.3', path: 'direct' });
  const hubLines = formatStatusTable(hub.snapshot());
  t.truthy(hubLines.find((l) => /^PAIR\s+PATH\s+SINCE$/.test(l)));
  t.truthy(hubLines.find((l) => /^10\.0\.0\.2\s+10\.0\.0\.3\s+direct\s+\d+s$/.test(l)));
  t.truthy(hubLines.find((l) => /^10\.0\.0\.2\s+10\.0\.0\.4\s+relayed\s+\d+s$/.test(l)));
});

test('a hub shows its pending connections (read from the listener per request) and the refused ones by reason', async (t) => {
  let pending = 3;
  const server = makeStatusServer({ addr: LOOPBACK, version: '9.9.9', mode: 'server', pending: () => pending });
  t.teardown(() => server.close());
  const at = parseStatusAddr(await server.listening)!;
  server.update(listening);
  server.update({ type: 'refused', remote: '192.0.2.9:4000', reason: 'pending-source-limit', detail: '64 connections from 192.0.2.9 are already waiting to be admitted (max_pending_per_source 64)' });
  const doc = JSON.parse((await get(at, '/status')).body) as { pendingConnections: number; refusedConnections: Record<string, number> };
  t.is(doc.pendingConnections, 3);
  t.deepEqual(doc.refusedConnections, { 'pending-limit': 0, 'pending-source-limit': 1 });
  pending = 5;
  const metrics = (await get(at, '/metrics')).body;
  t.regex(metrics, /^lwt_pending_connections 5$/m);
  t.regex(metrics, /^lwt_refused_connections_total\{reason="pending-source-limit"\} 1$/m);
  t.regex(metrics, /^lwt_refused_connections_total\{reason="pending-limit"\} 0$/m);
  t.regex(formatStatusTable(server.snapshot()).join('\n'), /connections not joined yet: 5; refused at accept: pending-source-limit 1/);
});

test('a client has no refused series and no pending connections', async (t) => {
  const { at } = await started(t, LOOPBACK, 'client');
  const metrics = (await get(at, '/metrics')).body;
  t.regex(metrics, /^lwt_pending_connections 0$/m);
  t.notRegex(metrics, /^lwt_refused_connections_total\{/m);
});
