// The status server: a driver that folds the pipeline's events into the status model and serves it
// over HTTP on a loopback address or a unix socket: /status (JSON), /metrics (Prometheus),
// /healthz and /readyz. It never listens beyond this machine (the config refuses other addresses).
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ClientEvent, ServerEvent } from '../../pipelines/events.js';
import {
  DROP_REASONS,
  REFUSAL_REASONS,
  initialStatus,
  reduceStatus,
  statusSnapshot,
  type StatusMode,
  type StatusSnapshot,
  type StatusState,
} from '../../pipelines/status.js';
import { formatStatusAddr, type StatusAddr } from '../config/schema.js';

export interface StatusServerOptions {
  /** Where to listen; a tcp port of 0 picks a free port (see `listening`). */
  readonly addr: StatusAddr;
  readonly version: string;
  readonly mode: StatusMode;
  /** The clock (ms since the epoch); default Date.now. */
  readonly now?: () => number;
  /** Server: the listener's count of connections not admitted yet (ListenerPort.pending), read per request. */
  readonly pending?: () => number;
}

export interface StatusServer {
  /** Resolves with the address listened on ("127.0.0.1:9100" or the socket path); rejects with a StatusServerError. */
  readonly listening: Promise<string>;
  /** Folds one pipeline event into the model. Cheap; call it for every event. */
  update(event: ServerEvent | ClientEvent): void;
  /** The current /status document. */
  snapshot(): StatusSnapshot;
  /** Stops listening (and removes the unix socket). Resolves when closed; never rejects. */
  close(): Promise<void>;
}

/** The status server could not start. `message` is the one line to show. */
export class StatusServerError extends Error {
  override readonly name = 'StatusServerError';
  constructor(
    readonly addr: string,
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

const WHY: Record<string, string> = {
  EADDRINUSE: 'the address is already in use (is another lightweight-tunnel running with the same -status?)',
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'no such local address',
  ENOENT: 'the directory does not exist',
};

/** True when something accepts connections on the unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Removes a socket file left by a process that died; refuses to touch other files or a live socket. */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new StatusServerError(path, 'EEXIST', `status_addr: cannot listen on ${path}: the file exists and is not a socket`);
  if (await socketAnswers(path)) throw new StatusServerError(path, 'EADDRINUSE', `status_addr: cannot listen on ${path}: ${WHY.EADDRINUSE}`);
  unlinkSync(path);
}

/** Prometheus metrics read from the model at scrape time: members that left have no series. */
function makeMetrics(registry: Registry, current: () => StatusSnapshot): void {
  type Member = StatusSnapshot['members'][number];
  type Sample = readonly [labels: Partial<Record<'member' | 'peer' | 'reason' | 'state' | 'hub' | 'dir', string>>, value: number | undefined];
  /** A metric whose samples are read from the current snapshot at scrape time (so departed members' series vanish). */
  const define = (kind: 'counter' | 'gauge', name: string, help: string, labelNames: string[], samples: (s: StatusSnapshot) => Sample[]): void => {
    const fill = (metric: { reset(): void }, put: (labels: Sample[0], v: number) => void): void => {
      metric.reset();
      for (const [labels, v] of samples(current())) if (v !== undefined) put(labels, v);
    };
    if (kind === 'counter') {
      new Counter({ name, help, labelNames, registers: [registry], collect() { fill(this, (labels, v) => this.inc(labels, v)); } });
    } else {
      new Gauge({ name, help, labelNames, registers: [registry], collect() { fill(this, (labels, v) => this.set(labels, v)); } });
    }
  };
  const perMember = (value: (m: Member) => number | undefined) => (s: StatusSnapshot): Sample[] => s.members.map((m) => [{ member: m.address }, value(m)]);
  const memberCounter = (name: string, help: string, value: (m: Member) => number): void => define('counter', name, help, ['member'], perMember(value));
  const memberGauge = (name: string, help: string, value: (m: Member) => number | undefined): void => define('gauge', name, help, ['member'], perMember(value));
  const gauge = (name: string, help: string, value: (s: StatusSnapshot) => number | undefined): void => define('gauge', name, help, [], (s) => [[{}, value(s)]]);
  const counter = (name: string, help: string, value: (s: StatusSnapshot) => number | undefined): void => define('counter', name, help, [], (s) => [[{}, value(s)]]);

  new Gauge({
    name: 'lwt_info',
    help: 'Always 1; the labels name the version and the mode.',
    labelNames: ['version', 'mode'],
    registers: [registry],
    collect() {
      this.reset();
      const s = current();
      this.set({ version: s.version, mode: s.mode }, 1);
    },
  });
  gauge('lwt_ready', '1 when ready (server: listening with the TUN device up; client: welcomed by the hub), else 0.', (s) => (s.ready ? 1 : 0));
  gauge('lwt_uptime_seconds', 'Seconds since the program started.', (s) => s.uptimeSeconds);
  gauge('lwt_members', 'Members connected (server) or sessions to the hub (client, 0 or 1).', (s) => s.members.length);
  memberCounter('lwt_member_receive_packets_total', 'Packets received from the member (client: from the hub).', (m) => m.rx.packets);
  memberCounter('lwt_member_receive_bytes_total', 'Bytes of packets received from the member.', (m) => m.rx.bytes);
  memberCounter('lwt_member_transmit_packets_total', 'Packets sent to the member (client: to the hub).', (m) => m.tx.packets);
  memberCounter('lwt_member_transmit_bytes_total', 'Bytes of packets sent to the member.', (m) => m.tx.bytes);
  memberCounter('lwt_member_udp_receive_packets_total', 'Packets received from the member over the UDP data path (part of lwt_member_receive_packets_total).', (m) => m.udp?.rx.packets ?? 0);
  memberCounter('lwt_member_udp_receive_bytes_total', 'Bytes of packets received over the UDP data path.', (m) => m.udp?.rx.bytes ?? 0);
  memberCounter('lwt_member_udp_transmit_packets_total', 'Packets sent to the member over the UDP data path (part of lwt_member_transmit_packets_total).', (m) => m.udp?.tx.packets ?? 0);
  memberCounter('lwt_member_udp_transmit_bytes_total', 'Bytes of packets sent over the UDP data path.', (m) => m.udp?.tx.bytes ?? 0);
  new Gauge({
    name: 'lwt_member_transport',
    help: "1 for the transport the member's data travels over now (udp, tcp, or tcp (udp blocked)).",
    labelNames: ['member', 'transport'],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of current().members) this.set({ member: m.address, transport: m.transport }, 1);
    },
  });
  memberGauge('lwt_member_queue_packets', "Packets waiting in the member's send queue.", (m) => m.queued);
  memberGauge('lwt_member_rtt_seconds', 'Last round-trip time measured with PING/PONG.', (m) => (m.rttMs === null ? undefined : m.rttMs / 1000));
  memberGauge('lwt_member_connected_since_seconds', 'When the member connected, in seconds since the epoch.', (m) => Date.parse(m.connectedSince) / 1000);
  memberGauge('lwt_member_last_seen_seconds', 'When the member was last heard from, in seconds since the epoch.', (m) => Date.parse(m.lastSeen) / 1000);
  new Counter({
    name: 'lwt_member_drops_total',
    help: 'Packets dropped that are attributed to the member, by reason.',
    labelNames: ['member', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of current().members) {
        for (const reason of DROP_REASONS) {
          const n = m.drops[reason];
          if (n !== undefined) this.inc({ member: m.address, reason }, n);
        }
      }
    },
  });
  new Counter({
    name: 'lwt_drops_total',
    help: 'Packets dropped, by reason (all members, including those that left, the TUN device and the hub).',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      const drops = current().drops;
      for (const reason of DROP_REASONS) this.inc({ reason }, drops[reason] ?? 0);
    },
  });
  // Direct paths (docs/direct.md): a client's peers (at most 32 pairs and the refusals it holds), the hub's pairs.
  type Peer = StatusSnapshot['peers'][number];
  const perPeer = (value: (p: Peer) => number | undefined) => (s: StatusSnapshot): Sample[] => (s.peers ?? []).map((p) => [{ peer: p.address }, value(p)]);
  define('gauge', 'lwt_peer_direct', "Client: 1 while the peer's packets go over a direct path, 0 while they are relayed through the hub.", ['peer'], perPeer((p) => (p.endpoint === null ? 0 : 1)));
  define('gauge', 'lwt_peer_rtt_seconds', "Client: the smoothed round-trip time of the peer's direct path (PING/PONG over the pair; absent while relayed or not measured yet).", ['peer'], perPeer((p) => (p.smoothedRttMs === null ? undefined : p.smoothedRttMs / 1000)));
  define('counter', 'lwt_peer_receive_packets_total', 'Client: packets received from the peer over its direct path.', ['peer'], perPeer((p) => p.rx.packets));
  define('counter', 'lwt_peer_receive_bytes_total', 'Client: bytes of packets received from the peer over its direct path.', ['peer'], perPeer((p) => p.rx.bytes));
  define('counter', 'lwt_peer_transmit_packets_total', 'Client: packets sent to the peer over its direct path.', ['peer'], perPeer((p) => p.tx.packets));
  define('counter', 'lwt_peer_transmit_bytes_total', 'Client: bytes of packets sent to the peer over its direct path.', ['peer'], perPeer((p) => p.tx.bytes));
  define('counter', 'lwt_peer_drops_total', "Client: packets of the peer's direct path dropped, by reason.", ['peer', 'reason'], (s) =>
    (s.peers ?? []).flatMap((p) => DROP_REASONS.flatMap((reason): Sample[] => (p.drops[reason] === undefined ? [] : [[{ peer: p.address, reason }, p.drops[reason]]]))),
  );
  define('gauge', 'lwt_direct_pairs', 'Server: pairs of members introduced for a direct path, by the path their members report: direct (both say so) or relayed (client: 0).', ['state'], (s) =>
    (['direct', 'relayed'] as const).map((state): Sample => [{ state }, (s.pairs ?? []).filter((p) => p.path === state).length]),
  );
  // Trunks between the hubs of a cluster (docs/cluster.md): one series per other hub, none on a hub without a cluster.
  type Trunk = NonNullable<StatusSnapshot['cluster']>['trunks'][number];
  const perTrunk = (value: (t: Trunk) => readonly [Record<string, string>, number][]) => (s: StatusSnapshot): Sample[] => (s.cluster?.trunks ?? []).flatMap((t) => value(t).map(([labels, v]): Sample => [{ hub: t.hub, ...labels }, v]));
  define('gauge', 'lwt_trunk_up', 'Server of a cluster: 1 while the trunk to the other hub is up, else 0.', ['hub'], perTrunk((t) => [[{}, t.state === 'up' ? 1 : 0]]));
  define('counter', 'lwt_trunk_packets_total', 'Server of a cluster: packets over the trunk to the other hub, by direction (in: received from it, out: sent to it).', ['hub', 'dir'], perTrunk((t) => [[{ dir: 'in' }, t.rx.packets], [{ dir: 'out' }, t.tx.packets]]));
  define('counter', 'lwt_trunk_bytes_total', 'Server of a cluster: bytes of packets over the trunk to the other hub, by direction.', ['hub', 'dir'], perTrunk((t) => [[{ dir: 'in' }, t.rx.bytes], [{ dir: 'out' }, t.tx.bytes]]));
  define('counter', 'lwt_trunk_drops_total', "Server of a cluster: packets of the trunk's dropped, by reason (spoofed-source, trunk-transit, isolation, ...).", ['hub', 'reason'], perTrunk((t) => DROP_REASONS.flatMap((reason): [Record<string, string>, number][] => (t.drops[reason] === undefined ? [] : [[{ reason }, t.drops[reason]!]]))));
  define('gauge', 'lwt_cluster_hubs', 'Server of a cluster: the live hubs its view shows (itself included).', [], (s) => (s.cluster === null ? [] : [[{}, s.cluster.hubs.length]]));
  gauge('lwt_pending_connections', 'Server: connections accepted and not admitted yet (TLS handshake or HELLO unfinished).', (s) => s.pendingConnections ?? undefined);
  define('counter', 'lwt_refused_connections_total', 'Server: connections closed at accept because too many waited to be admitted, by reason.', ['reason'], (s) =>
    REFUSAL_REASONS.map((reason) => [{ reason }, s.refusedConnections[reason]]),
  );
  counter('lwt_tun_read_packets_total', 'Packets read from the TUN device.', (s) => s.tun?.read.packets);
  counter('lwt_tun_read_bytes_total', 'Bytes read from the TUN device.', (s) => s.tun?.read.bytes);
  counter('lwt_tun_written_packets_total', 'Packets written to the TUN device.', (s) => s.tun?.written.packets);
  counter('lwt_tun_written_bytes_total', 'Bytes written to the TUN device.', (s) => s.tun?.written.bytes);
  gauge('lwt_tun_queue_packets', 'Packets waiting for the TUN device.', (s) => s.tun?.queued);
}

function send(res: ServerResponse, status: number, contentType: string, body: string, head: boolean): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(head ? undefined : body);
}

/**
 * Starts the status server. `listening` settles once it is bound (or could not be). Requests:
 * GET/HEAD /status, /metrics, /healthz, /readyz; other paths 404, other methods 405.
 */
export function makeStatusServer(options: StatusServerOptions): StatusServer {
  const now = options.now ?? Date.now;
  let state: StatusState = initialStatus({ version: options.version, mode: options.mode, startedAt: now() });
  const current = (): StatusSnapshot =>
    statusSnapshot(state, now(), options.pending === undefined ? {} : { pendingConnections: options.pending() });
  const registry = new Registry();
  makeMetrics(registry, current);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('Allow', 'GET, HEAD');
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed: use GET or HEAD\n', false);
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/status':
        send(res, 200, 'application/json; charset=utf-8', `${JSON.stringify(current(), null, 2)}\n`, head);
        return;
      case '/metrics':
        send(res, 200, registry.contentType, await registry.metrics(), head);
        return;
      case '/healthz':
        send(res, 200, 'text/plain; charset=utf-8', 'ok\n', head);
        return;
      case '/readyz': {
        const ready = state.ready;
        send(res, ready ? 200 : 503, 'text/plain; charset=utf-8', ready ? 'ready\n' : 'not ready\n', head);
        return;
      }
      default:
        send(res, 404, 'text/plain; charset=utf-8', 'not found: try /status, /metrics, /healthz or /readyz\n', head);
    }
  };
  const http = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `${(err as Error).message}\n`, false);
      else res.destroy();
    });
  });
  const text = formatStatusAddr(options.addr);
  let closed = false;

  const listening = (async (): Promise<string> => {
    if (options.addr.kind === 'unix') await removeStaleSocket(options.addr.path);
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      if (options.addr.kind === 'unix') http.listen(options.addr.path, resolve);
      else http.listen({ host: options.addr.host, port: options.addr.port }, resolve);
    }).catch((err: unknown) => {
      const code = (err as NodeJS.ErrnoException).code;
      throw new StatusServerError(text, code, `status_addr: cannot listen on ${text}: ${(code !== undefined ? WHY[code] : undefined) ?? (err as Error).message}`);
    });
    if (closed) {
      http.close();
      return text;
    }
    http.on('error', () => undefined);
    if (options.addr.kind === 'unix') {
      chmodSync(options.addr.path, 0o660);
      return options.addr.path;
    }
    const bound = http.address();
    return typeof bound === 'object' && bound !== null ? formatStatusAddr({ kind: 'tcp', host: options.addr.host, port: bound.port }) : text;
  })();
  // The caller handles the rejection through `listening`; this keeps it from being unhandled.
  listening.catch(() => undefined);

  return {
    listening,
    update(event) {
      state = reduceStatus(state, event, now());
    },
    snapshot: current,
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise<void>((resolve) => {
        if (!http.listening) return resolve();
        http.close(() => resolve());
        http.closeAllConnections();
      });
    },
  };
}
