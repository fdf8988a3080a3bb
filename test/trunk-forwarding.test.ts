// The forwarding policy of a hub of a cluster (pipelines/forwarding.ts with pipelines/clusterRoutes.ts)
// as tables: hub c (10.0.0.3) with members M (10.0.0.30, LAN 192.168.30.0/24) and N (10.0.0.31);
// hub a (10.0.0.1) serves 10.0.0.10 and 192.168.10.0/24 behind it, hub b (10.0.0.2) serves
// 10.0.0.20. A member's packet for another hub's member, LAN or address goes onto that hub's trunk;
// a trunk packet is taken only from what its hub serves and delivered only to c's own (a packet
// crosses one trunk: `trunk-transit`); isolation separates members across hubs as within one; a
// broadcast from a member reaches every trunk once, one from a trunk no trunk.
import test from 'ava';
import type { DropReason } from '../operators/core/packet.js';
import { clusterRoutes } from '../pipelines/clusterRoutes.js';
import { HUB, REPLICATE, forwardingPolicy, isRemote, type Decision, type ForwardingPolicy, type Target } from '../pipelines/forwarding.js';
import { addrKv, kv, routeKv, upView } from './helpers/cluster.js';
import { hubState, ip, member } from './helpers/hub-state.js';
import { ipv4Packet } from './helpers/marbles.js';

const M = member('10.0.0.30', { routes: ['192.168.30.0/24'] });
const N = member('10.0.0.31');
const MEMBERSHIP = hubState({ members: [M, N] }).membership;
const hubKv = (name: string, tunnel: string, rev: number) => kv({ kind: 'hub', name, value: { v: 1, advertise: { host: `192.0.2.${rev}`, port: 9000 }, tunnel: { address: ip(tunnel), prefix: 24 } } }, rev, `lease-${name}`);
const VIEW = upView('c', [
  hubKv('a', '10.0.0.1', 1),
  hubKv('b', '10.0.0.2', 2),
  hubKv('c', '10.0.0.3', 3),
  addrKv('10.0.0.1', 'a', 4, { self: true }),
  addrKv('10.0.0.2', 'b', 5, { self: true }),
  addrKv('10.0.0.3', 'c', 6, { self: true }),
  addrKv('10.0.0.10', 'a', 7),
  routeKv('192.168.10.0/24', 'a', '10.0.0.10', 8),
  addrKv('10.0.0.20', 'b', 9),
  addrKv('10.0.0.30', 'c', 10),
  addrKv('10.0.0.31', 'c', 11),
]);

function policy(isolation: boolean): ForwardingPolicy {
  return forwardingPolicy({
    tunnel: { address: ip('10.0.0.3'), prefix: 24 },
    broadcastGroups: new Set<number>(),
    membership: () => MEMBERSHIP,
    isolation: () => isolation,
    cluster: clusterRoutes(() => VIEW),
  });
}

/** A decision as text: a member's address, `hub`, `replicate`, `trunk X` (a member of X) or `trunk X (hub)`, or the drop reason. */
function named(d: Decision | DropReason): string {
  if (typeof d === 'string') return d;
  if (d === HUB) return 'hub';
  if (d === REPLICATE) return 'replicate';
  if (isRemote(d)) return `trunk ${d.trunk}${d.peer ? '' : ' (hub)'}`;
  return (d as { addressText: string }).addressText;
}

const fromMember = test.macro({
  exec(t, c: { src: string; dst: string; isolation?: boolean }, expected: string) {
    t.is(named(policy(c.isolation === true).fromMember(M, ip(c.dst), ipv4Packet(c.src, c.dst))), expected);
  },
  title: (provided = '') => `from member M: ${provided}`,
});

test('a member of another hub → its trunk', fromMember, { src: '10.0.0.30', dst: '10.0.0.20' }, 'trunk b');
test("another hub's own address → its trunk (as the hub)", fromMember, { src: '10.0.0.30', dst: '10.0.0.1' }, 'trunk a (hub)');
test("a LAN behind another hub's member → that hub's trunk", fromMember, { src: '10.0.0.30', dst: '192.168.10.7' }, 'trunk a');
test('a member of this hub stays here', fromMember, { src: '10.0.0.30', dst: '10.0.0.31' }, '10.0.0.31');
test('an address nobody holds: no-route', fromMember, { src: '10.0.0.30', dst: '10.0.0.99' }, 'no-route');
test('beyond the virtual LAN and every LAN: the hub', fromMember, { src: '10.0.0.30', dst: '8.8.8.8' }, 'hub');
test('anti-spoofing first: a source of another hub is refused', fromMember, { src: '10.0.0.20', dst: '10.0.0.31' }, 'spoofed-source');

const fromTrunk = test.macro({
  exec(t, c: { from: string; src: string; dst: string; isolation?: boolean }, expected: string) {
    t.is(named(policy(c.isolation === true).fromTrunk(c.from, ip(c.dst), ipv4Packet(c.src, c.dst))), expected);
  },
  title: (provided = '') => `from a trunk: ${provided}`,
});

test("a member of a to one of c's members", fromTrunk, { from: 'a', src: '10.0.0.10', dst: '10.0.0.31' }, '10.0.0.31');
test("a LAN behind a member of a to c's hub address", fromTrunk, { from: 'a', src: '192.168.10.7', dst: '10.0.0.3' }, 'hub');
test("hub a itself to a LAN behind c's member", fromTrunk, { from: 'a', src: '10.0.0.1', dst: '192.168.30.9' }, '10.0.0.30');
test('one crossing only: from a to a member of b is not forwarded onto the trunk to b', fromTrunk, { from: 'a', src: '10.0.0.10', dst: '10.0.0.20' }, 'trunk-transit');
test('one crossing only: from a back to a member of a', fromTrunk, { from: 'a', src: '10.0.0.10', dst: '10.0.0.10' }, 'trunk-transit');
test("one crossing only: to a LAN behind a's member", fromTrunk, { from: 'b', src: '10.0.0.20', dst: '192.168.10.1' }, 'trunk-transit');
test('anti-spoofing: trunk a carrying a source b serves', fromTrunk, { from: 'a', src: '10.0.0.20', dst: '10.0.0.31' }, 'spoofed-source');
test("anti-spoofing: trunk a carrying c's own member's address", fromTrunk, { from: 'a', src: '10.0.0.30', dst: '10.0.0.31' }, 'spoofed-source');
test('anti-spoofing: a source nobody serves', fromTrunk, { from: 'a', src: '10.0.0.77', dst: '10.0.0.31' }, 'spoofed-source');
test('nobody at the destination: no-route', fromTrunk, { from: 'a', src: '10.0.0.10', dst: '10.0.0.99' }, 'no-route');
test('the directed broadcast: replicated (here only)', fromTrunk, { from: 'a', src: '10.0.0.10', dst: '10.0.0.255' }, 'replicate');
test('isolation: a member of a to a member of c is dropped', fromTrunk, { from: 'a', src: '10.0.0.10', dst: '10.0.0.31', isolation: true }, 'isolation');
test('isolation: a member of a to hub c passes', fromTrunk, { from: 'a', src: '10.0.0.10', dst: '10.0.0.3', isolation: true }, 'hub');
test('isolation: hub a to a member of c passes', fromTrunk, { from: 'a', src: '10.0.0.1', dst: '10.0.0.31', isolation: true }, '10.0.0.31');

test('isolation on the sending side: a route to a member of another hub is a peer, one to its hub address is not', (t) => {
  const p = policy(true);
  const toMember = p.fromMember(M, ip('10.0.0.20'), ipv4Packet('10.0.0.30', '10.0.0.20')) as Target;
  const toHub = p.fromMember(M, ip('10.0.0.2'), ipv4Packet('10.0.0.30', '10.0.0.2')) as Target;
  t.true(p.isPeer(toMember));
  t.false(p.isPeer(toHub));
  t.true(p.separates(M, toMember));
  t.false(p.separates(M, toHub));
});

const receivers = (p: ForwardingPolicy, sender: Target): string[] => [...p.receivers(sender)].map((r) => named(r)).sort();

test('a broadcast from a member reaches the hub, the other members and every other hub once; one from a trunk reaches no trunk', (t) => {
  const p = policy(false);
  t.deepEqual(receivers(p, M), ['10.0.0.31', 'hub', 'trunk a', 'trunk b']);
  t.deepEqual(receivers(p, HUB), ['10.0.0.30', '10.0.0.31', 'trunk a', 'trunk b']);
  // The sender of a broadcast that came over the trunk from a: the target of a's members.
  const sender = p.fromMember(M, ip('10.0.0.10'), ipv4Packet('10.0.0.30', '10.0.0.10')) as Target;
  t.deepEqual(receivers(p, sender), ['10.0.0.30', '10.0.0.31', 'hub']);
});

test('under isolation a broadcast from a member (here or from a trunk) reaches only the hub; the hub\'s reaches everyone', (t) => {
  const p = policy(true);
  t.deepEqual(receivers(p, M), ['hub']);
  const sender = p.fromMember(M, ip('10.0.0.10'), ipv4Packet('10.0.0.30', '10.0.0.10')) as Target;
  t.deepEqual(receivers(p, sender), ['hub']);
  t.deepEqual(receivers(p, HUB), ['10.0.0.30', '10.0.0.31', 'trunk a', 'trunk b']);
});

test('the targets of one hub are the same objects on every lookup (a batch groups by them)', (t) => {
  const p = policy(false);
  t.is(p.fromMember(M, ip('10.0.0.20'), ipv4Packet('10.0.0.30', '10.0.0.20')), p.fromHub(ip('10.0.0.20'), ipv4Packet('10.0.0.3', '10.0.0.20')));
});
