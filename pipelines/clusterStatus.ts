// The cluster's part of a hub's stats (docs/status.md, `cluster`): the hubs the view shows, with
// their tunnel and advertised addresses and how many members each serves, and this hub's trunks
// with their counters. Made once per stats tick, never per packet.
import { formatHostPort, formatIpv4, formatPrefix } from '../operators/core/address.js';
import type { ClusterView } from './clusterView.js';
import type { ClusterHubInfo, ClusterStatsEvent } from './events.js';
import type { Trunks } from './trunks.js';

/** The most member addresses listed per hub in the status (the count is always whole). */
export const MAX_LISTED_ADDRESSES = 256;

/** The `cluster-stats` event of hub `me` from its view now and its trunks (none when it keeps none). */
export function clusterStats(me: string, view: ClusterView, trunks: Trunks | undefined): ClusterStatsEvent {
  const members = new Map<string, { count: number; addresses: string[] }>();
  // The view's addresses iterate in ascending order: each hub's list is too.
  for (const [address, claim] of view.addresses) {
    if (claim.value.self === true) continue;
    let m = members.get(claim.value.hub);
    if (m === undefined) members.set(claim.value.hub, (m = { count: 0, addresses: [] }));
    m.count++;
    if (m.addresses.length < MAX_LISTED_ADDRESSES) m.addresses.push(formatIpv4(address));
  }
  const hubs: ClusterHubInfo[] = [...view.hubs]
    .map(([name, claim]) => ({ name, tunnel: formatPrefix(claim.value.tunnel), advertise: formatHostPort(claim.value.advertise), members: members.get(name)?.count ?? 0, addresses: members.get(name)?.addresses ?? [] }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { type: 'cluster-stats', me, standing: view.standing, hubs, trunks: trunks?.stats() ?? [], refusedTrunks: trunks?.refused() ?? {} };
}
