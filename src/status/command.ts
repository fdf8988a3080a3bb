// `lightweight-tunnel status [ADDR] [--json]`: fetches /status from a running hub or client and
// prints it as a table (or the raw JSON document).
import { request } from 'node:http';
import type { StatusSnapshot } from '../../pipelines/status.js';
import { formatStatusAddr, parseStatusAddr, type StatusAddr } from '../config/schema.js';

/** The address `status` asks when none is given; the one the docs use for `-status`. */
export const DEFAULT_STATUS_ADDR = '127.0.0.1:9100';

const FETCH_TIMEOUT_MS = 3000;

export const STATUS_USAGE = `usage: lightweight-tunnel status [ADDR] [--json]

Prints the status of a hub or client started with -status ADDR: its members with their remote
endpoint, connection time, last seen, traffic, send queue, round-trip time and drops.

  ADDR    127.0.0.1:PORT, localhost:PORT, [::1]:PORT or a unix socket path (default ${DEFAULT_STATUS_ADDR})
  --json  print the /status JSON document (schema in docs/status.md) instead of the table
`;

/** A failed fetch, with the line to show. */
export class StatusFetchError extends Error {
  override readonly name = 'StatusFetchError';
}

/** GETs `path` from the status server at `addr`; resolves with the status code and body. */
export function fetchStatus(addr: StatusAddr, path = '/status', timeoutMs = FETCH_TIMEOUT_MS): Promise<{ status: number; body: string }> {
  const where = formatStatusAddr(addr);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        method: 'GET',
        path,
        timeout: timeoutMs,
        ...(addr.kind === 'unix' ? { socketPath: addr.path } : { host: addr.host, port: addr.port }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => reject(new StatusFetchError(`reading the answer of ${where} failed: ${err.message}`)));
      },
    );
    req.on('timeout', () => req.destroy(new StatusFetchError(`${where} did not answer within ${timeoutMs / 1000} s`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof StatusFetchError) return reject(err);
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') {
        return reject(new StatusFetchError(`nothing answers on ${where} (is lightweight-tunnel running with -status ${where}?)`));
      }
      if (err.code === 'EACCES') return reject(new StatusFetchError(`permission denied on ${where} (the socket is for root and its group)`));
      reject(new StatusFetchError(`cannot reach ${where}: ${err.code ?? err.message}`));
    });
    req.end();
  });
}

/** "1h 2m", "3m 4s", "5s". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** "512 B", "1.5 KiB", "3.2 MiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Counts by reason (drops, refusals): "isolation 3, no-route 1", or "-" when there are none. */
export function formatDrops(drops: Readonly<Partial<Record<string, number>>>): string {
  const parts = Object.entries(drops)
    .filter(([, n]) => (n ?? 0) > 0)
    .map(([reason, n]) => `${reason} ${n}`);
  return parts.length === 0 ? '-' : parts.join(', ');
}

/** The most member addresses the HUB table shows per hub (the status JSON lists more). */
const TABLE_ADDRESSES = 8;

/** A hub's member addresses for the HUB table: the first few, and how many more there are. */
const listed = (addresses: readonly string[], members: number): string =>
  members === 0 ? '-' : addresses.slice(0, TABLE_ADDRESSES).join(',') + (members > Math.min(addresses.length, TABLE_ADDRESSES) ? ` +${members - Math.min(addresses.length, TABLE_ADDRESSES)}` : '');

/** The table `lightweight-tunnel status` prints, as lines. */
export function formatStatusTable(s: StatusSnapshot): string[] {
  const now = Date.parse(s.now);
  const lines: string[] = [];
  lines.push(`lightweight-tunnel ${s.version} ${s.mode}, ${s.ready ? 'ready' : 'NOT READY'}, up ${formatDuration(s.uptimeSeconds * 1000)}`);
  const where =
    s.mode === 'server'
      ? `listening on ${s.listening ?? '-'}`
      : `hub ${s.remote ?? '-'}`;
  const count = s.mode === 'server' ? `${s.members.length} member${s.members.length === 1 ? '' : 's'}` : s.members.length === 0 ? 'not connected' : 'connected';
  lines.push(`tunnel ${s.tunnelAddress ?? '-'}, ${where}, ${count}`);
  // Older status servers leave these out.
  if (s.mode === 'server' && s.refusedConnections !== undefined) {
    lines.push(`connections not joined yet: ${s.pendingConnections ?? '-'}; refused at accept: ${formatDrops(s.refusedConnections)}`);
  }
  if (s.tun !== null) {
    lines.push(`TUN: read ${s.tun.read.packets} pkts (${formatBytes(s.tun.read.bytes)}), written ${s.tun.written.packets} pkts (${formatBytes(s.tun.written.bytes)}), queue ${s.tun.queued}`);
  }
  lines.push('');
  const header = ['MEMBER', 'IDENTITY', 'REMOTE', 'SINCE', 'LAST SEEN', 'RX PKTS', 'RX', 'TX PKTS', 'TX', 'QUEUE', 'RTT', 'DROPS'];
  const rows = s.members.map((m) => [
    m.address,
    m.identity ?? '-',
    m.remote,
    formatDuration(now - Date.parse(m.connectedSince)),
    `${formatDuration(now - Date.parse(m.lastSeen))} ago`,
    String(m.rx.packets),
    formatBytes(m.rx.bytes),
    String(m.tx.packets),
    formatBytes(m.tx.bytes),
    String(m.queued),
    formatRtt(m.rttMs),
    formatDrops(m.drops),
  ]);
  if (rows.length === 0) {
    lines.push(s.mode === 'server' ? '(no members)' : '(no session to the hub)');
  } else {
    const numeric = new Set([5, 6, 7, 8, 9, 10]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const render = (r: readonly string[]): string =>
      r
        .map((c, i) => (i === r.length - 1 ? c : numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd();
    lines.push(render(header), ...rows.map(render));
  }
  // Older status servers (before leases and routes) leave the fields out.
  const leases = s.leases ?? [];
  const routes = s.routes ?? [];
  if (leases.length > 0) {
    lines.push('', ...table(['LEASE', 'ADDRESS', 'STATE'], leases.map((l) => [l.identity, l.address, l.active ? 'active' : 'idle'])));
  }
  if (routes.length > 0) {
    lines.push('', ...table(['ROUTE', 'VIA'], routes.map((r) => [r.cidr, r.via])));
  }
  // Older status servers (before direct paths) leave these out.
  const peers = s.peers ?? [];
  const pairs = s.pairs ?? [];
  if (peers.length > 0) {
    lines.push(
      '',
      ...table(
        ['PEER', 'PATH', 'RTT', 'RX PKTS', 'RX', 'TX PKTS', 'TX', 'DROPS'],
        // Older status servers (before round-trip times per peer) leave smoothedRttMs out.
        peers.map((p) => [p.address, p.path, formatRtt(p.smoothedRttMs ?? null), String(p.rx.packets), formatBytes(p.rx.bytes), String(p.tx.packets), formatBytes(p.tx.bytes), formatDrops(p.drops)]),
      ),
    );
  }
  if (pairs.length > 0) {
    // Older status servers (before members reported their paths) leave path out.
    lines.push('', ...table(['PAIR', '', 'PATH', 'SINCE'], pairs.map((p) => [p.a, p.b, p.path ?? '-', formatDuration(now - Date.parse(p.since))])));
  }
  // A hub of a cluster (older status servers leave `cluster` out).
  const cluster = s.cluster ?? null;
  if (cluster !== null) {
    lines.push('', `cluster: hub ${cluster.hub}, ${cluster.standing}; trunk HELLOs refused: ${formatDrops(cluster.refusedTrunks)}`);
    lines.push(...table(['HUB', 'TUNNEL', 'ADVERTISE', 'MEMBERS', 'ADDRESSES'], cluster.hubs.map((h) => [h.name === cluster.hub ? `${h.name} (this hub)` : h.name, h.tunnel, h.advertise, String(h.members), listed(h.addresses, h.members)])));
    if (cluster.trunks.length > 0) {
      lines.push(
        '',
        ...table(
          ['TRUNK', 'SIDE', 'STATE', 'PEER', 'SINCE', 'IN PKTS', 'IN', 'OUT PKTS', 'OUT', 'DROPS'],
          cluster.trunks.map((t) => [t.hub, t.side, t.state, t.peer, formatDuration(now - Date.parse(t.since)), String(t.rx.packets), formatBytes(t.rx.bytes), String(t.tx.packets), formatBytes(t.tx.bytes), formatDrops(t.drops)]),
        ),
      );
    }
  }
  lines.push('', `drops: ${formatDrops(s.drops)}`);
  return lines;
}

/** A round-trip time as the tables show it: `0.4 ms`, `12 ms`, or `-` when there is none. */
function formatRtt(ms: number | null): string {
  return ms === null ? '-' : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

/** Left-aligned columns as wide as their widest cell. */
function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const render = (r: readonly string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [render(header), ...rows.map(render)];
}

/** Runs `status` with the arguments after the word; resolves with the exit code. */
export async function statusCommand(args: readonly string[]): Promise<number> {
  let json = false;
  let addrText: string | undefined;
  for (const a of args) {
    if (a === '--json' || a === '-json') json = true;
    else if (a === '-h' || a === '--help' || a === '-help') {
      process.stdout.write(STATUS_USAGE);
      return 0;
    } else if (a.startsWith('-')) {
      process.stderr.write(`lightweight-tunnel status: unknown flag ${a}\n${STATUS_USAGE}`);
      return 2;
    } else if (addrText === undefined) addrText = a;
    else {
      process.stderr.write(`lightweight-tunnel status: one address at most, got ${addrText} and ${a}\n`);
      return 2;
    }
  }
  const addr = parseStatusAddr(addrText ?? DEFAULT_STATUS_ADDR);
  if (addr === undefined) {
    process.stderr.write(`lightweight-tunnel status: expected a loopback address or a unix socket path, got ${JSON.stringify(addrText)}\n`);
    return 2;
  }
  try {
    const { status, body } = await fetchStatus(addr);
    if (status !== 200) throw new StatusFetchError(`${formatStatusAddr(addr)} answered ${status} (is it a lightweight-tunnel status server?)`);
    let snapshot: StatusSnapshot;
    try {
      snapshot = JSON.parse(body) as StatusSnapshot;
    } catch {
      throw new StatusFetchError(`${formatStatusAddr(addr)} did not answer with JSON`);
    }
    if (json) process.stdout.write(body.endsWith('\n') ? body : `${body}\n`);
    else process.stdout.write(`${formatStatusTable(snapshot).join('\n')}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`lightweight-tunnel status: ${(err as Error).message}\n`);
    return 1;
  }
}
