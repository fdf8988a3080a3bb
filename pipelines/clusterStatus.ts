// The cluster's part of a hub's stats (docs/status.md, `cluster`): the hubs the view shows, with
// their tunnel and advertised addresses and how many members each serves, and this hub's trunks
// with their counters. Made once per stats tick, never per packet.
import { formatHostPort, formatPrefix } from '../operators/core/address.js';
import type { ClusterView } from './clusterView.js';
import type { ClusterHubInfo, ClusterStatsEvent } from './events.js';
import type { Trunks } from './trunks.js';

/** The `cluster-stats` event of hub `me` from its view now and its trunks (none when it keeps none). */
export function clusterStats(me: string, view: ClusterView, trunks: Trunks | undefined): ClusterStatsEvent {
  const members = new Map<string, number>();
  for (const claim of view.addresses.values()) if (claim.value.self !== true) members.set(claim.value.hub, (members.get(claim.value.hub) ?? 0) + 1);
  const hubs: ClusterHubInfo[] = [...view.hubs]
    .map(([name, claim]) => ({ name, tunnel: formatPrefix(claim.value.tunnel), advertise: formatHostPort(claim.value.advertise), members: members.get(name) ?? 0 }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { type: 'cluster-stats', me, standing: view.standing, hubs, trunks: trunks?.stats() ?? [], refusedTrunks: trunks?.refused() ?? {} };
}
