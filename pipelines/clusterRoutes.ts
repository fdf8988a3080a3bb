// Which other hub of the cluster serves an address (docs/cluster.md, "Trunks"): what the forwarding
// policy asks when a destination (or a trunk packet's source) is none of this hub's own. Read from
// the cluster view per lookup: a member address or a hub's own tunnel address is one map lookup
// (`addr/` keys), a LAN behind another hub's member a longest-prefix match in a table of the
// cluster's `route/` keys, built again only when the view's routes change.
import type { Ipv4Prefix } from '../operators/core/address.js';
import { RouteTable } from '../operators/core/routeTable.js';
import type { ClusterView } from './clusterView.js';
import type { ClusterRoutes, RemoteHub } from './forwarding.js';

/** The two targets of one other hub: its members (peer) and the hub itself. */
interface HubTargets {
  readonly peer: RemoteHub;
  readonly self: RemoteHub;
}

/** More names than this in the cache (hubs come and go) and it starts afresh. */
const MAX_CACHED_HUBS = 1024;

/** The cluster's routes as the latest view (`view()`, read on every lookup) says them. */
export function clusterRoutes(view: () => ClusterView): ClusterRoutes {
  const targets = new Map<string, HubTargets>();
  const of = (hub: string): HubTargets => {
    let t = targets.get(hub);
    if (t === undefined) {
      if (targets.size >= MAX_CACHED_HUBS) targets.clear();
      t = { peer: Object.freeze({ trunk: hub, peer: true }), self: Object.freeze({ trunk: hub, peer: false }) };
      targets.set(hub, t);
    }
    return t;
  };
  /** The other hubs' LAN routes, by hub name, and the view's routes they were built from. */
  let built: ClusterView['routes'] | undefined;
  let lans = new RouteTable<string>();
  const lanOf = (v: ClusterView, address: number): string | undefined => {
    if (v.routes.length === 0) return undefined;
    if (built !== v.routes) {
      // Overlapping routes of two hubs (a race the claims' transactions settle) keep the first.
      lans = new RouteTable<string>();
      for (const r of v.routes) if (r.claim.value.hub !== v.me) lans.add(r.prefix, r.claim.value.hub);
      built = v.routes;
    }
    return lans.lookup(address);
  };
  return {
    remote(address) {
      const v = view();
      const held = v.addresses.get(address);
      if (held !== undefined) return held.value.hub === v.me ? undefined : held.value.self === true ? of(held.value.hub).self : of(held.value.hub).peer;
      const hub = lanOf(v, address);
      return hub === undefined ? undefined : of(hub).peer;
    },
    *others() {
      const v = view();
      for (const name of v.hubs.keys()) if (name !== v.me) yield of(name).peer;
    },
  };
}

/** The LANs behind the other hubs' members, as this hub's members are told them (wire form: the prefix and the member it lies behind) and its kernel routes them: through the tunnel, to a trunk. */
export function otherHubsLans(v: ClusterView): { cidr: Ipv4Prefix; via: number }[] {
  return v.routes.filter((r) => r.claim.value.hub !== v.me).map((r) => ({ cidr: r.prefix, via: r.claim.value.via }));
}
