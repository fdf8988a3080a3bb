// The hub's forwarding policy (pipelines/forwarding.ts) as tables: where a member's packet goes
// (anti-spoofing, then the destination), where the hub's own packets go, who receives a broadcast
// with and without isolation, and where the hub's answers go. Memberships are made with the reducers.
import test from 'ava';
import type { DropReason } from '../operators/core/packet.js';
import { HUB, REPLICATE, forwardingPolicy, type Decision, type ForwardingPolicy } from '../pipelines/forwarding.js';
import type { Membership } from '../pipelines/membership.js';
import { hubState, ip, member } from './helpers/hub-state.js';
import { ipv4Packet } from './helpers/marbles.js';

/** A (LANs 192.168.10.0/24 behind it), B and C. */
const A = member('10.0.0.2', { routes: ['192.168.10.0/24'] });
const B = member('10.0.0.3');
const C = member('10.0.0.4');
const SENDERS = { A, B, C } as const;
const WITH_LANS = hubState({ members: [A, B, C] }).membership;
const WITHOUT_LANS = hubState({ members: [B, C] }).membership;
/** The replicated multicast group of the policies built with groups. */
const GROUP = '224.0.0.251';

interface World {
  /** Broadcast replication on (with GROUP as its one group). */
  readonly groups?: boolean;
  readonly isolation?: boolean;
  /** Whether A and its LAN are members (default: yes). */
  readonly lans?: boolean;
}

/** The policy of a hub at 10.0.0.1/24 over `membership` and `isolation`, read on every call. */
function policy(membership: () => Membership, isolation: () => boolean, groups = false): ForwardingPolicy {
  return forwardingPolicy({ tunnel: { address: ip('10.0.0.1'), prefix: 24 }, broadcastGroups: groups ? new Set([ip(GROUP)]) : undefined, membership, isolation });
}

const policyOf = (w: World): ForwardingPolicy =>
  policy(
    () => (w.lans === false ? WITHOUT_LANS : WITH_LANS),
    () => w.isolation === true,
    w.groups === true,
  );

/** A decision as text: a member's address, `hub`, `replicate`, or the drop reason. */
function named(d: Decision | DropReason): string {
  if (typeof d === 'string') return d;
  if ('addressText' in d) return d.addressText;
  return d === HUB ? 'hub' : d === REPLICATE ? 'replicate' : 'neither HUB nor REPLICATE';
}

interface FromMember extends World {
  readonly sender: keyof typeof SENDERS | undefined;
  readonly src: string;
  readonly dst: string;
}

const fromMember = test.macro({
  exec(t, c: FromMember, expected: string) {
    const sender = c.sender === undefined ? undefined : SENDERS[c.sender];
    t.is(named(policyOf(c).fromMember(sender, ip(c.dst), ipv4Packet(c.src, c.dst))), expected);
  },
  title: (provided = '') => provided,
});

test('a packet to another member goes to that member', fromMember, { sender: 'B', src: '10.0.0.3', dst: '10.0.0.4' }, '10.0.0.4');
test("a packet to the hub's address goes to the hub", fromMember, { sender: 'B', src: '10.0.0.3', dst: '10.0.0.1' }, 'hub');
test('a packet beyond the virtual LAN goes to the hub when no member has LANs', fromMember, { sender: 'B', src: '10.0.0.3', dst: '8.8.8.8', lans: false }, 'hub');
test('a packet beyond the virtual LAN and every LAN goes to the hub', fromMember, { sender: 'B', src: '10.0.0.3', dst: '172.16.0.1' }, 'hub');
test('a packet to a LAN goes to the member behind which it lies', fromMember, { sender: 'B', src: '10.0.0.3', dst: '192.168.10.20' }, '10.0.0.2');
test('a subnet broadcast is replicated when broadcast groups are on', fromMember, { sender: 'B', src: '10.0.0.3', dst: '10.0.0.255', groups: true }, 'replicate');
test('a subnet broadcast is dropped as broadcast when replication is off', fromMember, { sender: 'B', src: '10.0.0.3', dst: '10.0.0.255' }, 'broadcast');
test('the limited broadcast is replicated when broadcast groups are on', fromMember, { sender: 'B', src: '10.0.0.3', dst: '255.255.255.255', groups: true }, 'replicate');
test('the limited broadcast goes to the hub when replication is off', fromMember, { sender: 'B', src: '10.0.0.3', dst: '255.255.255.255' }, 'hub');
test('a replicated multicast group is replicated', fromMember, { sender: 'B', src: '10.0.0.3', dst: GROUP, groups: true }, 'replicate');
test('a multicast group that is not replicated goes to the hub', fromMember, { sender: 'B', src: '10.0.0.3', dst: '239.1.1.1', groups: true }, 'hub');
test('the network address is dropped as broadcast, replication on or off', fromMember, { sender: 'B', src: '10.0.0.3', dst: '10.0.0.0', groups: true }, 'broadcast');
test('the network address is dropped as broadcast without replication', fromMember, { sender: 'B', src: '10.0.0.3', dst: '10.0.0.0' }, 'broadcast');
test('an address of the virtual LAN that no member holds is dropped as no-route', fromMember, { sender: 'B', src: '10.0.0.3', dst: '10.0.0.77' }, 'no-route');
test("a packet from another member's address is dropped as spoofed-source", fromMember, { sender: 'B', src: '10.0.0.2', dst: '10.0.0.4' }, 'spoofed-source');
test('a spoofed packet is dropped even toward the hub', fromMember, { sender: 'C', src: '10.0.0.99', dst: '10.0.0.1' }, 'spoofed-source');
test('a member sends from its own LAN', fromMember, { sender: 'A', src: '192.168.10.5', dst: '10.0.0.3' }, '10.0.0.3');
test("a packet from another member's LAN is dropped as spoofed-source", fromMember, { sender: 'B', src: '192.168.10.5', dst: '10.0.0.4' }, 'spoofed-source');
test('a member with LANs sending from outside them is dropped as spoofed-source', fromMember, { sender: 'A', src: '172.16.0.1', dst: '10.0.0.3' }, 'spoofed-source');
test('a packet from a connection that is not a member is dropped as unregistered', fromMember, { sender: undefined, src: '10.0.0.9', dst: '10.0.0.3' }, 'unregistered');

const fromHub = test.macro({
  exec(t, w: World, dst: string, expected: string) {
    t.is(named(policyOf(w).fromHub(ip(dst), ipv4Packet('10.0.0.1', dst))), expected);
  },
  title: (provided = '') => provided,
});

test("the hub's packet to a member goes to that member", fromHub, {}, '10.0.0.3', '10.0.0.3');
test("the hub's packet to a LAN goes to the member behind it", fromHub, {}, '192.168.10.9', '10.0.0.2');
test("the hub's subnet broadcast is replicated when broadcast groups are on", fromHub, { groups: true }, '10.0.0.255', 'replicate');
test("the hub's limited broadcast is replicated when broadcast groups are on", fromHub, { groups: true }, '255.255.255.255', 'replicate');
test("the hub's packet to a replicated group is replicated", fromHub, { groups: true }, GROUP, 'replicate');
test("the hub's subnet broadcast has no route when replication is off", fromHub, {}, '10.0.0.255', 'no-route');
test("the hub's packet to an address no member holds has no route", fromHub, { groups: true }, '10.0.0.77', 'no-route');
test("the hub's packet beyond every LAN has no route", fromHub, {}, '172.16.0.1', 'no-route');
test("the hub's packet beyond the virtual LAN has no route when no member has LANs", fromHub, { lans: false }, '172.16.0.1', 'no-route');

const receives = test.macro({
  exec(t, w: World, sender: keyof typeof SENDERS | 'hub', expected: readonly string[]) {
    t.deepEqual([...policyOf(w).receivers(sender === 'hub' ? HUB : SENDERS[sender])].map(named), expected);
  },
  title: (provided = '') => provided,
});

test("the hub's broadcast reaches every member", receives, {}, 'hub', ['10.0.0.2', '10.0.0.3', '10.0.0.4']);
test("a member's broadcast reaches the hub and every other member", receives, {}, 'B', ['hub', '10.0.0.2', '10.0.0.4']);
test("under isolation a member's broadcast reaches only the hub", receives, { isolation: true }, 'B', ['hub']);
test("under isolation the hub's broadcast still reaches every member", receives, { isolation: true }, 'hub', ['10.0.0.2', '10.0.0.3', '10.0.0.4']);

const toward = test.macro({
  exec(t, w: World, dst: string, expected: string) {
    t.is(named(policyOf(w).toward(ip(dst))), expected);
  },
  title: (provided = '') => provided,
});

test("the hub's answer to a member goes to that member", toward, {}, '10.0.0.4', '10.0.0.4');
test("the hub's answer to a LAN goes to the member behind it", toward, {}, '192.168.10.77', '10.0.0.2');
test("the hub's answer to an address no member holds goes to the hub's own kernel", toward, {}, '10.0.0.77', 'hub');
test("the hub's answer beyond the virtual LAN goes to the hub's own kernel", toward, {}, '8.8.8.8', 'hub');
test("the hub's answer beyond the virtual LAN goes to the hub's kernel when no member has LANs", toward, { lans: false }, '8.8.8.8', 'hub');

test('isolation separates members from each other, never from the hub', (t) => {
  const p = policyOf({});
  t.deepEqual([p.isPeer(HUB), p.isPeer(A), p.isPeer(B)], [false, true, true]);
});

const separates = test.macro({
  exec(t, isolation: boolean, a: keyof typeof SENDERS | 'hub', b: keyof typeof SENDERS | 'hub', expected: boolean) {
    const of = (x: keyof typeof SENDERS | 'hub') => (x === 'hub' ? HUB : SENDERS[x]);
    t.is(policyOf({ isolation }).separates(of(a), of(b)), expected);
  },
  title: (provided = '') => provided,
});

test('without isolation nothing separates two members', separates, false, 'A', 'B', false);
test('isolation separates two members', separates, true, 'A', 'B', true);
test('isolation separates two members either way round', separates, true, 'C', 'A', true);
test('isolation never separates a member from the hub', separates, true, 'B', 'hub', false);
test('isolation never separates the hub from a member', separates, true, 'hub', 'C', false);

test('the policy reads isolation and membership as they are now', (t) => {
  const world = { isolation: false, membership: WITHOUT_LANS };
  const p = policy(
    () => world.membership,
    () => world.isolation,
  );
  t.false(p.isolating());
  t.is(named(p.toward(ip('192.168.10.1'))), 'hub');
  world.isolation = true;
  world.membership = WITH_LANS;
  t.true(p.isolating());
  t.is(named(p.toward(ip('192.168.10.1'))), '10.0.0.2');
  t.is(named(p.fromMember(B, ip('10.0.0.2'), ipv4Packet('10.0.0.3', '10.0.0.2'))), '10.0.0.2');
});
