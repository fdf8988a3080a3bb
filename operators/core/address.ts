// IPv4 prefixes: the one prefix type and the containment and overlap checks every layer uses.
import { prefixMask } from '../wire/ipv4.js';

/** An IPv4 prefix: `address` as an unsigned 32-bit integer and `prefix` its length, 0..32. */
export interface Ipv4Prefix {
  readonly address: number;
  readonly prefix: number;
}

/** True when `address` (a u32) lies inside `p`. */
export function prefixHas(p: Ipv4Prefix, address: number): boolean {
  const m = prefixMask(p.prefix);
  return ((address & m) >>> 0) === ((p.address & m) >>> 0);
}

/** True when `inner` lies inside `outer` (or equals it). */
export function prefixContains(outer: Ipv4Prefix, inner: Ipv4Prefix): boolean {
  return inner.prefix >= outer.prefix && prefixHas(outer, inner.address);
}

/** True when two prefixes share an address (prefixes are nested or disjoint). */
export function prefixesOverlap(a: Ipv4Prefix, b: Ipv4Prefix): boolean {
  return prefixContains(a, b) || prefixContains(b, a);
}
