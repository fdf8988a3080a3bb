// Admission: whether a connection becomes a member, as one pure function of what it said (a HELLO,
// or a 0.0.1-era client's first packet), what the connection is (its endpoint, the identity TLS
// verified), the hub's state and its settings. Every refusal of the hub is decided here, once.
import { formatIpv4, formatPrefix, networkAddress, prefixContains, prefixesOverlap, type Ipv4Prefix } from '../operators/core/address.js';
import { ControlDecodeError, GSO_CAPABILITY, MAX_ANNOUNCED_ROUTES, type Hello, type RejectReason } from '../operators/core/wire/control.js';
import type { HubEvent, HubState } from './hubState.js';
import type { MemberRecord } from './membership.js';
import type { AuthDecision, Authenticator } from './ports.js';
import { replaceVerdict, REPLACE_WINDOW_MS } from './replacements.js';
import { RESERVED_RANGES, endpointGuard, routeHazard, type GuardedPrefix } from './routeGuard.js';
import type { ClusterCandidate, ClusterRefusal } from './clusterView.js';

/**
 * LAN routes the hub holds in total: the whole set (52 bytes per route at most) must fit one ROUTES
 * frame and one WELCOME within the 1496-byte body limit of the 0.0.1-era framing.
 */
export const MAX_LAN_ROUTES = 24;

/** What a connection said to become a member. */
export type Claim =
  /** A HELLO (or why its body could not be decoded). */
  | { readonly kind: 'hello'; readonly hello: Hello | ControlDecodeError }
  /** A 0.0.1-era client's first packet: its source is the address it claims. */
  | { readonly kind: 'learned'; readonly address: number };

/** What the hub knows of the connection. */
export interface ConnectionFacts {
  /** Its `ip:port`. */
  readonly remote: string;
  /** What TLS verified (a client certificate's common name). */
  readonly peerIdentity: string | undefined;
  /** scheduler.now(). */
  readonly now: number;
}

/** The settings admission depends on (the live ones included). */
export interface AdmissionSettings {
  readonly tunnel: Ipv4Prefix;
  readonly maxClients: number;
  readonly multiClient: boolean;
  /** A member silent this long may be replaced by another claimant of its address. */
  readonly timeoutMs: number;
  /** LANs members may announce. */
  readonly allowRoutes: readonly Ipv4Prefix[];
  /** The hub's TUN device offloads: members that offer `gso` get SUPER frames. */
  readonly offload: boolean;
}

/** What admission consults besides the state. */
export interface AdmissionPorts {
  /** Present on hubs that require authentication. Synchronous and cheap. */
  readonly authenticator?: Authenticator;
  /** The hub host's underlay (addresses, networks, gateways): what no announced LAN may cover. */
  readonly underlay: readonly GuardedPrefix[];
  /** Present on hubs of a cluster (docs/cluster.md): the cluster's view, consulted after the hub's own checks. */
  readonly cluster?: ClusterAdmission;
}

/** What admission asks of the cluster (read from the hub's cluster view; pure and synchronous). */
export interface ClusterAdmission {
  /** The cluster's refusal of a join the hub would admit (clusterView.clusterRefusal), or undefined. */
  refusal(candidate: ClusterCandidate): ClusterRefusal | undefined;
  /** The address stands in the way elsewhere in the cluster for lease identity `lease` (the cluster-wide allocator skips it). */
  taken(address: number, lease: string | undefined): boolean;
  /** The cluster's sticky lease of `lease`, or undefined. */
  stickyOf(lease: string): number | undefined;
}

/** A member to be: what it becomes, and whom it replaces. */
export interface Admitted {
  readonly ok: true;
  readonly address: number;
  readonly identity: string | undefined;
  readonly exclusive: boolean;
  /** The lease identity, when the client has one. */
  readonly lease: string | undefined;
  /** A new sticky lease to record (the client asked for an address and had none). */
  readonly newLease: boolean;
  /** The hub assigned the address (the client asked for one). */
  readonly assigned: boolean;
  readonly routes: readonly Ipv4Prefix[];
  readonly takesRoutes: boolean;
  /** The peer answers PING. */
  readonly pings: boolean;
  /** Both sides offload: SUPER frames. */
  readonly gso: boolean;
  /** The peer's MTU, when it told one. */
  readonly mtu: number | undefined;
  /** 'hello' for this project's clients, 'data' for a 0.0.1-era client learned from its first packet. */
  readonly via: 'hello' | 'data';
  /** The member whose session this one replaces, with why (for the hub's log) and what it is told. */
  readonly replaces?: { readonly member: MemberRecord; readonly detail: string; readonly told: string };
  /** State changes besides the join (a penalty forgotten, a replacement recorded). */
  readonly events: readonly HubEvent[];
}

/** A refusal: REJECT `reason` with `detail` to the peer; `logDetail` (which may name others) for the hub's log. */
export interface Refused {
  readonly ok: false;
  readonly reason: RejectReason;
  readonly detail: string;
  readonly logDetail: string;
  /** The address the client asked for, as text, when known. */
  readonly address: string | undefined;
  /** State changes (a penalty, a clone hold). */
  readonly events: readonly HubEvent[];
}

export type Verdict = Admitted | Refused;

const refuse = (reason: RejectReason, detail: string, address: string | undefined, extra: { logDetail?: string; events?: readonly HubEvent[] } = {}): Refused => ({
  ok: false,
  reason,
  detail,
  logDetail: extra.logDetail ?? detail,
  address,
  events: extra.events ?? [],
});

/** The identity a lease is kept under, or undefined when the client has none. */
function leaseKey(decision: Extract<AuthDecision, { ok: true }> | undefined, id: string | undefined): string | undefined {
  if (decision !== undefined && decision.identity !== undefined && decision.exclusive) return `${decision.source === 'certificate' ? 'cert' : 'token'}:${decision.identity}`;
  return id === undefined ? undefined : `id:${id}`;
}

/** The host part of an `ip:port` or `[v6]:port` endpoint. */
export function hostOf(remote: string): string {
  const i = remote.lastIndexOf(':');
  return i < 0 ? remote : remote.slice(0, i);
}

/**
 * Decides whether the connection becomes a member. Pure: reads `state`, changes nothing; the
 * answer carries the events that record what it decided (the caller applies them, then the join).
 * Checks, in order: the HELLO's form and version; authentication (a rate-limited source first,
 * before any token is compared), so that a stranger learns nothing about the tunnel network; the
 * address (inside the network, not its network or broadcast address, not the hub's, not leased to
 * another identity) or an assignment (the pin, the sticky lease, the lowest free address); the
 * announced LANs; a live holder of the address (the same identity replaces it, unless it is a
 * clone; another client gets ip-conflict unless the holder was silent for `timeoutMs`); room; and
 * on a hub of a cluster, last, the cluster's word (cluster-unavailable, ip-conflict, hub-address,
 * leased-to-other, route-overlap across hubs), with assignments from the cluster-wide allocator.
 */
export function admit(claim: Claim, facts: ConnectionFacts, state: HubState, settings: AdmissionSettings, ports: AdmissionPorts): Verdict {
  const verdict = claim.kind === 'learned' ? admitLearned(claim.address, facts, state, settings, ports) : admitHello(claim.hello, facts, state, settings, ports);
  if (!verdict.ok || ports.cluster === undefined) return verdict;
  const r = ports.cluster.refusal({ address: verdict.address, lease: verdict.lease, routes: verdict.routes });
  if (r === undefined) return verdict;
  // The source did authenticate: a forgotten penalty stays forgotten; nobody was replaced.
  return refuse(r.reason, r.detail, formatIpv4(verdict.address), { logDetail: r.logDetail, events: verdict.events.filter((e) => e.type === 'auth-passed') });
}

function admitLearned(address: number, facts: ConnectionFacts, state: HubState, settings: AdmissionSettings, ports: AdmissionPorts): Verdict {
  const text = formatIpv4(address);
  if (ports.authenticator !== undefined) return refuse('auth-required', 'this hub requires authentication, which 0.0.1-era clients (no HELLO) cannot do', text);
  const claim = state.membership.allocator.claimStatic(undefined, address);
  if (!claim.ok) return refuse(claim.reason, claim.detail, text);
  return place(
    { address, identity: undefined, exclusive: false, lease: undefined, newLease: false, assigned: false, routes: [], takesRoutes: false, pings: false, gso: false, mtu: undefined, via: 'data' },
    [],
    facts,
    state,
    settings,
  );
}

function admitHello(hello: Hello | ControlDecodeError, facts: ConnectionFacts, state: HubState, settings: AdmissionSettings, ports: AdmissionPorts): Verdict {
  if (hello instanceof ControlDecodeError) return refuse('bad-hello', hello.detail, undefined);
  const asked = hello.address === undefined ? undefined : formatIpv4(hello.address);
  if (hello.version < 1) return refuse('unsupported-version', `protocol version ${hello.version} is not supported (this hub speaks 1)`, undefined);
  const assign = hello.address === undefined && hello.assign === true;
  if (hello.address === undefined && !assign) return refuse('bad-hello', 'HELLO carries no address and does not ask for one (set -t on the client, or send "assign": true)', undefined);

  // Authentication before anything that would tell a stranger about the tunnel network.
  const events: HubEvent[] = [];
  let decision: Extract<AuthDecision, { ok: true }> | undefined;
  if (ports.authenticator !== undefined) {
    const host = hostOf(facts.remote);
    const penalty = state.penalties.get(host);
    if (penalty !== undefined && facts.now < penalty.until) {
      return refuse('rate-limited', `${penalty.failures} failed authentication(s) from ${host}: try again in ${Math.ceil((penalty.until - facts.now) / 1000)} s`, asked);
    }
    const d = ports.authenticator.authenticate({ token: hello.token, peerIdentity: facts.peerIdentity, address: hello.address });
    if (!d.ok) return refuse(d.reason, d.detail, asked, { events: [{ type: 'auth-failed', host, now: facts.now }] });
    if (penalty !== undefined) events.push({ type: 'auth-passed', host });
    decision = d;
  }
  // Whatever is refused from here on, the source did authenticate: its penalty goes all the same.
  const after = (r: Refused): Refused => (events.length === 0 ? r : { ...r, events: [...events, ...r.events] });

  const allocator = state.membership.allocator;
  const lease = leaseKey(decision, hello.id);
  let address = hello.address;
  let newLease = false;
  if (address === undefined) {
    if (decision?.pinned !== undefined) address = decision.pinned;
    else {
      if (lease === undefined) return after(refuse('bad-hello', 'a HELLO that asks for an address must carry an "id" (or authenticate as a named client)', undefined));
      // A client without a lease yet needs room before it takes an address out of the pool.
      if (allocator.leaseOf(lease) === undefined) {
        const room = roomProblem(state, settings, undefined);
        if (room !== undefined) return after(room);
      }
      const cluster = ports.cluster;
      const clusterLease = cluster?.stickyOf(lease);
      const a = clusterLease !== undefined ? ({ ok: true, address: clusterLease, sticky: true } as const) : allocator.peek(lease, cluster === undefined ? undefined : (x) => cluster.taken(x, lease));
      if (!a.ok) return after(refuse(a.reason, a.detail, undefined));
      address = a.address;
      newLease = !a.sticky;
    }
  }
  const text = formatIpv4(address);
  const claim = allocator.claimStatic(lease, address);
  if (!claim.ok) return after(refuse(claim.reason, claim.detail, text));
  const routes = checkRoutes(hello.routes ?? [], decision?.routes, text, facts, state, settings, ports);
  if (!Array.isArray(routes)) return after(routes as Refused);
  return place(
    {
      address,
      identity: decision?.identity,
      exclusive: decision?.exclusive ?? false,
      lease,
      newLease,
      assigned: assign,
      routes,
      takesRoutes: hello.caps?.includes('routes') === true,
      pings: hello.caps?.includes('rtt') === true,
      gso: settings.offload && hello.caps?.includes(GSO_CAPABILITY) === true,
      mtu: hello.mtu,
      via: 'hello',
    },
    events,
    facts,
    state,
    settings,
  );
}

type Candidate = Omit<Admitted, 'ok' | 'events' | 'replaces'>;

/** A live holder of the address, room and the LAN table: the last checks, against the current members. */
function place(c: Candidate, events: HubEvent[], facts: ConnectionFacts, state: HubState, settings: AdmissionSettings): Verdict {
  const text = formatIpv4(c.address);
  const existing = state.membership.members.get(c.address);
  let replaces: Admitted['replaces'];
  /** Recorded only when the newcomer is admitted: a refused one replaced nobody. */
  let replacedLive: HubEvent | undefined;
  if (existing !== undefined) {
    const silentMs = facts.now - existing.session.lastSeen();
    const sameClient = (c.exclusive && existing.exclusive && existing.identity === c.identity) || (c.lease !== undefined && existing.lease === c.lease);
    if (sameClient) {
      // The same client reconnecting (new network, crashed process): its old session is stale,
      // unless it is alive and keeps being replaced: then two clients share the identity.
      const name = c.identity ?? c.lease ?? text;
      if (silentMs < settings.timeoutMs) {
        const verdict = replaceVerdict(state.replacements, name, facts.now);
        if (!verdict.ok) {
          return refuse(
            'duplicate-identity',
            `the identity ${name} is in use by another live client and replaced itself ${verdict.replacements} times within ${REPLACE_WINDOW_MS / 1000} s: two clients share one identity (a copied state directory's client-id, or one token on two machines); give each client its own`,
            text,
            {
              logDetail: `${name} is in use by ${existing.remote} (last heard ${Math.round(silentMs / 1000)} s ago) and replaced itself ${verdict.replacements} times within ${REPLACE_WINDOW_MS / 1000} s: two clients share it`,
              events: [...events, { type: 'clone-refused', identity: name, now: facts.now }],
            },
          );
        }
        replacedLive = { type: 'replaced-live', identity: name, now: facts.now };
      }
      replaces = { member: existing, detail: `${name} reconnected from ${facts.remote}`, told: `a newer session of this client's identity (${name}) took over its address` };
    } else {
      if (silentMs < settings.timeoutMs) {
        // The newcomer learns only that the address is taken, never who holds it.
        return refuse('ip-conflict', `${text} is in use by another member`, text, { logDetail: `${text} is in use by ${existing.remote} (last heard ${Math.round(silentMs / 1000)} s ago)`, events });
      }
      const s = Math.round(silentMs / 1000);
      replaces = { member: existing, detail: `${text} was claimed by ${facts.remote} after ${s} s of silence`, told: `${text} was claimed by another client after ${s} s of silence from this one` };
    }
  }
  const room = roomProblem(state, settings, replaces?.member, text);
  if (room !== undefined) return { ...room, events };
  if (c.routes.length > 0) {
    const lans = replaces === undefined || replaces.member.routes.length === 0 ? state.membership.lans : state.membership.lans.without(replaces.member);
    if (lans.size + c.routes.length > MAX_LAN_ROUTES) return refuse('route-not-allowed', `the hub's route table is full (${lans.size} of ${MAX_LAN_ROUTES} LAN routes in use)`, text, { events });
    for (const p of c.routes) {
      const clash = lans.conflict(p, undefined);
      if (clash !== undefined) return refuse('route-overlap', `${formatPrefix(p)} overlaps ${formatPrefix(clash.prefix)} behind ${clash.target.addressText}`, text, { events });
    }
  }
  return { ok: true, ...c, ...(replaces === undefined ? {} : { replaces }), events: replacedLive === undefined ? events : [...events, replacedLive] };
}

/** single-client or max-clients when there is no room for one more member (the replaced one does not count). */
function roomProblem(state: HubState, settings: AdmissionSettings, replaced: MemberRecord | undefined, text?: string): Refused | undefined {
  const members = state.membership.members;
  const others = members.size - (replaced !== undefined && members.get(replaced.address) === replaced ? 1 : 0);
  if (!settings.multiClient && others >= 1) {
    const holder = [...members.values()].find((m) => m !== replaced)!;
    // The newcomer learns that the hub is taken, never who holds it.
    const busy = 'the hub serves one client at a time (multi_client is false) and';
    return refuse('single-client', `${busy} another client is connected`, text, { logDetail: `${busy} ${holder.remote} is connected` });
  }
  if (others >= settings.maxClients) return refuse('max-clients', `the hub already has ${others} members (max_clients ${settings.maxClients})`, text);
  return undefined;
}

/** The announced LANs, checked against allow_routes, the identity's own limits, the tunnel network and the underlay (routeGuard). */
function checkRoutes(
  announced: readonly Ipv4Prefix[],
  limits: readonly Ipv4Prefix[] | undefined,
  text: string,
  facts: ConnectionFacts,
  state: HubState,
  settings: AdmissionSettings,
  ports: AdmissionPorts,
): Ipv4Prefix[] | Refused {
  if (announced.length === 0) return [];
  if (announced.length > MAX_ANNOUNCED_ROUTES) return refuse('route-not-allowed', `${announced.length} routes announced; at most ${MAX_ANNOUNCED_ROUTES}`, text);
  const subnet: Ipv4Prefix = { address: networkAddress(settings.tunnel), prefix: settings.tunnel.prefix };
  const guards = underlayGuards(facts, state, ports);
  const out: Ipv4Prefix[] = [];
  for (const p of announced) {
    const cidr = formatPrefix(p);
    if (prefixesOverlap(p, subnet)) return refuse('route-not-allowed', `${cidr} overlaps the tunnel network ${formatPrefix(subnet)}`, text);
    if (!settings.allowRoutes.some((a) => prefixContains(a, p))) {
      const allowed = settings.allowRoutes.length === 0 ? 'the hub allows no LAN routes (-allow-routes)' : `allowed: ${settings.allowRoutes.map(formatPrefix).join(', ')}`;
      return refuse('route-not-allowed', `${cidr} is not allowed (${allowed})`, text);
    }
    if (limits !== undefined && !limits.some((a) => prefixContains(a, p))) {
      return refuse('route-not-allowed', `${cidr} is not among the routes this client may announce (${limits.length === 0 ? 'none' : limits.map(formatPrefix).join(', ')})`, text);
    }
    if (out.some((q) => prefixesOverlap(p, q))) return refuse('bad-hello', `${cidr} is announced twice or overlaps another announced route`, text);
    const hazard = routeHazard(p, guards);
    if (hazard !== undefined) {
      // A member learns which special range it hit, never the hub's or another member's underlay.
      const told = RESERVED_RANGES.includes(hazard) ? `${cidr} overlaps ${hazard.what}` : `${cidr} covers an underlay address or network that the hub or a member needs outside the tunnel`;
      return refuse('route-not-allowed', told, text, { logDetail: `${cidr} covers ${hazard.what}` });
    }
    out.push(p);
  }
  return out;
}

/** What a LAN route must not cover: the special ranges, the hub's own underlay, and where every member (this one too) connects from. */
function underlayGuards(facts: ConnectionFacts, state: HubState, ports: AdmissionPorts): GuardedPrefix[] {
  const out: GuardedPrefix[] = [...RESERVED_RANGES, ...ports.underlay];
  const own = endpointGuard(facts.remote, `the address this member connects from (${facts.remote})`);
  if (own !== undefined) out.push(own);
  for (const m of state.membership.members.values()) {
    const g = endpointGuard(m.remote, `the address member ${m.addressText} connects from (${m.remote})`);
    if (g !== undefined) out.push(g);
  }
  return out;
}
