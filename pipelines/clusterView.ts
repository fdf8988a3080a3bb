// The cluster view (docs/cluster.md, "The view"): what one hub knows of the cluster's shared state
// (hubs, address claims, LAN routes, sticky leases) and of its own standing with the store (up,
// unavailable, fenced), as one value derived from events by a pure reducer. The store's watch may
// deliver an event twice or after a newer one: every key remembers the revision that last changed
// it, and an event no newer than that changes nothing. The view is advisory: admission judges from
// it, and the claim's transaction (clusterHub.ts) makes the decision good or refuses it.
import { formatIpv4, formatPrefix, prefixesOverlap, type Ipv4Prefix } from '../operators/core/address.js';
import { PersistentMap } from '../operators/core/persistentMap.js';
import type { RejectReason } from '../operators/core/wire/control.js';
import { decodeEntry, type AddrValue, type ClusterEntry, type ClusterKeys, type HubValue, type RouteValue } from './clusterKeys.js';
import type { ClusterAdmission } from './admission.js';
import type { LeaseId, StoreKv, WatchEvent } from './clusterPorts.js';

/** Deleted keys remembered (to refuse a put older than the delete); beyond this the view forgets them all and ignores anything not newer than what it has seen. */
export const MAX_TOMBSTONES = 4096;

/** The hub's standing with the store. */
export type ClusterStanding =
  /** No snapshot yet (starting, or after being fenced). */
  | 'starting'
  /** Registered, its lease renewed in time, its view fed by the watch. */
  | 'up'
  /** A store call failed: joins are refused; sessions go on until the fence. */
  | 'unavailable'
  /** The lease could not be proven alive: the hub serves nobody. */
  | 'fenced';

/** A claim as the view holds it: the decoded value, its revision and lease. */
export interface Claimed<V> {
  readonly value: V;
  readonly modRevision: number;
  readonly lease: LeaseId | undefined;
}

/** What one hub knows of the cluster. Treat as immutable: reduceCluster returns a new one. */
export interface ClusterView {
  /** This hub's name. */
  readonly me: string;
  readonly keys: ClusterKeys;
  readonly standing: ClusterStanding;
  /** Since when the store is unavailable (scheduler time), while it is. */
  readonly unavailableSince: number | undefined;
  /** Why, in a sentence, while it is. */
  readonly unavailableDetail: string | undefined;
  /** Until when the hub's lease is proven alive (scheduler time; see fenceAt). */
  readonly fenceAt: number | undefined;
  /** The revision of the newest snapshot: events no newer than it are in it already. */
  readonly base: number;
  /** The newest revision applied. */
  readonly revision: number;
  /** Every live key's revision, and deleted keys' delete revision (tombstones: value undefined). */
  readonly slots: PersistentMap<string, { readonly revision: number; readonly entry: ClusterEntry | undefined }>;
  readonly tombstones: number;
  readonly hubs: PersistentMap<string, Claimed<HubValue>>;
  readonly addresses: PersistentMap<number, Claimed<AddrValue>>;
  readonly routes: readonly { readonly prefix: Ipv4Prefix; readonly claim: Claimed<RouteValue> }[];
  /** Sticky leases by address (the identity it is leased to). */
  readonly sticky: PersistentMap<number, Claimed<{ readonly identity: string }>>;
  /** Keys or values of the store the view refused (not of the layout, too large, the wrong shape), counted. */
  readonly refused: number;
  /** The latest refusal's sentence. */
  readonly lastRefused: string | undefined;
}

/** What changes the view. */
export type ClusterViewEvent =
  /** Every key of the cluster at `revision`: replaces the view's keys. */
  | { readonly type: 'snapshot'; readonly revision: number; readonly kvs: readonly StoreKv[] }
  /** Changes from the watch, or the hub's own transaction (applied at once, its echo ignored later). */
  | { readonly type: 'changes'; readonly events: readonly WatchEvent[] }
  /** A renewal sent at `sentAt` proved the lease for `ttlMs` from then (also the first grant). */
  | { readonly type: 'renewed'; readonly sentAt: number; readonly ttlMs: number }
  /** A store call failed at `at`. */
  | { readonly type: 'store-failed'; readonly at: number; readonly detail: string }
  /** The store answered again (the watch is back) at `at`. */
  | { readonly type: 'store-back'; readonly at: number }
  /** The clock reached `at`: fenced when the lease is no longer proven. */
  | { readonly type: 'clock'; readonly at: number }
  /** The store says the hub's lease is gone (expired or revoked): fenced at once. */
  | { readonly type: 'lease-lost'; readonly at: number };

/** The view of hub `me` before anything is known. */
export function initialClusterView(me: string, keys: ClusterKeys): ClusterView {
  return {
    me,
    keys,
    standing: 'starting',
    unavailableSince: undefined,
    unavailableDetail: undefined,
    fenceAt: undefined,
    base: 0,
    revision: 0,
    slots: PersistentMap.empty(),
    tombstones: 0,
    hubs: PersistentMap.empty(),
    addresses: PersistentMap.empty(),
    routes: [],
    sticky: PersistentMap.empty(),
    refused: 0,
    lastRefused: undefined,
  };
}

/**
 * Until when a lease renewed at `sentAt` for `ttlMs` is proven alive, with a margin for timer
 * lateness and clock rate drift (10 % of the TTL, at least 250 ms): the hub stops serving then.
 */
export function fenceAt(sentAt: number, ttlMs: number): number {
  return sentAt + ttlMs - Math.max(250, Math.ceil(ttlMs / 10));
}

/** The view after `event`; `v` itself is never changed. */
export function reduceCluster(v: ClusterView, event: ClusterViewEvent): ClusterView {
  switch (event.type) {
    case 'snapshot': {
      // The keys are replaced; the standing is kept (a snapshot makes a hub with a proven lease `up`).
      let next: ClusterView = { ...v, base: 0, revision: 0, slots: PersistentMap.empty(), tombstones: 0, hubs: PersistentMap.empty(), addresses: PersistentMap.empty(), routes: [], sticky: PersistentMap.empty() };
      for (const kv of event.kvs) next = put(next, kv);
      const standing = v.standing === 'starting' && v.fenceAt !== undefined ? 'up' : v.standing;
      return { ...next, standing, base: event.revision, revision: Math.max(event.revision, next.revision) };
    }
    case 'changes': {
      let next = v;
      for (const e of event.events) {
        const slot = next.slots.get(e.kv.key);
        const newest = Math.max(next.base, slot?.revision ?? 0);
        if (e.kv.modRevision <= newest) continue;
        next = e.type === 'put' ? put(next, e.kv) : remove(next, e.kv.key, e.kv.modRevision);
      }
      return next;
    }
    case 'renewed': {
      // A renewal after the fence is a new lease: the hub starts over (a snapshot makes it `up`).
      const standing: ClusterStanding = v.standing === 'fenced' || v.standing === 'starting' ? 'starting' : 'up';
      const until = fenceAt(event.sentAt, event.ttlMs);
      return { ...v, standing, unavailableSince: undefined, unavailableDetail: undefined, fenceAt: Math.max(until, v.fenceAt ?? until) };
    }
    case 'store-failed':
      // A hub that is not in the cluster (yet, or any more) stays so; it only learns why.
      if (v.standing === 'fenced' || v.standing === 'starting') return { ...v, unavailableDetail: event.detail };
      return { ...v, standing: 'unavailable', unavailableSince: v.unavailableSince ?? event.at, unavailableDetail: event.detail };
    case 'store-back':
      return v.standing === 'unavailable' && v.fenceAt !== undefined && event.at < v.fenceAt ? { ...v, standing: 'up', unavailableSince: undefined, unavailableDetail: undefined } : v;
    case 'lease-lost':
    case 'clock':
      if (v.standing === 'fenced' || v.fenceAt === undefined || (event.type === 'clock' && event.at < v.fenceAt)) return v;
      // Fenced: the hub's claims may be gone any moment; it forgets the view and serves nobody.
      return { ...initialClusterView(v.me, v.keys), standing: 'fenced', refused: v.refused, lastRefused: v.lastRefused };
  }
}

function put(v: ClusterView, kv: StoreKv): ClusterView {
  const entry = decodeEntry(v.keys, kv.key, kv.value);
  const slot = v.slots.get(kv.key);
  const revision = Math.max(v.revision, kv.modRevision);
  if (typeof entry === 'string') {
    // What cannot be decoded counts as absent: a tombstone at its revision.
    return { ...remove(v, kv.key, kv.modRevision), refused: v.refused + 1, lastRefused: entry };
  }
  const claim = { modRevision: kv.modRevision, lease: kv.lease };
  const base = unindex(v, slot?.entry);
  const next: ClusterView = {
    ...base,
    revision,
    tombstones: slot !== undefined && slot.entry === undefined ? base.tombstones - 1 : base.tombstones,
    slots: base.slots.set(kv.key, { revision: kv.modRevision, entry }),
  };
  switch (entry.kind) {
    case 'hub':
      return { ...next, hubs: next.hubs.set(entry.name, { ...claim, value: entry.value }) };
    case 'addr':
      return { ...next, addresses: next.addresses.set(entry.address, { ...claim, value: entry.value }) };
    case 'route':
      return { ...next, routes: [...next.routes, { prefix: entry.prefix, claim: { ...claim, value: entry.value } }] };
    case 'sticky':
      return { ...next, sticky: next.sticky.set(entry.address, { ...claim, value: { identity: entry.value.identity } }) };
  }
}

/** The view without `entry` in its indexes (hubs, addresses, routes, sticky leases). */
function unindex(v: ClusterView, entry: ClusterEntry | undefined): ClusterView {
  if (entry === undefined) return v;
  switch (entry.kind) {
    case 'hub':
      return { ...v, hubs: v.hubs.delete(entry.name) };
    case 'addr':
      return { ...v, addresses: v.addresses.delete(entry.address) };
    case 'route':
      return { ...v, routes: v.routes.filter((r) => r.prefix.address !== entry.prefix.address || r.prefix.prefix !== entry.prefix.prefix) };
    case 'sticky':
      return { ...v, sticky: v.sticky.delete(entry.address) };
  }
}

/** The view without `key`, with a tombstone at `revision` (a bounded number of them: see MAX_TOMBSTONES). */
function remove(v: ClusterView, key: string, revision: number): ClusterView {
  const slot = v.slots.get(key);
  const next = unindex(v, slot?.entry);
  const seen = Math.max(next.revision, revision);
  const wasTombstone = slot !== undefined && slot.entry === undefined;
  if (!wasTombstone && next.tombstones + 1 > MAX_TOMBSTONES) {
    // Forget every tombstone; from now on nothing not newer than what was seen applies to a key the view does not hold.
    let slots = next.slots.delete(key);
    for (const [k, s] of slots) if (s.entry === undefined) slots = slots.delete(k);
    return { ...next, slots, tombstones: 0, base: seen, revision: seen };
  }
  return { ...next, slots: next.slots.set(key, { revision, entry: undefined }), tombstones: wasTombstone ? next.tombstones : next.tombstones + 1, revision: seen };
}

/** The lease identity a sticky address belongs to in the cluster, or undefined. */
export function stickyOwner(v: ClusterView, address: number): string | undefined {
  return v.sticky.get(address)?.value.identity;
}

/** The cluster's sticky lease of `identity` (its lowest address, should a race have given it two), or undefined. */
export function stickyOf(v: ClusterView, identity: string): number | undefined {
  let best: number | undefined;
  for (const [a, s] of v.sticky) if (s.value.identity === identity && (best === undefined || a < best)) best = a;
  return best;
}

/** Whether another hub (or another identity's lease) stands in the way of `address` for a client of lease identity `lease`: what the cluster-wide allocator skips. */
export function takenElsewhere(v: ClusterView, address: number, lease: string | undefined): boolean {
  const held = v.addresses.get(address);
  if (held !== undefined && held.value.hub !== v.me) return true;
  const owner = stickyOwner(v, address);
  return owner !== undefined && owner !== lease;
}

/** A claim admission is about to make. */
export interface ClusterCandidate {
  readonly address: number;
  /** The lease identity (`token:NAME`, `cert:NAME`, `id:HEX`), when the client has one. */
  readonly lease: string | undefined;
  readonly routes: readonly Ipv4Prefix[];
}

/** A cluster-wide refusal: the reason, what the peer is told, what the hub logs. */
export interface ClusterRefusal {
  readonly reason: RejectReason;
  readonly detail: string;
  readonly logDetail: string;
}

/**
 * The cluster's word on a join this hub would admit, or undefined when the cluster has no
 * objection: `cluster-unavailable` unless the hub stands `up`; another hub's address
 * (`hub-address`); the address held by a member of another hub (`ip-conflict`); leased to another
 * identity (`leased-to-other`); a route overlapping one behind another hub's member
 * (`route-overlap`). This hub's own claims are its local membership's to judge.
 */
export function clusterRefusal(v: ClusterView, c: ClusterCandidate): ClusterRefusal | undefined {
  const text = formatIpv4(c.address);
  if (v.standing !== 'up') {
    const why = v.standing === 'starting' ? 'has not joined its cluster yet' : v.standing === 'fenced' ? 'lost its cluster store for longer than its lease' : 'cannot reach its cluster store';
    return { reason: 'cluster-unavailable', detail: `the hub ${why}; try again later`, logDetail: `the hub ${why}${v.unavailableDetail === undefined ? '' : ` (${v.unavailableDetail})`}` };
  }
  const held = v.addresses.get(c.address);
  if (held !== undefined && held.value.hub !== v.me) {
    if (held.value.self === true) return { reason: 'hub-address', detail: `${text} is the address of a hub of the cluster`, logDetail: `${text} is the address of hub ${held.value.hub}` };
    return { reason: 'ip-conflict', detail: `${text} is in use by another member`, logDetail: `${text} is in use by a member of hub ${held.value.hub}${held.value.remote === undefined ? '' : ` (${held.value.remote})`}` };
  }
  const owner = stickyOwner(v, c.address);
  if (owner !== undefined && owner !== c.lease) return { reason: 'leased-to-other', detail: `${text} is leased to another client`, logDetail: `${text} is leased to ${owner} in the cluster` };
  for (const p of c.routes) {
    const clash = v.routes.find((r) => r.claim.value.hub !== v.me && prefixesOverlap(r.prefix, p));
    if (clash !== undefined) {
      const told = `${formatPrefix(p)} overlaps ${formatPrefix(clash.prefix)} behind ${formatIpv4(clash.claim.value.via)}`;
      return { reason: 'route-overlap', detail: told, logDetail: `${told} (hub ${clash.claim.value.hub})` };
    }
  }
  return undefined;
}

/** What admission asks of the cluster, answered from the latest view (`view()` is read on every question). */
export function clusterAdmission(view: () => ClusterView): ClusterAdmission {
  return {
    refusal: (c) => clusterRefusal(view(), c),
    taken: (address, lease) => takenElsewhere(view(), address, lease),
    stickyOf: (lease) => stickyOf(view(), lease),
  };
}
