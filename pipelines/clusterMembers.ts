// The hub's members in its cluster (docs/cluster.md): what server.ts and hubSession.ts reach when
// the hub runs with -etcd. It keeps the cluster view (a store over reduceCluster) and the hub's
// life in the cluster (clusterHub.ts), answers admission from the view, claims an admitted member's
// address before its WELCOME, releases a member's keys when it leaves (each key guarded by the
// revision that claimed it, so a newer claim is never removed), and ends every session when the hub
// is fenced. Pure: the store behind ClusterStorePort, time from the injected scheduler.
import { EMPTY, Observable, catchError, concat, defer, distinctUntilChanged, filter, map, merge, mergeMap, of, type SchedulerLike } from 'rxjs';
import { formatIpv4 } from '../operators/core/address.js';
import type { ClusterAdmission } from './admission.js';
import { claimMember, clusterHub, type ClaimOutcome, type ClusterHubSettings, type MemberClaim } from './clusterHub.js';
import type { ClusterStorePort, TxnRequest } from './clusterPorts.js';
import { clusterAdmission, initialClusterView, reduceCluster, type ClusterView, type ClusterViewEvent } from './clusterView.js';
import { SessionEnd, type ServerEvent } from './events.js';
import type { HubEvent, HubState } from './hubState.js';
import type { MemberRecord } from './membership.js';
import { createStore, type Change, type Store } from './store.js';
import type { DialerPort } from './ports.js';
import type { TrunkAuthenticator } from './trunks.js';

/** What a hub of a cluster is built with. */
export interface ClusterPorts {
  readonly store: ClusterStorePort;
  readonly settings: ClusterHubSettings;
  /** How the hub authenticates trunks and dials the other hubs (docs/cluster.md, "Trunks"); without it the hub keeps no trunks. */
  readonly trunks?: { readonly auth: TrunkAuthenticator; readonly dialer: DialerPort };
}

/** The cluster as the hub's sessions reach it. */
export interface HubCluster {
  /** What admission asks of the cluster. */
  readonly admission: ClusterAdmission;
  /** Claims a member's address (and routes, and new sticky lease) for this hub: emits once, never errors. */
  claim(c: MemberClaim): Observable<ClaimOutcome>;
  /** Records that `member` joined under the claim made at `revision` (its keys are released by that revision when it leaves). */
  joined(member: MemberRecord, revision: number): void;
  /** The cluster view now (read per packet by the forwarding policy's cluster routes). */
  view(): ClusterView;
  /** The view now, then each new one (trunks follow the hubs in it). */
  readonly views$: Observable<ClusterView>;
  /** The cluster's life, the releases and the fence, as the hub's events (hot once subscribed; unsubscribing stops them). */
  readonly events$: Observable<ServerEvent>;
}

/** The transaction deleting one key the hub claimed at `revision`, only if nothing claimed it since. */
export function releaseKey(key: string, revision: number): TxnRequest {
  return { compare: [{ key, target: 'mod', result: 'equal', revision }], success: [{ type: 'delete', key }], failure: [] };
}

/**
 * The cluster of a hub whose state is `hub` (its store): the view, the life, the claims, the
 * releases of members that left (or were replaced), and the fence, which ends every member's
 * session (`cluster-fenced`: they reconnect, here once the hub is back or at another hub).
 */
export function hubCluster(ports: ClusterPorts, hub: Store<HubState, HubEvent>, scheduler: SchedulerLike): HubCluster {
  const view = createStore<ClusterView, ClusterViewEvent>(initialClusterView(ports.settings.me, ports.settings.keys), reduceCluster);
  const life = clusterHub(ports.settings, ports.store, view, scheduler);
  /** The revision each member's claim was made at. */
  const claims = new WeakMap<MemberRecord, number>();
  const keys = ports.settings.keys;

  /** Releases the keys of members that left or were replaced, each guarded by its claim's revision. */
  const releases = (change: Change<HubState, HubEvent>): Observable<ServerEvent> => {
    // A fenced hub cannot reach the store; its lease takes every key with it.
    if (view.state.standing === 'fenced') return EMPTY;
    const gone: MemberRecord[] = [];
    for (const e of change.events) {
      if (e.type === 'left' && change.before.membership.members.get(e.member.address) === e.member) gone.push(e.member);
      if (e.type === 'joined') {
        const replaced = change.before.membership.members.get(e.member.address);
        if (replaced !== undefined) gone.push(replaced);
      }
    }
    return merge(
      ...gone.flatMap((m) => {
        const revision = claims.get(m);
        if (revision === undefined) return [];
        claims.delete(m);
        return [keys.addr(m.address), ...m.routes.map((p) => keys.route(p))].map((key) =>
          ports.store.txn(releaseKey(key, revision)).pipe(
            mergeMap((): ServerEvent[] => []),
            catchError((err: unknown) => of<ServerEvent>({ type: 'cluster-release-failed', address: formatIpv4(m.address), key, detail: err instanceof Error ? err.message : String(err) })),
          ),
        );
      }),
    );
  };

  // The fence ends every member's session: the hub can no longer prove their claims.
  const fence$ = view.changes$.pipe(
    map((c) => c.after.standing === 'fenced'),
    distinctUntilChanged(),
    filter((fenced) => fenced),
    mergeMap((): ServerEvent[] => {
      for (const m of hub.state.membership.members.values()) {
        m.session.end(new SessionEnd('cluster-fenced', 'the hub lost its cluster store for longer than its lease', 'the hub lost its cluster store; connect again (here or to another hub)'));
      }
      return [];
    }),
  );

  return {
    admission: clusterAdmission(() => view.state),
    claim: (c) => claimMember(ports.store, view, life, c, scheduler),
    joined: (member, revision) => claims.set(member, revision),
    view: () => view.state,
    views$: defer(() => concat(of(view.state), view.changes$.pipe(map((c) => c.after)))),
    events$: merge(life, hub.changes$.pipe(mergeMap(releases)), fence$),
  };
}
