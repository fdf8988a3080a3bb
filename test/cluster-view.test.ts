// The cluster view (pipelines/clusterView.ts) and its keys (pipelines/clusterKeys.ts) as tables:
// snapshots, watch events in revision order whatever order they come in (duplicates, stale puts
// after deletes, events older than a snapshot), values that are not ours refused and counted, the
// standing (renewed, unavailable, back, fenced at fenceAt, lease lost) and the cluster-wide refusals.
import test from 'ava';
import { formatIpv4, parseIpv4, parsePrefix } from '../operators/core/address.js';
import { clusterKeys, decodeEntry, encodeValue, MAX_VALUE_LENGTH, type ClusterEntry } from '../pipelines/clusterKeys.js';
import { isClusterName } from '../operators/core/codecs.js';
import { K, addrKv, routeKv, stickyKv, upView } from './helpers/cluster.js';
import type { StoreKv, WatchEvent } from '../pipelines/clusterPorts.js';
import { MAX_TOMBSTONES, clusterRefusal, fenceAt, initialClusterView, reduceCluster, stickyOf, takenElsewhere, type ClusterView, type ClusterViewEvent } from '../pipelines/clusterView.js';

const ip = (s: string): number => parseIpv4(s)!;
const cidr = (s: string) => parsePrefix(s)!;
const addr = addrKv;
const route = routeKv;
const sticky = stickyKv;
const put = (k: StoreKv): WatchEvent => ({ type: 'put', kv: k });
const del = (key: string, rev: number): WatchEvent => ({ type: 'delete', kv: { key, value: '', createRevision: 0, modRevision: rev, lease: undefined } });

const apply = (v: ClusterView, ...events: ClusterViewEvent[]): ClusterView => events.reduce(reduceCluster, v);
const held = (v: ClusterView): string[] => [...v.addresses].map(([a, c]) => `${formatIpv4(a)}@${c.value.hub}#${c.modRevision}`).sort();

test('the key layout: names, ranges, and what parse refuses', (t) => {
  t.is(K.prefix, '/lwt/lab/');
  t.is(K.hub('hub-a'), '/lwt/lab/hub/hub-a');
  t.is(K.addr(ip('10.0.0.5')), '/lwt/lab/addr/10.0.0.5');
  t.is(K.route(cidr('192.168.10.7/24')), '/lwt/lab/route/192.168.10.0/24');
  t.is(K.sticky(ip('10.0.0.5')), '/lwt/lab/sticky/10.0.0.5');
  t.deepEqual(K.routes, { key: '/lwt/lab/route/', rangeEnd: '/lwt/lab/route0' });
  t.deepEqual(K.parse('/lwt/lab/addr/10.0.0.5'), { kind: 'addr', address: ip('10.0.0.5') });
  t.deepEqual(K.parse('/lwt/lab/route/192.168.10.0/24'), { kind: 'route', prefix: cidr('192.168.10.0/24') });
  for (const bad of ['/lwt/other/addr/10.0.0.5', '/lwt/lab/addr/10.0.0.256', '/lwt/lab/route/192.168.10.7/24', '/lwt/lab/hub/-x', '/lwt/lab/what/1', '/lwt/lab/addr']) t.is(K.parse(bad), undefined, bad);
  t.true(isClusterName('default'));
  t.false(isClusterName('a/b'));
  t.false(isClusterName(''));
  t.throws(() => clusterKeys('../x'), { instanceOf: RangeError });
});

test('values decode only in their shape and size; encodeValue round-trips', (t) => {
  const entry: ClusterEntry = { kind: 'hub', name: 'hub-a', value: { v: 1, advertise: { host: '10.1.0.5', port: 9000 }, tunnel: cidr('10.0.0.2/24') } };
  t.deepEqual(decodeEntry(K, K.hub('hub-a'), encodeValue(entry)), entry);
  t.regex(decodeEntry(K, K.addr(ip('10.0.0.5')), '{"v":1}') as string, /wrong shape/);
  t.regex(decodeEntry(K, K.addr(ip('10.0.0.5')), '{"v":2,"hub":"a"}') as string, /wrong shape/);
  t.regex(decodeEntry(K, K.addr(ip('10.0.0.5')), 'not json') as string, /not JSON/);
  t.regex(decodeEntry(K, K.addr(ip('10.0.0.5')), `{"v":1,"hub":"a","remote":"${'x'.repeat(MAX_VALUE_LENGTH)}"}`) as string, /at most 1024/);
  t.regex(decodeEntry(K, '/elsewhere', '{}') as string, /not a key/);
  // Unknown fields are dropped, not kept.
  t.deepEqual(decodeEntry(K, K.sticky(ip('10.0.0.5')), '{"v":1,"identity":"id:ab","extra":1}'), { kind: 'sticky', address: ip('10.0.0.5'), value: { v: 1, identity: 'id:ab' } });
});

test('a snapshot replaces the keys; a hub with a proven lease is then up', (t) => {
  const start = initialClusterView('a', K);
  t.is(start.standing, 'starting');
  // A snapshot without a lease does not make the hub up.
  t.is(reduceCluster(start, { type: 'snapshot', revision: 3, kvs: [] }).standing, 'starting');
  const v = upView('a', [addr('10.0.0.1', 'a', 2, { self: true }), addr('10.0.0.5', 'b', 4), route('192.168.10.0/24', 'b', '10.0.0.5', 4), sticky('10.0.0.5', 'id:bb', 4)]);
  t.is(v.standing, 'up');
  t.deepEqual(held(v), ['10.0.0.1@a#2', '10.0.0.5@b#4']);
  t.is(v.routes.length, 1);
  t.is(stickyOf(v, 'id:bb'), ip('10.0.0.5'));
  t.is(v.base, 10);
  const again = apply(v, { type: 'snapshot', revision: 20, kvs: [addr('10.0.0.7', 'b', 15)] });
  t.deepEqual(held(again), ['10.0.0.7@b#15']);
  t.is(again.routes.length, 0);
  t.deepEqual(held(v), ['10.0.0.1@a#2', '10.0.0.5@b#4'], 'the older view is unchanged');
});

test('watch events apply in revision order per key: duplicates, stale puts and events older than the snapshot change nothing', (t) => {
  const v = upView('a', [], 10);
  const k5 = K.addr(ip('10.0.0.5'));
  const steps: [string, ClusterViewEvent, string[]][] = [
    ['a put', { type: 'changes', events: [put(addr('10.0.0.5', 'b', 12))] }, ['10.0.0.5@b#12']],
    ['the same put again', { type: 'changes', events: [put(addr('10.0.0.5', 'b', 12))] }, ['10.0.0.5@b#12']],
    ['a delete', { type: 'changes', events: [del(k5, 14)] }, []],
    ['the put of 12 after the delete of 14', { type: 'changes', events: [put(addr('10.0.0.5', 'b', 12))] }, []],
    ['a put of 13 (older than the delete)', { type: 'changes', events: [put(addr('10.0.0.5', 'c', 13))] }, []],
    ['a put older than the snapshot of a key the view never saw', { type: 'changes', events: [put(addr('10.0.0.6', 'c', 9))] }, []],
    ['a newer put after the delete', { type: 'changes', events: [put(addr('10.0.0.5', 'c', 16))] }, ['10.0.0.5@c#16']],
    ['two events of one batch out of order', { type: 'changes', events: [put(addr('10.0.0.6', 'c', 18)), put(addr('10.0.0.6', 'b', 17))] }, ['10.0.0.5@c#16', '10.0.0.6@c#18']],
  ];
  let at = v;
  for (const [what, event, expected] of steps) {
    at = reduceCluster(at, event);
    t.deepEqual(held(at), expected, what);
  }
  t.is(at.revision, 18);
});

test('deleted routes and sticky leases leave the view; values that are not ours are counted and held as absent', (t) => {
  let v = upView('a', [route('192.168.10.0/24', 'b', '10.0.0.5', 4), sticky('10.0.0.5', 'id:bb', 4)]);
  v = apply(v, { type: 'changes', events: [del(K.route(cidr('192.168.10.0/24')), 11), del(K.sticky(ip('10.0.0.5')), 11)] });
  t.is(v.routes.length, 0);
  t.is(stickyOf(v, 'id:bb'), undefined);
  const junk: StoreKv = { key: K.addr(ip('10.0.0.9')), value: '{"v":1,"hub":"../../x"}', createRevision: 12, modRevision: 12, lease: undefined };
  const stranger: StoreKv = { key: '/lwt/lab/nonsense/1', value: '{}', createRevision: 13, modRevision: 13, lease: undefined };
  v = apply(v, { type: 'changes', events: [put(addr('10.0.0.9', 'b', 11)), put(junk), put(stranger)] });
  t.deepEqual(held(v), [], 'a value of the wrong shape removes what the key held');
  t.is(v.refused, 2);
  t.regex(v.lastRefused!, /not a key/);
});

test('tombstones are bounded: beyond MAX_TOMBSTONES the view forgets them and ignores anything not newer than it saw', (t) => {
  let v = upView('a', [], 1);
  const events: WatchEvent[] = [];
  for (let i = 0; i <= MAX_TOMBSTONES; i++) events.push(del(K.addr(0x0b000000 + i), 2 + i));
  v = apply(v, { type: 'changes', events });
  t.true(v.tombstones <= MAX_TOMBSTONES);
  t.is(v.base, 2 + MAX_TOMBSTONES);
  // A stale put of a forgotten key is still ignored.
  v = apply(v, { type: 'changes', events: [put(addr('11.0.0.0', 'b', 2))] });
  t.deepEqual(held(v), []);
});

test('the standing: unavailable on a failure, up again on a renewal or the watch, fenced at fenceAt, fenced at once when the lease is lost', (t) => {
  const v = upView('a');
  t.is(v.fenceAt, fenceAt(0, 6000));
  t.is(fenceAt(0, 6000), 5400, '10 % of the TTL');
  t.is(fenceAt(0, 1000), 750, 'at least 250 ms');
  const down = apply(v, { type: 'store-failed', at: 100, detail: 'unreachable: x' });
  t.is(down.standing, 'unavailable');
  t.is(down.unavailableSince, 100);
  t.is(apply(down, { type: 'store-failed', at: 300, detail: 'again' }).unavailableSince, 100);
  t.is(apply(down, { type: 'store-back', at: 200 }).standing, 'up');
  t.is(apply(down, { type: 'renewed', sentAt: 2000, ttlMs: 6000 }).standing, 'up');
  t.is(apply(down, { type: 'renewed', sentAt: 2000, ttlMs: 6000 }).fenceAt, 7400);
  t.is(apply(down, { type: 'clock', at: 5399 }).standing, 'unavailable');
  const fenced = apply(down, { type: 'clock', at: 5400 });
  t.is(fenced.standing, 'fenced');
  t.deepEqual(held(fenced), [], 'a fenced hub forgets its view');
  t.is(apply(fenced, { type: 'store-back', at: 6000 }).standing, 'fenced', 'the watch alone does not undo the fence');
  const renewedAfter = apply(fenced, { type: 'renewed', sentAt: 7000, ttlMs: 6000 });
  t.is(renewedAfter.standing, 'starting', 'a new lease starts over');
  t.is(apply(renewedAfter, { type: 'snapshot', revision: 30, kvs: [] }).standing, 'up');
  t.is(apply(v, { type: 'lease-lost', at: 1 }).standing, 'fenced');
});

test('clusterRefusal: unavailable, another hub\'s address, a member of another hub, a lease of another identity, a route behind another hub', (t) => {
  const v = upView('a', [
    addr('10.0.0.1', 'a', 2, { self: true }),
    addr('10.0.0.2', 'b', 3, { self: true }),
    addr('10.0.0.5', 'b', 4, { remote: '172.31.0.9:4000' }),
    addr('10.0.0.6', 'a', 4),
    sticky('10.0.0.7', 'id:cc', 5),
    route('192.168.10.0/24', 'b', '10.0.0.5', 5),
    route('192.168.20.0/24', 'a', '10.0.0.6', 5),
  ]);
  const c = (a: string, lease?: string, routes: string[] = []) => ({ address: ip(a), lease, routes: routes.map(cidr) });
  t.is(clusterRefusal(v, c('10.0.0.9')), undefined);
  t.like(clusterRefusal(v, c('10.0.0.2')), { reason: 'hub-address', logDetail: '10.0.0.2 is the address of hub b' });
  t.like(clusterRefusal(v, c('10.0.0.5')), { reason: 'ip-conflict', detail: '10.0.0.5 is in use by another member', logDetail: '10.0.0.5 is in use by a member of hub b (172.31.0.9:4000)' });
  t.is(clusterRefusal(v, c('10.0.0.6')), undefined, 'this hub\'s own member: the local membership judges');
  t.like(clusterRefusal(v, c('10.0.0.7', 'id:dd')), { reason: 'leased-to-other' });
  t.is(clusterRefusal(v, c('10.0.0.7', 'id:cc')), undefined);
  t.like(clusterRefusal(v, c('10.0.0.9', undefined, ['192.168.10.128/25'])), { reason: 'route-overlap', detail: '192.168.10.128/25 overlaps 192.168.10.0/24 behind 10.0.0.5' });
  t.is(clusterRefusal(v, c('10.0.0.9', undefined, ['192.168.20.0/24'])), undefined, 'a route of this hub: the local LAN table judges');
  t.like(clusterRefusal(apply(v, { type: 'store-failed', at: 1, detail: 'timeout: x' }), c('10.0.0.9')), { reason: 'cluster-unavailable', logDetail: 'the hub cannot reach its cluster store (timeout: x)' });
  t.like(clusterRefusal(initialClusterView('a', K), c('10.0.0.9')), { reason: 'cluster-unavailable' });
  t.true(takenElsewhere(v, ip('10.0.0.5'), undefined));
  t.true(takenElsewhere(v, ip('10.0.0.7'), 'id:dd'));
  t.false(takenElsewhere(v, ip('10.0.0.7'), 'id:cc'));
  t.false(takenElsewhere(v, ip('10.0.0.6'), undefined));
});
