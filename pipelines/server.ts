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
import { route, type RouteDecision } from '../operators/route.js';
import type { DropCounts, DropReason, Inbound, PacketBatch, RoutedBatch } from '../operators/types.js';
import { CAPABILITIES, GSO_CAPABILITY, HelloCodec, PROTOCOL_VERSION, decodeControl, encodeControl, ControlDecodeError, type RejectReason } from '../operators/wire/control.js';
import { FrameType, encodeFrame } from '../operators/wire/frames.js';
import { formatIpv4, inSubnet, ipv4Source, parseIpv4, prefixMask, subnetBroadcast } from '../operators/wire/ipv4.js';
import { SessionEnd, endReason, type ServerEvent, type SessionStats } from './events.js';
import type { Authenticator, ConnectionPort, ListenerPort, TunPort } from './ports.js';
import { compatEncoding, count, counter, countingSink, encodePing, frameSink, negotiate, inboundItems, reportingRejections, rttOf, sendKeepalive, statsTicks, tunStats } from './session.js';
import type { ServerSettings } from './settings.js';

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
}

/** Settings a running hub can take on live. */
export type ReloadableSettings = Pick<ServerSettings, 'clientIsolation' | 'maxClients'>;

/** Source addresses remembered for failed authentications (oldest forgotten first). */
const MAX_PENALTIES = 4096;
/** The first failure blocks a source for this long; each further failure doubles it up to the max. */
const PENALTY_BASE_MS = 1000;
const PENALTY_MAX_MS = 60_000;

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
  /** Packets bound for this member (into its bounded send queue). */
  readonly outbound: Subject<PacketBatch>;
  /** scheduler.now() of the last chunk received. */
  lastSeen: number;
  /** Ends the member's session with a reason. */
  readonly end: (err: SessionEnd) => void;
}

/** The hub's own TUN device as a routing target. */
const HUB = Object.freeze({ hub: true });
type Target = Member | typeof HUB;

/** Refusal: written to the peer as REJECT, then the session ends. */
class Refusal extends Error {
  override readonly name = 'Refusal';
  constructor(
    readonly reason: RejectReason,
    readonly detail: string,
    readonly address: string | undefined,
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
    const broadcast = subnetBroadcast(hubAddress, prefix);
    const network = (hubAddress & prefixMask(prefix)) >>> 0;
    /** The route table: tunnel address → member. */
    const members = new Map<number, Member>();
    const authenticator = ports.authenticator;
    /** The live values of the reloadable settings. */
    const live: { -readonly [K in keyof ReloadableSettings]: ReloadableSettings[K] } = {
      clientIsolation: settings.clientIsolation,
      maxClients: settings.maxClients,
    };
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
    /** The hub's TUN device offloads segmentation: members that offer `gso` may send and get SUPER frames. */
    const offload = ports.tun.offload === true;
    const caps = offload ? [...CAPABILITIES, GSO_CAPABILITY] : [...CAPABILITIES];

    /** Where a packet from a member goes. */
    const fromMember = (dst: number): Target | DropReason => {
      const m = members.get(dst);
      if (m !== undefined) return m;
      if (dst === hubAddress) return HUB;
      if (!inSubnet(dst, hubAddress, prefix)) return HUB; // beyond the LAN: the hub's kernel decides
      return dst === broadcast || dst === network ? 'broadcast' : 'no-route';
    };
    /** Where a packet read from the hub's TUN goes. */
    const fromHub: RouteDecision<Member> = (dst) => members.get(dst) ?? 'no-route';

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
    const tunReads$ = ports.tun.packets$.pipe(
      tap((batch) => count(tunRead, batch)),
      route(fromHub),
      tap(deliver),
      filter((rb) => rb.drops !== undefined),
      map((rb) => dropsEvent('tun', rb.drops!)),
    );

    function deliver(rb: RoutedBatch<Target>): void {
      for (const r of rb.routes) (r.target === HUB ? toTun : (r.target as Member).outbound).next(r.packets);
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

        const register = (address: number, via: 'hello' | 'data', identity: string | undefined = undefined, exclusive = false): ServerEvent[] => {
          const text = formatIpv4(address);
          const existing = members.get(address);
          if (existing !== undefined && exclusive && existing.exclusive && existing.identity === identity) {
            // The same client reconnecting (new network, crashed process): its old session is stale.
            existing.end(new SessionEnd('replaced', `${identity ?? text} reconnected from ${conn.remote}`));
          } else if (existing !== undefined) {
            const silentMs = scheduler.now() - existing.lastSeen;
            if (silentMs < settings.timeoutMs) {
              throw new Refusal('ip-conflict', `${text} is in use by ${existing.remote} (last heard ${Math.round(silentMs / 1000)} s ago)`, text);
            }
            existing.end(new SessionEnd('replaced', `${text} was claimed by ${conn.remote} after ${Math.round(silentMs / 1000)} s of silence`));
          }
          if (!settings.multiClient && members.size >= 1) {
            throw new Refusal('single-client', `the hub serves one client at a time (multi_client is false) and ${[...members.values()][0]!.remote} is connected`, text);
          }
          if (members.size >= live.maxClients) {
            throw new Refusal('max-clients', `the hub already has ${members.size} members (max_clients ${live.maxClients})`, text);
          }
          const m: Member = {
            id,
            remote: conn.remote,
            address,
            addressText: text,
            identity,
            exclusive,
            outbound,
            lastSeen,
            end: (err) => ended$.error(err),
          };
          member = m;
          members.set(address, m);
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
              }),
            );
          }
          const joined: ServerEvent = { type: 'joined', id, remote: conn.remote, address: text, via, members: members.size };
          return [identity === undefined ? joined : { ...joined, identity }];
        };

        const onHello = (payload: Uint8Array): ServerEvent[] => {
          helloSeen = true;
          const hello = decodeControl(FrameType.Hello, HelloCodec, payload);
          if (hello instanceof ControlDecodeError) throw new Refusal('bad-hello', hello.detail, undefined);
          if (hello.version < 1) throw new Refusal('unsupported-version', `protocol version ${hello.version} is not supported (this hub speaks ${PROTOCOL_VERSION})`, undefined);
          if (hello.address === undefined) throw new Refusal('bad-hello', 'HELLO carries no address (set -t on the client)', undefined);
          const address = parseIpv4(hello.address);
          if (address === undefined) throw new Refusal('bad-hello', `${hello.address} is not an IPv4 address`, hello.address);
          checkAddress(address);
          peerPings = hello.caps?.includes('rtt') === true;
          negotiate(encoding, offload && hello.caps?.includes(GSO_CAPABILITY) === true, hello.mtu);
          if (authenticator === undefined) return register(address, 'hello');
          const host = hostOf(conn.remote);
          const penalty = penalties.get(host);
          if (penalty !== undefined && scheduler.now() < penalty.until) {
            const waitS = Math.ceil((penalty.until - scheduler.now()) / 1000);
            throw new Refusal('rate-limited', `${penalty.failures} failed authentication(s) from ${host}: try again in ${waitS} s`, hello.address);
          }
          const decision = authenticator.authenticate({ token: hello.token, peerIdentity: conn.peerIdentity, address });
          if (!decision.ok) {
            penalize(host);
            throw new Refusal(decision.reason, decision.detail, hello.address);
          }
          penalties.delete(host);
          return register(address, 'hello', decision.identity, decision.exclusive);
        };

        const checkAddress = (address: number): number => {
          const text = formatIpv4(address);
          const lan = `${formatIpv4(network)}/${prefix}`;
          if (!inSubnet(address, hubAddress, prefix)) throw new Refusal('outside-subnet', `${text} is outside the hub's network ${lan}`, text);
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
              return register(checkAddress(item.address), 'data');
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

        const fromThisMember: RouteDecision<Target> = (dst, packet) => {
          if (member === undefined) return 'unregistered';
          if (ipv4Source(packet) !== member.address) return 'spoofed-source';
          return fromMember(dst);
        };

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
                isolate(() => live.clientIsolation, isPeer),
                tap(deliver),
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

        // With authentication, a connection must say who it is within the HELLO deadline.
        const helloDeadline$ =
          authenticator === undefined
            ? ended$
            : timer(settings.helloTimeoutMs, scheduler).pipe(
                mergeMap(() =>
                  helloSeen ? ended$ : throwError(() => new SessionEnd('handshake-timeout', `no HELLO within ${settings.helloTimeoutMs / 1000} s`)),
                ),
              );

        const connected: ServerEvent = { type: 'connected', id, remote: conn.remote };
        return merge(of(connected), inbound$, sendDrops$, drops$, ended$, helloDeadline$).pipe(
          catchError((err: unknown) => {
            const out: ServerEvent[] = [];
            if (err instanceof Refusal) {
              conn.write(encodeControl(FrameType.Reject, { version: PROTOCOL_VERSION, reason: err.reason, message: err.detail }));
              out.push({ type: 'rejected', id, remote: conn.remote, address: err.address, reason: err.reason, message: err.detail });
              unregister();
              out.push({ type: 'left', id, remote: conn.remote, address: undefined, reason: 'rejected', detail: err.reason, members: members.size });
              return of(...out);
            }
            const { reason, detail } = endReason(err);
            const address = member?.addressText;
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
          if (member !== undefined && members.get(member.address) === member) members.delete(member.address);
          member = undefined;
        }
      });

    const sessions$ = ports.listener.events$.pipe(
      mergeMap((ev): Observable<ServerEvent> => {
        switch (ev.type) {
          case 'listening':
            return of({ type: 'listening', address: ev.address, tun: ports.tun.name, hub: `${formatIpv4(hubAddress)}/${prefix}` });
          case 'handshake-failed':
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

    return merge(sessions$, tunReads$, tunWrites$, stats$, reloads$);
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
