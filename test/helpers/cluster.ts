// Cluster views for tests (pipelines/clusterView.ts): store keys of cluster `lab` made from entries,
// and a view of a hub that renewed its lease and took a snapshot of them.
import { parseIpv4, parsePrefix } from '../../operators/core/address.js';
import { clusterKeys, encodeValue, entryKey, type ClusterEntry } from '../../pipelines/clusterKeys.js';
import type { StoreKv } from '../../pipelines/clusterPorts.js';
import { initialClusterView, reduceCluster, type ClusterView } from '../../pipelines/clusterView.js';

/** The keys of cluster `lab`. */
export const K = clusterKeys('lab');
const ip = (s: string): number => parseIpv4(s)!;

/** A key of `entry` as the store returns it, changed at `modRevision`, under `lease`. */
export const kv = (entry: ClusterEntry, modRevision: number, lease?: string): StoreKv => ({ key: entryKey(K, entry), value: encodeValue(entry), createRevision: modRevision, modRevision, lease });
/** `addr/A` held by hub `hub` (under its lease, `lease-<hub>`). */
export const addrKv = (a: string, hub: string, rev: number, extra: { self?: boolean; remote?: string } = {}): StoreKv => kv({ kind: 'addr', address: ip(a), value: { v: 1, hub, ...extra } }, rev, `lease-${hub}`);
/** `route/P` behind member `via` of hub `hub`. */
export const routeKv = (p: string, hub: string, via: string, rev: number): StoreKv => kv({ kind: 'route', prefix: parsePrefix(p)!, value: { v: 1, hub, via: ip(via) } }, rev, `lease-${hub}`);
/** `sticky/A` leased to `identity`. */
export const stickyKv = (a: string, identity: string, rev: number): StoreKv => kv({ kind: 'sticky', address: ip(a), value: { v: 1, identity } }, rev);

/** The view of hub `me` that renewed its lease at 0 for 6 s and took `kvs` as its snapshot at `revision`: `up`. */
export function upView(me: string, kvs: readonly StoreKv[] = [], revision = 10): ClusterView {
  const renewed = reduceCluster(initialClusterView(me, K), { type: 'renewed', sentAt: 0, ttlMs: 6000 });
  return reduceCluster(renewed, { type: 'snapshot', revision, kvs });
}
