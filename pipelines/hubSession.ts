// One connection at the hub: a peer session (peer.ts) that becomes a member when admission
// (admission.ts) says so, and then forwards its packets as the forwarding policy (forwarding.ts)
// decides. Every way it ends (peer closed, reset, idle, frame error, refusal, replacement, the
// admission deadline) is one `left` event, and membership hears it once.
import { Observable, Subject, catchError, defer, finalize, merge, mergeMap, of, switchMap, take, throwError, timer, type SchedulerLike } from 'rxjs';
import { formatIpv4, formatPrefix, type HostPort } from '../operators/core/address.js';
import { addDrop, type DropCounts, type DropReason, type PacketBatch, type RoutedBatch } from '../operators/core/packet.js';
import { ipv4Problem } from '../operators/core/wire/ipv4.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { ControlDecodeError, DIRECT_CAPABILITY, DirectPathCodec, DirectRequestCodec, HelloCodec, PROTOCOL_VERSION, UDP_CAPABILITY, decodeControl, encodeControl, type DirectPath, type Hello, type RejectReason, type UdpOffer } from '../operators/core/wire/control.js';
import { isolateBatch } from '../operators/isolate.js';
import { learnSource } from '../operators/learnSource.js';
import type { ReplicateInput } from '../operators/replicate.js';
import { emitEach } from '../operators/emitEach.js';
import { routeBatch } from '../operators/route.js';
import { admit, type AdmissionSettings, type Admitted, type Claim } from './admission.js';
import type { HubCluster } from './clusterMembers.js';
import { otherHubsLans } from './clusterRoutes.js';
import { SessionEnd, endReason, type ServerEvent, type SessionStats } from './events.js';
import { REPLICATE, isMember, type Decision, type ForwardingPolicy, type Target } from './forwarding.js';
import type { HubEvent, HubState } from './hubState.js';
import type { DirectFacts, IntroductionAsk } from './introductions.js';
import { routesFor, type MemberRecord } from './membership.js';
import { negotiate, peerSession, type PeerItem } from './peer.js';
import type { Authenticator, ConnectionPort, HostNetworkPort, UdpHub } from './ports.js';
import type { ServerSettings } from './settings.js';
import type { Store } from './store.js';
import { udpLink, type LinkEvent } from './udpLink.js';
import type { TrunkLink, Trunks } from './trunks.js';

/** What every session of one hub shares. */
export interface HubContext {
  readonly settings: ServerSettings;
  readonly scheduler: SchedulerLike;
  readonly store: Store<HubState, HubEvent>;
  readonly policy: ForwardingPolicy;
  /** The admission settings now (max_clients changes on reload). */
  readonly admission: () => AdmissionSettings;
  /** How long a connection may take to become a member. */
  readonly admissionMs: number;
  readonly authenticator?: Authenticator;
  readonly hostNetwork?: HostNetworkPort;
  /** The capabilities the hub offers in WELCOME. */
  readonly caps: readonly string[];
  /** Hands routed packets to their targets (and adds what it drops to the batch). */
  readonly deliver: (rb: { readonly routes: readonly { readonly target: Target; readonly packets: Uint8Array[] }[]; drops: DropCounts | undefined }) => void;
  /** The sender's replication stage (one token bucket per sender), as drop events. */
  readonly replicating: (input$: Observable<ReplicateInput<Target>>, who: () => string) => Observable<ServerEvent>;
  /** Where sessions register how to read their counters (for stats events). */
  readonly sessionStats: Map<number, () => SessionStats>;
  /** The hub's UDP socket while it is bound (members that offer `udp` get a channel on it). */
  readonly udp: () => UdpHub | undefined;
  /** A fresh UDP session id (never 0, unique while the hub runs). */
  readonly nextUdpId: () => number;
  /** Direct paths between members (docs/direct.md); absent when the hub runs without them. */
  readonly direct?: HubDirect;
  /** The hub's cluster (docs/cluster.md); absent without -etcd. */
  readonly cluster?: HubCluster;
  /** The trunks of the hub's cluster (docs/cluster.md, "Trunks"); absent without -etcd. */
  readonly trunks?: Trunks;
}

/** The hub's introductions as a session reaches them (server.ts keeps the state). */
export interface HubDirect {
  /** The members at `x` and `y` are introduced already (two map lookups: what a flow checks per batch). */
  introduced(x: number, y: number): boolean;
  /** Asks the introduction policy and sends what it decides (INTRODUCTIONs, a refused request's WITHDRAWAL); returns the events of it. */
  ask(ask: IntroductionAsk): ServerEvent[];
  /** A member's DIRECT-PATH: recorded if the policy takes it; returns the events of it (a pair's path that changed, or the drop). */
  report(from: MemberRecord, message: DirectPath): ServerEvent[];
}

/** A UDP endpoint as introductions speak it. */
const hostPort = (e: { readonly address: number; readonly port: number }): HostPort => ({ host: formatIpv4(e.address), port: e.port });

/** A refusal on its way out of the session (the REJECT was already written). */
class Refusal extends Error {
  override readonly name = 'Refusal';
  constructor(
    readonly reason: RejectReason,
    readonly logDetail: string,
    readonly address: string | undefined,
  ) {
    super(logDetail);
  }
}

const dropsEvent = (who: string, drops: DropCounts): ServerEvent => ({ type: 'drops', who, drops });

/** Drops of packets from a connection that is not a member: `unregistered`, or why they are not IPv4 at all (as routing would count them). */
function unregistered(packets: readonly Uint8Array[]): DropCounts {
  let drops: DropCounts | undefined;
  for (const p of packets) drops = addDrop(drops, ipv4Problem(p) ?? 'unregistered');
  return drops ?? {};
}

/**
 * The session of one accepted connection: emits connected, then joined (or rejected), drops, and
 * exactly one left event; completes after it. Unsubscribing closes the connection.
 */
export function hubSession(conn: ConnectionPort, ctx: HubContext): Observable<ServerEvent> {
  return defer(() => {
    const { settings, scheduler, store, policy } = ctx;
    const id = conn.id;
    let member: MemberRecord | undefined;
    /** Set when the connection is another hub's trunk (it never becomes a member). */
    let trunk: TrunkLink | undefined;
    const trunkUp$ = new Subject<TrunkLink>();
    const drops$ = new Subject<ServerEvent>();
    const ended$ = new Subject<never>();
    const broadcasts$ = new Subject<ReplicateInput<Target>>();
    /** Emits once, when the connection becomes a member. */
    const joined$ = new Subject<void>();
    const who = (): string => member?.addressText ?? conn.remote;
    /** Drops of this connection as events: counted on its trunk when it is one, else under who(). */
    const dropped = (d: DropCounts): ServerEvent[] => (trunk !== undefined ? trunk.dropped(d) : [dropsEvent(who(), d)]);
    const peer = peerSession(conn, {
      settings,
      scheduler,
      onDrops: (d) => {
        for (const e of dropped(d)) drops$.next(e);
      },
      superFrames: () => peer.encoding.superFrames,
      closedDetail: 'the peer closed the connection',
    });
    ctx.sessionStats.set(id, () => peer.stats(member?.addressText, member?.identity));

    const reject = (reason: RejectReason, message: string): void => peer.control(encodeControl(FrameType.Reject, { version: PROTOCOL_VERSION, reason, message }));

    /** Refuses the connection: the state hears `events`, the peer a REJECT, the session ends. */
    const refuseWith = (reason: RejectReason, detail: string, logDetail: string, address: string | undefined, events: readonly HubEvent[]): never => {
      store.dispatch(events);
      reject(reason, detail);
      throw new Refusal(reason, logDetail, address);
    };

    /** The claim in flight to the cluster's store (a hub of a cluster admits only once it is made). */
    let claiming = false;
    const claims$ = new Subject<Observable<ServerEvent>>();

    /**
     * A HELLO or a first packet: admission decides; the state hears what it decided. On a hub of a
     * cluster the address (and routes, and a new sticky lease) is claimed in the cluster's store
     * first, and the member joins once the claim is made (clusterMembers.ts).
     */
    const onClaim = (claim: Claim): ServerEvent[] => {
      if (claiming) return [dropsEvent(who(), { 'unexpected-control': 1 })];
      const cluster = ctx.cluster;
      const verdict = admit(claim, { remote: conn.remote, peerIdentity: conn.peerIdentity, now: scheduler.now() }, store.state, ctx.admission(), {
        ...(ctx.authenticator === undefined ? {} : { authenticator: ctx.authenticator }),
        underlay: ctx.hostNetwork?.guarded() ?? [],
        ...(cluster === undefined ? {} : { cluster: cluster.admission }),
      });
      if (!verdict.ok) return refuseWith(verdict.reason, verdict.detail, verdict.logDetail, verdict.address, verdict.events);
      if (cluster === undefined) return join(claim, verdict);
      claiming = true;
      claims$.next(
        cluster.claim({ address: verdict.address, lease: verdict.lease, routes: verdict.routes, remote: conn.remote, identity: verdict.identity, newLease: verdict.newLease }).pipe(
          mergeMap((outcome): ServerEvent[] => {
            claiming = false;
            if (!outcome.ok) {
              const r = outcome.refusal;
              return refuseWith(r.reason, r.detail, r.logDetail, formatIpv4(verdict.address), verdict.events.filter((e) => e.type === 'auth-passed'));
            }
            const events = join(claim, verdict);
            if (member !== undefined) cluster.joined(member, outcome.revision);
            return events;
          }),
        ),
      );
      return [];
    };

    /** The admitted connection becomes a member: the state hears the join, the peer its WELCOME. */
    const join = (claim: Claim, verdict: Admitted): ServerEvent[] => {
      negotiate(peer.encoding, verdict.gso, verdict.mtu);
      peer.pings = verdict.pings;
      const caps = claim.kind === 'hello' && !(claim.hello instanceof ControlDecodeError) ? (claim.hello.caps ?? []) : [];
      const udp = caps.includes(UDP_CAPABILITY) ? offerUdp() : undefined;
      // A member takes part in direct paths when it offered `direct`, the hub runs with them and it has a UDP channel.
      const answersDirect = udp !== undefined && ctx.direct !== undefined;
      takesDirect = answersDirect && caps.includes(DIRECT_CAPABILITY);
      const text = formatIpv4(verdict.address);
      const record: MemberRecord = {
        id,
        remote: conn.remote,
        address: verdict.address,
        addressText: text,
        identity: verdict.identity,
        exclusive: verdict.exclusive,
        lease: verdict.lease,
        routes: verdict.routes,
        takesRoutes: verdict.takesRoutes,
        session: {
          send: (packets) => {
            const lost = peer.data.send(packets);
            if (lost !== undefined) drops$.next(dropsEvent(who(), lost));
          },
          control: peer.control,
          maxPacket: () => peer.data.maxPacket(),
          lastSeen: peer.lastSeen,
          end: (err) => {
            // A replaced member hears why (a clone then backs off instead of flapping).
            if (err.reason === 'replaced') reject('replaced', err.told);
            ended$.error(err);
          },
          ...(takesDirect ? { direct: directFacts } : {}),
        },
      };
      verdict.replaces?.member.session.end(new SessionEnd('replaced', verdict.replaces.detail, verdict.replaces.told));
      store.dispatch([...verdict.events, { type: 'joined', member: record, ...(verdict.newLease && verdict.lease !== undefined ? { lease: { identity: verdict.lease, address: verdict.address } } : {}) }]);
      member = record;
      joined$.next();
      conn.admitted?.();
      if (verdict.via === 'hello') {
        const routes = routesFor(store.state.membership, record, ctx.cluster === undefined ? [] : otherHubsLans(ctx.cluster.view()));
        peer.control(
          encodeControl(FrameType.Welcome, {
            version: PROTOCOL_VERSION,
            address: verdict.address,
            prefix: settings.tunnel.prefix,
            hub: settings.tunnel.address,
            mtu: settings.mtu,
            keepalive: Math.round(settings.keepaliveMs / 1000),
            timeout: Math.round(settings.timeoutMs / 1000),
            caps: answersDirect ? [...ctx.caps, DIRECT_CAPABILITY] : [...ctx.caps],
            ...(routes.length === 0 ? {} : { routes }),
            ...(udp === undefined ? {} : { udp }),
          }),
        );
      }
      return [
        {
          type: 'joined',
          id,
          remote: conn.remote,
          address: text,
          via: verdict.via,
          members: store.state.membership.members.size,
          ...(verdict.identity === undefined ? {} : { identity: verdict.identity }),
          ...(verdict.assigned ? { assigned: true } : {}),
          ...(verdict.routes.length === 0 ? {} : { routes: verdict.routes.map(formatPrefix) }),
        },
      ];
    };

    /**
     * A trunk's HELLO (it names a hub): the connection is another hub's trunk if the trunks take it
     * (token, a live hub of the view, the lower name dials, no address claimed), else a REJECT.
     */
    const onTrunkHello = (hello: Hello): ServerEvent[] => {
      const trunks = ctx.trunks;
      if (trunks === undefined) return refuseWith('bad-hello', 'this hub is in no cluster: it takes no trunks', `a trunk HELLO from ${conn.remote} (hub ${hello.hub}), but this hub is in no cluster`, undefined, []);
      const verdict = trunks.accept(hello, conn, peer, (err) => ended$.error(err));
      if (!verdict.ok) return refuseWith(verdict.reason, verdict.detail, verdict.logDetail, undefined, []);
      trunk = verdict.link;
      conn.admitted?.();
      trunkUp$.next(verdict.link);
      return verdict.events;
    };

    /** The member takes part in direct paths (set at the join). */
    let takesDirect = false;
    /** Its local endpoints, from its latest DIRECT-REQUEST. */
    let localEndpoints: readonly HostPort[] = [];
    /** What introductions need of the member: where its datagrams come from while its UDP path is up, its local endpoints. */
    const directFacts = (): DirectFacts => {
      const link = peer.link;
      const seen = link?.up === true ? link.endpoint() : undefined;
      return { direct: true, observed: seen === undefined ? undefined : hostPort(seen), local: localEndpoints };
    };

    /** A DIRECT-REQUEST: its local endpoints are kept; with `peer`, the policy decides (and answers). To anyone not taking part it is an unknown type. */
    const onDirectRequest = (payload: Uint8Array): ServerEvent[] => {
      const direct = ctx.direct;
      if (member === undefined || !takesDirect || direct === undefined) return dropped({ 'unknown-type': 1 });
      const request = decodeControl(FrameType.DirectRequest, DirectRequestCodec, payload);
      if (request instanceof ControlDecodeError) return [dropsEvent(who(), { 'unexpected-control': 1 })];
      localEndpoints = request.local;
      return request.peer === undefined ? [] : direct.ask({ kind: 'request', from: member, peer: request.peer });
    };

    /** A DIRECT-PATH: what the member says of its path to a peer, for the policy to take or count. To anyone not taking part it is an unknown type. */
    const onDirectPath = (payload: Uint8Array): ServerEvent[] => {
      const direct = ctx.direct;
      if (member === undefined || !takesDirect || direct === undefined) return dropped({ 'unknown-type': 1 });
      const report = decodeControl(FrameType.DirectPath, DirectPathCodec, payload);
      return report instanceof ControlDecodeError ? [dropsEvent(who(), { 'unexpected-control': 1 })] : direct.report(member, report);
    };

    /**
     * The flows of a routed batch between this member and other members that take part in direct
     * paths: each one not introduced yet is offered to the policy (which says nothing unless it
     * introduces). Two map lookups per route once a pair is introduced; nothing for members that
     * take no part.
     */
    const offerFlows = (rb: RoutedBatch<Target>, from: MemberRecord, direct: HubDirect): ServerEvent[] | undefined => {
      let out: ServerEvent[] | undefined;
      for (const r of rb.routes) {
        const to = r.target;
        if (!isMember(to) || to.session.direct === undefined || direct.introduced(from.address, to.address)) continue;
        const events = direct.ask({ kind: 'flow', from, to });
        if (events.length > 0) (out ??= []).push(...events);
      }
      return out;
    };

    /**
     * A member that offered `udp` gets a channel on the hub's UDP socket (when it is bound and the
     * hub's transport is not `tcp`) and the offer for its WELCOME: the session id, the port, the
     * cipher and, without TLS to derive one from, the session secret.
     */
    const offerUdp = (): UdpOffer | undefined => {
      const hub = (settings.transport ?? 'auto') === 'tcp' ? undefined : ctx.udp();
      if (hub === undefined) return undefined;
      const udpId = ctx.nextUdpId();
      const secret = conn.tlsSecret ?? hub.randomSecret();
      peer.link = udpLink(hub.channel(udpId, secret), { mode: settings.transport === 'udp' ? 'udp' : 'auto', scheduler });
      return { id: udpId, port: hub.port, cipher: hub.cipher, ...(conn.tlsSecret === undefined ? { secret } : {}) };
    };

    /**
     * The member's packets (over TCP, or UDP once its path is up): routed by the forwarding policy,
     * its broadcasts handed to its replication stage, isolated, delivered; what was dropped, as one
     * event. Plain calls per batch, not a chain of operators: every idle member would keep one.
     */
    const decide = (dst: number, packet: Uint8Array): Decision | DropReason => policy.fromMember(member, dst, packet);
    const forward = (packets: PacketBatch): ServerEvent[] => {
      const routed = takeReplicable(routeBatch(packets, decide), member, broadcasts$);
      const isolating = policy.isolating();
      // Under isolation no two members are introduced: their flows are not offered at all.
      const offered = takesDirect && !isolating && member !== undefined && ctx.direct !== undefined ? offerFlows(routed, member, ctx.direct) : undefined;
      const rb = isolating ? isolateBatch(routed, policy.isPeer) : routed;
      ctx.deliver(rb);
      if (offered === undefined) return rb.drops === undefined ? [] : [dropsEvent(who(), rb.drops)];
      return rb.drops === undefined ? offered : [...offered, dropsEvent(who(), rb.drops)];
    };

    /** What the member's UDP link reports: packets to forward, its drops and its transport changes. */
    const onLink = (e: LinkEvent): ServerEvent[] => {
      switch (e.kind) {
        case 'packets':
          return forward(e.packets);
        case 'drops':
          return [dropsEvent(who(), e.drops)];
        case 'transport':
          return [{ type: 'transport', who: who(), transport: e.transport, why: e.why }];
      }
    };

    /** Frames of the protocol that are not data: a HELLO before joining is a claim, the rest are out of place. */
    const onControl = (item: Extract<PeerItem, { kind: 'control' }>): ServerEvent[] => {
      switch (item.type) {
        case FrameType.Keepalive:
          return [];
        case FrameType.Hello: {
          if (member !== undefined || trunk !== undefined || claiming) return dropped({ 'unexpected-control': 1 });
          const hello = decodeControl(FrameType.Hello, HelloCodec, item.payload);
          return !(hello instanceof ControlDecodeError) && hello.hub !== undefined ? onTrunkHello(hello) : onClaim({ kind: 'hello', hello });
        }
        case FrameType.Welcome:
        case FrameType.Reject:
          return dropped({ 'unexpected-control': 1 });
        case FrameType.DirectRequest:
          return onDirectRequest(item.payload);
        case FrameType.DirectPath:
          return onDirectPath(item.payload);
        default:
          // ROUTES, INTRODUCTION and WITHDRAWAL are a hub's frames: from a client they are as unknown as any other type.
          return dropped({ 'unknown-type': 1 });
      }
    };

    // A connection that never becomes a member (most of a flood) costs only its peer session and
    // the small handler below. Data before the join is `unregistered` (a 0.0.1-era client's first
    // packet joins it first, via learnSource); a member's data is forwarded as it arrives.
    const items$ = peer.items$.pipe(
      learnSource<PeerItem>(),
      emitEach((i): ServerEvent[] => {
        switch (i.kind) {
          case 'learned':
            return member === undefined && trunk === undefined ? onClaim({ kind: 'learned', address: i.address }) : [];
          case 'control':
            return onControl(i);
          case 'send-drops':
            return dropped(i.drops);
          case 'data':
            if (trunk !== undefined) return trunk.receive(i.packets);
            return member === undefined ? [dropsEvent(who(), unregistered(i.packets))] : forward(i.packets);
        }
      }),
    );
    // What runs beside the connection once it is a member: its UDP link (if it offered one) and its
    // replication stage (with broadcast on). A member with neither (idle members are many) keeps
    // nothing of this once it joined.
    const joinedStages$ = joined$.pipe(
      take(1),
      switchMap(() => {
        const replicated$ = ctx.replicating(broadcasts$, who);
        const link$ = peer.link?.events$;
        return link$ === undefined ? replicated$ : merge(link$.pipe(emitEach(onLink)), replicated$);
      }),
    );

    // A connection must become a member within its admission deadline: one that never says HELLO
    // or sends a packet (idle, trickling, only KEEPALIVEs) holds no state for long.
    const admissionDeadline$ = timer(ctx.admissionMs, scheduler).pipe(
      mergeMap(() =>
        member !== undefined || trunk !== undefined
          ? ended$
          : throwError(() => new SessionEnd('handshake-timeout', ctx.authenticator === undefined ? `no HELLO and no packet within ${ctx.admissionMs / 1000} s` : `no HELLO within ${ctx.admissionMs / 1000} s`)),
      ),
    );

    const leave = (): void => {
      const m = member;
      member = undefined;
      if (m !== undefined) store.dispatch([{ type: 'left', member: m }]);
    };

    const connected: ServerEvent = { type: 'connected', id, remote: conn.remote };
    const trunkStages$ = trunkUp$.pipe(
      take(1),
      switchMap((l) => l.replicated$),
    );
    return merge(of(connected), joinedStages$, trunkStages$, items$, claims$.pipe(mergeMap((claim$) => claim$)), drops$, ended$, admissionDeadline$).pipe(
      catchError((err: unknown) => {
        const members = (): number => store.state.membership.members.size;
        if (err instanceof Refusal) {
          leave();
          const events: ServerEvent[] = [
            { type: 'rejected', id, remote: conn.remote, address: err.address, reason: err.reason, message: err.logDetail },
            { type: 'left', id, remote: conn.remote, address: undefined, reason: 'rejected', detail: err.reason, members: members() },
          ];
          return of(...events);
        }
        const { reason, detail } = endReason(err);
        const address = member?.addressText;
        leave();
        const left: ServerEvent = { type: 'left', id, remote: conn.remote, address, reason, detail, members: members() };
        if (trunk === undefined) return of(left);
        const down: ServerEvent = { type: 'trunk-down', hub: trunk.hub, side: 'accepted', reason, detail };
        return of(down, left);
      }),
      finalize(() => {
        leave();
        trunk?.close();
        trunkUp$.complete();
        ctx.sessionStats.delete(id);
        broadcasts$.complete();
        claims$.complete();
      }),
    );
  });
}

/** Moves a routed batch's REPLICATE share (if any) out of it and into `into` (for the sender's replication stage). */
export function takeReplicable(rb: RoutedBatch<Decision>, sender: Target | undefined, into: Subject<ReplicateInput<Target>>): RoutedBatch<Target> {
  const routes = rb.routes;
  for (let i = 0; i < routes.length; i++) {
    if (routes[i]!.target !== REPLICATE) continue;
    const [r] = routes.splice(i, 1);
    if (sender !== undefined) into.next({ sender, packets: r!.packets });
    break;
  }
  return rb as RoutedBatch<Target>;
}
