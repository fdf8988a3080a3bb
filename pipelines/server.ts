// The hub: wiring. Connections become sessions (hubSession.ts: a peer session, admission, member
// forwarding); the hub's state (members, LAN routes, leases, penalties) is a store over one reducer
// (hubState.ts), read by the forwarding policy (forwarding.ts) per packet; the hub's own TUN device
// is one more sender and receiver; effects of state changes (ROUTES to members, kernel routes, the
// lease file) follow the store's changes.
import { EMPTY, Observable, Subject, asyncScheduler, auditTime, catchError, concat, defer, distinctUntilChanged, filter, finalize, map, merge, mergeMap, of, tap, throwError, type SchedulerLike } from 'rxjs';
import { boundedQueue } from '../operators/boundedQueue.js';
import { formatHostPort, formatIpv4, formatPrefix, networkAddress, parseHostPort, type Ipv4Prefix } from '../operators/core/address.js';
import { addDrop, addDrops, type DropCounts, type PacketBatch, type Routed } from '../operators/core/packet.js';
import { CAPABILITIES, GSO_CAPABILITY, PROTOCOL_VERSION, encodeControl, type Introduction, type Withdrawal } from '../operators/core/wire/control.js';
import { fitPackets } from '../operators/core/wire/fragment.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { ipv4Destination } from '../operators/core/wire/ipv4.js';
import { replicate, type ReplicateInput, type ReplicatedBatch } from '../operators/replicate.js';
import { route } from '../operators/route.js';
import type { AdmissionSettings } from './admission.js';
import type { ServerEvent, SessionStats } from './events.js';
import { HUB, forwardingPolicy, isRemote, type RemoteHub, type Target } from './forwarding.js';
import { clusterRoutes, otherHubsLans } from './clusterRoutes.js';
import { clusterStats } from './clusterStatus.js';
import { trunks, type TrunkSink, type Trunks } from './trunks.js';
import { initialHubState, reduceHub, type HubEvent, type HubState } from './hubState.js';
import { hubSession, takeReplicable, type HubDirect } from './hubSession.js';
import { introduce, introducedPair, noIntroductions, pairPath, reportPath, withdrawals, type IntroductionAsk, type Outgoing } from './introductions.js';
import { initialMembership, lanRoutes, leaseInfo, routesFor, type MemberRecord, type Membership } from './membership.js';
import { count, counter, countingSink, reportingRejections, statsTicks, tunStats } from './peer.js';
import type { Authenticator, HostNetworkPort, LeaseStore, ListenerPort, RoutesPort, TunPort, UdpHub, UdpHubPort } from './ports.js';
import type { ServerSettings } from './settings.js';
import { createStore, type Change } from './store.js';
import { hubCluster, type ClusterPorts } from './clusterMembers.js';

export { MAX_LAN_ROUTES } from './admission.js';

/** What the hub is built from. */
export interface ServerPorts {
  readonly tun: TunPort;
  readonly listener: ListenerPort;
  /** Time source for keepalives and idle detection; asyncScheduler by default. */
  readonly scheduler?: SchedulerLike;
  /** When present, every client must authenticate in its HELLO (0.0.1-era clients cannot join). */
  readonly authenticator?: Authenticator;
  /** New values for the settings that can change without dropping sessions (for example on SIGHUP). */
  readonly reload$?: Observable<ReloadableSettings>;
  /** Where leases survive restarts; without it they last as long as the subscription. */
  readonly leases?: LeaseStore;
  /** The hub host's kernel routes to the members' LANs through its TUN device (optional). */
  readonly routes?: RoutesPort;
  /** The hub host's underlay, which no announced LAN may cover (its addresses, networks, gateways); without it only the special ranges and the members' endpoints are guarded. */
  readonly hostNetwork?: HostNetworkPort;
  /** The UDP data path: the hub binds UDP at its listener's port (unless settings.transport is `tcp`); without it every member stays on TCP. */
  readonly udp?: UdpHubPort;
  /** The hub serves one virtual LAN with the other hubs of a cluster (docs/cluster.md); without it the hub is on its own. */
  readonly cluster?: ClusterPorts;
}

/** With `-transport udp`, the hub could not bind its UDP socket (the hub stops). */
export class UdpBindError extends Error {
  override readonly name = 'UdpBindError';
}

/** Settings a running hub can take on live. */
export type ReloadableSettings = Pick<ServerSettings, 'clientIsolation' | 'maxClients'>;

/** Without authentication, a connection has the keepalive interval plus this long to send its HELLO or first packet. */
export const ADMISSION_MARGIN_MS = 5000;
/** How long new leases may wait to be written to the lease store (one write for a burst of joins). */
export const LEASE_SAVE_MS = 200;

const dropsEvent = (who: string, drops: DropCounts): ServerEvent => ({ type: 'drops', who, drops });

/**
 * The hub pipeline. Subscribing opens the listener and starts forwarding; the output reports
 * listening, connected, joined, rejected, left, drops, stats and state events. Per-client failures
 * end only that client's session (as a `left` event); the output errors only when the listener or
 * the TUN device fails. Unsubscribing closes every session and the listener, stops reading the TUN
 * device and withdraws the kernel routes.
 */
export function serverPipeline(settings: ServerSettings, ports: ServerPorts): Observable<ServerEvent> {
  return defer(() => {
    const scheduler = ports.scheduler ?? asyncScheduler;
    const authenticator = ports.authenticator;
    const live: { -readonly [K in keyof ReloadableSettings]: ReloadableSettings[K] } = { clientIsolation: settings.clientIsolation, maxClients: settings.maxClients };
    const reserved = authenticator?.reserved ?? new Map<number, string>();
    const space = { network: networkAddress(settings.tunnel), prefix: settings.tunnel.prefix, hub: settings.tunnel.address, ...(settings.pool === undefined ? {} : { pool: settings.pool }) };
    const { membership, discarded } = initialMembership(space, ports.leases?.initial ?? {}, reserved);
    const store = createStore<HubState, HubEvent>(initialHubState(membership), reduceHub);
    const cluster = ports.cluster === undefined ? undefined : hubCluster(ports.cluster, store, scheduler);
    const bcast = settings.broadcast;
    const policy = forwardingPolicy({
      tunnel: settings.tunnel,
      broadcastGroups: bcast === undefined ? undefined : new Set(bcast.groups),
      membership: () => store.state.membership,
      isolation: () => live.clientIsolation,
      ...(cluster === undefined ? {} : { cluster: clusterRoutes(() => cluster.view()) }),
    });
    const offload = ports.tun.offload === true;
    const admission = (): AdmissionSettings => ({
      tunnel: settings.tunnel,
      maxClients: live.maxClients,
      multiClient: settings.multiClient,
      timeoutMs: settings.timeoutMs,
      allowRoutes: settings.allowRoutes ?? [],
      offload,
    });

    // The hub's own TUN device: packets for it wait in one bounded queue.
    const tunRead = counter();
    const tunWritten = counter();
    const tunGauge = { depth: 0 };
    const toTun = new Subject<PacketBatch>();
    const tunRefusals$ = new Subject<ServerEvent>();
    const tunSink = reportingRejections(countingSink(ports.tun.sink, tunWritten), (d) => tunRefusals$.next(dropsEvent('tun', d)));
    const tunWrites$ = merge(
      toTun.pipe(
        boundedQueue({ limit: settings.recvQueueSize, sink: tunSink, gauge: tunGauge }),
        map((n) => dropsEvent('tun', { 'queue-full': n })),
      ),
      tunRefusals$,
    );

    /**
     * Hands each route's packets to its target: the hub's TUN device, or a member in a form it
     * accepted (fitPackets: oversize packets fragmented, or dropped as `too-big` with an ICMP
     * fragmentation-needed answered to their sender, as a router would). Adds its drops to `rb`.
     */
    const deliver = (rb: { readonly routes: readonly Routed<Target>[]; drops: DropCounts | undefined }): void => {
      for (const r of rb.routes) {
        if (r.target === HUB) {
          toTun.next(r.packets);
          continue;
        }
        const to = sinkOf(r.target as MemberRecord | RemoteHub);
        if (to === undefined) {
          rb.drops = addDrop(rb.drops, 'trunk-down', r.packets.length);
          continue;
        }
        const fitted = fitPackets(r.packets, to.maxPacket(), settings.tunnel.address);
        if (fitted === undefined) {
          to.send(r.packets);
          continue;
        }
        if (fitted.packets.length > 0) to.send(fitted.packets);
        rb.drops = addDrops(rb.drops, fitted.drops);
        for (const answer of fitted.answers) {
          const t = policy.toward(ipv4Destination(answer));
          const back = t === HUB ? undefined : sinkOf(t as MemberRecord | RemoteHub);
          if (t === HUB) toTun.next([answer]);
          else if (back === undefined) rb.drops = addDrop(rb.drops, 'trunk-down');
          else back.send([answer]);
        }
      }
    };
    /** Where a member's or another hub's packets go: the member's session, or the trunk while it is up. */
    const sinkOf = (t: MemberRecord | RemoteHub): TrunkSink | undefined => (isRemote(t) ? trunkSet?.sink(t.trunk) : t.session);

    /** Replication of broadcasts and allowed multicast, one token bucket per `replicate` (so per sender). */
    const replicating = (input$: Observable<ReplicateInput<Target>>, who: () => string): Observable<ServerEvent> =>
      bcast === undefined
        ? EMPTY
        : input$.pipe(
            replicate<Target>({ subnet: settings.tunnel, receivers: policy.receivers, groups: bcast.groups, rate: bcast.pps, scheduler }),
            tap((rb: ReplicatedBatch<Target>) => deliver(rb)),
            filter((rb) => rb.drops !== undefined),
            map((rb) => dropsEvent(who(), rb.drops!)),
          );

    const hubBroadcasts$ = new Subject<ReplicateInput<Target>>();
    const tunReads$ = merge(
      ports.tun.packets$.pipe(
        tap((batch) => count(tunRead, batch)),
        route(policy.fromHub),
        map((rb) => takeReplicable(rb, HUB, hubBroadcasts$)),
        tap((rb) => deliver(rb)),
        filter((rb) => rb.drops !== undefined),
        map((rb) => dropsEvent('tun', rb.drops!)),
      ),
      replicating(hubBroadcasts$, () => 'tun'),
    );

    const sessionStats = new Map<number, () => SessionStats>();
    const transport = settings.transport ?? 'auto';
    let udpHub: UdpHub | undefined;
    let udpIds = 0;
    const nextUdpId = (): number => (udpIds = (udpIds % 0xffffffff) + 1);

    // Direct paths (docs/direct.md): the introductions live here, beside the store, changed only by
    // the policy (introduce, withdrawals); what it decides goes out in the members' control lanes,
    // keyed by peer, so a newer message about a peer replaces an older one that has not gone out.
    let introductions = noIntroductions();
    const pairEvent = (a: MemberRecord, b: MemberRecord): { a: string; b: string } => ({ a: a.addressText, b: b.addressText });
    const tell = (o: Outgoing<Introduction> | Outgoing<Withdrawal>, frame: Uint8Array): void => o.to.session.control(frame, `direct:${formatIpv4(o.message.peer)}`);
    const direct: HubDirect | undefined =
      settings.direct === false || transport === 'tcp'
        ? undefined
        : {
            introduced: (x, y) => introducedPair(introductions, x, y) !== undefined,
            ask(ask: IntroductionAsk): ServerEvent[] {
              const hub = udpHub;
              const { state, verdict } = introduce(introductions, ask, {
                membership: store.state.membership,
                policy,
                facts: (m) => m.session.direct?.(),
                now: scheduler.now(),
                cipher: hub?.cipher ?? 'aes-256-gcm',
                // Only members with a UDP path to the hub are introduced, so the socket is there.
                randomKey: () => hub!.randomSecret(),
                nextId: nextUdpId,
              });
              introductions = state;
              if (verdict.kind === 'refuse') {
                if (verdict.answer !== undefined) tell(verdict.answer, encodeControl(FrameType.Withdrawal, verdict.answer.message));
                return [];
              }
              for (const o of verdict.introductions) tell(o, encodeControl(FrameType.Introduction, o.message));
              return [{ type: 'introduced', ...pairEvent(verdict.pair.a, verdict.pair.b), by: ask.kind }];
            },
            report(from, message): ServerEvent[] {
              const { state, verdict } = reportPath(introductions, { from, message }, { membership: store.state.membership, now: scheduler.now() });
              introductions = state;
              if (verdict.kind === 'refused') return [{ type: 'drops', who: from.addressText, drops: { 'unexpected-control': 1 } }];
              return verdict.changed ? [{ type: 'pair-path', ...pairEvent(verdict.pair.a, verdict.pair.b), path: pairPath(verdict.pair) }] : [];
            },
          };
    /** Withdraws the pairs a change ended (of the `touched` addresses; every pair when undefined) and tells their live sides. */
    const withdraw = (touched?: readonly number[]): ServerEvent[] => {
      if (direct === undefined) return [];
      const { state, withdrawn } = withdrawals(introductions, { membership: store.state.membership, policy }, touched);
      introductions = state;
      return withdrawn.map((w) => {
        for (const o of w.withdrawals) tell(o, encodeControl(FrameType.Withdrawal, o.message));
        return { type: 'withdrawn', ...pairEvent(w.pair.a, w.pair.b), reason: w.reason } as const;
      });
    };
    // The trunks to the other hubs of the cluster (docs/cluster.md, "Trunks").
    const trunkPorts = ports.cluster?.trunks;
    const trunkSet: Trunks | undefined =
      cluster === undefined || trunkPorts === undefined
        ? undefined
        : trunks({
            me: ports.cluster!.settings.me,
            settings,
            scheduler,
            policy,
            view: () => cluster.view(),
            views$: cluster.views$,
            auth: trunkPorts.auth,
            dialer: trunkPorts.dialer,
            caps: offload ? [...CAPABILITIES, GSO_CAPABILITY] : [...CAPABILITIES],
            deliver,
            replicating,
          });
    const context = {
      settings,
      scheduler,
      store,
      policy,
      admission,
      // With authentication the HELLO deadline; without, a 0.0.1-era client (which sends nothing
      // before its first packet or keepalive) gets the keepalive interval plus a margin.
      admissionMs: authenticator === undefined ? settings.keepaliveMs + ADMISSION_MARGIN_MS : settings.helloTimeoutMs,
      ...(authenticator === undefined ? {} : { authenticator }),
      ...(ports.hostNetwork === undefined ? {} : { hostNetwork: ports.hostNetwork }),
      caps: offload ? [...CAPABILITIES, GSO_CAPABILITY] : [...CAPABILITIES],
      deliver,
      replicating,
      sessionStats,
      udp: () => udpHub,
      nextUdpId,
      ...(direct === undefined ? {} : { direct }),
      ...(cluster === undefined ? {} : { cluster }),
      ...(trunkSet === undefined ? {} : { trunks: trunkSet }),
    };

    /**
     * The hub's UDP socket, bound at the listener's port once it listens: its refusals (datagrams of
     * no session, malformed ones) are drops of 'udp'. A failed bind leaves every member on TCP under
     * `auto` (one udp-unavailable event) and stops the hub under `udp`.
     */
    const udpSocket = (listening: string): Observable<ServerEvent> => {
      const at = parseHostPort(listening);
      if (ports.udp === undefined || transport === 'tcp' || at === undefined) return EMPTY;
      return ports.udp.bind(at.port).pipe(
        mergeMap((hub) => {
          udpHub = hub;
          return concat(
            of<ServerEvent>({ type: 'udp-listening', address: formatHostPort({ host: at.host, port: hub.port }) }),
            hub.drops$.pipe(map((d) => dropsEvent('udp', d))),
          );
        }),
        finalize(() => (udpHub = undefined)),
        catchError((err: unknown) => {
          const detail = `cannot bind UDP port ${at.port}: ${err instanceof Error ? err.message : String(err)}`;
          return transport === 'udp' ? throwError(() => new UdpBindError(`${detail} (-transport udp needs it)`)) : of<ServerEvent>({ type: 'udp-unavailable', detail });
        }),
      );
    };

    const sessions$ = ports.listener.events$.pipe(
      mergeMap((ev): Observable<ServerEvent> => {
        switch (ev.type) {
          case 'listening':
            return concat(of<ServerEvent>({ type: 'listening', address: ev.address, tun: ports.tun.name, hub: formatPrefix(settings.tunnel) }), udpSocket(ev.address));
          case 'handshake-failed':
          case 'refused':
            return of(ev);
          case 'connection':
            return hubSession(ev.connection, context);
        }
      }),
    );

    // Effects of state changes: LAN routes to the members that take them (in their control lane: a
    // member under load still gets the latest set) and to the hub's kernel; new leases to the store.
    const effects$ = store.changes$.pipe(mergeMap((change) => effectsOf(change)));
    /** The LANs behind the other hubs' members (none without a cluster). */
    const remoteLans = (): { cidr: Ipv4Prefix; via: number }[] => (cluster === undefined ? [] : otherHubsLans(cluster.view()));
    /** Tells every member that takes routes (but `joiners`, who hear theirs in their WELCOME) the routes of `m` and the other hubs, and the kernel their prefixes. */
    const announceRoutes = (m: Membership, joiners: ReadonlySet<MemberRecord>): void => {
      const remote = remoteLans();
      for (const member of m.members.values()) {
        if (member.takesRoutes && !joiners.has(member)) member.session.control(encodeControl(FrameType.Routes, { version: PROTOCOL_VERSION, routes: routesFor(m, member, remote) }), 'routes');
      }
      ports.routes?.set([...m.lans.entries().map((e) => e.prefix), ...remote.map((r) => r.cidr)]);
    };
    const effectsOf = (change: Change<HubState, HubEvent>): ServerEvent[] => {
      const out: ServerEvent[] = [];
      const before = change.before.membership;
      const after = change.after.membership;
      if (after.lans !== before.lans && (after.lans.size > 0 || before.lans.size > 0)) {
        announceRoutes(after, new Set(change.events.flatMap((e) => (e.type === 'joined' ? [e.member] : []))));
        out.push({ type: 'routes', routes: lanRoutes(after) });
      }
      // A member that left or was replaced ends its pairs (its address's budget is forgotten when nobody holds it).
      const touched = change.events.flatMap((e) => (e.type === 'joined' || e.type === 'left' ? [e.member.address] : []));
      if (touched.length > 0) out.push(...withdraw(touched));
      if (change.events.some((e) => e.type === 'joined' && e.lease !== undefined)) {
        leaseSaveDue = true;
        leaseSaves.next();
      }
      return out;
    };

    // New leases reach the lease store at most once per LEASE_SAVE_MS: a burst of joins costs one
    // synchronous, fsync'd write of the table, not one per join (O(n) each); a save still due when
    // the hub stops is written then.
    const leaseSaves = new Subject<void>();
    let leaseSaveDue = false;
    const saveLeases = (): ServerEvent[] => {
      leaseSaveDue = false;
      const membership = store.state.membership;
      const result = ports.leases?.save(membership.allocator.leases());
      return [
        ...(result !== undefined && !result.ok ? [{ type: 'lease-error', detail: result.detail } as const] : []),
        { type: 'leases', leases: leaseInfo(membership) },
      ];
    };
    const leaseSaves$ = leaseSaves.pipe(
      auditTime(LEASE_SAVE_MS, scheduler),
      mergeMap(() => (leaseSaveDue ? saveLeases() : [])),
    );

    const stats$ = statsTicks<ServerEvent[]>(settings.statsIntervalMs, scheduler, (at) => [
      {
        type: 'stats',
        at,
        sessions: [...sessionStats.values()].map((read) => read()),
        tun: tunStats(tunRead, tunWritten, tunGauge),
      },
      ...(cluster === undefined ? [] : [clusterStats(ports.cluster!.settings.me, cluster.view(), trunkSet)]),
    ]).pipe(mergeMap((events) => events));

    // Reloads apply to what happens next: members beyond a lowered max_clients stay until they leave.
    // Isolation turned on withdraws every pair it now separates.
    const reloads$: Observable<ServerEvent> = (ports.reload$ ?? EMPTY).pipe(
      mergeMap((next): ServerEvent[] => {
        const changed = (Object.keys(live) as (keyof ReloadableSettings)[]).filter((k) => live[k] !== next[k]);
        Object.assign(live, { clientIsolation: next.clientIsolation, maxClients: next.maxClients });
        return [{ type: 'reloaded', changed, clientIsolation: live.clientIsolation, maxClients: live.maxClients }, ...withdraw()];
      }),
    );

    const initial$ = defer(() => {
      const out: ServerEvent[] = [];
      if (discarded.length > 0) {
        out.push({ type: 'lease-error', detail: `ignored ${discarded.length} stored lease(s): ${discarded.map((d) => `${d.identity} ${formatIpv4(d.address >>> 0)} (${d.why})`).join(', ')}` });
      }
      // Hubs without a lease store and without pins start with no leases: nothing to report.
      if (ports.leases !== undefined || reserved.size > 0) out.push({ type: 'leases', leases: leaseInfo(store.state.membership) });
      return of(...out);
    });

    // The other hubs' LANs changed (a member of theirs joined with LANs, or left): every member and the kernel hear of it.
    const remoteRoutes$ =
      cluster === undefined
        ? EMPTY
        : cluster.views$.pipe(
            map((v) => otherHubsLans(v).map((r) => `${formatPrefix(r.cidr)}>${r.via}`).join(',')),
            distinctUntilChanged(),
            filter((key, i) => i > 0 || key !== ''),
            mergeMap(() => {
              announceRoutes(store.state.membership, new Set());
              return EMPTY;
            }),
          );

    return merge(initial$, effects$, remoteRoutes$, leaseSaves$, sessions$, tunReads$, tunWrites$, stats$, reloads$, cluster?.events$ ?? EMPTY, trunkSet?.events$ ?? EMPTY).pipe(
      finalize(() => {
        if (leaseSaveDue) saveLeases();
        store.complete();
        ports.routes?.set([]);
      }),
    );
  });
}
