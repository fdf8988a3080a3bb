// The hub's forwarding policy, in one place: where a packet from a member, from the hub's own TUN
// device, from a trunk (another hub of the cluster) and from a broadcast goes, who is isolated from
// whom, and where the hub's own packets (ICMP answers) go. `route`, `isolate`, `replicate` and the direct-path introductions consult it; it reads the membership the
// store holds (per packet: a member lookup first, a few array loads in a persistent map, the
// longest-prefix table only on a miss).
import { broadcastAddress, networkAddress, prefixHas, type Ipv4Prefix } from '../operators/core/address.js';
import type { DropReason } from '../operators/core/packet.js';
import { ipv4Source } from '../operators/core/wire/ipv4.js';
import type { RouteDecision } from '../operators/route.js';
import type { MemberRecord, Membership } from './membership.js';

/** The hub's own TUN device as a routing target. */
export const HUB = Object.freeze({ hub: true as const });
/** Broadcast or allowed multicast: handed to the sender's replicate stage, never delivered as is. */
export const REPLICATE = Object.freeze({ replicate: true as const });
/**
 * Another hub of the cluster as a routing target: packets for it go onto its trunk. `peer`: the
 * address is one of its members' (or a LAN behind one), what isolation separates; false: the hub's
 * own tunnel address. Two stable objects per hub (ClusterRoutes hands them out), so a batch groups by them.
 */
export interface RemoteHub {
  readonly trunk: string;
  readonly peer: boolean;
}
/** Where a packet is delivered. */
export type Target = MemberRecord | typeof HUB | RemoteHub;

/** Whether a target is another hub of the cluster (its trunk). */
export function isRemote(t: Target | typeof REPLICATE): t is RemoteHub {
  return (t as Partial<RemoteHub>).trunk !== undefined;
}

/** Whether a target is a member of this hub (not the hub, not a trunk). */
export function isMember(t: Target): t is MemberRecord {
  return t !== HUB && !isRemote(t);
}

/** What forwarding asks of the cluster (docs/cluster.md, "Trunks"): which other hub serves an address, from the view. */
export interface ClusterRoutes {
  /** The other hub that serves `address` (one of its members' addresses, a LAN route behind one of them, or its own tunnel address), or undefined. */
  remote(address: number): RemoteHub | undefined;
  /** One target per other hub of the cluster now (a broadcast goes once onto each trunk). */
  others(): Iterable<RemoteHub>;
}
/** What routing decides: a target, or replication. */
export type Decision = Target | typeof REPLICATE;

/** What the policy is built from. */
export interface ForwardingOptions {
  /** The hub's tunnel address and the virtual LAN's prefix. */
  readonly tunnel: Ipv4Prefix;
  /** Replicated multicast groups; replication is off when undefined. */
  readonly broadcastGroups: ReadonlySet<number> | undefined;
  /** The membership now (read per packet). */
  readonly membership: () => Membership;
  /** Client isolation now (it changes on reload). */
  readonly isolation: () => boolean;
  /** The other hubs of the cluster; absent on a hub without one. */
  readonly cluster?: ClusterRoutes;
}

/** Where packets go at the hub. */
export interface ForwardingPolicy {
  /** Where a packet from `sender` (undefined: not a member yet) to `dst` goes: anti-spoofing (its source must be its address or in its LANs), then the destination. */
  fromMember(sender: MemberRecord | undefined, dst: number, packet: Uint8Array): Decision | DropReason;
  /** Where a packet read from the hub's TUN device goes. */
  readonly fromHub: RouteDecision<MemberRecord | RemoteHub | typeof REPLICATE>;
  /**
   * Where a packet that arrived on the trunk from hub `from` goes: its source must be served by
   * `from` (anti-spoofing), it goes to a member of this hub, a LAN behind one, the hub, or
   * replication to this hub's members, never onto another trunk (`trunk-transit`); isolation as
   * between two members of one hub.
   */
  fromTrunk(from: string, dst: number, packet: Uint8Array): Decision | DropReason;
  /** Client isolation is on now: packets between members are dropped (`isolate` asks per batch). */
  isolating(): boolean;
  /** The target is another member (what isolation separates), here or at another hub, not a hub. */
  isPeer(target: Target): boolean;
  /** Isolation now keeps `a` and `b` apart: both are members and client isolation is on (what `isolate` applies per batch as isolating() and isPeer; direct-path introductions ask it per pair). */
  separates(a: Target, b: Target): boolean;
  /** The receivers of a broadcast from `sender`: the hub, every other member and every other hub's trunk once (only the hub under isolation); every member and trunk when the sender is the hub; the hub and its members only (never a trunk) when the sender is a trunk. */
  receivers(sender: Target): Iterable<Target>;
  /** Where a packet the hub makes itself (an ICMP answer) to `dst` goes: the member or LAN that has it, the hub that serves it, else the hub's own kernel. */
  toward(dst: number): Target;
}

/**
 * The inner-source rule of a member's packets (anti-spoofing), at the hub and on a direct path: `src`
 * is the member's `address` or lies in one of its announced `routes` (LANs never overlap between
 * members: admission refuses that, so "one of its own" is "the member the LAN table names").
 */
export function sendsAs(src: number, address: number, routes: readonly Ipv4Prefix[]): boolean {
  if (src === address) return true;
  for (let i = 0; i < routes.length; i++) if (prefixHas(routes[i]!, src)) return true;
  return false;
}

/** The policy over the options' live membership and isolation. */
export function forwardingPolicy(o: ForwardingOptions): ForwardingPolicy {
  const hubAddress = o.tunnel.address;
  const network = networkAddress(o.tunnel);
  const broadcast = broadcastAddress(o.tunnel);
  const groups = o.broadcastGroups;
  const replicable = (dst: number): boolean => groups !== undefined && (dst === 0xffffffff || groups.has(dst));

  const cluster = o.cluster;
  /** A LAN behind a member of this hub, by longest prefix. */
  const lan = (m: Membership, dst: number): MemberRecord | undefined => (m.lans.size === 0 ? undefined : m.lans.lookup(dst));

  /** From a member, to `dst`: the member lookup first, longest-prefix match and the cluster only on a miss. */
  const toward = (m: Membership, dst: number): Decision | DropReason => {
    const member = m.members.get(dst);
    if (member !== undefined) return member;
    if (dst === hubAddress) return HUB;
    if (!prefixHas(o.tunnel, dst)) {
      if (replicable(dst)) return REPLICATE;
      // A LAN behind a member (here or at another hub), else beyond the virtual LAN: the hub's kernel decides.
      return lan(m, dst) ?? cluster?.remote(dst) ?? HUB;
    }
    if (dst === broadcast && groups !== undefined) return REPLICATE;
    if (dst === broadcast || dst === network) return 'broadcast';
    return cluster?.remote(dst) ?? 'no-route';
  };

  /** Isolation keeps `a` and `b` apart: both are members (here or at another hub) and client isolation is on. */
  const isPeer = (t: Target): boolean => t !== HUB && (!isRemote(t) || t.peer);
  const separates = (a: Target, b: Target): boolean => isPeer(a) && isPeer(b) && o.isolation();

  /** From the trunk of hub `from`: only what `from` serves, only to this hub's own (the one destination rule, `toward`, with its other hubs and its kernel refused). */
  const fromTrunk = (from: string, dst: number, packet: Uint8Array): Decision | DropReason => {
    const sender = cluster?.remote(ipv4Source(packet));
    if (sender === undefined || sender.trunk !== from) return 'spoofed-source';
    const target = toward(o.membership(), dst);
    if (typeof target === 'string' || target === REPLICATE) return target;
    // Never onto another trunk (a packet crosses one), never out through this hub's kernel.
    if (isRemote(target)) return 'trunk-transit';
    if (target === HUB && dst !== hubAddress) return 'no-route';
    return separates(sender, target as Target) ? 'isolation' : target;
  };

  return {
    fromMember: (sender, dst, packet) => {
      if (sender === undefined) return 'unregistered';
      if (!sendsAs(ipv4Source(packet), sender.address, sender.routes)) return 'spoofed-source';
      return toward(o.membership(), dst);
    },
    fromHub: (dst) => {
      const m = o.membership();
      const member = m.members.get(dst);
      if (member !== undefined) return member;
      if (groups !== undefined && (dst === broadcast || replicable(dst))) return REPLICATE;
      return lan(m, dst) ?? cluster?.remote(dst) ?? 'no-route';
    },
    fromTrunk,
    isolating: o.isolation,
    isPeer,
    separates,
    *receivers(sender) {
      if (sender !== HUB) yield HUB;
      if (isPeer(sender) && o.isolation()) return;
      for (const m of o.membership().members.values()) if (m !== sender) yield m;
      // What came over a trunk goes no further: a packet crosses one trunk.
      if (cluster !== undefined && !isRemote(sender)) yield* cluster.others();
    },
    toward: (dst) => {
      const m = o.membership();
      return m.members.get(dst) ?? lan(m, dst) ?? cluster?.remote(dst) ?? HUB;
    },
  };
}
