// The hub's forwarding policy, in one place: where a packet from a member, from the hub's own TUN
// device and from a broadcast goes, who is isolated from whom, and where the hub's own packets
// (ICMP answers) go. `route`, `isolate`, `replicate` and the direct-path introductions consult it; it reads the membership the
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
/** Where a packet is delivered. */
export type Target = MemberRecord | typeof HUB;
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
}

/** Where packets go at the hub. */
export interface ForwardingPolicy {
  /** Where a packet from `sender` (undefined: not a member yet) to `dst` goes: anti-spoofing (its source must be its address or in its LANs), then the destination. */
  fromMember(sender: MemberRecord | undefined, dst: number, packet: Uint8Array): Decision | DropReason;
  /** Where a packet read from the hub's TUN device goes. */
  readonly fromHub: RouteDecision<MemberRecord | typeof REPLICATE>;
  /** Client isolation is on now: packets between members are dropped (`isolate` asks per batch). */
  isolating(): boolean;
  /** The target is another member (what isolation separates), not the hub. */
  isPeer(target: Target): boolean;
  /** Isolation now keeps `a` and `b` apart: both are members and client isolation is on (what `isolate` applies per batch as isolating() and isPeer; direct-path introductions ask it per pair). */
  separates(a: Target, b: Target): boolean;
  /** The receivers of a broadcast from `sender`: the hub and every other member (only the hub under isolation); every member when the sender is the hub. */
  receivers(sender: Target): Iterable<Target>;
  /** Where a packet the hub makes itself (an ICMP answer) to `dst` goes: the member or LAN that has it, else the hub's own kernel. */
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

  /** From a member, to `dst`: the member lookup first, longest-prefix match only on a miss. */
  const toward = (m: Membership, dst: number): Decision | DropReason => {
    const member = m.members.get(dst);
    if (member !== undefined) return member;
    if (dst === hubAddress) return HUB;
    if (!prefixHas(o.tunnel, dst)) {
      if (replicable(dst)) return REPLICATE;
      // A LAN behind a member, else beyond the virtual LAN: the hub's kernel decides.
      return m.lans.size === 0 ? HUB : (m.lans.lookup(dst) ?? HUB);
    }
    if (dst === broadcast && groups !== undefined) return REPLICATE;
    return dst === broadcast || dst === network ? 'broadcast' : 'no-route';
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
      return (m.lans.size === 0 ? undefined : m.lans.lookup(dst)) ?? 'no-route';
    },
    isolating: o.isolation,
    isPeer: (target) => target !== HUB,
    separates: (a, b) => a !== HUB && b !== HUB && o.isolation(),
    *receivers(sender) {
      if (sender !== HUB) yield HUB;
      if (sender !== HUB && o.isolation()) return;
      for (const m of o.membership().members.values()) if (m !== sender) yield m;
    },
    toward: (dst) => {
      const m = o.membership();
      return m.members.get(dst) ?? (m.lans.size === 0 ? undefined : m.lans.lookup(dst)) ?? HUB;
    },
  };
}
