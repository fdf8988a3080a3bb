// The rule that keeps LAN routes from hijacking the underlay: a route through the TUN device must
// never cover the host's own addresses and networks, its gateways, the hub, or the address a member
// connects from. Otherwise the tunnel's own packets (and everything else the host sends there) are
// pulled into the tunnel, every session dies and stays dead (issue 10's route hijack). Pure.
import { parseIpv4, prefixHas, prefixesOverlap, type Ipv4Prefix } from '../operators/core/address.js';

/** A prefix no route through the TUN device may overlap, and what it is (for refusals and logs). */
export interface GuardedPrefix {
  readonly prefix: Ipv4Prefix;
  /** What it is, e.g. `address 192.0.2.7 on eth0`, `the hub's address 198.51.100.1`. */
  readonly what: string;
}

const range = (text: string, prefix: number, what: string): GuardedPrefix => ({ prefix: { address: parseIpv4(text)!, prefix }, what });

/** Ranges no LAN route may overlap whatever the allow-list says (RFC 6890 special-purpose blocks the host itself relies on). */
export const RESERVED_RANGES: readonly GuardedPrefix[] = [
  range('0.0.0.0', 8, 'the reserved range 0.0.0.0/8 ("this network")'),
  range('127.0.0.0', 8, 'the loopback range 127.0.0.0/8'),
  range('169.254.0.0', 16, 'the link-local range 169.254.0.0/16'),
  range('224.0.0.0', 4, 'the multicast range 224.0.0.0/4'),
  range('240.0.0.0', 4, 'the reserved range 240.0.0.0/4 (and 255.255.255.255)'),
];

/**
 * The first of `guarded` that `route` overlaps, or undefined when the route is safe to install:
 * prefixes are nested or disjoint, so overlapping means containing or lying inside.
 */
export function routeHazard(route: Ipv4Prefix, guarded: Iterable<GuardedPrefix>): GuardedPrefix | undefined {
  for (const g of guarded) if (prefixesOverlap(route, g.prefix)) return g;
  return undefined;
}

/** The host of an `ip:port` endpoint as a /32 guard (`what` says whose it is), or undefined when it is not IPv4. */
export function endpointGuard(remote: string, what: string): GuardedPrefix | undefined {
  const i = remote.lastIndexOf(':');
  const address = parseIpv4(i < 0 ? remote : remote.slice(0, i));
  return address === undefined ? undefined : { prefix: { address, prefix: 32 }, what };
}

/**
 * Why a direct path must not use `address` as an endpoint (a candidate to probe, a local endpoint
 * to tell the hub), or undefined when it may: the special ranges (this network, loopback,
 * link-local, multicast, reserved and the limited broadcast) and the tunnel network itself.
 */
export function endpointHazard(address: number, tunnel: Ipv4Prefix | undefined): GuardedPrefix | undefined {
  const special = routeHazard({ address, prefix: 32 }, RESERVED_RANGES);
  if (special !== undefined) return special;
  return tunnel !== undefined && prefixHas(tunnel, address) ? { prefix: tunnel, what: 'the tunnel network' } : undefined;
}
