// Trunks between the hubs of a cluster (docs/cluster.md, "Trunks"): one session per pair of hubs,
// dialed by the hub whose name sorts lower, over this project's own framing and session (peer.ts),
// authenticated by the cluster token (or mutual TLS) and by the dialer's name being a live hub of
// the view. A trunk claims no address. Packets on it are judged by the forwarding policy
// (`fromTrunk`: anti-spoofing, this hub's own only, isolation) and delivered like any other; a
// broadcast from it goes to this hub's members only. Pure: the dialer and the view are ports.
import { EMPTY, Observable, Subject, catchError, concat, concatWith, defer, distinctUntilChanged, filter, finalize, map, merge, mergeMap, of, scan, switchMap, takeUntil, tap, throwError, timer, type SchedulerLike } from 'rxjs';
import { formatHostPort, type HostPort } from '../operators/core/address.js';
import { addDrops, type DropCounts, type PacketBatch } from '../operators/core/packet.js';
import { ControlDecodeError, PROTOCOL_VERSION, RejectCodec, TRUNK_CAPABILITY, WelcomeCodec, decodeControl, encodeControl, type Hello, type RejectReason } from '../operators/core/wire/control.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { emitEach } from '../operators/emitEach.js';
import { reconnect } from '../operators/reconnect.js';
import type { ReplicateInput } from '../operators/replicate.js';
import { routeBatch } from '../operators/route.js';
import type { ClusterView } from './clusterView.js';
import { RejectedError, SessionEnd, endReason, type ServerEvent } from './events.js';
import type { Decision, ForwardingPolicy, RemoteHub, Target } from './forwarding.js';
import { takeReplicable } from './hubSession.js';
import { count, counter, negotiate, peerSession, type Counter, type Peer } from './peer.js';
import type { ConnectionPort, DialerPort } from './ports.js';
import type { ServerSettings } from './settings.js';

/** How long a dialed trunk may take from connecting to its WELCOME. */
export const TRUNK_HANDSHAKE_MS = 5000;
/** The dialing side's backoff between attempts while the other hub's key lives (bounded). */
export const TRUNK_BACKOFF = { initialMs: 500, maxMs: 5000 } as const;

/** How a hub checks the trunks other hubs dial to it (src/auth.ts builds it: digests compared in constant time). */
export interface TrunkAuthenticator {
  /** Undefined when a trunk HELLO of hub `hub` with `token`, over a connection whose verified certificate names `peerIdentity`, passes; else why not. */
  check(hub: string, token: string | undefined, peerIdentity: string | undefined): string | undefined;
  /** The cluster token this hub presents when it dials. */
  readonly token: string;
}

/** A trunk's counters, as the status shows them. */
export interface TrunkStats {
  /** The other hub's name. */
  readonly hub: string;
  /** `dialed` (this hub's name sorts lower) or `accepted`. */
  readonly side: 'dialed' | 'accepted';
  readonly state: 'connecting' | 'up' | 'retrying';
  /** The other hub's host:port (dialed) or the connection's source (accepted). */
  readonly peer: string;
  readonly since: number;
  readonly rx: { readonly packets: number; readonly bytes: number };
  readonly tx: { readonly packets: number; readonly bytes: number };
  readonly drops: DropCounts;
}

/** What trunks are built from (server.ts holds it). */
export interface TrunkContext {
  /** This hub's name. */
  readonly me: string;
  readonly settings: ServerSettings;
  readonly scheduler: SchedulerLike;
  readonly policy: ForwardingPolicy;
  /** The cluster view now, and each new one. */
  readonly view: () => ClusterView;
  readonly views$: Observable<ClusterView>;
  readonly auth: TrunkAuthenticator;
  /** How this hub dials the hubs whose names sort higher (plain TCP or TLS, as its listener). */
  readonly dialer: DialerPort;
  /** The capabilities the hub offers (gso when its TUN device offloads). */
  readonly caps: readonly string[];
  /** Hands routed packets to their targets (server.ts deliver). */
  readonly deliver: (rb: { readonly routes: readonly { readonly target: Target; readonly packets: Uint8Array[] }[]; drops: DropCounts | undefined }) => void;
  /** A sender's replication stage. */
  readonly replicating: (input$: Observable<ReplicateInput<Target>>, who: () => string) => Observable<ServerEvent>;
}

/** Where packets for another hub go while its trunk is up. */
export interface TrunkSink {
  send(packets: PacketBatch): void;
  maxPacket(): number;
}

/** An accepted trunk HELLO's outcome. */
export type TrunkVerdict =
  | { readonly ok: true; readonly link: TrunkLink; readonly events: ServerEvent[] }
  | { readonly ok: false; readonly reason: RejectReason; readonly detail: string; readonly logDetail: string };

/** One live trunk as its session reaches it. */
export interface TrunkLink {
  readonly hub: string;
  /** Packets that arrived on the trunk: judged, delivered; the drops as events. */
  receive(packets: PacketBatch): ServerEvent[];
  /** Counts what the session dropped on the trunk (its writer's queue, bad frames) on it; the drops as events. */
  dropped(drops: DropCounts): ServerEvent[];
  /** The trunk's replication stage (broadcasts from it reach this hub's own only). */
  readonly replicated$: Observable<ServerEvent>;
  /** Unregisters the trunk (its session ended). */
  close(): void;
}

/** The trunks of one hub. */
export interface Trunks {
  /** The trunk to `hub` while it is up. */
  sink(hub: string): TrunkSink | undefined;
  /** A trunk HELLO on an accepted connection: the trunk is up (WELCOME sent), or refused (counted; the caller sends the REJECT). `end` ends that session. */
  accept(hello: Hello, conn: ConnectionPort, peer: Peer, end: (err: SessionEnd) => void): TrunkVerdict;
  /** Every trunk now. */
  stats(): TrunkStats[];
  /** Trunk HELLOs refused since start, by reason. */
  refused(): Readonly<Partial<Record<RejectReason, number>>>;
  /** The dialed trunks and the closing of accepted ones whose hub left the view, as events (subscribe once). */
  readonly events$: Observable<ServerEvent>;
}

/** Which hub of a pair dials the other: the one whose name sorts lower (by code units). */
export function dials(me: string, other: string): boolean {
  return me < other;
}

interface Entry {
  side: 'dialed' | 'accepted';
  state: TrunkStats['state'];
  peer: string;
  since: number;
  rx: Counter;
  tx: Counter;
  drops: DropCounts | undefined;
  sink: TrunkSink | undefined;
  end: ((err: SessionEnd) => void) | undefined;
}

/** The trunks of the hub `ctx.me`. */
export function trunks(ctx: TrunkContext): Trunks {
  const { settings, scheduler, policy } = ctx;
  const entries = new Map<string, Entry>();
  const refusals: Partial<Record<RejectReason, number>> = {};
  const entry = (hub: string, side: Entry['side'], peer: string): Entry => {
    const e: Entry = { side, state: 'connecting', peer, since: scheduler.now(), rx: counter(), tx: counter(), drops: undefined, sink: undefined, end: undefined };
    entries.set(hub, e);
    return e;
  };

  /** The link of a trunk that is up: `e` registered under `hub`, its packets judged by fromTrunk. */
  const link = (hub: string, e: Entry, peer: Peer): TrunkLink => {
    const who = `trunk ${hub}`;
    const sender: RemoteHub = Object.freeze({ trunk: hub, peer: true });
    const broadcasts$ = new Subject<ReplicateInput<Target>>();
    const decide = (dst: number, p: Uint8Array): Decision | ReturnType<ForwardingPolicy['fromTrunk']> => policy.fromTrunk(hub, dst, p);
    e.state = 'up';
    e.since = scheduler.now();
    e.sink = {
      send: (packets) => {
        count(e.tx, packets);
        peer.send(packets);
      },
      maxPacket: () => peer.data.maxPacket(),
    };
    const drops = (d: DropCounts): ServerEvent[] => {
      e.drops = addDrops(e.drops, d);
      return [{ type: 'drops', who, drops: d }];
    };
    return {
      hub,
      receive(packets) {
        count(e.rx, packets);
        const rb = takeReplicable(routeBatch(packets, decide), sender, broadcasts$);
        ctx.deliver(rb);
        return rb.drops === undefined ? [] : drops(rb.drops);
      },
      dropped: drops,
      replicated$: ctx.replicating(broadcasts$, () => who).pipe(mergeMap((ev) => (ev.type === 'drops' ? drops(ev.drops) : [ev]))),
      close() {
        broadcasts$.complete();
        e.sink = undefined;
        // A dialed trunk stays listed while it retries; an accepted one is gone with its session.
        if (e.side === 'dialed') e.state = 'retrying';
        else if (entries.get(hub) === e) entries.delete(hub);
      },
    };
  };

  /** Both sides of a trunk settle its encoding and pings from the other hub's capabilities, as a member's session does. */
  const agree = (peer: Peer, theirs: readonly string[], mtu: number | undefined): void => {
    negotiate(peer.encoding, theirs.includes('gso') && ctx.caps.includes('gso'), mtu);
    peer.pings = theirs.includes('rtt');
  };

  const refuse = (reason: RejectReason, detail: string, logDetail: string): TrunkVerdict => {
    refusals[reason] = (refusals[reason] ?? 0) + 1;
    return { ok: false, reason, detail, logDetail };
  };

  const accept = (hello: Hello, conn: ConnectionPort, peer: Peer, end: (err: SessionEnd) => void): TrunkVerdict => {
    const hub = hello.hub!;
    const bad = ctx.auth.check(hub, hello.token, conn.peerIdentity);
    if (bad !== undefined) return refuse('auth-failed', 'the trunk did not authenticate (cluster token or certificate)', `trunk from ${conn.remote} as hub ${hub}: ${bad}`);
    const v = ctx.view();
    if (v.standing !== 'up') return refuse('cluster-unavailable', 'the hub is not serving its cluster now', `trunk from ${conn.remote} as hub ${hub}: this hub stands ${v.standing}`);
    if (hub === ctx.me) return refuse('auth-failed', `${hub} is this hub's own name`, `trunk from ${conn.remote}: it says it is this hub (${hub})`);
    // Not (yet) in this hub's view: the dialing hub's view may be ahead (a start-up race), not an authentication failure; it dials again.
    if (!v.hubs.has(hub)) return refuse('cluster-unavailable', `no live hub ${hub} in this hub's view of the cluster (yet)`, `trunk from ${conn.remote}: ${hub} is not a live hub in this hub's view`);
    if (!dials(hub, ctx.me)) return refuse('bad-hello', `hub ${ctx.me} dials hub ${hub}, not the other way round`, `trunk from ${conn.remote} as hub ${hub}: the hub whose name sorts lower dials`);
    if (hello.address !== undefined || hello.assign === true || hello.id !== undefined || (hello.routes ?? []).length > 0) {
      return refuse('bad-hello', 'a trunk claims no address', `trunk from ${conn.remote} as hub ${hub}: it claimed an address or routes`);
    }
    // A newer trunk from the same hub (it restarted, or the old connection is dead but not timed out yet) takes over.
    const old = entries.get(hub);
    old?.end?.(new SessionEnd('replaced', `a newer trunk from hub ${hub}`));
    const caps = hello.caps ?? [];
    agree(peer, caps, hello.mtu);
    const e = entry(hub, 'accepted', conn.remote);
    e.end = end;
    peer.control(
      encodeControl(FrameType.Welcome, {
        version: PROTOCOL_VERSION,
        address: settings.tunnel.address,
        prefix: settings.tunnel.prefix,
        hub: settings.tunnel.address,
        mtu: settings.mtu,
        keepalive: Math.round(settings.keepaliveMs / 1000),
        timeout: Math.round(settings.timeoutMs / 1000),
        caps: [...ctx.caps, TRUNK_CAPABILITY],
      }),
    );
    return { ok: true, link: link(hub, e, peer), events: [{ type: 'trunk-up', hub, side: 'accepted', remote: conn.remote }] };
  };

  /** One attempt of a dialed trunk to `hub` at `at`: HELLO, WELCOME, then packets both ways until the session ends (an error with why). */
  const attempt = (hub: string, at: HostPort, e: Entry): Observable<ServerEvent> =>
    defer(() => {
      e.state = 'connecting';
      return ctx.dialer.dial(at.host, at.port);
    }).pipe(
      switchMap((conn) =>
        defer(() => {
          let up: TrunkLink | undefined;
          const caps = [...ctx.caps, TRUNK_CAPABILITY];
          const hello: Hello = { version: PROTOCOL_VERSION, hub: ctx.me, caps, mtu: settings.mtu, token: ctx.auth.token };
          const dropped$ = new Subject<ServerEvent>();
          const onDrops = (d: DropCounts): void => {
            e.drops = addDrops(e.drops, d);
            dropped$.next({ type: 'drops', who: `trunk ${hub}`, drops: d });
          };
          const peer = peerSession(conn, { settings, scheduler, onDrops, superFrames: () => peer.encoding.superFrames, first: encodeControl(FrameType.Hello, hello), closedDetail: `hub ${hub} closed the trunk` });
          const linked$ = new Subject<TrunkLink>();
          const items$ = peer.items$.pipe(
            emitEach((i): ServerEvent[] => {
              switch (i.kind) {
                case 'data':
                  if (up !== undefined) return up.receive(i.packets);
                  onDrops({ unregistered: i.packets.length });
                  return [];
                case 'send-drops':
                  onDrops(i.drops);
                  return [];
                case 'learned':
                  return [];
                case 'control':
                  if (i.type === FrameType.Reject) {
                    const r = decodeControl(FrameType.Reject, RejectCodec, i.payload);
                    throw r instanceof ControlDecodeError ? new SessionEnd('closed', `hub ${hub} refused the trunk`) : new RejectedError(r.reason, r.message ?? '');
                  }
                  if (i.type !== FrameType.Welcome || up !== undefined) {
                    if (i.type !== FrameType.Keepalive) onDrops({ 'unexpected-control': 1 });
                    return [];
                  }
                  const w = decodeControl(FrameType.Welcome, WelcomeCodec, i.payload);
                  if (w instanceof ControlDecodeError || !(w.caps ?? []).includes(TRUNK_CAPABILITY)) throw new SessionEnd('closed', `hub ${hub} does not take trunks (no '${TRUNK_CAPABILITY}' in its WELCOME)`);
                  agree(peer, w.caps ?? [], w.mtu);
                  up = link(hub, e, peer);
                  linked$.next(up);
                  return [{ type: 'trunk-up', hub, side: 'dialed', remote: formatHostPort(at) }];
              }
            }),
          );
          const deadline$ = timer(TRUNK_HANDSHAKE_MS, scheduler).pipe(
            mergeMap(() => (up === undefined ? throwError(() => new SessionEnd('handshake-timeout', `no WELCOME from hub ${hub} within ${TRUNK_HANDSHAKE_MS / 1000} s`)) : EMPTY)),
          );
          // items$ last: what it emits while being subscribed (the WELCOME, a drop) finds the others listening.
          return merge(linked$.pipe(switchMap((l) => l.replicated$)), dropped$, deadline$, items$).pipe(
            catchError((err: unknown) => {
              const { reason, detail } = endReason(err);
              return concat(of<ServerEvent>({ type: 'trunk-down', hub, side: 'dialed', reason, detail }), throwError(() => err));
            }),
            finalize(() => up?.close()),
          );
        }),
      ),
      reconnect<ServerEvent>({
        ...TRUNK_BACKOFF,
        scheduler,
        retrying: (info) => {
          e.state = 'retrying';
          return { type: 'trunk-retrying', hub, attempt: info.attempt, delayMs: info.delayMs, cause: info.cause instanceof Error ? info.cause.message : String(info.cause) };
        },
        isProgress: (ev) => ev.type === 'trunk-up',
      }),
    );

  /** The hubs this one dials (their names sort higher), by name with their advertised address, from each view. */
  const dialed$ = ctx.views$.pipe(
    map((v) => {
      const out = new Map<string, HostPort>();
      if (v.standing === 'fenced') return out;
      for (const [name, claim] of v.hubs) if (name !== ctx.me && dials(ctx.me, name)) out.set(name, claim.value.advertise);
      return out;
    }),
    distinctUntilChanged((a, b) => a.size === b.size && [...a].every(([k, x]) => same(b.get(k), x))),
  );
  /** Each hub to dial as it appears (or its address changes); its trunk lives until it is gone from the view or moves. */
  const dialing$ = dialed$.pipe(
    scan((acc: { before: Map<string, HostPort>; added: [string, HostPort][] }, now) => ({ before: now, added: [...now].filter(([k, x]) => !same(acc.before.get(k), x)) }), { before: new Map<string, HostPort>(), added: [] }),
    mergeMap(({ added }) => added),
    mergeMap(([hub, at]) => {
      const e = entry(hub, 'dialed', formatHostPort(at));
      const gone$ = dialed$.pipe(filter((now) => !same(now.get(hub), at)));
      let up = false;
      const closed = (): ServerEvent => ({ type: 'trunk-down', hub, side: 'dialed', reason: 'closed', detail: `hub ${hub} is no longer a live hub of the cluster at ${formatHostPort(at)} (or this hub is fenced)` });
      return attempt(hub, at, e).pipe(
        tap((ev) => {
          if (ev.type === 'trunk-up') up = true;
          else if (ev.type === 'trunk-down') up = false;
        }),
        takeUntil(gone$),
        // Closed on purpose (the key went or moved, the fence): said once, as a session's end is.
        concatWith(defer(() => (up ? of(closed()) : EMPTY))),
        finalize(() => {
          if (entries.get(hub) === e) entries.delete(hub);
        }),
      );
    }),
  );
  /** An accepted trunk whose hub left the view (its key expired, or this hub is fenced) is closed. */
  const closing$ = ctx.views$.pipe(
    mergeMap((v): ServerEvent[] => {
      for (const [hub, e] of entries) {
        if (e.side === 'accepted' && (v.standing === 'fenced' || !v.hubs.has(hub))) e.end?.(new SessionEnd('closed', `hub ${hub} is no longer a live hub of the cluster`));
      }
      return [];
    }),
  );

  return {
    sink: (hub) => entries.get(hub)?.sink,
    accept,
    stats: () =>
      [...entries].map(([hub, e]) => ({ hub, side: e.side, state: e.state, peer: e.peer, since: e.since, rx: { ...e.rx }, tx: { ...e.tx }, drops: { ...e.drops } })).sort((a, b) => (a.hub < b.hub ? -1 : 1)),
    refused: () => ({ ...refusals }),
    events$: merge(dialing$, closing$),
  };
}

/** Two advertised addresses are the same. */
function same(a: HostPort | undefined, b: HostPort | undefined): boolean {
  return a !== undefined && b !== undefined && a.host === b.host && a.port === b.port;
}
