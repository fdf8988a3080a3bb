// Membership: who the members are (by tunnel address), the LAN routes behind them, the address
// allocator and its leases, as one state derived from join and leave events. A pure reducer: it
// never changes the state it is given (it copies what an event changes), so any snapshot stays
// valid; the hub keeps the latest one in its store (store.ts) and forwarding reads it per packet.
// The members and the allocator's tables are persistent maps: a join or a leave copies O(log n) of
// them, not the whole membership. Nothing else changes membership.
import { formatIpv4, formatPrefix, type Ipv4Prefix } from '../operators/core/address.js';
import { PersistentMap } from '../operators/core/persistentMap.js';
import { RouteTable } from '../operators/core/routeTable.js';
import { AddressAllocator, type AllocatorOptions, type DiscardedLease, type LeaseTable } from './allocator.js';
import type { LanRoute, LeaseInfo, SessionEnd } from './events.js';
import type { DirectFacts } from './introductions.js';
import type { PacketBatch } from './ports.js';

/** The handle of a member's session: where packets and control frames for it go. */
export interface MemberSession {
  /** Packets for the member, each at most maxPacket() bytes (over UDP while its path is up, else into its session's bounded data queue). */
  send(packets: PacketBatch): void;
  /** The largest plain packet the member takes now: its MTU (and 1495 without `gso`), and its UDP path's while that is up. */
  maxPacket(): number;
  /** A control frame for the member (never dropped; a keyed one replaces an older unsent one). */
  control(frame: Uint8Array, key?: string): void;
  /** scheduler.now() of the member's last frame. */
  lastSeen(): number;
  /** Ends the member's session with a reason (it leaves). */
  end(err: SessionEnd): void;
  /** What the introductions of direct paths need of the member (docs/direct.md); absent when it takes no part (it did not offer `direct`, the hub runs without, or it has no UDP channel). */
  direct?(): DirectFacts;
}

/** A member as membership knows it. */
export interface MemberRecord {
  /** The connection's id (unique per listener). */
  readonly id: number;
  /** The connection's `ip:port`. */
  readonly remote: string;
  readonly address: number;
  readonly addressText: string;
  /** Who authenticated (token or certificate name), when the hub requires authentication. */
  readonly identity: string | undefined;
  /** The identity is this client's alone: a newer session of it may replace this one. */
  readonly exclusive: boolean;
  /** The lease identity (`token:NAME`, `cert:NAME`, `id:HEX`). */
  readonly lease: string | undefined;
  /** LANs behind the member, accepted by the hub. */
  readonly routes: readonly Ipv4Prefix[];
  /** It takes ROUTES frames. */
  readonly takesRoutes: boolean;
  readonly session: MemberSession;
}

/** The membership state. Treat as immutable: reduceMembership returns a new one when anything changed. */
export interface Membership {
  /** Members by tunnel address, ascending: the lookup of the packet path (a few array loads, no allocation); a join or leave makes a new map sharing all but O(log n) of this one. */
  readonly members: PersistentMap<number, MemberRecord>;
  /** LANs behind members, longest prefix first (never changed in place: copied on change, at most MAX_LAN_ROUTES entries). */
  readonly lans: RouteTable<MemberRecord>;
  /** The address allocator with its sticky leases (never changed in place: cloned on change, O(1), its tables shared). */
  readonly allocator: AddressAllocator;
  /** Addresses pinned to named clients (tokens file): never assigned to anyone else. */
  readonly reserved: ReadonlyMap<number, string>;
}

/** What changes membership. */
export type MembershipEvent =
  /** A member was admitted (replacing whoever held its address); `lease` records a new sticky lease. */
  | { readonly type: 'joined'; readonly member: MemberRecord; readonly lease?: { readonly identity: string; readonly address: number } }
  /** A member's session ended (a no-op when a newer member already holds its address). */
  | { readonly type: 'left'; readonly member: MemberRecord };

/**
 * The membership a hub starts with: no members, the stored leases minus those on addresses pinned
 * to somebody else (pins win; `discarded` lists leases the allocator could not honour).
 */
export function initialMembership(space: AllocatorOptions, stored: LeaseTable, reserved: ReadonlyMap<number, string>): { membership: Membership; discarded: readonly DiscardedLease[] } {
  const leases = Object.fromEntries(
    Object.entries(stored).filter(([who, a]) => {
      const owner = reserved.get(a);
      return owner === undefined || who === `token:${owner}`;
    }),
  );
  const allocator = new AddressAllocator(space, leases);
  // A pinned address is never handed to anyone else: it counts as in use for good.
  for (const a of reserved.keys()) allocator.markInUse(a);
  return { membership: { members: PersistentMap.empty(), lans: new RouteTable(), allocator, reserved }, discarded: allocator.discarded };
}

/** The membership after `event`; `m` itself is never changed. */
export function reduceMembership(m: Membership, event: MembershipEvent): Membership {
  switch (event.type) {
    case 'joined': {
      const joiner = event.member;
      const allocator = m.allocator.clone();
      let lans = m.lans;
      const replaced = m.members.get(joiner.address);
      if (replaced !== undefined) {
        allocator.release(replaced.address);
        if (replaced.routes.length > 0) lans = lans.without(replaced);
      }
      const members = m.members.set(joiner.address, joiner);
      allocator.markInUse(joiner.address);
      if (event.lease !== undefined) allocator.lease(event.lease.identity, event.lease.address);
      if (joiner.routes.length > 0) {
        lans = lans.clone();
        for (const p of joiner.routes) lans.add(p, joiner);
      }
      return { ...m, members, allocator, lans };
    }
    case 'left': {
      const leaver = event.member;
      if (m.members.get(leaver.address) !== leaver) return m;
      const members = m.members.delete(leaver.address);
      const allocator = m.allocator.clone();
      allocator.release(leaver.address);
      return { ...m, members, allocator, lans: leaver.routes.length > 0 ? m.lans.without(leaver) : m.lans };
    }
  }
}

/** Every LAN route as the hub announces it (text, for events and the status). */
export function lanRoutes(m: Membership): LanRoute[] {
  return m.lans.entries().map((e) => ({ cidr: formatPrefix(e.prefix), via: e.target.addressText }));
}

/** The routes a member is told about: everyone's but its own (wire form), and those of the other hubs of a cluster (`remote`). */
export function routesFor(m: Membership, member: MemberRecord | undefined, remote: readonly { cidr: Ipv4Prefix; via: number }[] = []): { cidr: Ipv4Prefix; via: number }[] {
  return [
    ...m.lans
      .entries()
      .filter((e) => e.target !== member)
      .map((e) => ({ cidr: e.prefix, via: e.target.address })),
    ...remote,
  ];
}

/** The lease table for the status: who has which address. */
export function leaseInfo(m: Membership): LeaseInfo[] {
  return Object.entries(m.allocator.leases()).map(([identity, a]) => ({ identity, address: formatIpv4(a) }));
}
