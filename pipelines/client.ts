// The client: keeps a session to the hub alive (reconnecting forever with backoff) and forwards
// packets between the local TUN device and it. A session is a peer session (peer.ts) plus what only
// a client does: HELLO first, WELCOME (its address, the hub's capabilities), ROUTES, REJECT. The
// live session is a stream (`session$`), so the TUN side always sends through the latest one.
import { BehaviorSubject, EMPTY, Observable, Subject, asyncScheduler, catchError, concat, defer, finalize, map, merge, mergeMap, of, switchMap, take, tap, throwError, timer, withLatestFrom, type SchedulerLike } from 'rxjs';
import { boundedQueue } from '../operators/boundedQueue.js';
import { emitEach } from '../operators/emitEach.js';
import { formatIpv4, formatPrefix, parseHostPort, type Ipv4Prefix } from '../operators/core/address.js';
import { addDrop, type DropCounts, type PacketBatch } from '../operators/core/packet.js';
import {
  CAPABILITIES,
  ControlDecodeError,
  DIRECT_CAPABILITY,
  FATAL_REJECT_REASONS,
  GSO_CAPABILITY,
  IntroductionCodec,
  PROTOCOL_VERSION,
  RejectCodec,
  RoutesCodec,
  UDP_CAPABILITY,
  WelcomeCodec,
  WithdrawalCodec,
  decodeControl,
  encodeControl,
  type AnnouncedRoute,
  type UdpOffer,
} from '../operators/core/wire/control.js';
import { RouteTable } from '../operators/core/routeTable.js';
import { fitPackets } from '../operators/core/wire/fragment.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { ipv4Problem } from '../operators/core/wire/ipv4.js';
import { failover } from '../operators/failover.js';
import { reconnect } from '../operators/reconnect.js';
import { AddressSetupError, NoAssignmentError, RejectedError, SessionEnd, displayRoute, endReason, type ClientEvent, type RefusedRoute } from './events.js';
import { candidateKey, hubCandidates, type HubCandidate } from './hubList.js';
import { directPairs, type DirectPairs } from './pairs.js';
import { count, counter, countingSink, negotiate, peerSession, reportingRejections, statsTicks, tunStats, type Peer, type PeerItem } from './peer.js';
import type { ConnectionPort, DialerPort, HostNetworkPort, PacketBatch as Packets, ResolverPort, RoutesPort, TunPort, UdpClientPort } from './ports.js';
import { RESERVED_RANGES, endpointGuard, routeHazard, type GuardedPrefix } from './routeGuard.js';
import type { ClientSettings } from './settings.js';
import { udpLink, type LinkEvent } from './udpLink.js';

/** What a client is built from. */
export interface ClientPorts {
  readonly tun: TunPort;
  readonly dialer: DialerPort;
  /** Time source for keepalives, idle detection and backoff; asyncScheduler by default. */
  readonly scheduler?: SchedulerLike;
  /** Jitter source in [0, 1); Math.random by default. */
  readonly random?: () => number;
  /** Kernel routes to the other members' LANs through the TUN device; without it they are only reported. */
  readonly routes?: RoutesPort;
  /** This host's underlay, which no installed LAN route may cover; without it only the special ranges and the hub's address are guarded. */
  readonly hostNetwork?: HostNetworkPort;
  /** The UDP data path: with it (and settings.transport not `tcp`) the client offers `udp` and takes up the hub's offer. */
  readonly udp?: UdpClientPort;
  /** Resolves the hub list's names into their addresses (each a hub to try); without it names go to the dialer as they are. */
  readonly resolver?: ResolverPort;
}

/** How long a client that asks for an address waits for WELCOME unless its settings say otherwise. */
export const WELCOME_TIMEOUT_MS = 10_000;

/** A session to the hub while it lives. */
interface LiveSession {
  readonly peer: Peer;
  /** The hub's tunnel address, once its WELCOME told it (ICMP answers come from it). */
  hub: number | undefined;
  /** This side's address as the hub welcomed it. */
  address: string | undefined;
  /** Direct paths to other members, while the session's UDP socket is open and both sides take part. */
  pairs: DirectPairs | undefined;
}

const dropsEvent = (who: string, drops: DropCounts): ClientEvent => ({ type: 'drops', who, drops });

/**
 * The client pipeline. Subscribing starts reading the TUN device and dialing the hub (with several,
 * one round over them: each once, in order from the one after the last that took it, moving on
 * after a failure or a refusal of that hub's own; docs/cluster.md, "Failover"); every session or
 * round that ends (closed, reset, idle, refused for a reason that may pass) is followed by a new
 * one after a jittered exponential backoff (settings.backoff). The output reports connecting,
 * connected, welcomed/established, rejected, disconnected, retrying and drops events. It errors only
 * when the hub refuses for a reason retrying cannot fix (RejectedError with a fatal reason) or the
 * TUN device fails. Unsubscribing closes the session and stops reading the TUN device.
 */
export function clientPipeline(settings: ClientSettings, ports: ClientPorts): Observable<ClientEvent> {
  return defer(() => {
    const scheduler = ports.scheduler ?? asyncScheduler;
    /** The candidate of the last session that joined: the next round starts after it (docs/cluster.md, "Failover"). */
    let lastHub: string | undefined;
    /** The TUN device offloads segmentation: offer `gso` to the hub. */
    const offload = ports.tun.offload === true;
    const transport = settings.transport ?? 'auto';
    /** Offer `udp` to the hub: this side can open a UDP channel and may use it. */
    const udpPort = transport === 'tcp' ? undefined : ports.udp;
    /** Offer `direct` beside `udp`: this side takes part in direct paths between members (docs/direct.md). */
    const offersDirect = udpPort !== undefined && settings.direct !== false;
    const caps = [...CAPABILITIES, ...(offload ? [GSO_CAPABILITY] : []), ...(udpPort === undefined ? [] : [UDP_CAPABILITY]), ...(offersDirect ? [DIRECT_CAPABILITY] : [])];
    /** The live session, when there is one. */
    const session$ = new BehaviorSubject<LiveSession | undefined>(undefined);
    /** The address the TUN device has: the static one, or the last one the hub assigned. */
    let address: Ipv4Prefix | undefined = settings.tunnel;
    /** A session was welcomed since the pipeline started (then a missing WELCOME is not a 0.0.1-era hub). */
    let everWelcomed = false;
    const welcomeTimeoutMs = settings.welcomeTimeoutMs ?? WELCOME_TIMEOUT_MS;
    const ownRoutes = (settings.routes ?? []).map(formatPrefix);
    /** The kernel route set last asked for is not empty (a WELCOME without routes must then clear it). */
    let routing = false;
    /** The other members' LANs by their `via` member, as the hub last announced them (a direct path to `via` carries them). */
    let lans: RouteTable<number> | undefined;
    /** The addresses of the hubs of the latest round: no announced LAN may cover one (the client must still reach them once this hub is gone). */
    let hubEndpoints: readonly string[] = [];

    /**
     * The kernel should route these LANs (other members') through the TUN device, except those that
     * would cover this host's own underlay, the hub it reaches (`hubRemote`) or another hub of its
     * list: those are never installed (routeGuard), so a hostile or mistaken announcement cannot
     * cut this side off, from this hub or from the next one it would fail over to.
     */
    const applyRoutes = (routes: readonly AnnouncedRoute[], hubRemote: string): ClientEvent[] => {
      const guards: GuardedPrefix[] = [...RESERVED_RANGES, ...(ports.hostNetwork?.guarded() ?? [])];
      const hub = endpointGuard(hubRemote, `the hub's address (${hubRemote})`);
      if (hub !== undefined) guards.push(hub);
      // The hub's own guard comes first, so a route over it is refused naming it.
      for (const other of hubEndpoints) {
        const g = endpointGuard(other, `another hub's address (${other})`);
        if (g !== undefined) guards.push(g);
      }
      const prefixes: Ipv4Prefix[] = [];
      const refused: RefusedRoute[] = [];
      const via = new RouteTable<number>();
      for (const r of routes) {
        if (ownRoutes.includes(formatPrefix(r.cidr))) continue;
        via.add(r.cidr, r.via);
        const hazard = routeHazard(r.cidr, guards);
        if (hazard === undefined) prefixes.push(r.cidr);
        else refused.push({ ...displayRoute(r), why: `it covers ${hazard.what}` });
      }
      ports.routes?.set(prefixes);
      routing = prefixes.length > 0;
      lans = via;
      return [{ type: 'routes', routes: routes.map(displayRoute), ...(refused.length === 0 ? {} : { refused }) }];
    };

    const tunRead = counter();
    const tunWritten = counter();
    const tunGauge = { depth: 0 };
    const toTun = new Subject<PacketBatch>();
    const tunRefusals$ = new Subject<ClientEvent>();
    const tunSink = reportingRejections(countingSink(ports.tun.sink, tunWritten), (d) => tunRefusals$.next(dropsEvent('tun', d)));
    const tunWrites$ = merge(
      toTun.pipe(
        boundedQueue({ limit: settings.recvQueueSize, sink: tunSink, gauge: tunGauge }),
        map((n) => dropsEvent('tun', { 'queue-full': n })),
      ),
      tunRefusals$,
    );
    const tunReads$ = ports.tun.packets$.pipe(
      tap((batch) => count(tunRead, batch)),
      withLatestFrom(session$),
      emitEach(([batch, live]): ClientEvent[] => {
        if (live === undefined) return [dropsEvent('tun', { 'not-connected': batch.length })];
        const out: ClientEvent[] = [];
        // Packets for a peer whose direct path is up go over it; the rest to the hub.
        const toHub = live.pairs === undefined ? batch : live.pairs.route(batch, out);
        if (toHub.length === 0) return out;
        // Packets larger than the hub takes are fragmented, or answered with ICMP fragmentation-needed
        // from the hub's address (this side's kernel then lowers its path MTU), as a router would.
        const path = live.peer.data;
        const fitted = fitPackets(toHub, path.maxPacket(), live.hub);
        const linkDrops = path.send(fitted === undefined ? toHub : fitted.packets);
        if (linkDrops !== undefined) out.push(dropsEvent('hub', linkDrops));
        if (fitted === undefined) return out;
        if (fitted.answers.length > 0) toTun.next(fitted.answers);
        if (Object.keys(fitted.drops).length > 0) out.push(dropsEvent('tun', fitted.drops));
        return out;
      }),
    );

    /** Packets from the hub (over TCP or UDP) into the TUN device; anything that is not a sound IPv4 packet is dropped and counted. */
    const fromHub = (batch: Packets): ClientEvent[] => {
      let drops: DropCounts | undefined;
      let packets = batch;
      if (!packets.every((p) => ipv4Problem(p) === undefined)) {
        packets = packets.filter((p) => {
          const problem = ipv4Problem(p);
          if (problem !== undefined) drops = addDrop(drops, problem);
          return problem === undefined;
        });
      }
      if (packets.length > 0) toTun.next(packets);
      return drops === undefined ? [] : [dropsEvent(address === undefined ? 'hub' : formatIpv4(address.address), drops)];
    };

    const session = (conn: ConnectionPort): Observable<ClientEvent> =>
      defer(() => {
        const drops$ = new Subject<ClientEvent>();
        let heard = false;
        let welcomed = false;
        const tunnel = settings.tunnel;
        const peer = peerSession(conn, {
          settings,
          scheduler,
          onDrops: (d) => drops$.next(dropsEvent('hub', d)),
          // Having offered `gso`, this side takes SUPER frames from the start: a hub sends them only
          // after its WELCOME said it offloads too.
          superFrames: () => offload,
          first: encodeControl(FrameType.Hello, {
            version: PROTOCOL_VERSION,
            ...(tunnel === undefined ? { assign: true } : { address: tunnel.address, prefix: tunnel.prefix }),
            mtu: settings.mtu,
            caps,
            ...(settings.token === undefined ? {} : { token: settings.token }),
            ...(settings.clientId === undefined ? {} : { id: settings.clientId }),
            ...(settings.routes === undefined || settings.routes.length === 0 ? {} : { routes: [...settings.routes] }),
          }),
          closedDetail: 'the hub closed the connection',
        });
        const live: LiveSession = { peer, hub: undefined, address: undefined, pairs: undefined };
        /** The hub answered `direct` in its WELCOME. */
        let hubDirect = false;

        /** The first DATA or KEEPALIVE from a hub that sent no WELCOME means the session works (a 0.0.1-era hub). */
        const established = (): ClientEvent[] => {
          if (heard) return [];
          heard = true;
          return [{ type: 'established', remote: conn.remote }];
        };

        const onWelcome = (payload: Uint8Array): ClientEvent[] => {
          const w = decodeControl(FrameType.Welcome, WelcomeCodec, payload);
          if (w instanceof ControlDecodeError) return [dropsEvent('hub', { 'unexpected-control': 1 })];
          heard = true;
          live.address = formatIpv4(w.address);
          live.hub = w.hub;
          peer.pings = w.caps?.includes('rtt') === true;
          hubDirect = offersDirect && w.caps?.includes(DIRECT_CAPABILITY) === true;
          const assigned = settings.tunnel === undefined;
          if (assigned && (address === undefined || address.address !== w.address || address.prefix !== w.prefix)) {
            const text = `${formatIpv4(w.address)}/${w.prefix}`;
            if (ports.tun.setIpv4 === undefined) throw new AddressSetupError(text, 'this TUN device cannot change its address');
            try {
              ports.tun.setIpv4(w.address, w.prefix);
            } catch (err) {
              throw new AddressSetupError(text, err instanceof Error ? err.message : String(err));
            }
            address = { address: w.address, prefix: w.prefix };
          }
          negotiate(peer.encoding, offload && w.caps?.includes(GSO_CAPABILITY) === true, w.mtu);
          everWelcomed = true;
          welcomed = true;
          const out: ClientEvent[] = [{ type: 'welcomed', address: formatIpv4(w.address), prefix: w.prefix, hub: formatIpv4(w.hub), ...(assigned ? { assigned } : {}) }];
          if (w.udp !== undefined && udpPort !== undefined) offers$.next(w.udp);
          else if (transport === 'udp') throw new SessionEnd('udp-failed', 'the hub offers no UDP data path (it runs -transport tcp, could not bind UDP, or predates it) and -transport udp allows no fall back');
          // A WELCOME without routes clears what an earlier session installed (the hub restarted
          // without the member behind them): no stale route outlives its member.
          if ((w.routes !== undefined && w.routes.length > 0) || routing) out.push(...applyRoutes(w.routes ?? [], conn.remote));
          return out;
        };

        const onItem = (item: PeerItem): ClientEvent[] => {
          switch (item.kind) {
            case 'data':
              return [...established(), ...fromHub(item.packets)];
            case 'send-drops':
              return [dropsEvent('hub', item.drops)];
            case 'learned':
              return [];
            case 'control':
              switch (item.type) {
                case FrameType.Keepalive:
                  return established();
                case FrameType.Welcome:
                  return onWelcome(item.payload);
                case FrameType.Routes: {
                  const r = decodeControl(FrameType.Routes, RoutesCodec, item.payload);
                  if (r instanceof ControlDecodeError || !welcomed) return [dropsEvent('hub', { 'unexpected-control': 1 })];
                  return applyRoutes(r.routes, conn.remote);
                }
                case FrameType.Reject: {
                  const r = decodeControl(FrameType.Reject, RejectCodec, item.payload);
                  if (r instanceof ControlDecodeError) throw new SessionEnd('closed', `the hub sent an unreadable REJECT (${r.detail})`);
                  throw new RejectedError(r.reason, r.message ?? '');
                }
                case FrameType.Introduction:
                case FrameType.Withdrawal:
                  return onDirect(item.type, item.payload);
                case FrameType.DirectRequest:
                  return [dropsEvent('hub', { 'unknown-type': 1 })];
                default:
                  return [dropsEvent('hub', { 'unexpected-control': 1 })];
              }
          }
        };

        /** An INTRODUCTION or a WITHDRAWAL: for the pairs while they run; to a client that offered no `direct`, an unknown type. */
        const onDirect = (type: typeof FrameType.Introduction | typeof FrameType.Withdrawal, payload: Uint8Array): ClientEvent[] => {
          if (!offersDirect) return [dropsEvent('hub', { 'unknown-type': 1 })];
          const pairs = live.pairs;
          const message = type === FrameType.Introduction ? decodeControl(type, IntroductionCodec, payload) : decodeControl(type, WithdrawalCodec, payload);
          if (message instanceof ControlDecodeError || pairs === undefined) return [dropsEvent('hub', { 'unexpected-control': 1 })];
          if ('key' in message) pairs.introduce(message);
          else pairs.withdraw(message);
          return [];
        };

        /**
         * The hub's UDP offer taken up: a channel to the hub's address at the offered port, keyed
         * from the TLS session (or, without TLS, the secret in the offer); its packets join the ones
         * over TCP. Under `auto` a channel that cannot be opened leaves the session on TCP.
         */
        const offers$ = new Subject<UdpOffer>();
        const udp$: Observable<ClientEvent> = offers$.pipe(
          take(1),
          switchMap((offer) => {
            const hubHost = parseHostPort(conn.remote)?.host;
            const secret = offer.secret ?? conn.tlsSecret;
            const unavailable = (detail: string): Observable<ClientEvent> =>
              transport === 'udp' ? throwError(() => new SessionEnd('udp-failed', `${detail} and -transport udp allows no fall back`)) : of<ClientEvent>({ type: 'udp-unavailable', detail });
            if (udpPort === undefined || hubHost === undefined) return unavailable(`the hub's address ${conn.remote} is not one UDP can reach`);
            if (secret === undefined) return unavailable('the hub offered UDP without a secret on a connection without TLS');
            return udpPort.open(hubHost, offer.port, offer.id, secret, offer.cipher).pipe(
              switchMap((socket) => {
                const link = udpLink(socket.hub, { mode: transport === 'udp' ? 'udp' : 'auto', scheduler });
                peer.link = link;
                // What the socket could give no channel is counted with the hub's drops, as the link's own.
                const unclaimed$ = socket.drops$.pipe(map((drops): LinkEvent => ({ kind: 'drops', drops })));
                // Direct paths when both sides take part and this side knows its tunnel address.
                const pairs =
                  hubDirect && address !== undefined
                    ? directPairs({
                        socket,
                        tunnel: address,
                        hub: () => live.hub,
                        lans: () => lans,
                        hubUp: () => link.up,
                        addresses: () => ports.hostNetwork?.addresses?.() ?? [],
                        control: (frame, key) => peer.control(frame, key),
                        toTun: (packets) => toTun.next(packets),
                        scheduler,
                      })
                    : undefined;
                live.pairs = pairs;
                return merge(merge(link.events$, unclaimed$).pipe(emitEach(onLink)), pairs?.events$ ?? EMPTY).pipe(
                  finalize(() => {
                    if (peer.link === link) peer.link = undefined;
                    if (live.pairs === pairs) live.pairs = undefined;
                  }),
                );
              }),
              // The socket failed (to open, or later): under `auto` the session carries on over TCP.
              catchError((err: unknown) => (err instanceof SessionEnd ? throwError(() => err) : unavailable(`the UDP socket failed: ${err instanceof Error ? err.message : String(err)}`))),
            );
          }),
        );

        /** What the session's UDP link reports: the hub's packets, its drops, its transport changes. */
        const onLink = (e: LinkEvent): ClientEvent[] => {
          switch (e.kind) {
            case 'packets':
              return fromHub(e.packets);
            case 'drops':
              return [dropsEvent('hub', e.drops)];
            case 'transport':
              // Up again: the hub learns this side's local endpoints (they may have changed).
              if (e.transport === 'udp') live.pairs?.announce();
              return [{ type: 'transport', who: 'hub', transport: e.transport, why: e.why }];
          }
        };

        // A client that asks for its address cannot work without a WELCOME (a 0.0.1-era hub never sends one).
        const welcomeDeadline$: Observable<ClientEvent> =
          settings.tunnel !== undefined
            ? EMPTY
            : timer(welcomeTimeoutMs, scheduler).pipe(
                mergeMap(() => {
                  if (welcomed) return EMPTY;
                  // Stopping for good is right for the one hub of a client (a 0.0.1-era hub never
                  // welcomes); with several, this hub failed (it hangs, say) and the next may do.
                  if (!everWelcomed && settings.remotes.length === 1) return throwError(() => new NoAssignmentError(conn.remote, welcomeTimeoutMs));
                  return throwError(() => new SessionEnd('handshake-timeout', `no WELCOME within ${welcomeTimeoutMs / 1000} s`));
                }),
              );

        session$.next(live);
        return merge(of<ClientEvent>({ type: 'connected', id: conn.id, remote: conn.remote }), peer.items$.pipe(emitEach(onItem)), drops$, welcomeDeadline$, udp$).pipe(
          catchError((err: unknown) => {
            const { reason, detail } = endReason(err);
            const out: ClientEvent[] = [];
            if (err instanceof RejectedError) out.push({ type: 'rejected', reason: err.reason, message: err.detail });
            out.push({ type: 'disconnected', remote: conn.remote, reason, detail });
            // A fatal refusal ends the client, a pushback waits long: pass those errors on as they are.
            const tail = isFatal(err) || isPushback(err) ? throwError(() => err) : throwError(() => new SessionEnd(reason, detail));
            return concat(of(...out), tail);
          }),
          finalize(() => {
            if (session$.value === live) session$.next(undefined);
          }),
        );
      });

    /** One attempt at one hub: dial it, then the session. */
    const attempt = (c: HubCandidate): Observable<ClientEvent> =>
      c.kind === 'unresolved'
        ? concat(of<ClientEvent>({ type: 'connecting', remote: c.label }), throwError(() => new Error(c.detail)))
        : concat(
            of<ClientEvent>({ type: 'connecting', remote: c.label }),
            ports.dialer.dial(c.host, c.port, c.name).pipe(
              switchMap(session),
              tap((e) => {
                if (isProgress(e)) lastHub = candidateKey(c);
              }),
            ),
          );

    /** One round: every hub of the list once, in order from the one after the last that took this client. */
    const round$ = hubCandidates(settings.remotes, ports.resolver).pipe(
      switchMap((candidates) => {
        hubEndpoints = candidates.filter((c) => c.kind === 'dial').map(candidateKey);
        const last = candidates.findIndex((c) => candidateKey(c) === lastHub);
        return failover(candidates.length, last + 1, (i) => attempt(candidates[i]!), {
          isProgress,
          // A refusal no hub would lift (fatal) or a live twin (pushback) ends the round; anything else is this hub's.
          movesOn: (err) => !isFatal(err) && !isPushback(err),
          moving: ({ from, to, cause }): ClientEvent => ({ type: 'next-hub', from: candidates[from]!.label, to: candidates[to]!.label, cause: describeMove(cause) }),
        });
      }),
    );

    const sessions$ = round$.pipe(
      reconnect<ClientEvent>({
        initialMs: settings.backoff.initialMs,
        maxMs: settings.backoff.maxMs,
        ...(settings.backoff.settleMs === undefined ? {} : { settleMs: settings.backoff.settleMs }),
        scheduler,
        random: ports.random,
        isProgress,
        isFatal,
        isPushback,
        retrying: ({ attempt, delayMs, cause }) => ({ type: 'retrying', attempt, delayMs, cause: describeCause(cause) }),
      }),
    );

    const stats$ = statsTicks(settings.statsIntervalMs, scheduler, (at) => at).pipe(
      withLatestFrom(session$),
      map(([at, live]): ClientEvent => {
        const peers = live?.pairs?.peers();
        return { type: 'stats', at, session: live?.peer.stats(live.address), tun: tunStats(tunRead, tunWritten, tunGauge), ...(peers === undefined ? {} : { peers }) };
      }),
    );

    return merge(sessions$, tunReads$, tunWrites$, stats$, ports.routes?.events$ ?? EMPTY).pipe(
      finalize(() => {
        session$.complete();
        ports.routes?.set([]);
      }),
    );
  });
}

/** A session joined: WELCOME, or the first frame of a hub that sends none. */
function isProgress(e: ClientEvent): boolean {
  return e.type === 'welcomed' || e.type === 'established';
}

/** Why a hub did not take the client, for the move to the next one: the refusal or the failure. */
function describeMove(cause: unknown): string {
  if (cause === undefined) return 'the attempt ended';
  const { reason, detail } = endReason(cause);
  return reason === 'rejected' || reason === 'reset' ? detail : `${reason}: ${detail}`;
}

/** Errors that end the client instead of a retry: fatal refusals, no WELCOME for an assigned address, a refused address. */
function isFatal(e: unknown): boolean {
  return (e instanceof RejectedError && FATAL_REJECT_REASONS.has(e.reason)) || e instanceof NoAssignmentError || e instanceof AddressSetupError;
}

/** Refusals that mean another live client uses this identity: wait the longest backoff before trying again. */
function isPushback(e: unknown): boolean {
  return e instanceof RejectedError && (e.reason === 'replaced' || e.reason === 'duplicate-identity');
}

function describeCause(cause: unknown): string {
  if (cause === undefined) return 'the attempt ended';
  if (cause instanceof SessionEnd) return cause.reason;
  return endReason(cause).detail;
}
