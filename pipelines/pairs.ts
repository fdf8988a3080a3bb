// A client's direct paths to other members (docs/direct.md): a pair channel per introduced peer on
// the session's UDP socket, each run by directPath. The TUN side's packets for a peer (its tunnel
// address, or a LAN whose route goes via it) go over the pair while its path is direct, else to
// the hub as before; a peer the TUN side sends to without a pair is asked for (DIRECT-REQUEST), at
// most every 30 s. Arrivals pass the inner-source rule (forwarding.ts `sendsAs`) into the TUN queue.
// The hub hears whether each pair is direct (DIRECT-PATH) whenever that changes.
// Bounded: at most 32 pairs (the socket's limit), at most MAX_REMEMBERED peers asked or refused.
import { Observable, Subject, defer, finalize, map, merge, mergeMap, of, takeWhile, type SchedulerLike } from 'rxjs';
import { broadcastAddress, formatIpv4, networkAddress, parseIpv4, prefixHas, type HostPort, type Ipv4Prefix } from '../operators/core/address.js';
import { addDrop, addDrops, type DropCounts, type PacketBatch } from '../operators/core/packet.js';
import type { RouteTable } from '../operators/core/routeTable.js';
import { MAX_LOCAL_ENDPOINTS, PROTOCOL_VERSION, encodeControl, type Introduction, type Withdrawal } from '../operators/core/wire/control.js';
import { fitPackets } from '../operators/core/wire/fragment.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { SuperPacket, segmentCount } from '../operators/core/wire/gso.js';
import { ipv4Destination, ipv4Problem, ipv4Source } from '../operators/core/wire/ipv4.js';
import { DIRECT_TIMING, directPath, type DirectPathEvent, type DirectPathInput, type DirectPathState } from '../operators/directPath.js';
import { emitEach } from '../operators/emitEach.js';
import type { ClientEvent, PeerStats } from './events.js';
import { sendsAs } from './forwarding.js';
import type { PairArrival, PairChannel, UdpClientSocket, UdpEndpoint } from './ports.js';
import { endpointHazard } from './routeGuard.js';

/** A refused request (or one not answered yet) is not asked again for this long. */
export const ASK_AGAIN_MS = 30_000;
/** The most peers a client remembers having asked for or been refused (the oldest is forgotten first). */
export const MAX_REMEMBERED = 256;

/** What a client's direct paths are built from. */
export interface DirectPairsOptions {
  /** The session's UDP socket: pair channels open on it. */
  readonly socket: UdpClientSocket;
  /** This side's tunnel address and prefix. */
  readonly tunnel: Ipv4Prefix;
  /** The hub's tunnel address (ICMP answers come from it), once known. */
  readonly hub: () => number | undefined;
  /** The other members' LANs by their `via` member (ROUTES), now. */
  readonly lans: () => RouteTable<number> | undefined;
  /** The UDP path to the hub is up (the hub introduces only members whose path is). */
  readonly hubUp: () => boolean;
  /** The host's IPv4 addresses now (HostNetworkPort.addresses). */
  readonly addresses: () => readonly number[];
  /** Sends a control frame to the hub (the session's control lane, keyed). */
  readonly control: (frame: Uint8Array, key: string) => void;
  /** Packets for the TUN device (arrivals that passed the checks, ICMP answers). */
  readonly toTun: (packets: PacketBatch) => void;
  readonly scheduler: SchedulerLike;
  readonly timing?: Omit<typeof DIRECT_TIMING, 'backoff'> & { readonly backoff: { readonly initialMs: number; readonly maxMs: number } };
}

/** A client's direct paths of one session. */
export interface DirectPairs {
  /** Sends the packets of `batch` whose peer's path is direct over its pair (their drops into `out`) and asks for peers without a pair; returns the rest, for the hub. */
  route(batch: PacketBatch, out: ClientEvent[]): PacketBatch;
  /** An INTRODUCTION: opens the peer's pair (closing the one it replaces). */
  introduce(introduction: Introduction): void;
  /** A WITHDRAWAL: with the current pair's `id` it closes that pair; without `id` it is a refusal, remembered; a stale one is ignored. */
  withdraw(withdrawal: Withdrawal): void;
  /** Tells the hub this side's local endpoints (a DIRECT-REQUEST without `peer`): when the UDP path to the hub comes up. */
  announce(): void;
  /** Each peer with a pair, then each refusal held, for the status. */
  peers(): PeerStats[];
  /** The pairs' lives: path changes and drops as events; subscribe once; unsubscribing closes every pair. */
  readonly events$: Observable<ClientEvent>;
}

/** The status text of a path (docs/status.md): `direct 192.0.2.7:41641`, `relayed (probing)`, `relayed (no direct path[: why])`. */
export function pathText(state: DirectPathState): string {
  switch (state.kind) {
    case 'direct':
      return `direct ${state.endpoint}`;
    case 'probing':
    case 'relayed':
      return 'relayed (probing)';
    case 'no-direct-path':
      return state.why === undefined ? 'relayed (no direct path)' : `relayed (no direct path: ${state.why})`;
    case 'withdrawn':
      return `relayed (no direct path: ${state.why})`;
  }
}

/**
 * Whether an INTRODUCTION shows a NAT that rewrote a port (what an endpoint-dependent, "symmetric"
 * NAT does, where hole punching fails): this side's own (`self`'s port is not its socket's port) or
 * the peer's (the observed endpoint's port is none of the peer's local ports). A port-preserving NAT
 * is never blamed, nor a peer that told no local endpoints.
 */
export function rewritesPorts(introduction: Introduction, localPort: number): boolean {
  if (introduction.self !== undefined && introduction.self.port !== localPort) return true;
  const [observed, ...local] = introduction.endpoints;
  return observed !== undefined && local.length > 0 && !local.some((e) => e.port === observed.port);
}

/** `a.b.c.d:port`, as directPath speaks endpoints. */
const endpointText = (e: UdpEndpoint): string => `${formatIpv4(e.address)}:${e.port}`;

/** The endpoint of `ip:port` text (directPath's), or undefined. */
function endpointOf(text: string): UdpEndpoint | undefined {
  const i = text.lastIndexOf(':');
  const address = parseIpv4(text.slice(0, i));
  const port = Number(text.slice(i + 1));
  return address === undefined || !Number.isInteger(port) || port < 1 || port > 65535 ? undefined : { address, port };
}

/** One peer's pair as the client keeps it. */
interface Pair {
  readonly peer: number;
  readonly peerText: string;
  /** The receiver id this side takes its datagrams under (a WITHDRAWAL names it). */
  readonly id: number;
  /** The peer's announced LANs: the sources it may send from besides its address. */
  readonly routes: readonly Ipv4Prefix[];
  readonly channel: PairChannel;
  /** What the owner tells its directPath (an arrival heard, the withdrawal). */
  readonly inputs: Subject<DirectPathInput>;
  direct: boolean;
  endpoint: string | undefined;
  /** The direct path's round-trip times (directPath's `rtt`), while direct. */
  rtt: { readonly ms: number; readonly smoothedMs: number } | undefined;
  path: string;
  lastHeard: number;
  lastSent: number;
  drops: DropCounts;
}

/** Forgets the oldest entries of `m` until it has room for one more. */
function makeRoom<V>(m: Map<number, V>): void {
  while (m.size >= MAX_REMEMBERED) m.delete(m.keys().next().value as number);
}

/** A client's direct paths over one session's UDP socket (nothing happens until `events$` is subscribed). */
export function directPairs(o: DirectPairsOptions): DirectPairs {
  const { socket, tunnel, scheduler } = o;
  const timing = o.timing ?? DIRECT_TIMING;
  const self = tunnel.address;
  const network = networkAddress(tunnel);
  const broadcast = broadcastAddress(tunnel);
  const pairs = new Map<number, Pair>();
  /** When each peer was last asked for (or refused): not again within ASK_AGAIN_MS. */
  const asked = new Map<number, number>();
  /** Refusals by peer (the WITHDRAWAL's reason), for the status until a pair replaces them. */
  const refusals = new Map<number, string>();
  const introductions$ = new Subject<Introduction>();
  /** Events made outside a pair's life (refusals). */
  const notes$ = new Subject<ClientEvent>();
  let local: HostPort[] = [];

  const hears = (p: Pair): boolean => scheduler.now() - p.lastHeard < timing.silenceMs;
  const dropped = (p: Pair, drops: DropCounts): ClientEvent => {
    p.drops = addDrops(p.drops, drops) ?? p.drops;
    return { type: 'drops', who: p.peerText, drops };
  };

  /** The member a packet to `dst` is for: a member's tunnel address (not this side's, the hub's, the network's or its broadcast), or the `via` of a LAN. */
  const peerOf = (dst: number): number | undefined => {
    if (prefixHas(tunnel, dst)) return dst === self || dst === o.hub() || dst === network || dst === broadcast ? undefined : dst;
    const lans = o.lans();
    return lans === undefined || lans.size === 0 ? undefined : lans.lookup(dst);
  };

  /** This host's addresses a peer may reach it at, at the socket's port, at most MAX_LOCAL_ENDPOINTS. */
  const localEndpoints = (): HostPort[] =>
    o
      .addresses()
      .filter((a) => endpointHazard(a, tunnel) === undefined)
      .slice(0, MAX_LOCAL_ENDPOINTS)
      .map((a) => ({ host: formatIpv4(a), port: socket.localPort }));

  /** Asks the hub for a direct path to `peer`, unless it was asked for (or refused) lately or the UDP path to the hub is down. */
  const ask = (peer: number): void => {
    const now = scheduler.now();
    const last = asked.get(peer);
    if ((last !== undefined && now - last < ASK_AGAIN_MS) || !o.hubUp()) return;
    asked.delete(peer);
    makeRoom(asked);
    asked.set(peer, now);
    o.control(encodeControl(FrameType.DirectRequest, { version: PROTOCOL_VERSION, local, peer }), `direct:${formatIpv4(peer)}`);
  };

  /** Seals packets for a direct peer and sends them; what does not go is counted under the peer. */
  const sendDirect = (p: Pair, packets: Uint8Array[], out: ClientEvent[]): void => {
    const max = p.channel.maxPacket();
    const fitted = fitPackets(packets, max, o.hub());
    let list: readonly Uint8Array[] = fitted?.packets ?? packets;
    let drops: DropCounts | undefined = fitted === undefined || Object.keys(fitted.drops).length === 0 ? undefined : fitted.drops;
    if (fitted !== undefined && fitted.answers.length > 0) o.toTun(fitted.answers);
    // The channel segments SuperPackets to its path MTU; one it cannot segment is too big.
    const fits = (q: Uint8Array): boolean => !(q instanceof SuperPacket) || segmentCount(q, max) > 0;
    if (!list.every(fits)) list = list.filter((q) => fits(q) || ((drops = addDrop(drops, 'too-big')), false));
    const sent = list.length === 0 ? 0 : p.channel.send(list, hears(p));
    if (sent > 0) p.lastSent = scheduler.now();
    if (sent < list.length) drops = addDrop(drops, 'queue-full', list.length - sent);
    if (drops !== undefined) out.push(dropped(p, drops));
  };

  /** An arrival of the pair: the path hears of it, and its packets whose inner source the peer may send from go to the TUN device. */
  const onArrival = (p: Pair, a: PairArrival): ClientEvent[] => {
    p.lastHeard = scheduler.now();
    p.inputs.next({ kind: 'heard', from: endpointText(a.from), hearsUs: a.hearsUs });
    // A PING is answered at its source at once (one PONG per arrival: its newest PING's token).
    if (a.ping !== undefined) p.channel.pong(a.ping, a.from, true);
    if (a.pong !== undefined) p.inputs.next({ kind: 'pong', token: a.pong });
    let packets = a.packets;
    if (packets.length === 0) return [];
    let drops: DropCounts | undefined;
    const sound = (q: Uint8Array): boolean => {
      const problem = ipv4Problem(q) ?? (sendsAs(ipv4Source(q), p.peer, p.routes) ? undefined : 'spoofed-source');
      if (problem !== undefined) drops = addDrop(drops, problem);
      return problem === undefined;
    };
    if (!packets.every((q) => ipv4Problem(q) === undefined && sendsAs(ipv4Source(q), p.peer, p.routes))) packets = packets.filter(sound);
    if (packets.length > 0) o.toTun(packets);
    return drops === undefined ? [] : [dropped(p, drops)];
  };

  /** What directPath tells the owner, done: the channel's endpoint follows the state, probes and keepalives go out. */
  const onPath = (p: Pair, candidates: readonly UdpEndpoint[], e: DirectPathEvent): ClientEvent[] => {
    switch (e.kind) {
      case 'probe':
        for (const c of candidates) p.channel.keepaliveTo(c, hears(p));
        return [];
      case 'answer': {
        const to = endpointOf(e.to);
        if (to !== undefined) p.channel.keepaliveTo(to, true);
        return [];
      }
      case 'keepalive':
        if (scheduler.now() - p.lastSent >= timing.keepaliveMs) {
          p.channel.keepalive(hears(p));
          p.lastSent = scheduler.now();
        }
        return [];
      case 'ping':
        p.channel.ping(e.token, hears(p));
        p.lastSent = scheduler.now();
        return [];
      case 'rtt':
        p.rtt = { ms: e.ms, smoothedMs: e.smoothedMs };
        return [];
      case 'stray-pong':
        return [dropped(p, { 'unexpected-control': 1 })];
      case 'state': {
        const state = e.state;
        const was = p.direct;
        p.direct = state.kind === 'direct';
        p.endpoint = state.kind === 'direct' ? state.endpoint : undefined;
        if (!p.direct) p.rtt = undefined;
        p.channel.use(p.endpoint === undefined ? undefined : endpointOf(p.endpoint));
        if (state.kind === 'withdrawn') {
          // The pair's last event: its life ends once it went out (closes).
          return [{ type: 'direct-path', peer: p.peerText, path: pathText(state), why: e.why, closed: true }];
        }
        // The hub shows which pairs are direct: it hears each change (a newer report replaces one not sent yet).
        if (p.direct !== was) o.control(encodeControl(FrameType.DirectPath, { version: PROTOCOL_VERSION, peer: p.peer, id: p.id, direct: p.direct }), `path:${p.peerText}`);
        const text = pathText(state);
        if (text === p.path) return [];
        p.path = text;
        return [{ type: 'direct-path', peer: p.peerText, path: text, why: e.why }];
      }
    }
  };

  /** Whether `e` is a pair's last event (its path withdrawn). */
  const closes = (e: ClientEvent): boolean => e.type === 'direct-path' && e.closed === true;

  /** One pair's life: the channel opened, its path run, until withdrawn (or the session's end); the channel closes with it. */
  const open = (intro: Introduction): Observable<ClientEvent> =>
    defer(() => {
      const peerText = formatIpv4(intro.peer);
      const opening = socket.pair(intro);
      if (!opening.ok) {
        refusals.delete(intro.peer);
        makeRoom(refusals);
        refusals.set(intro.peer, opening.reason);
        return of<ClientEvent>({ type: 'direct-path', peer: peerText, path: `relayed (no direct path: ${opening.reason})`, why: opening.detail });
      }
      const channel = opening.channel;
      const candidates: UdpEndpoint[] = [];
      for (const hp of intro.endpoints) {
        const address = parseIpv4(hp.host);
        if (address !== undefined && endpointHazard(address, tunnel) === undefined) candidates.push({ address, port: hp.port });
      }
      const p: Pair = {
        peer: intro.peer,
        peerText,
        id: intro.id,
        routes: intro.routes,
        channel,
        inputs: new Subject<DirectPathInput>(),
        direct: false,
        endpoint: undefined,
        rtt: undefined,
        path: 'relayed (probing)',
        lastHeard: Number.NEGATIVE_INFINITY,
        lastSent: Number.NEGATIVE_INFINITY,
        drops: {},
      };
      pairs.set(intro.peer, p);
      refusals.delete(intro.peer);
      const noPathWhy = rewritesPorts(intro, socket.localPort) ? { noPathWhy: 'symmetric NAT' } : {};
      const path$ = p.inputs.pipe(
        directPath({ ...timing, ...noPathWhy, scheduler }),
        emitEach((e) => onPath(p, candidates, e)),
      );
      const opened: ClientEvent = { type: 'direct-path', peer: peerText, path: p.path, why: `introduced: probing ${candidates.length} candidate endpoint${candidates.length === 1 ? '' : 's'}` };
      return merge(of(opened), path$, channel.arrivals$.pipe(emitEach((a) => onArrival(p, a))), channel.drops$.pipe(map((d) => dropped(p, d)))).pipe(
        takeWhile((e) => !closes(e), true),
        finalize(() => {
          channel.close();
          if (pairs.get(intro.peer) === p) pairs.delete(intro.peer);
        }),
      );
    });

  return {
    route(batch, out) {
      let rest: Uint8Array[] | undefined;
      let direct: Map<Pair, Uint8Array[]> | undefined;
      for (let i = 0; i < batch.length; i++) {
        const packet = batch[i]!;
        const peer = peerOf(ipv4Destination(packet));
        const p = peer === undefined ? undefined : pairs.get(peer);
        if (p === undefined || !p.direct) {
          if (peer !== undefined && p === undefined) ask(peer);
          rest?.push(packet);
          continue;
        }
        // The first packet that goes direct: the ones before it stay for the hub.
        rest ??= batch.slice(0, i);
        direct ??= new Map();
        const list = direct.get(p);
        if (list === undefined) direct.set(p, [packet]);
        else list.push(packet);
      }
      if (direct !== undefined) for (const [p, packets] of direct) sendDirect(p, packets, out);
      return rest ?? batch;
    },
    introduce(intro) {
      // The pair it replaces closes first (its receiver id is then free).
      pairs.get(intro.peer)?.inputs.next({ kind: 'withdrawn', why: 'introduced again' });
      introductions$.next(intro);
    },
    withdraw(w) {
      const p = pairs.get(w.peer);
      if (w.id !== undefined) {
        // A WITHDRAWAL of an earlier pair of this peer's is stale.
        if (p !== undefined && p.id === w.id) p.inputs.next({ kind: 'withdrawn', why: `withdrawn by the hub: ${w.reason}` });
        return;
      }
      asked.delete(w.peer);
      makeRoom(asked);
      asked.set(w.peer, scheduler.now());
      if (p !== undefined) return;
      refusals.delete(w.peer);
      makeRoom(refusals);
      refusals.set(w.peer, w.reason);
      notes$.next({ type: 'direct-path', peer: formatIpv4(w.peer), path: `relayed (no direct path: ${w.reason})`, why: 'the hub refused the request' });
    },
    announce() {
      local = localEndpoints();
      o.control(encodeControl(FrameType.DirectRequest, { version: PROTOCOL_VERSION, local }), 'direct:local');
    },
    peers() {
      const out: PeerStats[] = [];
      for (const p of pairs.values()) {
        const s = p.channel.stats();
        out.push({ address: p.peerText, path: p.path, endpoint: p.endpoint, rtt: p.rtt, rx: { ...s.rx }, tx: { ...s.tx }, drops: { ...p.drops } });
      }
      for (const [peer, reason] of refusals) {
        if (!pairs.has(peer)) out.push({ address: formatIpv4(peer), path: `relayed (no direct path: ${reason})`, endpoint: undefined, rtt: undefined, rx: { packets: 0, bytes: 0 }, tx: { packets: 0, bytes: 0 }, drops: {} });
      }
      return out;
    },
    events$: defer(() => merge(introductions$.pipe(mergeMap(open)), notes$)).pipe(
      finalize(() => {
        for (const p of pairs.values()) p.inputs.next({ kind: 'withdrawn', why: 'the session ended' });
        pairs.clear();
      }),
    ),
  };
}
