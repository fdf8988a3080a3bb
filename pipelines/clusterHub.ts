// One hub's life in its cluster (docs/cluster.md): an etcd lease (TTL = the hub's timeout) renewed
// every third of it, the hub's registration under it, a snapshot of the cluster's keys and a watch
// from there, all feeding the cluster view (clusterView.ts) in a store; the fence when the lease
// can no longer be proven; and the claims of members' addresses and routes as transactions. Pure:
// time from the injected scheduler, the store behind ClusterStorePort.
import { EMPTY, Observable, Subject, catchError, concat, defer, exhaustMap, distinctUntilChanged, filter, ignoreElements, map, merge, mergeMap, of, retry, switchMap, tap, throwError, timer, type SchedulerLike } from 'rxjs';
import { formatIpv4, formatPrefix, type HostPort, type Ipv4Prefix } from '../operators/core/address.js';
import { encodeValue, type AddrValue, type ClusterKeys } from './clusterKeys.js';
import { StoreError, prefixEnd, type ClusterStorePort, type LeaseId, type StoreCompare, type StoreOp, type TxnRequest, type WatchEvent } from './clusterPorts.js';
import { clusterRefusal, type ClusterCandidate, type ClusterRefusal, type ClusterStanding, type ClusterView, type ClusterViewEvent } from './clusterView.js';
import type { Store } from './store.js';

/** The most keys a snapshot reads (a cluster's hubs, members, routes and leases). */
export const MAX_SNAPSHOT_KEYS = 65_536;
/** After a failed store call, the hub tries again this long later (the keepalive keeps its own pace). */
export const CLUSTER_RETRY_MS = 1000;
/** How soon a failed renewal of the hub's lease is tried again (the next one would be TTL/3 later). */
export const RENEW_RETRY_MS = 500;

/** What the hub's cluster life needs to know. */
export interface ClusterHubSettings {
  /** This hub's name (unique among live hubs). */
  readonly me: string;
  readonly keys: ClusterKeys;
  /** The lease's TTL: the hub's timeout. */
  readonly ttlSeconds: number;
  /** Where other hubs reach this one. */
  readonly advertise: HostPort;
  /** The hub's own tunnel address and prefix. */
  readonly tunnel: Ipv4Prefix;
}

/** What the cluster life reports (for the log and the status). */
export type ClusterHubEvent =
  | { readonly type: 'cluster-joined'; readonly lease: LeaseId; readonly revision: number; readonly hubs: number }
  | { readonly type: 'cluster-unavailable'; readonly detail: string }
  | { readonly type: 'cluster-back' }
  | { readonly type: 'cluster-fenced'; readonly detail: string }
  /** Another live hub has this hub's name (or this hub's previous run's lease lives on): tried again later. */
  | { readonly type: 'cluster-name-taken'; readonly detail: string };

/** The hub's name is in use in the cluster. */
export class HubNameTaken extends Error {
  override readonly name = 'HubNameTaken';
}

/** The hub lost its lease (fenced): its life in the cluster starts over. */
class Fenced extends Error {
  override readonly name = 'Fenced';
}

/** The hub's current lease, while it has one (claims go under it). */
export interface ClusterLease {
  current(): LeaseId | undefined;
}

/**
 * The hub's life in its cluster, feeding `view` (a store over reduceCluster). Emits what happens
 * (joined, unavailable, back, fenced, name taken); never errors on store failures (it retries:
 * keepalives every TTL/3 and RENEW_RETRY_MS after a failed one, anything else after CLUSTER_RETRY_MS); after the fence it starts over
 * with a new lease. Unsubscribing stops every timer and watch and leaves the lease to its owner:
 * `current()` still names it, and a hub that stops cleanly revokes it (the store then deletes the
 * hub's claims at once instead of at the lease's expiry).
 */
export function clusterHub(settings: ClusterHubSettings, store: ClusterStorePort, view: Store<ClusterView, ClusterViewEvent>, scheduler: SchedulerLike): Observable<ClusterHubEvent> & ClusterLease {
  let lease: LeaseId | undefined;
  const ttlMs = settings.ttlSeconds * 1000;
  const renewEveryMs = Math.max(1, Math.floor(ttlMs / 3));
  const dispatch = (e: ClusterViewEvent): void => view.dispatch([e]);
  /** The view's standing now (read afresh after a dispatch). */
  const standing = (): ClusterStanding => view.state.standing;
  const failed = (err: unknown): ClusterHubEvent[] => {
    const detail = err instanceof StoreError ? err.message : String(err);
    const was = view.state.standing;
    dispatch({ type: 'store-failed', at: scheduler.now(), detail });
    return was === 'up' ? [{ type: 'cluster-unavailable', detail }] : [];
  };

  /**
   * Renewals every TTL/3 while the lease lives, and RENEW_RETRY_MS after one that failed (an etcd
   * electing a new leader answers no renewal for a second or more: waiting a whole TTL/3 for the
   * next would leave one or two tries before the fence); a failed one only marks the store
   * unavailable (the fence decides); a lease the store no longer has fences at once.
   */
  const keepalive = (id: LeaseId): Observable<ClusterHubEvent> => {
    const failures$ = new Subject<void>();
    const retries$ = failures$.pipe(switchMap(() => timer(RENEW_RETRY_MS, scheduler)));
    return merge(timer(renewEveryMs, renewEveryMs, scheduler), retries$).pipe(
      // One renewal at a time: a tick while one is still waiting for its answer is skipped.
      exhaustMap(() => {
        const sentAt = scheduler.now();
        return store.keepalive(id).pipe(
          mergeMap((g): ClusterHubEvent[] => {
            const was = view.state.standing;
            dispatch({ type: 'renewed', sentAt, ttlMs: g.ttlSeconds * 1000 });
            return was === 'unavailable' && view.state.standing === 'up' ? [{ type: 'cluster-back' }] : [];
          }),
          catchError((err: unknown) => {
            if (err instanceof StoreError && err.reason === 'lease-not-found') {
              dispatch({ type: 'lease-lost', at: scheduler.now() });
              return EMPTY;
            }
            failures$.next();
            return of(...failed(err));
          }),
        );
      }),
    );
  };

  /**
   * The watch from `from`, restarted after failures from where the view is (a compacted start takes
   * a new snapshot). A stream that was up for CLUSTER_RETRY_MS and broke (its member died, a proxy
   * closed it) is started again at once, at another member if need be: only a watch that cannot be
   * started (or keeps breaking) marks the store unavailable and waits CLUSTER_RETRY_MS.
   */
  const watching = (from: number): Observable<ClusterHubEvent> =>
    defer(() => {
      let upSince: number | undefined;
      return store.watch(settings.keys.prefix, prefixEnd(settings.keys.prefix), from).pipe(
        mergeMap((m): ClusterHubEvent[] => {
          upSince ??= scheduler.now();
          if (m.type === 'events') dispatch({ type: 'changes', events: m.events });
          else if (standing() === 'unavailable') {
            dispatch({ type: 'store-back', at: scheduler.now() });
            if (standing() === 'up') return [{ type: 'cluster-back' }];
          }
          return [];
        }),
        catchError((err: unknown) => {
          const compacted = err instanceof StoreError && err.reason === 'compacted';
          const again = compacted ? snapshotThenWatch() : defer(() => watching(view.state.revision + 1));
          if (!compacted && upSince !== undefined && scheduler.now() - upSince >= CLUSTER_RETRY_MS) return again;
          return concat(of(...failed(err)), timer(CLUSTER_RETRY_MS, scheduler).pipe(switchMap(() => again)));
        }),
      );
    });

  const snapshotThenWatch = (): Observable<ClusterHubEvent> =>
    store.range(settings.keys.prefix, prefixEnd(settings.keys.prefix), MAX_SNAPSHOT_KEYS).pipe(
      mergeMap((r) => {
        if (r.more) return throwError(() => new StoreError('too-large', `the cluster holds more than ${MAX_SNAPSHOT_KEYS} keys`));
        const was = view.state.standing;
        dispatch({ type: 'snapshot', revision: r.revision, kvs: r.kvs });
        const joined: ClusterHubEvent[] = was === 'starting' && view.state.standing === 'up' ? [{ type: 'cluster-joined', lease: lease ?? '', revision: r.revision, hubs: view.state.hubs.size }] : [];
        return concat(of(...joined), watching(r.revision + 1));
      }),
    );

  /** One lease's life: grant, register, snapshot, watch and renew; errors when it ends (fenced, or a failure before it was up). */
  const epoch = (): Observable<ClusterHubEvent> =>
    defer(() => store.grant(settings.ttlSeconds)).pipe(
      mergeMap((g) => {
        lease = g.id;
        const sentAt = scheduler.now();
        dispatch({ type: 'renewed', sentAt, ttlMs: g.ttlSeconds * 1000 });
        return store.txn(registration(settings, g.id)).pipe(
          mergeMap((r) => {
            if (!r.succeeded) {
              const other = r.ranges[0]?.kvs[0];
              return concat(
                store.revoke(g.id).pipe(catchError(() => EMPTY), ignoreElements()),
                throwError(() => new HubNameTaken(`a live hub is registered as ${settings.me} already${other?.lease === undefined ? '' : ` (lease ${other.lease})`}: it may be this hub's previous run, whose lease ends within ${settings.ttlSeconds} s`)),
              );
            }
            return merge(fence(), snapshotThenWatch(), keepalive(g.id));
          }),
        );
      }),
    );

  /** Fences at the view's fenceAt unless a renewal moves it; ends the epoch once fenced. */
  const fence = (): Observable<ClusterHubEvent> =>
    concat(
      defer(() => of(view.state)),
      view.changes$.pipe(map((c) => c.after)),
    ).pipe(
      filter((v) => v.standing !== 'starting'),
      map((v) => (v.standing === 'fenced' ? -1 : (v.fenceAt ?? -1))),
      distinctUntilChanged(),
      switchMap((at) => (at < 0 ? of(at) : timer(Math.max(0, at - scheduler.now()), scheduler).pipe(map(() => at)))),
      mergeMap(() => {
        dispatch({ type: 'clock', at: scheduler.now() });
        return view.state.standing === 'fenced' ? throwError(() => new Fenced(`the lease was not renewed in time (${settings.ttlSeconds} s)`)) : EMPTY;
      }),
    );

  /** The name was found taken at the last attempt: said once, not at every retry while the other lease lives. */
  let nameTaken = false;
  const life$ = epoch().pipe(
    tap((e) => {
      if (e.type === 'cluster-joined') nameTaken = false;
    }),
    catchError((err: unknown) => {
      lease = undefined;
      const again = err instanceof HubNameTaken && nameTaken;
      nameTaken = err instanceof HubNameTaken;
      const first: ClusterHubEvent[] =
        err instanceof Fenced ? [{ type: 'cluster-fenced', detail: err.message }] : err instanceof HubNameTaken ? (again ? [] : [{ type: 'cluster-name-taken', detail: err.message }]) : failed(err);
      return concat(of(...first), throwError(() => err));
    }),
    retry({ delay: () => timer(CLUSTER_RETRY_MS, scheduler) }),
  );
  return Object.assign(life$, { current: () => lease });
}

/** The registration: `hub/<me>` and the hub's own tunnel address, under the lease, unless a live hub has the name. */
export function registration(s: ClusterHubSettings, lease: LeaseId): TxnRequest {
  const hubKey = s.keys.hub(s.me);
  return {
    compare: [{ key: hubKey, target: 'create', result: 'equal', revision: 0 }],
    success: [
      { type: 'put', key: hubKey, value: encodeValue({ kind: 'hub', name: s.me, value: { v: 1, advertise: s.advertise, tunnel: s.tunnel } }), lease },
      { type: 'put', key: s.keys.addr(s.tunnel.address), value: encodeValue({ kind: 'addr', address: s.tunnel.address, value: { v: 1, hub: s.me, self: true } }), lease },
    ],
    failure: [{ type: 'range', key: hubKey }],
  };
}

/** A member's claim: what admission decided, and what the hub records of it. */
export interface MemberClaim extends ClusterCandidate {
  /** The member's connection, `ip:port`. */
  readonly remote: string;
  readonly identity: string | undefined;
  /** The join records a new sticky lease of `lease` on `address`. */
  readonly newLease: boolean;
}

/**
 * The transaction that claims a member's address (and routes, and new sticky lease) for this hub
 * under `lease`, judged against `view`: it succeeds only if nothing it read changed since (the
 * address key, the sticky key, every route key) so no address is ever held by two members.
 */
export function claimTxn(view: ClusterView, lease: LeaseId, c: MemberClaim): TxnRequest {
  const k = view.keys;
  const addrKey = k.addr(c.address);
  const stickyKey = k.sticky(c.address);
  const compare: StoreCompare[] = [{ key: addrKey, target: 'mod', result: 'equal', revision: view.addresses.get(c.address)?.modRevision ?? 0 }];
  const value: AddrValue = { v: 1, hub: view.me, remote: c.remote, ...(c.identity === undefined ? {} : { identity: c.identity }), ...(c.lease === undefined ? {} : { lease: c.lease }) };
  const success: StoreOp[] = [{ type: 'put', key: addrKey, value: encodeValue({ kind: 'addr', address: c.address, value }), lease }];
  const failure: StoreOp[] = [{ type: 'range', key: addrKey }];
  if (c.newLease && c.lease !== undefined) {
    compare.push({ key: stickyKey, target: 'mod', result: 'equal', revision: view.sticky.get(c.address)?.modRevision ?? 0 });
    success.push({ type: 'put', key: stickyKey, value: encodeValue({ kind: 'sticky', address: c.address, value: { v: 1, identity: c.lease } }) });
    failure.push({ type: 'range', key: stickyKey });
  }
  if (c.routes.length > 0) {
    compare.push({ key: k.routes.key, rangeEnd: k.routes.rangeEnd, target: 'mod', result: 'less', revision: view.revision + 1 });
    for (const p of c.routes) success.push({ type: 'put', key: k.route(p), value: encodeValue({ kind: 'route', prefix: p, value: { v: 1, hub: view.me, via: c.address } }), lease });
    failure.push({ type: 'range', key: k.routes.key, rangeEnd: k.routes.rangeEnd, limit: MAX_SNAPSHOT_KEYS });
  }
  return { compare, success, failure };
}

/** What a claim came to: made (at `revision`), or refused with the cluster's reason. */
export type ClaimOutcome = { readonly ok: true; readonly revision: number } | { readonly ok: false; readonly refusal: ClusterRefusal };

/**
 * Claims a member's address for this hub: the claim's transaction under the hub's current lease.
 * Made: the view learns the claim at once (the watch's echo of it changes nothing). Refused: the
 * view learns what the transaction's failure branch read, and the refusal is the cluster's word on
 * the candidate then (`ip-conflict` when the view still sees no reason: a claim of this hub's own
 * that changed under it). Without a lease, or when the store fails: `cluster-unavailable`. Emits
 * once and completes; never errors.
 */
export function claimMember(store: ClusterStorePort, view: Store<ClusterView, ClusterViewEvent>, lease: ClusterLease, c: MemberClaim, scheduler: SchedulerLike): Observable<ClaimOutcome> {
  return defer(() => {
    const text = formatIpv4(c.address);
    const before = clusterRefusal(view.state, c);
    if (before !== undefined) return of<ClaimOutcome>({ ok: false, refusal: before });
    const id = lease.current();
    if (id === undefined) return of<ClaimOutcome>({ ok: false, refusal: { reason: 'cluster-unavailable', detail: 'the hub has no cluster lease; try again later', logDetail: 'the hub has no cluster lease' } });
    const request = claimTxn(view.state, id, c);
    return store.txn(request).pipe(
      map((r): ClaimOutcome => {
        if (r.succeeded) {
          const events: WatchEvent[] = request.success.flatMap((op) => (op.type === 'put' ? [{ type: 'put' as const, kv: { key: op.key, value: op.value, createRevision: r.revision, modRevision: r.revision, lease: op.lease } }] : []));
          view.dispatch([{ type: 'changes', events }]);
          return { ok: true, revision: r.revision };
        }
        view.dispatch([{ type: 'changes', events: r.ranges.flatMap((range) => range.kvs.map((kv) => ({ type: 'put' as const, kv }))) }]);
        const refusal = clusterRefusal(view.state, c) ?? { reason: 'ip-conflict', detail: `${text} is in use by another member`, logDetail: `${text}: the claim changed under this hub (${c.routes.map(formatPrefix).join(', ') || 'no routes'}); try again` };
        return { ok: false, refusal };
      }),
      catchError((err: unknown) => {
        const detail = err instanceof StoreError ? err.message : String(err);
        view.dispatch([{ type: 'store-failed', at: scheduler.now(), detail }]);
        return of<ClaimOutcome>({ ok: false, refusal: { reason: 'cluster-unavailable', detail: 'the hub cannot reach its cluster store; try again later', logDetail: `claiming ${text}: ${detail}` } });
      }),
    );
  });
}
