// A hub's life in its cluster (pipelines/clusterHub.ts) over the fake store (test/helpers/fake-etcd.ts)
// in virtual time: registration, claims by transaction (a second claim of a held address refused,
// also when the claimant's view is stale), a dead hub's lease expiring and freeing its claims, the
// watch's messages out of order and duplicated, the store unreachable (joins refused, sessions go
// on) and fencing before the store can expire the lease, then the hub's return with a new lease.
import test from 'ava';
import { NEVER, mergeMap, throwError, timer, type Observable, type Subscription } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { formatIpv4, parseIpv4, parsePrefix } from '../operators/core/address.js';
import { CLUSTER_RETRY_MS, RENEW_RETRY_MS, claimMember, clusterHub, type ClaimOutcome, type ClusterHubEvent, type MemberClaim } from '../pipelines/clusterHub.js';
import { clusterKeys } from '../pipelines/clusterKeys.js';
import { StoreError, type ClusterStorePort, type LeaseGrant, type RangeResult, type TxnResult } from '../pipelines/clusterPorts.js';
import { clusterRefusal, fenceAt, initialClusterView, reduceCluster, type ClusterView, type ClusterViewEvent } from '../pipelines/clusterView.js';
import { createStore, type Store } from '../pipelines/store.js';
import { FakeEtcd } from './helpers/fake-etcd.js';

const K = clusterKeys('lab');
const TTL = 6;
const ip = (s: string): number => parseIpv4(s)!;

/** How long a call of a cut-off hub waits before it fails as `timeout` (what the driver's bound does). */
const CALL_TIMEOUT_MS = 3000;

/** A store port whose calls go unanswered while `cut` is set (each fails after CALL_TIMEOUT_MS; a watch just goes quiet): a hub cut off from etcd without etcd noticing. */
function cuttable(inner: ClusterStorePort, scheduler: TestScheduler): ClusterStorePort & { cut: boolean } {
  const silent = <T>(): Observable<T> => timer(CALL_TIMEOUT_MS, scheduler).pipe(mergeMap(() => throwError(() => new StoreError('timeout', 'no answer'))));
  const port = {
    cut: false,
    range: (...a: Parameters<ClusterStorePort['range']>) => (port.cut ? silent<RangeResult>() : inner.range(...a)),
    txn: (r: Parameters<ClusterStorePort['txn']>[0]) => (port.cut ? silent<TxnResult>() : inner.txn(r)),
    grant: (ttl: number) => (port.cut ? silent<LeaseGrant>() : inner.grant(ttl)),
    keepalive: (id: string) => (port.cut ? silent<LeaseGrant>() : inner.keepalive(id)),
    revoke: (id: string) => (port.cut ? silent<void>() : inner.revoke(id)),
    watch: (...a: Parameters<ClusterStorePort['watch']>) => (port.cut ? NEVER : inner.watch(...a)),
  };
  return port;
}

interface Hub {
  readonly name: string;
  readonly view: Store<ClusterView, ClusterViewEvent>;
  readonly port: ClusterStorePort & { cut: boolean };
  readonly life: ReturnType<typeof clusterHub>;
  readonly events: [number, string][];
  sub?: Subscription;
}

function hub(name: string, tunnel: string, etcd: FakeEtcd, scheduler: TestScheduler): Hub {
  const view = createStore<ClusterView, ClusterViewEvent>(initialClusterView(name, K), reduceCluster);
  const port = cuttable(etcd, scheduler);
  const life = clusterHub({ me: name, keys: K, ttlSeconds: TTL, advertise: { host: `172.31.0.${tunnel.split('.')[3]}`, port: 9000 }, tunnel: parsePrefix(`${tunnel}/24`)! }, port, view, scheduler);
  const h: Hub = { name, view, port, life, events: [] };
  return h;
}

function start(h: Hub, scheduler: TestScheduler): void {
  h.sub = (h.life as Observable<ClusterHubEvent>).subscribe((e) => h.events.push([scheduler.now(), e.type]));
}

/** Hubs a (10.0.0.1) and b (10.0.0.2) on one fake store, both started at 0. */
function twoHubs(s: TestScheduler, at: (ms: number, fn: () => void) => void): { etcd: FakeEtcd; a: Hub; b: Hub } {
  const etcd = new FakeEtcd(s);
  const a = hub('a', '10.0.0.1', etcd, s);
  const b = hub('b', '10.0.0.2', etcd, s);
  at(0, () => {
    start(a, s);
    start(b, s);
  });
  return { etcd, a, b };
}

const claim = (a: string, remote: string, extra: Partial<MemberClaim> = {}): MemberClaim => ({ address: ip(a), lease: undefined, routes: [], remote, identity: undefined, newLease: false, ...extra });

/** Runs `body` in virtual time; `at(t, fn)` schedules fn at virtual time t. */
function virtual(body: (s: TestScheduler, at: (ms: number, fn: () => void) => void) => void): void {
  const scheduler = new TestScheduler(() => undefined);
  scheduler.run(() => body(scheduler, (ms, fn) => scheduler.schedule(fn, ms)));
}

function claimNow(h: Hub, c: MemberClaim, scheduler: TestScheduler): ClaimOutcome | undefined {
  let out: ClaimOutcome | undefined;
  claimMember(h.port, h.view, h.life, c, scheduler).subscribe((o) => (out = o));
  return out;
}

const holders = (v: ClusterView): string[] => [...v.addresses].map(([a, c]) => `${formatIpv4(a)}@${c.value.hub}`).sort();

test('two hubs register; a claim is made by transaction and every hub sees it; a second claim of the address is refused', (t) => {
  virtual((s, at) => {
    const etcd = new FakeEtcd(s);
    const a = hub('a', '10.0.0.1', etcd, s);
    const b = hub('b', '10.0.0.2', etcd, s);
    at(0, () => start(a, s));
    at(10, () => start(b, s));
    at(100, () => {
      t.deepEqual(etcd.keys(), ['/lwt/lab/addr/10.0.0.1', '/lwt/lab/addr/10.0.0.2', '/lwt/lab/hub/a', '/lwt/lab/hub/b']);
      t.deepEqual(holders(a.view.state), ['10.0.0.1@a', '10.0.0.2@b']);
      t.deepEqual(holders(b.view.state), ['10.0.0.1@a', '10.0.0.2@b']);
      t.like(claimNow(a, claim('10.0.0.5', '172.31.0.50:4000', { lease: 'id:aa', newLease: true, routes: [parsePrefix('192.168.10.0/24')!] }), s), { ok: true });
      t.is(etcd.get('/lwt/lab/addr/10.0.0.5')?.lease, a.life.current(), 'under the hub\'s lease');
      t.is(etcd.get('/lwt/lab/sticky/10.0.0.5')?.lease, undefined, 'the sticky lease is a plain key');
      t.is(etcd.get('/lwt/lab/route/192.168.10.0/24')?.lease, a.life.current());
      t.deepEqual(holders(b.view.state), ['10.0.0.1@a', '10.0.0.2@b', '10.0.0.5@a'], 'b saw it through its watch');
      // b's admission would refuse from its view; the claim refuses the same without a transaction.
      const txns = etcd.calls.filter((c) => c === 'txn').length;
      t.like(claimNow(b, claim('10.0.0.5', '172.31.0.60:4000'), s), { ok: false, refusal: { reason: 'ip-conflict' } });
      t.like(claimNow(b, claim('10.0.0.6', '172.31.0.60:4000', { lease: 'id:bb' }), s), { ok: true });
      t.like(claimNow(a, claim('10.0.0.2', '172.31.0.61:4000'), s), { ok: false, refusal: { reason: 'hub-address' } });
      t.like(claimNow(b, claim('10.0.0.7', '172.31.0.61:4000', { routes: [parsePrefix('192.168.10.128/25')!] }), s), { ok: false, refusal: { reason: 'route-overlap' } });
      t.is(etcd.calls.filter((c) => c === 'txn').length, txns + 1, 'only the claim that could succeed went to the store');
      t.deepEqual(a.events, [[0, 'cluster-joined']]);
      t.deepEqual(b.events, [[10, 'cluster-joined']]);
      a.sub?.unsubscribe();
      b.sub?.unsubscribe();
    });
  });
});

test('a claim judged on a stale view fails its transaction: the address is never held twice, and the loser\'s view learns the winner', (t) => {
  virtual((s, at) => {
    const { etcd, a, b } = twoHubs(s, at);
    at(100, () => {
      etcd.hold(); // b hears nothing of a's claim yet
      t.like(claimNow(a, claim('10.0.0.5', '172.31.0.50:4000'), s), { ok: true });
      t.deepEqual(holders(b.view.state), ['10.0.0.1@a', '10.0.0.2@b'], 'b\'s view is stale');
      t.like(claimNow(b, claim('10.0.0.5', '172.31.0.60:4000'), s), { ok: false, refusal: { reason: 'ip-conflict', logDetail: '10.0.0.5 is in use by a member of hub a (172.31.0.50:4000)' } });
      t.is(etcd.get('/lwt/lab/addr/10.0.0.5')?.lease, a.life.current());
      t.deepEqual(holders(b.view.state), ['10.0.0.1@a', '10.0.0.2@b', '10.0.0.5@a'], 'from the failed transaction\'s reads');
      // The held watch messages come late, duplicated and reversed: nothing changes.
      etcd.release((held) => [...held, ...held].reverse());
      t.deepEqual(holders(b.view.state), ['10.0.0.1@a', '10.0.0.2@b', '10.0.0.5@a']);
      a.sub?.unsubscribe();
      b.sub?.unsubscribe();
    });
  });
});

test('watch messages out of order and duplicated end in the store\'s state', (t) => {
  virtual((s, at) => {
    const { etcd, a, b } = twoHubs(s, at);
    at(100, () => {
      etcd.hold();
      claimNow(a, claim('10.0.0.5', '172.31.0.50:4000'), s);
      claimNow(a, claim('10.0.0.6', '172.31.0.51:4000'), s);
      // a releases 10.0.0.5 (a member left) by deleting it directly.
      etcd.txn({ compare: [], success: [{ type: 'delete', key: K.addr(ip('10.0.0.5')) }], failure: [] }).subscribe();
      etcd.release((held) => [held[2]!, held[0]!, held[1]!, held[0]!, held[2]!]);
      t.deepEqual(holders(b.view.state), ['10.0.0.1@a', '10.0.0.2@b', '10.0.0.6@a']);
      t.deepEqual(holders(b.view.state), holders(a.view.state));
      a.sub?.unsubscribe();
      b.sub?.unsubscribe();
    });
  });
});

test('a dead hub: its lease expires, its claims vanish from every view at once, and the address can be claimed again', (t) => {
  virtual((s, at) => {
    const { a, b } = twoHubs(s, at);
    let cutAt = 0;
    at(100, () => {
      claimNow(a, claim('10.0.0.5', '172.31.0.50:4000', { routes: [parsePrefix('192.168.10.0/24')!] }), s);
    });
    // a's process is frozen: no call of it reaches the store any more (and it does not revoke).
    at(2500, () => {
      a.port.cut = true;
      cutAt = s.now();
    });
    const seen: [number, string[]][] = [];
    b.view.changes$.subscribe((c) => {
      const h = holders(c.after);
      if (seen.length === 0 || seen[seen.length - 1]![1].join() !== h.join()) seen.push([s.now(), h]);
    });
    at(20_000, () => {
      // The last keepalive a sent reached etcd at 2000 (every TTL/3): the lease expired at 2000 + 6000.
      t.deepEqual(seen.at(-1), [8000, ['10.0.0.2@b']]);
      t.is(b.view.state.routes.length, 0);
      t.like(claimNow(b, claim('10.0.0.5', '172.31.0.60:4000'), s), { ok: true });
      // a fenced itself before the store expired its lease: it never served past its proof.
      const fenced = a.events.find(([, e]) => e === 'cluster-fenced');
      t.truthy(fenced);
      t.true(fenced![0] < 8000, `fenced at ${fenced![0]}, before the expiry at 8000`);
      t.true(fenced![0] > cutAt);
      t.is(a.view.state.standing === 'fenced' || a.view.state.standing === 'starting', true);
      a.sub?.unsubscribe();
      b.sub?.unsubscribe();
    });
  });
});

test('a renewal that fails is tried again RENEW_RETRY_MS later, not a whole TTL/3 later (an etcd electing a leader)', (t) => {
  virtual((s, at) => {
    const etcd = new FakeEtcd(s);
    const a = hub('a', '10.0.0.1', etcd, s);
    at(0, () => start(a, s));
    // The renewal due at 2000 fails; the store answers again at 2300.
    at(1900, () => etcd.down());
    at(2300, () => etcd.up());
    at(2400, () => t.is(a.view.state.standing, 'unavailable'));
    at(3500, () => {
      t.is(a.view.state.standing, 'up');
      const proven = a.view.state.fenceAt ?? 0;
      t.true(proven >= fenceAt(2000 + RENEW_RETRY_MS, TTL * 1000) && proven < fenceAt(2000 + 2 * RENEW_RETRY_MS, TTL * 1000), `proven from the retry at about 2500, not from the next regular renewal at 4000: ${proven}`);
      a.sub?.unsubscribe();
    });
  });
});

test('a watch stream that breaks (its etcd member died) is started again at once: no unavailable moment, and the view goes on', (t) => {
  virtual((s, at) => {
    const etcd = new FakeEtcd(s);
    const a = hub('a', '10.0.0.1', etcd, s);
    const b = hub('b', '10.0.0.2', etcd, s);
    at(0, () => start(a, s));
    at(0, () => start(b, s));
    at(1500, () => etcd.breakWatches());
    at(1501, () => {
      t.is(a.view.state.standing, 'up');
      claimNow(b, claim('10.0.0.5', '172.31.0.50:4000'), s);
    });
    at(1600, () => {
      t.deepEqual(holders(a.view.state), ['10.0.0.1@a', '10.0.0.2@b', '10.0.0.5@b'], 'the new watch carried on from the view\'s revision');
      // A stream that breaks again at once is a store that cannot keep one: unavailable after all.
      etcd.breakWatches();
    });
    at(1700, () => {
      t.is(a.view.state.standing, 'unavailable');
      t.deepEqual(a.events.map(([, e]) => e), ['cluster-joined', 'cluster-unavailable']);
      a.sub?.unsubscribe();
      b.sub?.unsubscribe();
    });
  });
});

test('the store unreachable: joins refused with cluster-unavailable at once, sessions go on, back before the fence', (t) => {
  virtual((s, at) => {
    const etcd = new FakeEtcd(s);
    const a = hub('a', '10.0.0.1', etcd, s);
    at(0, () => start(a, s));
    at(100, () => claimNow(a, claim('10.0.0.5', '172.31.0.50:4000'), s));
    at(1500, () => etcd.down());
    at(1600, () => {
      t.is(a.view.state.standing, 'unavailable', 'the watch failed');
      t.like(clusterRefusal(a.view.state, { address: ip('10.0.0.6'), lease: undefined, routes: [] }), { reason: 'cluster-unavailable' });
      t.like(claimNow(a, claim('10.0.0.6', '172.31.0.51:4000'), s), { ok: false, refusal: { reason: 'cluster-unavailable' } });
      t.deepEqual(holders(a.view.state), ['10.0.0.1@a', '10.0.0.5@a'], 'the view (and its members) stay');
    });
    at(3000, () => etcd.up());
    at(3000 + CLUSTER_RETRY_MS + 2100, () => {
      t.is(a.view.state.standing, 'up');
      t.like(claimNow(a, claim('10.0.0.6', '172.31.0.51:4000'), s), { ok: true });
      t.deepEqual(
        a.events.map(([, e]) => e),
        ['cluster-joined', 'cluster-unavailable', 'cluster-back'],
      );
      t.is(etcd.get('/lwt/lab/addr/10.0.0.5')?.lease, a.life.current(), 'the lease lived through the outage');
      a.sub?.unsubscribe();
    });
  });
});

test('the store lost for longer than the lease: fenced at fenceAt (before the store expires the lease), then back with a new lease', (t) => {
  virtual((s, at) => {
    const etcd = new FakeEtcd(s);
    const a = hub('a', '10.0.0.1', etcd, s);
    let firstLease: string | undefined;
    at(0, () => start(a, s));
    at(100, () => {
      firstLease = a.life.current();
      claimNow(a, claim('10.0.0.5', '172.31.0.50:4000'), s);
    });
    at(2500, () => {
      a.port.cut = true;
      etcd.down();
    });
    at(20_000, () => {
      etcd.up();
      a.port.cut = false;
    });
    at(40_000, () => {
      const events = a.events.map(([, e]) => e);
      t.deepEqual(events.slice(0, 3), ['cluster-joined', 'cluster-unavailable', 'cluster-fenced']);
      // The last renewal was sent at 2000 (TTL/3 = 2 s): proven until 8000, fenced at 8000 - 600.
      t.deepEqual(a.events.find(([, e]) => e === 'cluster-fenced'), [7400, 'cluster-fenced']);
      t.true(events.includes('cluster-joined', 3), `joined again: ${events.join(', ')}`);
      t.not(a.life.current(), firstLease);
      t.is(a.view.state.standing, 'up');
      t.is(etcd.get('/lwt/lab/addr/10.0.0.5'), undefined, 'the old claims went with the old lease');
      t.is(etcd.get('/lwt/lab/hub/a')?.lease, a.life.current());
      const calls = etcd.calls.length;
      a.sub?.unsubscribe();
      at(60_000, () => t.is(etcd.calls.length, calls, 'nothing more after unsubscribing'));
    });
  });
});

test('a hub name in use by a live hub is refused and tried again once the other lease is gone', (t) => {
  virtual((s, at) => {
    const etcd = new FakeEtcd(s);
    const a1 = hub('a', '10.0.0.1', etcd, s);
    const a2 = hub('a', '10.0.0.3', etcd, s);
    at(0, () => start(a1, s));
    at(100, () => start(a2, s));
    at(200, () => (a1.port.cut = true)); // a1 freezes before its first renewal: its lease ends at 6000
    at(20_000, () => {
      t.is(a2.events[0]![1], 'cluster-name-taken');
      t.is(a2.events.filter(([, e]) => e === 'cluster-name-taken').length, 1, `said once over its ~6 retries: ${JSON.stringify(a2.events)}`);
      const joined = a2.events.find(([, e]) => e === 'cluster-joined');
      t.true(joined !== undefined && joined[0] >= 6000 && joined[0] <= 6000 + CLUSTER_RETRY_MS, JSON.stringify(a2.events.slice(-3)));
      t.is(etcd.get('/lwt/lab/hub/a')?.lease, a2.life.current());
      a1.sub?.unsubscribe();
      a2.sub?.unsubscribe();
    });
  });
});
