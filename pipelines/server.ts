// The hub: accepts connections as sessions, keeps the route table of members, forwards packets
// member→member (unless isolated), member→hub TUN, hub TUN→member.
import {
  EMPTY,
  Observable,
  Subject,
  asyncScheduler,
  catchError,
  concatWith,
  connect,
  defer,
  filter,
  finalize,
  map,
  merge,
  mergeMap,
  of,
  tap,
  throwError,
  timer,
  type SchedulerLike,
} from 'rxjs';
import { boundedQueue } from '../operators/boundedQueue.js';
import { isolate } from '../operators/isolate.js';
import { learnSource } from '../operators/learnSource.js';
import { replicate, type ReplicateInput, type ReplicatedBatch } from '../operators/replicate.js';
import { route, type RouteDecision } from '../operators/route.js';
import { RouteTable } from '../operators/core/routeTable.js';
import { addDrops, type DropCounts, type DropReason, type Inbound, type PacketBatch, type Routed, type RoutedBatch } from '../operators/core/packet.js';
import { fitPackets } from '../operators/core/wire/fragment.js';
import {
  CAPABILITIES,
  GSO_CAPABILITY,
  HelloCodec,
  MAX_ANNOUNCED_ROUTES,
  PROTOCOL_VERSION,
  decodeControl,
  encodeControl,
  ControlDecodeError,
  type LanRoute,
  type RejectReason,
} from '../operators/core/wire/control.js';
import { FrameType, encodeFrame, type PacketEncoding } from '../operators/core/wire/frames.js';
import { ipv4Destination, ipv4Source } from '../operators/core/wire/ipv4.js';
import { AddressAllocator, type LeaseTable } from './allocator.js';
import { SessionEnd, endReason, type LeaseInfo, type ServerEvent, type SessionStats } from './events.js';
import type { Authenticator, ConnectionPort, HostNetworkPort, LeaseStore, ListenerPort, RoutesPort, TunPort } from './ports.js';
import { RESERVED_RANGES, endpointGuard, routeHazard, type GuardedPrefix } from './routeGuard.js';
import { REPLACE_WINDOW_MS, ReplacementTracker } from './replacements.js';
import { compatEncoding, count, counter, countingSink, encodePing, frameSink, negotiate, inboundItems, reportingRejections, rttOf, sendKeepalive, statsTicks, tunStats } from './session.js';
import type { ServerSettings } from './settings.js';
import { broadcastAddress, formatIpv4, formatPrefix, normalizePrefix, parseIpv4, parsePrefix, prefixContains, prefixesOverlap, prefixHas, prefixMask, type Ipv4Prefix } from '../operators/core/address.js';

/** What the hub is built from. */
export interface ServerPorts {
  readonly tun: TunPort;
  readonly listener: ListenerPort;
  /** Time source for keepalives and idle detection; asyncScheduler by default. */
  readonly scheduler?: SchedulerLike;
  /** When present, every client must authenticate in its HELLO (2.x clients cannot join). */
  readonly authenticator?: Authenticator;
  /** New values for the settings that can change without dropping sessions (for example on SIGHUP). */
  readonly reload$?: Observable<ReloadableSettings>;
  /** Where leases survive restarts; without it they last as long as the subscription. */
  readonly leases?: LeaseStore;
  /** The hub host's kernel routes to the members' LANs through its TUN device (optional). */
  readonly routes?: RoutesPort;
  /** The hub host's underlay, which no announced LAN may cover (its addresses, networks, gateways); without it only the special ranges and the members' endpoints are guarded. */
  readonly hostNetwork?: HostNetworkPort;
}

/** Settings a running hub can take on live. */
export type ReloadableSettings = Pick<ServerSettings, 'clientIsolation' | 'maxClients'>;

/** Without authentication, a connection has the keepalive interval plus this long to send its HELLO or first packet. */
export const ADMISSION_MARGIN_MS = 5000;
/** Source addresses remembered for failed authentications (oldest forgotten first). */
const MAX_PENALTIES = 4096;
/** The first failure blocks a source for this long; each further failure doubles it up to the max. */
const PENALTY_BASE_MS = 1000;
const PENALTY_MAX_MS = 60_000;
/**
 * LAN routes the hub holds in total: the whole set (52 bytes per route at most) must fit one ROUTES
 * frame and one WELCOME within the 2.x body limit of 1496 bytes.
 */
export const MAX_LAN_ROUTES = 24;

/** A registered client: the route table maps its tunnel address to this. */
interface Member {
  readonly id: number;
  readonly remote: string;
  readonly address: number;
  readonly addressText: string;
  /** Who authenticated, when the hub requires authentication. */
  readonly identity: string | undefined;
  /** The identity is this client's alone: a new session of it replaces this one at once. */
  readonly exclusive: boolean;
  /** The lease identity (`token:NAME`, `cert:NAME`, `id:HEX`): a new session of it replaces this one at once. */
  readonly lease: string | undefined;
  /** LANs behind this member, accepted by the hub (in its route table while the member is). */
  readonly routes: readonly Ipv4Prefix[];
  /** It takes ROUTES frames. */
  readonly takesRoutes: boolean;
  /** Writes a control frame to the member's connection (unless it is busy). */
  readonly send: (frame: Uint8Array) => void;
  /** Packets bound for this member (into its bounded send queue). */
  readonly outbound: Subject<PacketBatch>;
  /** How the member takes packets (negotiated in its HELLO): the largest plain packet it accepts. */
  readonly encoding: PacketEncoding;
  /** scheduler.now() of the last chunk received. */
  lastSeen: number;
  /** Ends the member's session with a reason. */
  readonly end: (err: SessionEnd) => void;
}

/** The hub's own TUN device as a routing target. */
const HUB = Object.freeze({ hub: true });
/** Broadcast or allowed multicast: handed to the sender's replicate stage, never delivered as is. */
const REPLICATE = Object.freeze({ replicate: true });
type Target = Member | typeof HUB;
type Decision = Target | typeof REPLICATE;

/** The identity a lease is kept under, or undefined when the client has none. */
function leaseKey(decision: { readonly identity: string | undefined; readonly exclusive: boolean; readonly source?: 'token' | 'certificate' } | undefined, id: string | undefined): string | undefined {
  if (decision !== undefined && decision.identity !== undefined && decision.exclusive) return `${decision.source === 'certificate' ? 'cert' : 'token'}:${decision.identity}`;
  return id === undefined ? undefined : `id:${id}`;
}

/** Moves a routed batch's REPLICATE share (if any) out of it and into `into`. */
function takeReplicable(rb: RoutedBatch<Decision>, sender: Target | undefined, into: Subject<ReplicateInput<Target>>): RoutedBatch<Target> {
  const routes = rb.routes;
  for (let i = 0; i < routes.length; i++) {
    if (routes[i]!.target !== REPLICATE) continue;
    const [r] = routes.splice(i, 1);
    if (sender !== undefined) into.next({ sender, packets: r!.packets });
    break;
  }
  return rb as RoutedBatch<Target>;
}

/** Refusal: written to the peer as REJECT (with `detail`), then the session ends; the hub's own event carries `logDetail` when the peer must not see everything. */
class Refusal extends Error {
  override readonly name = 'Refusal';
  constructor(
    readonly reason: RejectReason,
    readonly detail: string,
    readonly address: string | undefined,
    readonly logDetail: string = detail,
  ) {
    super(detail);
  }
}

/**
 * The hub pipeline. Subscribing opens the listener and starts forwarding; the output reports
 * listening, connected, joined, rejected, left and drops events. Per-client failures end only that
 * client's session (as a `left` event); the output errors only when the listener or the TUN device
 * fails. Unsubscribing closes every session and the listener and stops reading the TUN device.
 */
export function serverPipeline(settings: ServerSettings, ports: ServerPorts): Observable<ServerEvent> {
  return defer(() => {
    const scheduler = ports.scheduler ?? asyncScheduler;
    const hubAddress = settings.tunnel.address;
    const prefix = settings.tunnel.prefix;
    const broadcast = broadcastAddress(settings.tunnel);
    const network = (hubAddress & prefixMask(prefix)) >>> 0;
    /** The route table: tunnel address → member. */
    const members = new Map<number, Member>();
    /** LANs behind members, longest prefix first; consulted only when `members` has no /32. */
    const lans = new RouteTable<Member>();
    const authenticator = ports.authenticator;
    const subnet: Ipv4Prefix = { address: network, prefix };
    const allowRoutes = settings.allowRoutes ?? [];
    const bcast = settings.broadcast;
    const groups = new Set(bcast?.groups ?? []);
    const replicable = (dst: number): boolean => bcast !== undefined && (dst === 0xffffffff || groups.has(dst));

    // Leases: the stored table, minus leases on addresses pinned to somebody else (pins win).
    const reserved = authenticator?.reserved ?? new Map<number, string>();
    const stored: LeaseTable = ports.leases?.initial ?? {};
    const initialLeases: LeaseTable = Object.fromEntries(
      Object.entries(stored).filter(([who, a]) => {
        const owner = reserved.get(a);
        return owner === undefined || who === `token:${owner}`;
      }),
    );
    const allocator = new AddressAllocator({ network, prefix, hub: hubAddress, ...(settings.pool === undefined ? {} : { pool: settings.pool }) }, initialLeases);
    // A pinned address is never handed to anyone else: it counts as in use for good.
    for (const a of reserved.keys()) allocator.markInUse(a);
    const leaseInfo = (): LeaseInfo[] => Object.entries(allocator.leases()).map(([identity, a]) => ({ identity, address: formatIpv4(a) }));
    /** Control-path events raised outside a session's own stream (lease saves, route changes). */
    const hubEvents$ = new Subject<ServerEvent>();
    const saveLeases = (): void => {
      const result = ports.leases?.save(allocator.leases());
      if (result !== undefined && !result.ok) hubEvents$.next({ type: 'lease-error', detail: result.detail });
      hubEvents$.next({ type: 'leases', leases: leaseInfo() });
    };

    /** Every LAN route as the hub announces it. */
    const lanRoutes = (): LanRoute[] => lans.entries().map((e) => ({ cidr: formatPrefix(e.prefix), via: e.target.addressText }));
    /** The routes a member is told about: everyone's but its own. */
    const routesFor = (m: Member | undefined): LanRoute[] => lans.entries().filter((e) => e.target !== m).map((e) => ({ cidr: formatPrefix(e.prefix), via: e.target.addressText }));
    /** The LAN routes changed: tell the capable members, the hub's kernel and the status. */
    const routesChanged = (except?: Member): void => {
      for (const m of members.values()) if (m.takesRoutes && m !== except) m.send(encodeControl(FrameType.Routes, { version: PROTOCOL_VERSION, routes: routesFor(m) }));
      ports.routes?.set(lans.entries().map((e) => e.prefix));
      hubEvents$.next({ type: 'routes', routes: lanRoutes() });
    };
    /** The live values of the reloadable settings. */
    const live: { -readonly [K in keyof ReloadableSettings]: ReloadableSettings[K] } = {
      clientIsolation: settings.clientIsolation,
      maxClients: settings.maxClients,
    };
    /** Identities that replace their own live sessions (clones are refused after a few). */
    const replacements = new ReplacementTracker();
    /** Failed authentications per source address: the source is refused until `until`. */
    const penalties = new Map<string, { failures: number; until: number }>();
    const penalize = (host: string): void => {
      const p = penalties.get(host);
      const failures = (p?.failures ?? 0) + 1;
      penalties.delete(host);
      if (penalties.size >= MAX_PENALTIES) penalties.delete(penalties.keys().next().value!);
      penalties.set(host, { failures, until: scheduler.now() + Math.min(PENALTY_MAX_MS, PENALTY_BASE_MS * 2 ** (failures - 1)) });
    };
    const isPeer = (t: Target): boolean => t !== HUB;
    /**
     * How long a connection may take to become a member: the HELLO deadline with authentication;
     * without, a 0.0.1-era client (which sends nothing before its first packet or keepalive) gets the
     * keepalive interval plus a margin to send its first packet.
     */
    const admissionMs = authenticator === undefined ? settings.keepaliveMs + ADMISSION_MARGIN_MS : settings.helloTimeoutMs;
    /** The hub's TUN device offloads segmentation: members that offer `gso` may send and get SUPER frames. */
    const offload = ports.tun.offload === true;
    const caps = offload ? [...CAPABILITIES, GSO_CAPABILITY] : [...CAPABILITIES];

    /** Where a packet from a member goes: the O(1) member lookup first, longest-prefix match only on a miss. */
    const fromMember = (dst: number): Decision | DropReason => {
      const m = members.get(dst);
      if (m !== undefined) return m;
      if (dst === hubAddress) return HUB;
      if (!prefixHas(settings.tunnel, dst)) {
        if (replicable(dst)) return REPLICATE;
        // A LAN behind a member, else beyond the virtual LAN: the hub's kernel decides.
        return lans.size === 0 ? HUB : (lans.lookup(dst) ?? HUB);
      }
      if (dst === broadcast && bcast !== undefined) return REPLICATE;
      return dst === broadcast || dst === network ? 'broadcast' : 'no-route';
    };
    /** Where a packet read from the hub's TUN goes. */
    const fromHub: RouteDecision<Member | typeof REPLICATE> = (dst) => {
      const m = members.get(dst);
      if (m !== undefined) return m;
      if (bcast !== undefined && (dst === broadcast || replicable(dst))) return REPLICATE;
      return (lans.size === 0 ? undefined : lans.lookup(dst)) ?? 'no-route';
    };
    /** Replication of broadcasts and allowed multicast, one token bucket per `replicate` (so per sender). */
    const replicating = (input$: Subject<ReplicateInput<Target>>, who: () => string): Observable<ServerEvent> =>
      bcast === undefined
        ? EMPTY
        : input$.pipe(
            replicate<Target>({
              subnet,
              hub: HUB,
              members: () => members.values(),
              isolation: () => live.clientIsolation,
              groups,
              rate: bcast.pps,
              scheduler,
            }),
            tap((rb: ReplicatedBatch<Target>) => deliver(rb)),
            filter((rb) => rb.drops !== undefined),
            map((rb) => dropsEvent(who(), rb.drops!)),
          );

    // Every session's counters, for stats events.
    const sessionStats = new Map<number, () => SessionStats>();
    const tunRead = counter();
    const tunWritten = counter();
    const tunGauge = { depth: 0 };

    // Packets for the hub's own TUN device, behind one bounded queue.
    const toTun = new Subject<PacketBatch>();
    const tunRefusals$ = new Subject<ServerEvent>();
    const tunSink = reportingRejections(countingSink(ports.tun.sink, tunWritten), (d) => tunRefusals$.next(dropsEvent('tun', d)));
    const tunWrites$ = merge(
      toTun.pipe(
        boundedQueue({ limit: settings.recvQueueSize, sink: tunSink, gauge: tunGauge }),
        map((n): ServerEvent => dropsEvent('tun', { 'queue-full': n })),
      ),
      tunRefusals$,
    );
    const hubBroadcasts$ = new Subject<ReplicateInput<Target>>();
    const tunReads$ = merge(
      ports.tun.packets$.pipe(
        tap((batch) => count(tunRead, batch)),
        route(fromHub),
        map((rb) => takeReplicable(rb, HUB, hubBroadcasts$)),
        tap((rb) => deliver(rb)),
        filter((rb) => rb.drops !== undefined),
        map((rb) => dropsEvent('tun', rb.drops!)),
      ),
      replicating(hubBroadcasts$, () => 'tun'),
    );

    /**
     * Hands each route's packets to its target: the hub's TUN device, or a member in a form it
     * accepted (fitPackets: oversize packets fragmented, or dropped as `too-big` with an ICMP
     * fragmentation-needed answered to their sender, as a router would). Adds its drops to `rb`.
     */
    function deliver(rb: { readonly routes: readonly Routed<Target>[]; drops: DropCounts | undefined }): void {
      for (const r of rb.routes) {
        if (r.target === HUB) {
          toTun.next(r.packets);
          continue;
        }
        const m = r.target as Member;
        const fitted = fitPackets(r.packets, m.encoding.maxPacket, hubAddress);
        if (fitted === undefined) {
          m.outbound.next(r.packets);
          continue;
        }
        if (fitted.packets.length > 0) m.outbound.next(fitted.packets);
        rb.drops = addDrops(rb.drops, fitted.drops);
        for (const answer of fitted.answers) toward(ipv4Destination(answer)).next([answer]);
      }
    }

    /** Where the hub sends a packet it makes itself (an ICMP answer): the member or LAN that has the destination, else its own kernel. */
    function toward(dst: number): Subject<PacketBatch> {
      const m = members.get(dst) ?? (lans.size === 0 ? undefined : lans.lookup(dst));
      return m === undefined ? toTun : m.outbound;
    }

    const session = (conn: ConnectionPort): Observable<ServerEvent> =>
      defer(() => {
        const id = conn.id;
        let member: Member | undefined;
        let helloSeen = false;
        let lastSeen = scheduler.now();
        const who = (): string => member?.addressText ?? conn.remote;
        const drops$ = new Subject<ServerEvent>();
        const ended$ = new Subject<never>();
        const outbound = new Subject<PacketBatch>();
        const countDrops = (d: DropCounts): void => drops$.next(dropsEvent(who(), d));
        const connectedAt = scheduler.now();
        const rx = counter();
        const tx = counter();
        const gauge = { depth: 0 };
        let rttMs: number | undefined;
        /** The peer answers PING (it offered the `rtt` capability in its HELLO). */
        let peerPings = false;
        /** How packets are encoded for this peer; SUPER frames once its HELLO offered `gso` to an offloading hub. */
        const encoding = compatEncoding();
        sessionStats.set(id, () => ({
          id,
          remote: conn.remote,
          address: member?.addressText,
          identity: member?.identity,
          connectedAt,
          lastSeen,
          rx: { packets: rx.packets, bytes: rx.bytes },
          tx: { packets: tx.packets, bytes: tx.bytes },
          queued: gauge.depth,
          rttMs,
        }));

        /** Who a joining client is, as far as the hub knows. */
        interface Joiner {
          readonly identity: string | undefined;
          readonly exclusive: boolean;
          readonly lease: string | undefined;
          readonly routes: readonly Ipv4Prefix[];
          readonly takesRoutes: boolean;
          readonly assigned: boolean;
        }
        const ANONYMOUS: Joiner = { identity: undefined, exclusive: false, lease: undefined, routes: [], takesRoutes: false, assigned: false };

        /** Room for one more member (refusals for single-client and max-clients). */
        const checkRoom = (text: string): void => {
          if (!settings.multiClient && members.size >= 1) {
            throw new Refusal('single-client', `the hub serves one client at a time (multi_client is false) and ${[...members.values()][0]!.remote} is connected`, text);
          }
          if (members.size >= live.maxClients) {
            throw new Refusal('max-clients', `the hub already has ${members.size} members (max_clients ${live.maxClients})`, text);
          }
        };

        const register = (address: number, via: 'hello' | 'data', who: Joiner = ANONYMOUS): ServerEvent[] => {
          const { identity, exclusive } = who;
          const text = formatIpv4(address);
          const existing = members.get(address);
          if (existing !== undefined && ((exclusive && existing.exclusive && existing.identity === identity) || (who.lease !== undefined && existing.lease === who.lease))) {
            // The same client reconnecting (new network, crashed process): its old session is stale,
            // unless it is alive and keeps being replaced: then two clients share the identity.
            const name = identity ?? who.lease ?? text;
            const silentMs = scheduler.now() - existing.lastSeen;
            if (silentMs < settings.timeoutMs) {
              const verdict = replacements.replaceLive(name, scheduler.now());
              if (!verdict.ok) {
                throw new Refusal(
                  'duplicate-identity',
                  `the identity ${name} is in use by another live client and replaced itself ${verdict.replacements} times within ${REPLACE_WINDOW_MS / 1000} s: two clients share one identity (a copied state directory's client-id, or one token on two machines); give each client its own`,
                  text,
                  `${name} is in use by ${existing.remote} (last heard ${Math.round(silentMs / 1000)} s ago) and replaced itself ${verdict.replacements} times within ${REPLACE_WINDOW_MS / 1000} s: two clients share it`,
                );
              }
            }
            existing.end(new SessionEnd('replaced', `${name} reconnected from ${conn.remote}`, `a newer session of this client's identity (${name}) took over its address`));
          } else if (existing !== undefined) {
            const silentMs = scheduler.now() - existing.lastSeen;
            if (silentMs < settings.timeoutMs) {
              // The newcomer learns only that the address is taken, never who holds it.
              throw new Refusal('ip-conflict', `${text} is in use by another member`, text, `${text} is in use by ${existing.remote} (last heard ${Math.round(silentMs / 1000)} s ago)`);
            }
            existing.end(new SessionEnd('replaced', `${text} was claimed by ${conn.remote} after ${Math.round(silentMs / 1000)} s of silence`, `${text} was claimed by another client after ${Math.round(silentMs / 1000)} s of silence from this one`));
          }
          checkRoom(text);
          const m: Member = {
            id,
            remote: conn.remote,
            address,
            addressText: text,
            identity,
            exclusive,
            lease: who.lease,
            routes: who.routes,
            takesRoutes: who.takesRoutes,
            send: (frame) => {
              if (!conn.needsDrain) conn.write(frame);
            },
            outbound,
            encoding,
            lastSeen,
            end: (err) => ended$.error(err),
          };
          if (lans.size + who.routes.length > MAX_LAN_ROUTES) {
            throw new Refusal('route-not-allowed', `the hub's route table is full (${lans.size} of ${MAX_LAN_ROUTES} LAN routes in use)`, text);
          }
          for (let i = 0; i < who.routes.length; i++) {
            const added = lans.add(who.routes[i]!, m);
            if (!added.ok) {
              for (let j = 0; j < i; j++) lans.remove(who.routes[j]!);
              const holder = lans.lookup(added.with.address);
              throw new Refusal('route-overlap', `${formatPrefix(who.routes[i]!)} overlaps ${formatPrefix(added.with)}${holder === undefined ? '' : ` behind ${holder.addressText}`}`, text);
            }
          }
          member = m;
          members.set(address, m);
          conn.admitted?.();
          allocator.markInUse(address);
          if (via === 'hello') {
            conn.write(
              encodeControl(FrameType.Welcome, {
                version: PROTOCOL_VERSION,
                address: text,
                prefix,
                hub: formatIpv4(hubAddress),
                mtu: settings.mtu,
                keepalive: Math.round(settings.keepaliveMs / 1000),
                timeout: Math.round(settings.timeoutMs / 1000),
                caps,
                ...(lans.size > who.routes.length ? { routes: routesFor(m) } : {}),
              }),
            );
          }
          if (who.routes.length > 0) routesChanged(m);
          const joined: ServerEvent = {
            type: 'joined',
            id,
            remote: conn.remote,
            address: text,
            via,
            members: members.size,
            ...(identity === undefined ? {} : { identity }),
            ...(who.assigned ? { assigned: true } : {}),
            ...(who.routes.length === 0 ? {} : { routes: who.routes.map(formatPrefix) }),
          };
          return [joined];
        };

        /** The announced LANs, checked against allow_routes, the identity's own limits, the tunnel network and the underlay (routeGuard). */
        const checkRoutes = (announced: readonly string[] | undefined, limits: readonly Ipv4Prefix[] | undefined, text: string | undefined): Ipv4Prefix[] => {
          if (announced === undefined || announced.length === 0) return [];
          if (announced.length > MAX_ANNOUNCED_ROUTES) throw new Refusal('route-not-allowed', `${announced.length} routes announced; at most ${MAX_ANNOUNCED_ROUTES}`, text);
          const out: Ipv4Prefix[] = [];
          for (const cidr of announced) {
            const raw = parsePrefix(cidr);
            if (raw === undefined) throw new Refusal('bad-hello', `${cidr} is not an IPv4 prefix`, text);
            const p = normalizePrefix(raw);
            if (p.address !== raw.address) throw new Refusal('bad-hello', `${cidr} has host bits set (the network is ${formatPrefix(p)})`, text);
            if (prefixesOverlap(p, subnet)) throw new Refusal('route-not-allowed', `${cidr} overlaps the tunnel network ${formatPrefix(subnet)}`, text);
            if (!allowRoutes.some((a) => prefixContains(a, p))) {
              const allowed = allowRoutes.length === 0 ? 'the hub allows no LAN routes (-allow-routes)' : `allowed: ${allowRoutes.map(formatPrefix).join(', ')}`;
              throw new Refusal('route-not-allowed', `${cidr} is not allowed (${allowed})`, text);
            }
            if (limits !== undefined && !limits.some((a) => prefixContains(a, p))) {
              throw new Refusal('route-not-allowed', `${cidr} is not among the routes this client may announce (${limits.length === 0 ? 'none' : limits.map(formatPrefix).join(', ')})`, text);
            }
            if (out.some((q) => prefixesOverlap(p, q))) throw new Refusal('bad-hello', `${cidr} is announced twice or overlaps another announced route`, text);
            const hazard = routeHazard(p, underlayGuards());
            if (hazard !== undefined) {
              // A member learns which special range it hit, never the hub's or another member's underlay.
              const reserved = RESERVED_RANGES.includes(hazard);
              const told = reserved ? `${cidr} overlaps ${hazard.what}` : `${cidr} covers an underlay address or network that the hub or a member needs outside the tunnel`;
              throw new Refusal('route-not-allowed', told, text, `${cidr} covers ${hazard.what}`);
            }
            out.push(p);
          }
          return out;
        };

        /** What a LAN route must not cover: the special ranges, the hub's own underlay, and where every member (this one too) connects from. */
        const underlayGuards = (): GuardedPrefix[] => {
          const out: GuardedPrefix[] = [...RESERVED_RANGES, ...(ports.hostNetwork?.guarded() ?? [])];
          const own = endpointGuard(conn.remote, `the address this member connects from (${conn.remote})`);
          if (own !== undefined) out.push(own);
          for (const m of members.values()) {
            const g = endpointGuard(m.remote, `the address member ${m.addressText} connects from (${m.remote})`);
            if (g !== undefined) out.push(g);
          }
          return out;
        };

        const onHello = (payload: Uint8Array): ServerEvent[] => {
          helloSeen = true;
          const hello = decodeControl(FrameType.Hello, HelloCodec, payload);
          if (hello instanceof ControlDecodeError) throw new Refusal('bad-hello', hello.detail, undefined);
          if (hello.version < 1) throw new Refusal('unsupported-version', `protocol version ${hello.version} is not supported (this hub speaks ${PROTOCOL_VERSION})`, undefined);
          const assign = hello.address === undefined && hello.assign === true;
          if (hello.address === undefined && !assign) throw new Refusal('bad-hello', 'HELLO carries no address and does not ask for one (set -t on the client, or send "assign": true)', undefined);
          let address: number | undefined;
          if (hello.address !== undefined) {
            address = parseIpv4(hello.address);
            if (address === undefined) throw new Refusal('bad-hello', `${hello.address} is not an IPv4 address`, hello.address);
          }
          peerPings = hello.caps?.includes('rtt') === true;
          negotiate(encoding, offload && hello.caps?.includes(GSO_CAPABILITY) === true, hello.mtu);
          const takesRoutes = hello.caps?.includes('routes') === true;
          // Authentication comes before any check that would tell a stranger about the tunnel
          // network or the hub's address (outside-subnet, hub-address).
          let decision: Extract<ReturnType<Authenticator['authenticate']>, { ok: true }> | undefined;
          if (authenticator !== undefined) {
            const host = hostOf(conn.remote);
            const penalty = penalties.get(host);
            if (penalty !== undefined && scheduler.now() < penalty.until) {
              const waitS = Math.ceil((penalty.until - scheduler.now()) / 1000);
              throw new Refusal('rate-limited', `${penalty.failures} failed authentication(s) from ${host}: try again in ${waitS} s`, hello.address);
            }
            const d = authenticator.authenticate({ token: hello.token, peerIdentity: conn.peerIdentity, address });
            if (!d.ok) {
              penalize(host);
              throw new Refusal(d.reason, d.detail, hello.address);
            }
            penalties.delete(host);
            decision = d;
          }
          if (address !== undefined) checkAddress(address);
          const lease = leaseKey(decision, hello.id);
          if (address === undefined) {
            if (decision?.pinned !== undefined) address = decision.pinned;
            else {
              if (lease === undefined) throw new Refusal('bad-hello', 'a HELLO that asks for an address must carry an "id" (or authenticate as a named client)', undefined);
              if (allocator.leaseOf(lease) === undefined) checkRoom(lease);
              const a = allocator.assign(lease);
              if (!a.ok) throw new Refusal(a.reason, a.detail, undefined);
              address = a.address;
              if (!a.sticky) saveLeases();
            }
          }
          const claim = allocator.claimStatic(lease, address);
          if (!claim.ok) throw new Refusal(claim.reason, claim.detail, formatIpv4(address));
          const routes = checkRoutes(hello.routes, decision?.routes, formatIpv4(address));
          return register(address, 'hello', { identity: decision?.identity, exclusive: decision?.exclusive ?? false, lease, routes, takesRoutes, assigned: assign });
        };

        const checkAddress = (address: number): number => {
          const text = formatIpv4(address);
          const lan = `${formatIpv4(network)}/${prefix}`;
          if (!prefixHas(settings.tunnel, address)) throw new Refusal('outside-subnet', `${text} is outside the hub's network ${lan}`, text);
          if (address === network || address === broadcast) throw new Refusal('outside-subnet', `${text} is the network or broadcast address of ${lan}`, text);
          if (address === hubAddress) throw new Refusal('hub-address', `${text} is the hub's own address`, text);
          return address;
        };

        const onControl = (item: Inbound): ServerEvent[] => {
          switch (item.kind) {
            case 'tick':
              sendKeepalive(conn);
              if (peerPings && !conn.needsDrain) conn.write(encodePing(scheduler.now()));
              return [];
            case 'learned':
              // A 2.x client: its first packet's source is its address.
              if (member !== undefined || helloSeen) return [];
              if (authenticator !== undefined) {
                throw new Refusal('auth-required', 'this hub requires authentication, which 2.x clients (no HELLO) cannot do', formatIpv4(item.address));
              }
              {
                const address = checkAddress(item.address);
                const claim = allocator.claimStatic(undefined, address);
                if (!claim.ok) throw new Refusal(claim.reason, claim.detail, formatIpv4(address));
                return register(address, 'data');
              }
            case 'control':
              switch (item.type) {
                case FrameType.Keepalive:
                  return [];
                case FrameType.Hello:
                  if (member !== undefined || helloSeen) return [dropsEvent(who(), { 'unexpected-control': 1 })];
                  return onHello(item.payload);
                case FrameType.Ping:
                  if (item.payload.length !== 8) return [dropsEvent(who(), { 'unexpected-control': 1 })];
                  if (!conn.needsDrain) conn.write(encodeFrame(FrameType.Pong, item.payload));
                  return [];
                case FrameType.Pong: {
                  const rtt = peerPings ? rttOf(item.payload, scheduler.now()) : undefined;
                  if (rtt === undefined) return [dropsEvent(who(), { 'unexpected-control': 1 })];
                  rttMs = rtt;
                  return [];
                }
                case FrameType.Welcome:
                case FrameType.Reject:
                  return [dropsEvent(who(), { 'unexpected-control': 1 })];
                default:
                  return [dropsEvent(who(), { 'unknown-type': 1 })];
              }
            case 'data':
              return [];
          }
        };

        const fromThisMember: RouteDecision<Decision> = (dst, packet) => {
          if (member === undefined) return 'unregistered';
          const src = ipv4Source(packet);
          // A member with LANs behind it also sends for them (only then is the route table asked).
          if (src !== member.address && (member.routes.length === 0 || lans.lookup(src) !== member)) return 'spoofed-source';
          return fromMember(dst);
        };
        const broadcasts$ = new Subject<ReplicateInput<Target>>();

        const inbound$ = inboundItems(
          conn,
          settings,
          {
            onDrops: countDrops,
            onChunk: () => {
              lastSeen = scheduler.now();
              if (member !== undefined) member.lastSeen = lastSeen;
            },
            superFrames: () => encoding.superFrames,
          },
          scheduler,
        ).pipe(
          learnSource(),
          connect((items$) =>
            merge(
              items$.pipe(
                filter((i): i is Extract<Inbound, { kind: 'data' }> => i.kind === 'data'),
                map((i) => i.packets),
                tap((packets) => count(rx, packets)),
                route(fromThisMember),
                map((rb) => takeReplicable(rb, member, broadcasts$)),
                isolate(() => live.clientIsolation, isPeer),
                tap((rb) => deliver(rb)),
                filter((rb) => rb.drops !== undefined),
                map((rb) => dropsEvent(who(), rb.drops!)),
              ),
              items$.pipe(
                filter((i) => i.kind !== 'data'),
                mergeMap(onControl),
              ),
            ),
          ),
          concatWith(throwError(() => new SessionEnd('closed', 'the peer closed the connection'))),
        );

        const sendDrops$ = outbound.pipe(
          boundedQueue({ limit: settings.sendQueueSize, sink: countingSink(frameSink(conn, encoding), tx), gauge }),
          map((n) => dropsEvent(who(), { 'queue-full': n })),
        );

        // A connection must become a member within its admission deadline (admissionMs): one that
        // never says HELLO or sends a packet (idle, trickling, only KEEPALIVEs) holds no state for long.
        const admissionDeadline$ = timer(admissionMs, scheduler).pipe(
          mergeMap(() =>
            member !== undefined
              ? ended$
              : throwError(() => new SessionEnd('handshake-timeout', authenticator === undefined ? `no HELLO and no packet within ${admissionMs / 1000} s` : `no HELLO within ${admissionMs / 1000} s`)),
          ),
        );

        const connected: ServerEvent = { type: 'connected', id, remote: conn.remote };
        return merge(of(connected), replicating(broadcasts$, who), inbound$, sendDrops$, drops$, ended$, admissionDeadline$).pipe(
          catchError((err: unknown) => {
            const out: ServerEvent[] = [];
            if (err instanceof Refusal) {
              conn.write(encodeControl(FrameType.Reject, { version: PROTOCOL_VERSION, reason: err.reason, message: err.detail }));
              out.push({ type: 'rejected', id, remote: conn.remote, address: err.address, reason: err.reason, message: err.logDetail });
              unregister();
              out.push({ type: 'left', id, remote: conn.remote, address: undefined, reason: 'rejected', detail: err.reason, members: members.size });
              return of(...out);
            }
            const { reason, detail } = endReason(err);
            const address = member?.addressText;
            // A replaced member hears why (a clone then backs off instead of flapping).
            if (err instanceof SessionEnd && err.reason === 'replaced') conn.write(encodeControl(FrameType.Reject, { version: PROTOCOL_VERSION, reason: 'replaced', message: err.told }));
            unregister();
            return of<ServerEvent>({ type: 'left', id, remote: conn.remote, address, reason, detail, members: members.size });
          }),
          finalize(() => {
            unregister();
            sessionStats.delete(id);
            outbound.complete();
            conn.close();
          }),
        );

        function unregister(): void {
          const m = member;
          member = undefined;
          if (m === undefined) return;
          if (members.get(m.address) === m) members.delete(m.address);
          allocator.release(m.address);
          if (m.routes.length > 0 && lans.removeTarget(m).length > 0) routesChanged();
        }
      });

    const sessions$ = ports.listener.events$.pipe(
      mergeMap((ev): Observable<ServerEvent> => {
        switch (ev.type) {
          case 'listening':
            return of({ type: 'listening', address: ev.address, tun: ports.tun.name, hub: `${formatIpv4(hubAddress)}/${prefix}` });
          case 'handshake-failed':
          case 'refused':
            return of(ev);
          case 'connection':
            return session(ev.connection);
        }
      }),
    );

    const stats$ = statsTicks<ServerEvent>(settings.statsIntervalMs, scheduler, (at) => ({
      type: 'stats',
      at,
      sessions: [...sessionStats.values()].map((read) => read()),
      tun: tunStats(tunRead, tunWritten, tunGauge),
    }));

    // Reloads apply to what happens next: members beyond a lowered max_clients stay until they leave.
    const reloads$: Observable<ServerEvent> = (ports.reload$ ?? EMPTY).pipe(
      map((next) => {
        const changed = (Object.keys(live) as (keyof ReloadableSettings)[]).filter((k) => live[k] !== next[k]);
        Object.assign(live, { clientIsolation: next.clientIsolation, maxClients: next.maxClients });
        return { type: 'reloaded', changed, clientIsolation: live.clientIsolation, maxClients: live.maxClients } as const;
      }),
    );

    const initial$ = defer(() => {
      const out: ServerEvent[] = [];
      if (allocator.discarded.length > 0) {
        out.push({
          type: 'lease-error',
          detail: `ignored ${allocator.discarded.length} stored lease(s): ${allocator.discarded.map((d) => `${d.identity} ${formatIpv4(d.address >>> 0)} (${d.why})`).join(', ')}`,
        });
      }
      // Hubs without a lease store and without pins start with no leases: nothing to report.
      if (ports.leases !== undefined || reserved.size > 0) out.push({ type: 'leases', leases: leaseInfo() });
      return of(...out);
    });

    return merge(initial$, hubEvents$, sessions$, tunReads$, tunWrites$, stats$, reloads$).pipe(finalize(() => ports.routes?.set([])));
  });
}

function dropsEvent(who: string, drops: DropCounts): ServerEvent {
  return { type: 'drops', who, drops };
}

/** The host part of an `ip:port` or `[v6]:port` endpoint. */
function hostOf(remote: string): string {
  const i = remote.lastIndexOf(':');
  return i < 0 ? remote : remote.slice(0, i);
}
