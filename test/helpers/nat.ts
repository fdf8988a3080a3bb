/**
 * NAT routers for the namespace lab (test/helpers/lab.ts): what a router namespace is configured
 * with. The Lab builds the links; this file holds the addresses and the nftables ruleset, so the
 * two kinds of router differ in one place (one word of the ruleset).
 *
 * A host behind a NAT has its own private segment: its `eth0` (192.168.S.2/24, default route via
 * .1) is a veth to `lan0` (192.168.S.1/24) in its router's namespace, whose `eth0` sits on the
 * lab's bridge with the public address the host would have had (172.31.X.S, S = the host's slot).
 * The router forwards (ip_forward=1 in its own namespace only) and source-NATs what leaves `eth0`:
 *
 * - `eim` (endpoint-independent mapping): plain `masquerade`. Linux NAT keeps a flow's source port
 *   when the reply tuple it would give is free, and the reply tuple includes the destination, so
 *   the same inside socket goes out with its own port to every destination: one mapping, whoever
 *   it talks to (a port-preserving "cone" NAT).
 * - `symmetric` (endpoint-dependent mapping): `masquerade random`. The flag
 *   (NF_NAT_RANGE_PROTO_RANDOM) skips the "keep the port if free" step and draws the port at
 *   random for every new conntrack entry; each destination ip:port is a new entry, so the same
 *   socket gets a new outside port per destination. Measured: one socket to two ports of one host
 *   left as two different random ports. Two draws coincide with probability 1/64512 (the range
 *   1024-65535), the only way such a router behaves like a cone for a pair of flows.
 *
 * Both kinds filter like a home router: what comes in on `eth0` is forwarded inside only as the
 * reply of a flow the inside started (conntrack established/related, which undoes the mapping);
 * anything new is dropped (and counted). New datagrams to the router's own address are dropped at
 * `input` too: besides being what home routers do, it keeps an early hole-punching datagram from
 * leaving a conntrack entry behind (a packet dropped before conntrack's confirm step leaves none).
 * Such an entry (peer → router:port, answered by ICMP) would take the reply tuple the inside
 * host's own flow to that peer needs, and the NAT would then give that flow another port.
 * Filtering per address and port (conntrack's tuples) is what makes hole punching necessary: an
 * inside host hears a peer only after it sent to that peer's endpoint itself.
 */

/** The two kinds of NAT router. */
export type NatKind = 'eim' | 'symmetric';

/** Every NatKind, in a fixed order. */
export const NAT_KINDS: readonly NatKind[] = ['eim', 'symmetric'];

/** A NAT'd host's router, as the lab built it. */
export interface NatInfo {
  readonly kind: NatKind;
  /** The router's host name in the lab (`<host>-nat`). */
  readonly router: string;
  /** The router's address on the lab's bridge: where the public side sees the host come from. */
  readonly publicIp: string;
  /** The host's own address on its private segment. */
  readonly privateIp: string;
  /** The router's address on the private segment (the host's default gateway). */
  readonly gateway: string;
}

/** The nftables table (family ip) of every router. */
export const NAT_TABLE = 'lwtnat';
/** Router interface on the bridge (the lab's underlay interface name). */
export const NAT_OUTSIDE_IF = 'eth0';
/** Router interface on the private segment. */
export const NAT_INSIDE_IF = 'lan0';
/** Named counter of the router's table: new datagrams from outside dropped (to the router itself or to be forwarded inside). */
export const UNSOLICITED_COUNTER = 'unsolicited';

/** The router host name of NAT'd host `host`. */
export const natRouterName = (host: string): string => `${host}-nat`;

/** The private /24 of the host in lab slot `slot` (1..250): `{ gateway, host }` addresses and the prefix. */
export function privateSegment(slot: number): { readonly gateway: string; readonly host: string; readonly prefix: number } {
  if (!Number.isInteger(slot) || slot < 1 || slot > 250) throw new Error(`bad lab slot ${slot}`);
  return { gateway: `192.168.${slot}.1`, host: `192.168.${slot}.2`, prefix: 24 };
}

/** The ruleset (nft -f syntax) of a router of `kind`: filtering as a home router, source NAT on the outside interface. */
export function natRuleset(kind: NatKind): string {
  const masquerade = kind === 'symmetric' ? 'masquerade random' : 'masquerade';
  const out = `"${NAT_OUTSIDE_IF}"`;
  const inside = `"${NAT_INSIDE_IF}"`;
  return `table ip ${NAT_TABLE} {
  counter ${UNSOLICITED_COUNTER} {}
  chain input {
    type filter hook input priority filter; policy accept;
    iifname ${out} ct state established,related accept
    iifname ${out} counter name ${UNSOLICITED_COUNTER} drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname ${inside} oifname ${out} accept
    iifname ${out} counter name ${UNSOLICITED_COUNTER} drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname ${out} ${masquerade}
  }
}
`;
}
