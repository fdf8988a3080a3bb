// The status model: a pure fold of the pipelines' events into what /status and /metrics show.
// No I/O and no clock: the caller passes the time each event was seen (`now`), so the same events
// and times always give the same snapshot. The status server (src/status/server.ts) is the driver.
import type { DropCounts, DropReason } from '../operators/core/packet.js';
import { PersistentMap } from '../operators/core/persistentMap.js';
import type { ClientEvent, ClusterStatsEvent, LanRoute, LeaseInfo, PeerStats, ServerEvent, SessionStats, Transport, TunStats } from './events.js';
import type { PendingRefusal } from './ports.js';

/** Every drop reason, in a fixed order: the only values of the `reason` label of the metrics. */
export const DROP_REASONS: readonly DropReason[] = Object.keys({
  'no-route': true,
  isolation: true,
  'spoofed-source': true,
  'queue-full': true,
  'queue-delay': true,
  'queue-age': true,
  'not-ipv4': true,
  'malformed-ipv4': true,
  'too-big': true,
  'gso-too-small': true,
  unregistered: true,
  'not-connected': true,
  broadcast: true,
  'broadcast-limit': true,
  'unknown-type': true,
  'empty-frame': true,
  'unexpected-control': true,
  'tun-write-error': true,
  'malformed-super': true,
  'bad-tag': true,
  replay: true,
  'unknown-session': true,
  'malformed-datagram': true,
  'udp-send-error': true,
  'trunk-down': true,
  'trunk-transit': true,
} satisfies Record<DropReason, true>) as DropReason[];

/** Every reason a listener refuses a connection at accept, in a fixed order: the `reason` label of lwt_refused_connections_total. */
export const REFUSAL_REASONS: readonly PendingRefusal[] = Object.keys({
  'pending-limit': true,
  'pending-source-limit': true,
} satisfies Record<PendingRefusal, true>) as PendingRefusal[];

/** Connections a listener refused at accept, by reason (reasons never seen are absent). */
export type RefusalCounts = Partial<Record<PendingRefusal, number>>;

/** The version of the JSON document of GET /status; bumped only on incompatible changes. */
export const STATUS_SCHEMA = 1 as const;

export type StatusMode = 'server' | 'client';

/** What the model starts from. `startedAt` is a time in the same clock as the `now` of updates. */
export interface StatusOptions {
  readonly version: string;
  readonly mode: StatusMode;
  readonly startedAt: number;
}

/** Traffic of one direction, as counted since the session connected. */
export interface TrafficCount {
  readonly packets: number;
  readonly bytes: number;
}

/** One member (server) or the session to the hub (client), as the model keeps it. */
export interface MemberState {
  readonly id: number;
  readonly address: string;
  readonly identity: string | undefined;
  readonly remote: string;
  readonly connectedAt: number;
  readonly lastSeen: number;
  readonly rx: TrafficCount;
  readonly tx: TrafficCount;
  readonly queued: number;
  readonly rttMs: number | undefined;
  /** How its data travels now. */
  readonly transport: Transport;
  /** The share of rx/tx over UDP (sessions with a UDP path). */
  readonly udp: { readonly rx: TrafficCount; readonly tx: TrafficCount } | undefined;
  readonly drops: DropCounts;
}

/** The model's state. Treat it as immutable: `reduceStatus` returns a new one when anything changed. */
export interface StatusState {
  readonly options: StatusOptions;
  readonly ready: boolean;
  /** This side's tunnel address with its prefix, once known (hub: listening; client: welcomed). */
  readonly tunnelAddress: string | undefined;
  /** Server: the listening socket's address. Client: the hub's endpoint being dialed or connected. */
  readonly listening: string | undefined;
  readonly remote: string | undefined;
  /** Members by session id (a client has at most one: its session to the hub); persistent, so a join or a leave copies a few trie nodes, not every member. */
  readonly members: PersistentMap<number, MemberState>;
  /** Client: the session that connected but was not yet welcomed. */
  readonly pending: { readonly id: number; readonly remote: string } | undefined;
  readonly drops: DropCounts;
  /** Server: connections the listener refused at accept (too many waiting to be admitted), since start. */
  readonly refused: RefusalCounts;
  readonly tun: TunStats | undefined;
  /** Server: the lease table. */
  readonly leases: readonly LeaseInfo[];
  /** Server: every member's LAN routes; client: the other members' routes as the hub sent them. */
  readonly routes: readonly LanRoute[];
  /** Client: the peers of its direct paths (pairs and refusals) as the last stats and path changes said. */
  readonly peers: readonly PeerStats[];
  /** Server: the introduced pairs by `a b`, with when (the `now` of the event) and their path as the members report it. */
  readonly pairs: ReadonlyMap<string, { readonly a: string; readonly b: string; readonly since: number; readonly path: 'direct' | 'relayed' }>;
  /** Server of a cluster: the latest cluster-stats (hubs, trunks); undefined otherwise. */
  readonly cluster: ClusterStatsEvent | undefined;
  readonly lastEventAt: number;
}

/** The state before any event. */
export function initialStatus(options: StatusOptions): StatusState {
  return {
    options,
    ready: false,
    tunnelAddress: undefined,
    listening: undefined,
    remote: undefined,
    members: PersistentMap.empty(),
    pending: undefined,
    drops: {},
    refused: {},
    tun: undefined,
    leases: [],
    routes: [],
    peers: [],
    pairs: new Map(),
    cluster: undefined,
    lastEventAt: options.startedAt,
  };
}

const ZERO: TrafficCount = { packets: 0, bytes: 0 };

function addCounts(into: DropCounts, more: DropCounts): DropCounts {
  const out: DropCounts = { ...into };
  for (const reason of Object.keys(more) as DropReason[]) {
    const n = more[reason] ?? 0;
    if (n > 0) out[reason] = (out[reason] ?? 0) + n;
  }
  return out;
}

function newMember(id: number, address: string, remote: string, identity: string | undefined, now: number): MemberState {
  return { id, address, identity, remote, connectedAt: now, lastSeen: now, rx: ZERO, tx: ZERO, queued: 0, rttMs: undefined, transport: 'tcp', udp: undefined, drops: {} };
}

function withStats(m: MemberState, s: SessionStats): MemberState {
  return {
    ...m,
    remote: s.remote,
    identity: m.identity ?? s.identity,
    connectedAt: s.connectedAt,
    lastSeen: s.lastSeen,
    rx: { packets: s.rx.packets, bytes: s.rx.bytes },
    tx: { packets: s.tx.packets, bytes: s.tx.bytes },
    queued: s.queued,
    rttMs: s.rttMs,
    transport: s.transport,
    udp: s.udp === undefined ? undefined : { rx: { ...s.udp.rx }, tx: { ...s.udp.tx } },
  };
}

function setMember(members: PersistentMap<number, MemberState>, m: MemberState): PersistentMap<number, MemberState> {
  return members.set(m.id, m);
}

/** The member a drops event's `who` names: a member's address on the hub, 'hub' on a client. */
function dropTarget(state: StatusState, who: string): MemberState | undefined {
  if (state.options.mode === 'client') return who === 'hub' ? [...state.members.values()][0] : undefined;
  for (const m of state.members.values()) if (m.address === who) return m;
  return undefined;
}

/**
 * Folds one event, seen at `now`, into the state. Unknown or irrelevant events return the state
 * unchanged. Never throws.
 */
export function reduceStatus(state: StatusState, event: ServerEvent | ClientEvent, now: number): StatusState {
  const s: StatusState = { ...state, lastEventAt: Math.max(state.lastEventAt, now) };
  switch (event.type) {
    case 'listening':
      return { ...s, ready: true, listening: event.address, tunnelAddress: event.hub };
    case 'joined':
      return { ...s, members: setMember(s.members, newMember(event.id, event.address, event.remote, event.identity, now)) };
    case 'left':
      return s.members.has(event.id) ? { ...s, members: s.members.delete(event.id) } : s;
    case 'connecting':
      return { ...s, remote: event.remote };
    case 'connected':
      return s.options.mode === 'client' ? { ...s, remote: event.remote, pending: { id: event.id, remote: event.remote } } : s;
    case 'welcomed': {
      const id = s.pending?.id ?? 0;
      const hub = event.hub.split('/')[0] ?? event.hub;
      return {
        ...s,
        ready: true,
        tunnelAddress: `${event.address}/${event.prefix}`,
        members: PersistentMap.of([[id, newMember(id, hub, s.pending?.remote ?? s.remote ?? '', undefined, now)]]),
      };
    }
    case 'established': {
      const id = s.pending?.id ?? 0;
      return { ...s, ready: true, members: PersistentMap.of([[id, newMember(id, 'hub', event.remote, undefined, now)]]) };
    }
    case 'disconnected':
      return { ...s, ready: false, pending: undefined, members: PersistentMap.empty(), peers: [] };
    case 'stats': {
      let members = s.members;
      const sessions = 'sessions' in event ? event.sessions : event.session === undefined ? [] : [event.session];
      for (const session of sessions) {
        const known = members.get(session.id);
        if (known !== undefined) members = members.set(session.id, withStats(known, session));
        else if (s.options.mode === 'server' && session.address !== undefined) {
          // Joined before the status model started watching: take it from the counters.
          members = members.set(session.id, withStats(newMember(session.id, session.address, session.remote, session.identity, now), session));
        }
      }
      if (s.options.mode === 'client' && event.type === 'stats' && 'session' in event && event.session === undefined) members = PersistentMap.empty();
      const peers = 'session' in event ? (event.peers ?? []) : s.peers;
      return { ...s, members, tun: event.tun, peers };
    }
    case 'refused':
      return { ...s, refused: { ...s.refused, [event.reason]: (s.refused[event.reason] ?? 0) + 1 } };
    case 'leases':
      return { ...s, leases: event.leases };
    case 'routes':
      return { ...s, routes: event.routes };
    case 'transport': {
      const target = dropTarget(s, event.who);
      return target === undefined ? s : { ...s, members: setMember(s.members, { ...target, transport: event.transport }) };
    }
    case 'introduced': {
      const pairs = new Map(s.pairs);
      pairs.set(`${event.a} ${event.b}`, { a: event.a, b: event.b, since: now, path: 'relayed' });
      return { ...s, pairs };
    }
    case 'pair-path': {
      const key = `${event.a} ${event.b}`;
      const known = s.pairs.get(key);
      if (known === undefined) return s;
      const pairs = new Map(s.pairs);
      pairs.set(key, { ...known, path: event.path });
      return { ...s, pairs };
    }
    case 'withdrawn': {
      const pairs = new Map(s.pairs);
      pairs.delete(`${event.a} ${event.b}`);
      return { ...s, pairs };
    }
    case 'direct-path': {
      // A path's change shows at once; its counters come with the next stats.
      const others = s.peers.filter((p) => p.address !== event.peer);
      if (event.closed === true) return { ...s, peers: others };
      const known = s.peers.find((p) => p.address === event.peer);
      const endpoint = event.path.startsWith('direct ') ? event.path.slice('direct '.length) : undefined;
      // A round trip belongs to the direct path it was measured on: gone with it, measured afresh on the next.
      const peer: PeerStats = known === undefined ? { address: event.peer, path: event.path, endpoint, rtt: undefined, rx: ZERO, tx: ZERO, drops: {} } : { ...known, path: event.path, endpoint, rtt: endpoint === undefined ? undefined : known.rtt };
      return { ...s, peers: [...others, peer] };
    }
    case 'cluster-stats':
      return { ...s, cluster: event };
    case 'drops': {
      const target = dropTarget(s, event.who);
      const drops = addCounts(s.drops, event.drops);
      return target === undefined
        ? { ...s, drops }
        : { ...s, drops, members: setMember(s.members, { ...target, drops: addCounts(target.drops, event.drops) }) };
    }
    default:
      return s;
  }
}

/** One member in the JSON document. Times are ISO 8601 strings; RTT in milliseconds. */
export interface MemberSnapshot {
  readonly address: string;
  readonly identity: string | null;
  readonly remote: string;
  readonly connectedSince: string;
  readonly lastSeen: string;
  readonly rx: TrafficCount;
  readonly tx: TrafficCount;
  readonly queued: number;
  readonly rttMs: number | null;
  /** `udp`, `tcp`, or `tcp (udp blocked)` (a UDP path that went silent or never got through). */
  readonly transport: Transport;
  /** The share of rx/tx that went over UDP; null without a UDP path. */
  readonly udp: { readonly rx: TrafficCount; readonly tx: TrafficCount } | null;
  readonly drops: DropCounts;
}

/** One peer of a client's direct paths in the JSON document (docs/status.md). */
export interface PeerSnapshot {
  readonly address: string;
  /** `direct 192.0.2.7:41641`, `relayed (probing)`, `relayed (no direct path)`, `relayed (no direct path: symmetric NAT)`, `relayed (no direct path: REASON)`. */
  readonly path: string;
  /** The endpoint in use while direct, else null. */
  readonly endpoint: string | null;
  /** While direct, the latest round-trip time over the direct path (PING/PONG), in ms; null when relayed or not measured yet. */
  readonly rttMs: number | null;
  /** The same smoothed (7/8 of the last value + 1/8 of each new sample, from the first sample of the direct path); null likewise. */
  readonly smoothedRttMs: number | null;
  readonly rx: TrafficCount;
  readonly tx: TrafficCount;
  readonly drops: DropCounts;
}

/** One pair of members the hub introduced. */
export interface PairSnapshot {
  readonly a: string;
  readonly b: string;
  readonly since: string;
  /** `direct` while both members report their path to each other direct (DIRECT-PATH), else `relayed`. */
  readonly path: 'direct' | 'relayed';
}

/** One lease in the JSON document; `active` while a member holds the address. */
export interface LeaseSnapshot {
  readonly identity: string;
  readonly address: string;
  readonly active: boolean;
}

/** The JSON document of GET /status (schema 1, documented in docs/status.md). */
export interface StatusSnapshot {
  readonly schema: typeof STATUS_SCHEMA;
  readonly version: string;
  readonly mode: StatusMode;
  readonly ready: boolean;
  readonly now: string;
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  readonly tunnelAddress: string | null;
  readonly listening: string | null;
  readonly remote: string | null;
  readonly members: readonly MemberSnapshot[];
  readonly drops: DropCounts;
  /** Server: connections accepted and not admitted yet, now; null on a client or when the listener does not count them. */
  readonly pendingConnections: number | null;
  /** Server: connections refused at accept, by reason, since start (every reason, 0 included); client: {}. */
  readonly refusedConnections: RefusalCounts;
  readonly tun: TunStats | null;
  readonly leases: readonly LeaseSnapshot[];
  readonly routes: readonly LanRoute[];
  /** Client: each peer it has a direct-path pair with, and each refusal it holds, in address order; server: []. */
  readonly peers: readonly PeerSnapshot[];
  /** Server: the pairs of members introduced for a direct path, in address order; client: []. */
  readonly pairs: readonly PairSnapshot[];
  /** Server of a cluster (docs/cluster.md): this hub, the hubs of the view and the trunks; null otherwise. */
  readonly cluster: ClusterSnapshot | null;
}

/** One trunk in the JSON document (docs/status.md, `cluster.trunks`). */
export interface TrunkSnapshot {
  readonly hub: string;
  readonly side: 'dialed' | 'accepted';
  readonly state: 'connecting' | 'up' | 'retrying';
  readonly peer: string;
  readonly since: string;
  readonly rx: TrafficCount;
  readonly tx: TrafficCount;
  readonly drops: DropCounts;
}

/** The cluster's section of a hub's status. */
export interface ClusterSnapshot {
  readonly hub: string;
  readonly standing: string;
  readonly hubs: readonly { readonly name: string; readonly tunnel: string; readonly advertise: string; readonly members: number; readonly addresses: readonly string[] }[];
  readonly trunks: readonly TrunkSnapshot[];
  readonly refusedTrunks: Readonly<Partial<Record<string, number>>>;
}

/** Figures the status server reads from drivers when it makes a snapshot (not events). */
export interface StatusGauges {
  /** ListenerPort.pending(): connections accepted and not admitted yet. */
  readonly pendingConnections?: number;
}

const iso = (ms: number): string => new Date(ms).toISOString();
/** A time in ms to the microsecond (what the clock resolves, give or take), or null. */
const microseconds = (ms: number | undefined): number | null => (ms === undefined ? null : Math.round(ms * 1000) / 1000);

/** Orders members by address numerically ("10.0.0.9" before "10.0.0.10"). */
const addressKey = (a: string): string =>
  a
    .split('.')
    .map((p) => p.padStart(3, '0'))
    .join('.');

/** The JSON document for the state at time `now`, with the gauges read at that time. */
export function statusSnapshot(state: StatusState, now: number, gauges: StatusGauges = {}): StatusSnapshot {
  const active = new Set([...state.members.values()].map((m) => m.address));
  const members = [...state.members.values()]
    .sort((a, b) => (addressKey(a.address) < addressKey(b.address) ? -1 : addressKey(a.address) > addressKey(b.address) ? 1 : a.id - b.id))
    .map(
      (m): MemberSnapshot => ({
        address: m.address,
        identity: m.identity ?? null,
        remote: m.remote,
        connectedSince: iso(m.connectedAt),
        lastSeen: iso(m.lastSeen),
        rx: m.rx,
        tx: m.tx,
        queued: m.queued,
        rttMs: m.rttMs ?? null,
        transport: m.transport,
        udp: m.udp ?? null,
        drops: m.drops,
      }),
    );
  return {
    schema: STATUS_SCHEMA,
    version: state.options.version,
    mode: state.options.mode,
    ready: state.ready,
    now: iso(now),
    startedAt: iso(state.options.startedAt),
    uptimeSeconds: Math.max(0, Math.floor((now - state.options.startedAt) / 1000)),
    tunnelAddress: state.tunnelAddress ?? null,
    listening: state.listening ?? null,
    remote: state.remote ?? null,
    members,
    drops: state.drops,
    pendingConnections: state.options.mode === 'server' ? (gauges.pendingConnections ?? null) : null,
    refusedConnections: state.options.mode === 'server' ? Object.fromEntries(REFUSAL_REASONS.map((r) => [r, state.refused[r] ?? 0])) : {},
    tun: state.tun ?? null,
    leases: [...state.leases]
      .sort((a, b) => (addressKey(a.address) < addressKey(b.address) ? -1 : addressKey(a.address) > addressKey(b.address) ? 1 : 0))
      .map((l) => ({ identity: l.identity, address: l.address, active: active.has(l.address) })),
    routes: state.routes,
    peers: [...state.peers]
      .sort((a, b) => (addressKey(a.address) < addressKey(b.address) ? -1 : 1))
      .map((p) => ({ address: p.address, path: p.path, endpoint: p.endpoint ?? null, rttMs: microseconds(p.rtt?.ms), smoothedRttMs: microseconds(p.rtt?.smoothedMs), rx: p.rx, tx: p.tx, drops: p.drops })),
    pairs: [...state.pairs.values()]
      .sort((x, y) => (addressKey(x.a) !== addressKey(y.a) ? (addressKey(x.a) < addressKey(y.a) ? -1 : 1) : addressKey(x.b) < addressKey(y.b) ? -1 : 1))
      .map((p) => ({ a: p.a, b: p.b, since: iso(p.since), path: p.path })),
    cluster:
      state.cluster === undefined
        ? null
        : {
            hub: state.cluster.me,
            standing: state.cluster.standing,
            hubs: state.cluster.hubs,
            trunks: state.cluster.trunks.map((t) => ({ hub: t.hub, side: t.side, state: t.state, peer: t.peer, since: iso(t.since), rx: t.rx, tx: t.tx, drops: t.drops })),
            refusedTrunks: state.cluster.refusedTrunks,
          },
  };
}
