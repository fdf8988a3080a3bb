// Builders for the tests of the hub's pure core (admission, membership, hubState, forwarding):
// member records with a tiny fake session, and hub states made with the real reducers.
import { parseIpv4, parsePrefix, type Ipv4Prefix } from '../../operators/core/address.js';
import type { AdmissionSettings } from '../../pipelines/admission.js';
import type { AllocatorOptions } from '../../pipelines/allocator.js';
import { initialHubState, reduceHub, type HubEvent, type HubState } from '../../pipelines/hubState.js';
import { initialMembership, type MemberRecord, type MemberSession } from '../../pipelines/membership.js';

/** A dotted address as a u32 (throws on a typo rather than testing with undefined). */
export function ip(s: string): number {
  const a = parseIpv4(s);
  if (a === undefined) throw new Error(`not an IPv4 address: ${s}`);
  return a;
}

/** A CIDR as a prefix. */
export function cidr(s: string): Ipv4Prefix {
  const p = parsePrefix(s);
  if (p === undefined) throw new Error(`not a prefix: ${s}`);
  return p;
}

/** The hub's address space in these tests: 10.0.0.0/24, the hub at 10.0.0.1, the whole subnet as the pool. */
export const SPACE: AllocatorOptions = { network: ip('10.0.0.0'), prefix: 24, hub: ip('10.0.0.1') };

/** Admission's settings for a hub at 10.0.0.1/24 that allows LANs in 192.168.0.0/16 and times members out after 30 s. */
export const ADMISSION: AdmissionSettings = {
  tunnel: { address: ip('10.0.0.1'), prefix: 24 },
  maxClients: 100,
  multiClient: true,
  timeoutMs: 30_000,
  allowRoutes: [cidr('192.168.0.0/16')],
  offload: false,
};

/** A session that does nothing and was last heard at `lastSeen`. */
export function fakeSession(lastSeen: number): MemberSession {
  return {
    send: () => undefined,
    control: () => undefined,
    maxPacket: () => 1400,
    lastSeen: () => lastSeen,
    end: () => undefined,
  };
}

/** What a test may say about a member besides its address. */
export type MemberOptions = Partial<Omit<MemberRecord, 'address' | 'addressText' | 'routes' | 'session'>> & {
  /** Its LANs as CIDR text. */
  readonly routes?: readonly string[];
  /** scheduler.now() of its last frame (0 by default). */
  readonly lastSeen?: number;
};

/** A member record at `address` (connecting from 198.51.100.N:40000, N its last octet, unless `remote` says otherwise). */
export function member(address: string, o: MemberOptions = {}): MemberRecord {
  const a = ip(address);
  return {
    id: o.id ?? (a & 0xff),
    remote: o.remote ?? `198.51.100.${a & 0xff}:40000`,
    address: a,
    addressText: address,
    identity: o.identity,
    exclusive: o.exclusive ?? false,
    lease: o.lease,
    routes: (o.routes ?? []).map(cidr),
    takesRoutes: o.takesRoutes ?? false,
    session: fakeSession(o.lastSeen ?? 0),
  };
}

/** How a test hub state is built. */
export interface HubStateOptions {
  readonly space?: AllocatorOptions;
  /** The stored lease table (identity → dotted address). */
  readonly leases?: Readonly<Record<string, string>>;
  /** Addresses pinned to named clients (dotted address → client name). */
  readonly reserved?: Readonly<Record<string, string>>;
  /** Members, joined in this order. */
  readonly members?: readonly MemberRecord[];
  /** Further events, applied after the joins. */
  readonly events?: readonly HubEvent[];
}

/** The pins of a test as the membership takes them. */
export function pins(reserved: Readonly<Record<string, string>> = {}): ReadonlyMap<number, string> {
  return new Map(Object.entries(reserved).map(([a, name]) => [ip(a), name]));
}

/** A hub state made the way the hub makes it: initialMembership, then `joined` events and `events` through reduceHub. */
export function hubState(o: HubStateOptions = {}): HubState {
  const leases = Object.fromEntries(Object.entries(o.leases ?? {}).map(([who, a]) => [who, ip(a)]));
  const { membership } = initialMembership(o.space ?? SPACE, leases, pins(o.reserved));
  const joins: HubEvent[] = (o.members ?? []).map((m) => ({ type: 'joined', member: m }));
  return [...joins, ...(o.events ?? [])].reduce(reduceHub, initialHubState(membership));
}

/**
 * Everything observable about a hub state, as plain data: members (by address, with their record's
 * id), LAN routes, leases, what the allocator would assign next, penalties and replacements. Two
 * snapshots are equal when nothing a reader can see changed.
 */
export function snapshot(s: HubState): unknown {
  const m = s.membership;
  const next = m.allocator.peek('snapshot-probe');
  return {
    members: [...m.members].map(([a, r]) => [a, r.id, r.remote, r.routes]),
    lans: m.lans.entries().map((e) => [e.prefix, e.target.id]),
    leases: m.allocator.leases(),
    next: next.ok ? next.address : next.reason,
    reserved: [...m.reserved],
    penalties: [...s.penalties],
    replacements: [...s.replacements],
  };
}
