// The hub's state reducers: membership (pipelines/membership.ts: joins, leaves, LAN routes, sticky
// leases, pins), the hub's state (pipelines/hubState.ts: authentication penalties) and cloned
// identities (pipelines/replacements.ts). Tables of events and the state they lead to; every state
// a reducer was given must read the same afterwards.
import test from 'ava';
import { formatIpv4 } from '../operators/core/address.js';
import { admit } from '../pipelines/admission.js';
import { MAX_PENALTIES, reduceHub, type HubEvent, type HubState } from '../pipelines/hubState.js';
import { initialMembership, lanRoutes, leaseInfo, reduceMembership, routesFor, type MemberRecord, type Membership, type MembershipEvent } from '../pipelines/membership.js';
import { MAX_TRACKED, replaceVerdict } from '../pipelines/replacements.js';
import { makeAuthenticator } from '../src/auth.js';
import { ADMISSION, SPACE, cidr, hubState, ip, member, pins, snapshot } from './helpers/hub-state.js';

/** A at 10.0.0.2 with a LAN; A2, a newer session on A's address without LANs; B at 10.0.0.3 with two LANs. */
const A = member('10.0.0.2', { id: 1, routes: ['192.168.10.0/24'] });
const A2 = member('10.0.0.2', { id: 2 });
const B = member('10.0.0.3', { id: 3, routes: ['192.168.20.0/24', '192.168.30.0/25'] });

/** B's LAN routes as lanRoutes gives them (longest prefix first). */
const B_LANS = ['192.168.30.0/25 via 10.0.0.3', '192.168.20.0/24 via 10.0.0.3'];

const EMPTY = initialMembership(SPACE, {}, new Map()).membership;

/** What the pool hands a newcomer next (the address, or why not). */
function next(m: Membership): string {
  const a = m.allocator.peek('newcomer');
  return a.ok ? formatIpv4(a.address) : a.reason;
}

/** A membership as text: members (address #record id), LAN routes, leases, the next free address. */
function summary(m: Membership): { members: string[]; lans: string[]; leases: string[]; next: string } {
  return {
    members: [...m.members.values()].map((r) => `${r.addressText} #${r.id}`),
    lans: lanRoutes(m).map((r) => `${r.cidr} via ${r.via}`),
    leases: leaseInfo(m).map((l) => `${l.identity} ${l.address}`),
    next: next(m),
  };
}

const joined = (m: MemberRecord, lease?: string): MembershipEvent => ({ type: 'joined', member: m, ...(lease === undefined ? {} : { lease: { identity: lease, address: m.address } }) });
const left = (m: MemberRecord): MembershipEvent => ({ type: 'left', member: m });

const reduces = test.macro({
  exec(t, events: readonly MembershipEvent[], expected: ReturnType<typeof summary>) {
    const states: Membership[] = [EMPTY];
    for (const e of events) states.push(reduceMembership(states[states.length - 1]!, e));
    const before = states.map(summary);
    t.deepEqual(summary(states[states.length - 1]!), expected);
    t.deepEqual(states.map(summary), before, 'a reducer changed a state it was given');
  },
  title: (provided = '') => provided,
});

test('a join adds the member and its LAN routes and takes its address out of the pool', reduces, [joined(A)], {
  members: ['10.0.0.2 #1'],
  lans: ['192.168.10.0/24 via 10.0.0.2'],
  leases: [],
  next: '10.0.0.3',
});
test('a join with a new lease records the lease', reduces, [joined(B, 'id:b')], {
  members: ['10.0.0.3 #3'],
  lans: B_LANS,
  leases: ['id:b 10.0.0.3'],
  next: '10.0.0.2',
});
test('a join on an occupied address replaces the holder, whose LAN routes go', reduces, [joined(A), joined(B), joined(A2)], {
  members: ['10.0.0.2 #2', '10.0.0.3 #3'],
  lans: B_LANS,
  leases: [],
  next: '10.0.0.4',
});
test('a late leave of a replaced member is a no-op: its successor keeps the address', reduces, [joined(A), joined(A2), left(A)], {
  members: ['10.0.0.2 #2'],
  lans: [],
  leases: [],
  next: '10.0.0.3',
});
test('a leave removes only the member it names, with its LAN routes, and frees its address', reduces, [joined(A), joined(B), left(A)], {
  members: ['10.0.0.3 #3'],
  lans: B_LANS,
  leases: [],
  next: '10.0.0.2',
});
test('a lease survives its member leaving (leases are sticky)', reduces, [joined(A, 'id:a'), left(A)], {
  members: [],
  lans: [],
  leases: ['id:a 10.0.0.2'],
  next: '10.0.0.3',
});
test('a leave of a member that never joined is a no-op', reduces, [joined(B), left(A)], {
  members: ['10.0.0.3 #3'],
  lans: B_LANS,
  leases: [],
  next: '10.0.0.2',
});

test('a no-op leave returns the very state it was given', (t) => {
  const m = reduceMembership(reduceMembership(EMPTY, joined(A)), joined(A2));
  t.is(reduceMembership(m, left(A)), m);
  t.is(reduceMembership(EMPTY, left(B)), EMPTY);
});

test('a state read before a join or a leave still reads the same afterwards', (t) => {
  const one = reduceMembership(EMPTY, joined(A, 'id:a'));
  const two = reduceMembership(one, joined(B));
  reduceMembership(two, left(A));
  t.is(EMPTY.members.size, 0);
  t.is(EMPTY.lans.size, 0);
  t.deepEqual(EMPTY.allocator.leases(), {});
  t.deepEqual([...one.members.keys()], [ip('10.0.0.2')]);
  t.deepEqual(lanRoutes(one), [{ cidr: '192.168.10.0/24', via: '10.0.0.2' }]);
  t.deepEqual(summary(two).members, ['10.0.0.2 #1', '10.0.0.3 #3']);
  t.is(two.lans.size, 3);
});

test("the routes a member is told about are everyone's but its own", (t) => {
  const m = [joined(A), joined(B)].reduce(reduceMembership, EMPTY);
  t.deepEqual(routesFor(m, A), [
    { cidr: cidr('192.168.30.0/25'), via: ip('10.0.0.3') },
    { cidr: cidr('192.168.20.0/24'), via: ip('10.0.0.3') },
  ]);
  t.deepEqual(routesFor(m, B), [{ cidr: cidr('192.168.10.0/24'), via: ip('10.0.0.2') }]);
  t.is(routesFor(m, undefined).length, 3);
});

test('the LAN routes as text are longest prefix first, then by network, with the member that has each', (t) => {
  const m = [joined(B), joined(A)].reduce(reduceMembership, EMPTY);
  t.deepEqual(lanRoutes(m), [
    { cidr: '192.168.30.0/25', via: '10.0.0.3' },
    { cidr: '192.168.10.0/24', via: '10.0.0.2' },
    { cidr: '192.168.20.0/24', via: '10.0.0.3' },
  ]);
});

test('the lease table for the status lists identities in order with their addresses', (t) => {
  const m = initialMembership(SPACE, { 'token:zed': ip('10.0.0.50'), 'id:a': ip('10.0.0.9') }, new Map()).membership;
  t.deepEqual(leaseInfo(m), [
    { identity: 'id:a', address: '10.0.0.9' },
    { identity: 'token:zed', address: '10.0.0.50' },
  ]);
});

test("a stored lease on an address pinned to somebody else is dropped; the pin owner's is kept", (t) => {
  const stored = { 'id:x': ip('10.0.0.2'), 'token:alice': ip('10.0.0.2'), 'token:bob': ip('10.0.0.5') };
  const { membership, discarded } = initialMembership(SPACE, stored, pins({ '10.0.0.2': 'alice', '10.0.0.5': 'carol' }));
  t.deepEqual(membership.allocator.leases(), { 'token:alice': ip('10.0.0.2') });
  t.deepEqual(discarded, []);
});

test('a pinned address is never assigned to anyone else, even after its owner joined and left', (t) => {
  const pinned = initialMembership(SPACE, {}, pins({ '10.0.0.2': 'alice' })).membership;
  t.is(next(pinned), '10.0.0.3');
  const alice = member('10.0.0.2', { identity: 'alice', exclusive: true, lease: 'token:alice' });
  const after = [joined(alice), left(alice)].reduce(reduceMembership, pinned);
  t.is(after.members.size, 0);
  t.is(next(after), '10.0.0.3');
});

test('admission assigns a client the lowest address that is not pinned to somebody else', (t) => {
  const auth = makeAuthenticator({ networkToken: 'network-secret', clients: [{ name: 'alice', token: 'alice-secret', address: ip('10.0.0.2') }], requireClientCert: false });
  const state = hubState({ reserved: { '10.0.0.2': 'alice' } });
  const verdict = admit({ kind: 'hello', hello: { version: 1, assign: true, id: 'c'.repeat(32), token: 'network-secret' } }, { remote: '203.0.113.9:5555', peerIdentity: undefined, now: 0 }, state, ADMISSION, { authenticator: auth, underlay: [] });
  t.is(verdict.ok ? formatIpv4(verdict.address) : verdict.reason, '10.0.0.3');
});

// ---------------------------------------------------------------------------------------------
// The hub's state: authentication penalties

const failed = (host: string, now: number): HubEvent => ({ type: 'auth-failed', host, now });

test('each failed authentication blocks its source twice as long as the last, up to 60 s', (t) => {
  let s = hubState();
  const blocks: string[] = [];
  for (let i = 0; i < 9; i++) {
    const now = i * 100_000;
    s = reduceHub(s, failed('192.0.2.1', now));
    const p = s.penalties.get('192.0.2.1')!;
    blocks.push(`${p.failures}: ${p.until - now}`);
  }
  t.deepEqual(blocks, ['1: 1000', '2: 2000', '3: 4000', '4: 8000', '5: 16000', '6: 32000', '7: 60000', '8: 60000', '9: 60000']);
});

test('penalties are kept for 4096 sources at most, the oldest forgotten first', (t) => {
  const hosts = Array.from({ length: MAX_PENALTIES + 1 }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
  // The first source fails again before the last one arrives: it is then the newest, and the second is the oldest.
  const events = [...hosts.slice(0, -1).map((h) => failed(h, 0)), failed(hosts[0]!, 1), failed(hosts[MAX_PENALTIES]!, 2)];
  const s = events.reduce(reduceHub, hubState());
  t.is(s.penalties.size, MAX_PENALTIES);
  t.false(s.penalties.has(hosts[1]!));
  t.like(s.penalties.get(hosts[0]!), { failures: 2 });
  t.true(s.penalties.has(hosts[MAX_PENALTIES]!));
  t.is([...s.penalties.keys()][0], hosts[2]);
});

test('a source that authenticates has its penalty forgotten; one without a penalty changes nothing', (t) => {
  const blocked = hubState({ events: [failed('192.0.2.1', 0), failed('192.0.2.2', 0)] });
  const passed = reduceHub(blocked, { type: 'auth-passed', host: '192.0.2.1' });
  t.deepEqual([...passed.penalties.keys()], ['192.0.2.2']);
  t.deepEqual([...blocked.penalties.keys()], ['192.0.2.1', '192.0.2.2'], 'the state given is unchanged');
  t.is(reduceHub(passed, { type: 'auth-passed', host: '192.0.2.9' }), passed);
});

test('membership events change only the membership of the hub state; a no-op leave returns the same state', (t) => {
  const s = hubState({ events: [failed('192.0.2.1', 0)] });
  const withA = reduceHub(s, joined(A));
  t.is(withA.penalties, s.penalties);
  t.is(withA.replacements, s.replacements);
  t.deepEqual(summary(withA.membership).members, ['10.0.0.2 #1']);
  t.is(s.membership.members.size, 0);
  t.is(reduceHub(withA, left(B)), withA);
});

// ---------------------------------------------------------------------------------------------
// Cloned identities

/** A replacement of, or a clone refusal for, `identity` at `at` ms; or the verdict on a newcomer then. */
type Step = readonly ['replaced' | 'refused', number] | readonly ['verdict', number];

const clones = test.macro({
  exec(t, steps: readonly Step[], expected: readonly string[]) {
    let s: HubState = hubState();
    const verdicts: string[] = [];
    for (const [what, at] of steps) {
      const before = snapshot(s);
      if (what === 'verdict') {
        const v = replaceVerdict(s.replacements, 'id:x', at);
        verdicts.push(v.ok ? 'ok' : `refused after ${v.replacements}`);
        continue;
      }
      const next = reduceHub(s, { type: what === 'replaced' ? 'replaced-live' : 'clone-refused', identity: 'id:x', now: at });
      t.deepEqual(snapshot(s), before, 'the state given is unchanged');
      s = next;
    }
    t.deepEqual(verdicts, expected);
  },
  title: (provided = '') => provided,
});

test('an identity nobody replaced may replace its live session', clones, [['verdict', 0]], ['ok']);
test(
  'an identity may replace its live session 3 times within 60 s, then its newcomers are refused',
  clones,
  [['replaced', 0], ['replaced', 10_000], ['verdict', 15_000], ['replaced', 20_000], ['verdict', 59_999]],
  ['ok', 'refused after 3'],
);
test('replacements older than 60 s no longer count', clones, [['replaced', 0], ['replaced', 10_000], ['replaced', 20_000], ['verdict', 60_000], ['verdict', 70_000]], ['ok', 'ok']);
test(
  'a clone refusal holds the identity for 5 minutes even without recent replacements',
  clones,
  [['refused', 0], ['verdict', 299_999], ['verdict', 300_000]],
  ['refused after 0', 'ok'],
);
test(
  'each clone refusal extends the hold',
  clones,
  [['replaced', 0], ['replaced', 1_000], ['replaced', 2_000], ['refused', 3_000], ['verdict', 200_000], ['refused', 200_000], ['verdict', 499_999], ['verdict', 500_000]],
  ['refused after 0', 'refused after 0', 'ok'],
);
test('a refusal keeps the recent replacements that still count', clones, [['replaced', 0], ['replaced', 1_000], ['replaced', 2_000], ['refused', 3_000], ['verdict', 4_000]], ['refused after 3']);

test('replacements are remembered for 4096 identities at most, the oldest forgotten first', (t) => {
  const ids = Array.from({ length: MAX_TRACKED + 1 }, (_, i) => `id:${i}`);
  const s = ids.reduce((state, identity) => reduceHub(state, { type: 'clone-refused', identity, now: 0 }), hubState());
  t.is(s.replacements.size, MAX_TRACKED);
  t.false(s.replacements.has(ids[0]!));
  t.true(s.replacements.has(ids[1]!));
  t.true(s.replacements.has(ids[MAX_TRACKED]!));
  t.deepEqual(replaceVerdict(s.replacements, ids[0]!, 1), { ok: true });
  t.deepEqual(replaceVerdict(s.replacements, ids[1]!, 1), { ok: false, replacements: 0 });
});
