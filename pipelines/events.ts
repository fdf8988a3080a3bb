// What the pipelines report. Log lines, status and metrics are all derived from these events.
import type { DropCounts } from '../operators/core/packet.js';
import type { HandshakeFailure, KernelRouteEvent, PendingRefusal } from './ports.js';
import type { AnnouncedRoute, RejectReason } from '../operators/core/wire/control.js';
import { formatIpv4, formatPrefix } from '../operators/core/address.js';
import { IdleError } from '../operators/detectIdle.js';
import { FrameError } from '../operators/core/wire/decoder.js';
import type { ClusterHubEvent } from './clusterHub.js';
import type { TrunkStats } from './trunks.js';

/** Why a session ended. */
export type SessionEndReason =
  | 'closed' // the peer ended the connection
  | 'reset' // the connection failed (reset, timed out, ...)
  | 'idle' // the peer was silent for `timeout`
  | 'frame-error' // the peer broke the framing (oversize length)
  | 'rejected' // refused by the hub (see the rejected event)
  | 'replaced' // a newcomer took over this member's address (silent member, or the same identity reconnecting)
  | 'handshake-timeout' // the peer did not identify itself (HELLO) in time
  | 'udp-failed' // the UDP path failed and -transport udp allows no fall back to TCP
  | 'cluster-fenced'; // the hub of a cluster lost its store for longer than its lease (docs/cluster.md)

/** Ends a session on purpose, with a reason; the session's stream turns it into a `left` event. */
export class SessionEnd extends Error {
  override readonly name = 'SessionEnd';
  constructor(
    readonly reason: SessionEndReason,
    readonly detail: string,
    /** What the peer is told (a `replaced` member gets it in a REJECT); `detail` may name others. */
    readonly told: string = detail,
  ) {
    super(`${reason}: ${detail}`);
  }
}

/** A hub's refusal, as the client sees it. Fatal reasons stop the client. */
export class RejectedError extends Error {
  override readonly name = 'RejectedError';
  constructor(
    readonly reason: RejectReason,
    readonly detail: string,
  ) {
    super(`refused by the hub (${reason}): ${detail}`);
  }
}

/** A client that asked for an address heard no WELCOME in time on its first session: the hub is
 * most likely a 0.0.1-era hub, which cannot assign addresses. Fatal: the client needs `-t`. */
export class NoAssignmentError extends Error {
  override readonly name = 'NoAssignmentError';
  constructor(
    readonly remote: string,
    readonly waitedMs: number,
  ) {
    super(
      `the hub ${remote} sent no WELCOME within ${waitedMs / 1000} s, so it cannot assign this client an address ` +
        `(a 0.0.1-era hub never does): start the client with -t ADDRESS/PREFIX`,
    );
  }
}

/** The TUN device refused the address the hub assigned. Fatal. */
export class AddressSetupError extends Error {
  override readonly name = 'AddressSetupError';
  constructor(
    readonly address: string,
    readonly detail: string,
  ) {
    super(`cannot set the assigned address ${address} on the TUN device: ${detail}`);
  }
}

/** Maps whatever ended a session to a reason and a human detail. */
export function endReason(err: unknown): { reason: SessionEndReason; detail: string } {
  if (err instanceof SessionEnd) return { reason: err.reason, detail: err.detail };
  if (err instanceof RejectedError) return { reason: 'rejected', detail: `${err.reason}: ${err.detail}` };
  if (err instanceof IdleError) return { reason: 'idle', detail: err.message };
  if (err instanceof FrameError) return { reason: 'frame-error', detail: err.message };
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  return { reason: 'reset', detail: typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message };
}

/** Drops counted at one place: a member (by address, or by endpoint before it has one), the hub's TUN, ... */
export interface DropsEvent {
  readonly type: 'drops';
  /** Who the drops are attributed to: a member's address, `remote` endpoint, or 'tun'/'hub'. */
  readonly who: string;
  readonly drops: DropCounts;
}

/** How a session's data travels now, as the status and the logs say it. */
export type Transport = 'tcp' | 'udp' | 'tcp (udp blocked)';

/** A session's data moved to another transport (UDP up, UDP silent: back on TCP), and why. */
export interface TransportEvent {
  readonly type: 'transport';
  /** The member's address at the hub; 'hub' at a client. */
  readonly who: string;
  readonly transport: Transport;
  readonly why: string;
}

/** One lease of the hub: who (`token:NAME`, `cert:NAME` or `id:HEX`) has which address. */
export interface LeaseInfo {
  readonly identity: string;
  readonly address: string;
}

/** The LAN routes as this side knows them now (hub: every member's; client: the other members'). */
export interface RoutesEvent {
  readonly type: 'routes';
  readonly routes: readonly LanRoute[];
  /** Client: routes the hub announced that this side did not install, and why (they would cover its underlay or the hub). */
  readonly refused?: readonly RefusedRoute[];
}

/** A LAN route a client refused to install. */
export interface RefusedRoute {
  readonly cidr: string;
  readonly via: string;
  /** Why, e.g. `it covers the hub's address (198.51.100.1:9000)`. */
  readonly why: string;
}

export type { KernelRouteEvent };

/** A LAN route as events, logs and the status show it: `cidr` is reached through the member `via`. */
export interface LanRoute {
  readonly cidr: string;
  readonly via: string;
}

/** The text form of an announced route, for events. */
export function displayRoute(r: AnnouncedRoute): LanRoute {
  return { cidr: formatPrefix(r.cidr), via: formatIpv4(r.via) };
}

/** Traffic counters of one direction. */
export interface Traffic {
  readonly packets: number;
  readonly bytes: number;
}

/** Counters of one session, cumulative since it connected. Times are scheduler.now() values. */
export interface SessionStats {
  readonly id: number;
  readonly remote: string;
  /** The member's tunnel address; undefined while the connection has not joined. */
  readonly address: string | undefined;
  readonly identity?: string | undefined;
  readonly connectedAt: number;
  readonly lastSeen: number;
  /** DATA received from the peer. */
  readonly rx: Traffic;
  /** DATA sent to the peer. */
  readonly tx: Traffic;
  /** Packets waiting in the send queue. */
  readonly queued: number;
  /** Last round-trip time measured with PING/PONG (peers with the `rtt` capability). */
  readonly rttMs: number | undefined;
  /** How its data travels now (`tcp` for sessions without a UDP path). */
  readonly transport: Transport;
  /** The share of rx/tx that went over the UDP data path (sessions that have one). */
  readonly udp?: { readonly rx: Traffic; readonly tx: Traffic };
}

/** Counters of the local TUN device: what was read from it and written to it. */
export interface TunStats {
  readonly read: Traffic;
  readonly written: Traffic;
  readonly queued: number;
}

/** A pair of members the hub introduced for a direct path (docs/direct.md), as events say it. */
export interface PairEvent {
  /** The lower of the two tunnel addresses. */
  readonly a: string;
  readonly b: string;
}

/** One peer of a client's direct paths, as its stats say it (docs/status.md, `peers`). */
export interface PeerStats {
  /** The peer's tunnel address. */
  readonly address: string;
  /** `direct 192.0.2.7:41641`, `relayed (probing)`, `relayed (no direct path)`, `relayed (no direct path: symmetric NAT)`, or `relayed (no direct path: REASON)` for a refused request. */
  readonly path: string;
  /** The endpoint in use while direct. */
  readonly endpoint: string | undefined;
  /** While direct and once measured (PING/PONG over the pair): the latest round-trip time and the smoothed one (7/8 + 1/8), in ms. */
  readonly rtt: { readonly ms: number; readonly smoothedMs: number } | undefined;
  /** Data packets received from and sent to the peer over the pair's channel (keepalives not counted). */
  readonly rx: Traffic;
  readonly tx: Traffic;
  /** What the pair dropped, by reason (its channel's, spoofed-source, too-big, queue-full). */
  readonly drops: DropCounts;
}

/** One hub of the cluster as the view shows it. */
export interface ClusterHubInfo {
  readonly name: string;
  readonly tunnel: string;
  readonly advertise: string;
  /** Members it serves (its `addr/` keys, its own address not counted). */
  readonly members: number;
  /** Their addresses, ascending: the first MAX_LISTED_ADDRESSES of them (`members` says how many there are). */
  readonly addresses: readonly string[];
}

/** The cluster's part of a hub's stats. */
export interface ClusterStatsEvent {
  readonly type: 'cluster-stats';
  /** This hub's name. */
  readonly me: string;
  /** Its standing with the cluster's store: starting, up, unavailable, fenced. */
  readonly standing: string;
  readonly hubs: readonly ClusterHubInfo[];
  readonly trunks: readonly TrunkStats[];
  /** Trunk HELLOs this hub refused since start, by reason. */
  readonly refusedTrunks: Readonly<Partial<Record<RejectReason, number>>>;
}

/** Events of the server (hub) pipeline. */
export type ServerEvent =
  | { readonly type: 'listening'; readonly address: string; readonly tun: string; readonly hub: string }
  /** The hub's UDP socket is bound beside the listener (`address` is ip:port). */
  | { readonly type: 'udp-listening'; readonly address: string }
  /** With `-transport auto`, the UDP socket could not be bound: every member stays on TCP. */
  | { readonly type: 'udp-unavailable'; readonly detail: string }
  /** A connection that failed before it became a session (for example a TLS handshake). */
  | { readonly type: 'handshake-failed'; readonly remote: string; readonly reason: HandshakeFailure; readonly detail: string }
  /** A connection the listener closed at once because too many connections wait to be admitted. */
  | { readonly type: 'refused'; readonly remote: string; readonly reason: PendingRefusal; readonly detail: string }
  | { readonly type: 'connected'; readonly id: number; readonly remote: string }
  | {
      readonly type: 'joined';
      readonly id: number;
      readonly remote: string;
      readonly address: string;
      /** 'hello' for this project's clients, 'data' when learned from a 0.0.1-era client's first packet. */
      readonly via: 'hello' | 'data';
      readonly members: number;
      /** Who authenticated (token name or certificate name), when the hub requires authentication. */
      readonly identity?: string | undefined;
      /** The address was assigned by the hub (the client asked for one). */
      readonly assigned?: boolean;
      /** LANs the member announced and the hub accepted (`a.b.c.d/n`). */
      readonly routes?: readonly string[];
    }
  | {
      readonly type: 'rejected';
      readonly id: number;
      readonly remote: string;
      readonly address: string | undefined;
      readonly reason: RejectReason;
      readonly message: string;
    }
  | {
      readonly type: 'left';
      readonly id: number;
      readonly remote: string;
      /** The member's address, or undefined when the connection never became a member. */
      readonly address: string | undefined;
      readonly reason: SessionEndReason;
      readonly detail: string;
      readonly members: number;
    }
  /** New reloadable settings took effect (`changed` lists the keys whose value changed). */
  | {
      readonly type: 'reloaded';
      readonly changed: readonly ('clientIsolation' | 'maxClients')[];
      readonly clientIsolation: boolean;
      readonly maxClients: number;
    }
  /** Every statsIntervalMs (when set): counters of every session and of the TUN device. */
  | { readonly type: 'stats'; readonly at: number; readonly sessions: readonly SessionStats[]; readonly tun: TunStats }
  /** The lease table: once at start and after every new lease. */
  | { readonly type: 'leases'; readonly leases: readonly LeaseInfo[] }
  /** Two members were introduced for a direct path (a re-introduction too): `by` a member's request or a flow the hub forwarded. */
  | (PairEvent & { readonly type: 'introduced'; readonly by: 'request' | 'flow' })
  /** An introduced pair was withdrawn: a member left, was replaced, or isolation separates them. */
  | (PairEvent & { readonly type: 'withdrawn'; readonly reason: 'left' | 'replaced' | 'isolation' })
  /** The path the hub shows for an introduced pair changed, as its members report it: direct (both say so) or relayed. */
  | (PairEvent & { readonly type: 'pair-path'; readonly path: 'direct' | 'relayed' })
  /** The lease table could not be saved (the lease stays in memory; the next new lease tries again). */
  | { readonly type: 'lease-error'; readonly detail: string }
  /** The hub's life in its cluster (docs/cluster.md): joined, unavailable, back, fenced, its name taken. */
  | ClusterHubEvent
  /** A key of a member that left could not be deleted from the cluster's store (it goes with the hub's lease). */
  | { readonly type: 'cluster-release-failed'; readonly address: string; readonly key: string; readonly detail: string }
  /** A trunk to another hub of the cluster is up (docs/cluster.md, "Trunks"): `dialed` by this hub or `accepted` from the other. */
  | { readonly type: 'trunk-up'; readonly hub: string; readonly side: 'dialed' | 'accepted'; readonly remote: string }
  /** A dialed trunk ended, and why (it is dialed again while the other hub lives). */
  | { readonly type: 'trunk-down'; readonly hub: string; readonly side: 'dialed' | 'accepted'; readonly reason: SessionEndReason; readonly detail: string }
  /** A dialed trunk is tried again after a backoff. */
  | { readonly type: 'trunk-retrying'; readonly hub: string; readonly attempt: number; readonly delayMs: number; readonly cause: string }
  /** Every statsIntervalMs on a hub of a cluster: the hubs of the view and the trunks with their counters (docs/status.md, `cluster`). */
  | ClusterStatsEvent
  | RoutesEvent
  | KernelRouteEvent
  | TransportEvent
  | DropsEvent;

/** Events of the client pipeline. */
export type ClientEvent =
  | { readonly type: 'connecting'; readonly remote: string }
  | { readonly type: 'connected'; readonly id: number; readonly remote: string }
  | {
      readonly type: 'welcomed';
      readonly address: string;
      readonly prefix: number;
      readonly hub: string;
      /** The hub assigned the address (the client ran without -t). */
      readonly assigned?: boolean;
    }
  /** First frame from a hub that sent no WELCOME (a 0.0.1-era hub): the session works. */
  | { readonly type: 'established'; readonly remote: string }
  | { readonly type: 'rejected'; readonly reason: RejectReason; readonly message: string }
  | { readonly type: 'disconnected'; readonly remote: string; readonly reason: SessionEndReason; readonly detail: string }
  | { readonly type: 'retrying'; readonly attempt: number; readonly delayMs: number; readonly cause: string }
  /** The hub `from` did not take the client (`cause`): it tries `to`, the next of its list, at once (docs/cluster.md, "Failover"). */
  | { readonly type: 'next-hub'; readonly from: string; readonly to: string; readonly cause: string }
  /** Every statsIntervalMs (when set): the current session's counters (if connected), the TUN device's, and the peers of its direct paths (pairs and refusals). */
  | { readonly type: 'stats'; readonly at: number; readonly session: SessionStats | undefined; readonly tun: TunStats; readonly peers?: readonly PeerStats[] }
  /** A direct path to a peer changed (`path` as PeerStats says it; `closed` when the pair ended), and why. */
  | { readonly type: 'direct-path'; readonly peer: string; readonly path: string; readonly why: string; readonly closed?: boolean }
  /** With `-transport auto`, the hub's UDP offer could not be taken up (the session stays on TCP), and why. */
  | { readonly type: 'udp-unavailable'; readonly detail: string }
  | RoutesEvent
  | KernelRouteEvent
  | TransportEvent
  | DropsEvent;
