// The client: keeps one session to the hub alive (reconnecting forever with backoff) and forwards
// packets between the local TUN device and that session.
import {
  Observable,
  Subject,
  asyncScheduler,
  EMPTY,
  catchError,
  concat,
  concatWith,
  defer,
  finalize,
  map,
  merge,
  mergeMap,
  of,
  switchMap,
  tap,
  throwError,
  timer,
  type SchedulerLike,
} from 'rxjs';
import { boundedQueue } from '../operators/boundedQueue.js';
import { reconnect } from '../operators/reconnect.js';
import type { DropCounts, Inbound, PacketBatch } from '../operators/core/packet.js';
import { addDrop } from '../operators/core/packet.js';
import {
  CAPABILITIES,
  GSO_CAPABILITY,
  ControlDecodeError,
  FATAL_REJECT_REASONS,
  PROTOCOL_VERSION,
  RejectCodec,
  RoutesCodec,
  WelcomeCodec,
  decodeControl,
  encodeControl,
  type LanRoute,
} from '../operators/core/wire/control.js';
import { FrameType, encodeFrame, type PacketEncoding } from '../operators/core/wire/frames.js';
import { fitPackets } from '../operators/core/wire/fragment.js';
import { ipv4Problem } from '../operators/core/wire/ipv4.js';
import { AddressSetupError, NoAssignmentError, RejectedError, SessionEnd, endReason, type ClientEvent, type RefusedRoute, type SessionStats } from './events.js';
import type { ConnectionPort, DialerPort, HostNetworkPort, RoutesPort, TunPort } from './ports.js';
import { RESERVED_RANGES, endpointGuard, routeHazard, type GuardedPrefix } from './routeGuard.js';
import { compatEncoding, count, counter, countingSink, encodePing, frameSink, negotiate, inboundItems, reportingRejections, rttOf, sendKeepalive, statsTicks, tunStats } from './session.js';
import type { ClientSettings } from './settings.js';
import { formatIpv4, formatPrefix, normalizePrefix, parseIpv4, parsePrefix, type Ipv4Prefix } from '../operators/core/address.js';

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
}

/** How long a client that asks for an address waits for WELCOME unless its settings say otherwise. */
export const WELCOME_TIMEOUT_MS = 10_000;


/**
 * The client pipeline. Subscribing starts reading the TUN device and dialing the hub; every session
 * that ends (closed, reset, idle, refused for a reason that may pass) is followed by a new attempt
 * after a jittered exponential backoff (settings.backoff). The output reports connecting,
 * connected, welcomed/established, rejected, disconnected, retrying and drops events. It errors only
 * when the hub refuses for a reason retrying cannot fix (RejectedError with a fatal reason) or the
 * TUN device fails. Unsubscribing closes the session and stops reading the TUN device.
 */
export function clientPipeline(settings: ClientSettings, ports: ClientPorts): Observable<ClientEvent> {
  return defer(() => {
    const scheduler = ports.scheduler ?? asyncScheduler;
    const { host, port } = settings.remote;
    const remoteText = `${host}:${port}`;
    /** The TUN device offloads segmentation: offer `gso` to the hub. */
    const offload = ports.tun.offload === true;
    /** The live session: its outbound packets, how the hub takes them, and the hub's tunnel address once welcomed. */
    let current: { readonly outbound: Subject<PacketBatch>; readonly encoding: PacketEncoding; hub: number | undefined } | undefined;
    /** The live session's counters, when there is one. */
    let currentStats: (() => SessionStats) | undefined;
    /** The address the TUN device has: the static one, or the last one the hub assigned. */
    let address: { readonly address: number; readonly prefix: number } | undefined = settings.tunnel;
    /** A session was welcomed since the pipeline started (then a missing WELCOME is not a 2.x hub). */
    let everWelcomed = false;
    const welcomeTimeoutMs = settings.welcomeTimeoutMs ?? WELCOME_TIMEOUT_MS;
    const ownRoutes = (settings.routes ?? []).map(formatPrefix);
    /** The kernel route set last asked for is not empty (a WELCOME without routes must then clear it). */
    let routing = false;
    /**
     * The kernel should route these LANs (other members') through the TUN device, except those that
     * would cover this host's own underlay or the hub it reaches (`hubRemote`): those are never
     * installed (routeGuard), so a hostile or mistaken announcement cannot cut this side off.
     */
    const applyRoutes = (routes: readonly LanRoute[], hubRemote: string): ClientEvent[] => {
      const guards: GuardedPrefix[] = [...RESERVED_RANGES, ...(ports.hostNetwork?.guarded() ?? [])];
      const hub = endpointGuard(hubRemote, `the hub's address (${hubRemote})`);
      if (hub !== undefined) guards.push(hub);
      const prefixes: Ipv4Prefix[] = [];
      const refused: RefusedRoute[] = [];
      for (const r of routes) {
        const parsed = parsePrefix(r.cidr);
        const p = parsed === undefined ? undefined : normalizePrefix(parsed);
        if (p === undefined || ownRoutes.includes(formatPrefix(p))) continue;
        const hazard = routeHazard(p, guards);
        if (hazard === undefined) prefixes.push(p);
        else refused.push({ cidr: r.cidr, via: r.via, why: `it covers ${hazard.what}` });
      }
      ports.routes?.set(prefixes);
      routing = prefixes.length > 0;
      return [{ type: 'routes', routes, ...(refused.length === 0 ? {} : { refused }) }];
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
      mergeMap((batch): ClientEvent[] => {
        if (current === undefined) return [dropsEvent('tun', { 'not-connected': batch.length })];
        // Packets larger than the hub takes are fragmented, or answered with ICMP fragmentation-needed
        // from the hub's address (this side's kernel then lowers its path MTU), as a router would.
        const fitted = fitPackets(batch, current.encoding.maxPacket, current.hub);
        if (fitted === undefined) {
          current.outbound.next(batch);
          return [];
        }
        if (fitted.packets.length > 0) current.outbound.next(fitted.packets);
        if (fitted.answers.length > 0) toTun.next(fitted.answers);
        return Object.keys(fitted.drops).length === 0 ? [] : [dropsEvent('tun', fitted.drops)];
      }),
    );

    const session = (conn: ConnectionPort): Observable<ClientEvent> =>
      defer(() => {
        const outbound = new Subject<PacketBatch>();
        const drops$ = new Subject<ClientEvent>();
        let heard = false;
        let welcomed = false;
        /** How packets are encoded for the hub: SUPER frames once its WELCOME offered `gso` too. */
        const encoding = compatEncoding();
        const live = { outbound, encoding, hub: undefined as number | undefined };
        current = live;
        const connectedAt = scheduler.now();
        let lastSeen = connectedAt;
        const rx = counter();
        const tx = counter();
        const gauge = { depth: 0 };
        let rttMs: number | undefined;
        let welcomedAs: string | undefined;
        /** The hub answers PING (it offered the `rtt` capability in its WELCOME). */
        let hubPings = false;
        const stats = (): SessionStats => ({
          id: conn.id,
          remote: conn.remote,
          address: welcomedAs,
          connectedAt,
          lastSeen,
          rx: { packets: rx.packets, bytes: rx.bytes },
          tx: { packets: tx.packets, bytes: tx.bytes },
          queued: gauge.depth,
          rttMs,
        });
        currentStats = stats;

        const tunnel = settings.tunnel;
        conn.write(
          encodeControl(FrameType.Hello, {
            version: PROTOCOL_VERSION,
            ...(tunnel === undefined ? { assign: true } : { address: formatIpv4(tunnel.address), prefix: tunnel.prefix }),
            mtu: settings.mtu,
            caps: offload ? [...CAPABILITIES, GSO_CAPABILITY] : [...CAPABILITIES],
            ...(settings.token === undefined ? {} : { token: settings.token }),
            ...(settings.clientId === undefined ? {} : { id: settings.clientId }),
            ...(ownRoutes.length === 0 ? {} : { routes: ownRoutes }),
          }),
        );

        /** The first DATA or KEEPALIVE from a hub that sent no WELCOME means the session works (2.x hub). */
        const established = (): ClientEvent[] => {
          if (heard) return [];
          heard = true;
          return [{ type: 'established', remote: conn.remote }];
        };

        const onItem = (item: Inbound): ClientEvent[] => {
          switch (item.kind) {
            case 'data': {
              let drops: DropCounts | undefined;
              let packets = item.packets;
              if (!packets.every((p) => ipv4Problem(p) === undefined)) {
                packets = packets.filter((p) => {
                  const problem = ipv4Problem(p);
                  if (problem !== undefined) drops = addDrop(drops, problem);
                  return problem === undefined;
                });
              }
              count(rx, item.packets);
              if (packets.length > 0) toTun.next(packets);
              const out = established();
              if (drops !== undefined) out.push(dropsEvent(address === undefined ? 'hub' : formatIpv4(address.address), drops));
              return out;
            }
            case 'tick':
              sendKeepalive(conn);
              if (hubPings && !conn.needsDrain) conn.write(encodePing(scheduler.now()));
              return [];
            case 'learned':
              return [];
            case 'control':
              switch (item.type) {
                case FrameType.Keepalive:
                  return established();
                case FrameType.Welcome: {
                  const w = decodeControl(FrameType.Welcome, WelcomeCodec, item.payload);
                  if (w instanceof ControlDecodeError) return [dropsEvent('hub', { 'unexpected-control': 1 })];
                  heard = true;
                  welcomedAs = w.address;
                  live.hub = parseIpv4(w.hub);
                  hubPings = w.caps?.includes('rtt') === true;
                  const assigned = settings.tunnel === undefined;
                  if (assigned) {
                    const a = parseIpv4(w.address)!;
                    if (address === undefined || address.address !== a || address.prefix !== w.prefix) {
                      if (ports.tun.setIpv4 === undefined) throw new AddressSetupError(`${w.address}/${w.prefix}`, 'this TUN device cannot change its address');
                      try {
                        ports.tun.setIpv4(a, w.prefix);
                      } catch (err) {
                        throw new AddressSetupError(`${w.address}/${w.prefix}`, err instanceof Error ? err.message : String(err));
                      }
                      address = { address: a, prefix: w.prefix };
                    }
                  }
                  negotiate(encoding, offload && w.caps?.includes(GSO_CAPABILITY) === true, w.mtu);
                  everWelcomed = true;
                  welcomed = true;
                  const out: ClientEvent[] = [{ type: 'welcomed', address: w.address, prefix: w.prefix, hub: w.hub, ...(assigned ? { assigned } : {}) }];
                  // A WELCOME without routes clears what an earlier session installed (the hub restarted
                  // without the member behind them): no stale route outlives its member.
                  if ((w.routes !== undefined && w.routes.length > 0) || routing) out.push(...applyRoutes(w.routes ?? [], conn.remote));
                  return out;
                }
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
                case FrameType.Ping:
                  if (item.payload.length !== 8) return [dropsEvent('hub', { 'unexpected-control': 1 })];
                  if (!conn.needsDrain) conn.write(encodeFrame(FrameType.Pong, item.payload));
                  return [];
                case FrameType.Pong: {
                  const rtt = hubPings ? rttOf(item.payload, scheduler.now()) : undefined;
                  if (rtt === undefined) return [dropsEvent('hub', { 'unexpected-control': 1 })];
                  rttMs = rtt;
                  return [];
                }
                case FrameType.Hello:
                  return [dropsEvent('hub', { 'unexpected-control': 1 })];
                default:
                  return [dropsEvent('hub', { 'unknown-type': 1 })];
              }
          }
        };

        const inbound$ = inboundItems(
          conn,
          settings,
          {
            onDrops: (d) => drops$.next(dropsEvent('hub', d)),
            onChunk: () => {
              lastSeen = scheduler.now();
            },
            // Having offered `gso`, this side takes SUPER frames from the start: a hub sends them
            // only after its WELCOME said it offloads too.
            superFrames: () => offload,
          },
          scheduler,
        ).pipe(
          mergeMap(onItem),
          concatWith(throwError(() => new SessionEnd('closed', 'the hub closed the connection'))),
        );
        const sendDrops$ = outbound.pipe(
          boundedQueue({ limit: settings.sendQueueSize, sink: countingSink(frameSink(conn, encoding), tx), gauge }),
          map((n) => dropsEvent('hub', { 'queue-full': n })),
        );

        // A client that asks for its address cannot work without a WELCOME (a 2.x hub never sends one).
        const welcomeDeadline$: Observable<ClientEvent> =
          settings.tunnel !== undefined
            ? EMPTY
            : timer(welcomeTimeoutMs, scheduler).pipe(
                mergeMap(() => {
                  if (welcomed) return EMPTY;
                  if (!everWelcomed) return throwError(() => new NoAssignmentError(conn.remote, welcomeTimeoutMs));
                  return throwError(() => new SessionEnd('handshake-timeout', `no WELCOME within ${welcomeTimeoutMs / 1000} s`));
                }),
              );

        return merge(of<ClientEvent>({ type: 'connected', id: conn.id, remote: conn.remote }), inbound$, sendDrops$, drops$, welcomeDeadline$).pipe(
          catchError((err: unknown) => {
            const { reason, detail } = endReason(err);
            const out: ClientEvent[] = [];
            if (err instanceof RejectedError) out.push({ type: 'rejected', reason: err.reason, message: err.detail });
            out.push({ type: 'disconnected', remote: conn.remote, reason, detail });
            // A fatal refusal ends the client: pass the error on after reporting it.
            const tail = isFatal(err) || isPushback(err) ? throwError(() => err) : throwError(() => new SessionEnd(reason, detail));
            return concat(of(...out), tail);
          }),
          finalize(() => {
            if (current === live) current = undefined;
            if (currentStats === stats) currentStats = undefined;
            outbound.complete();
            conn.close();
          }),
        );
      });

    const sessions$ = defer(() =>
      concat(
        of<ClientEvent>({ type: 'connecting', remote: remoteText }),
        ports.dialer.dial(host, port).pipe(switchMap(session)),
      ),
    ).pipe(
      reconnect<ClientEvent>({
        initialMs: settings.backoff.initialMs,
        maxMs: settings.backoff.maxMs,
        scheduler,
        random: ports.random,
        isProgress: (e) => e.type === 'welcomed' || e.type === 'established',
        isFatal,
        isPushback,
        retrying: ({ attempt, delayMs, cause }) => ({ type: 'retrying', attempt, delayMs, cause: describeCause(cause) }),
      }),
    );

    const stats$ = statsTicks<ClientEvent>(settings.statsIntervalMs, scheduler, (at) => ({
      type: 'stats',
      at,
      session: currentStats?.(),
      tun: tunStats(tunRead, tunWritten, tunGauge),
    }));

    return merge(sessions$, tunReads$, tunWrites$, stats$, ports.routes?.events$ ?? EMPTY).pipe(finalize(() => ports.routes?.set([])));
  });
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

function dropsEvent(who: string, drops: DropCounts): ClientEvent {
  return { type: 'drops', who, drops };
}

