// The hub's introduction policy (pipelines/introductions.ts) as tables: which asks introduce and
// which are refused (and what the asking member is told), what each side's INTRODUCTION says,
// the budget and the pair limit, and which pairs a change of the hub's state withdraws.
import test from 'ava';
import type { HostPort } from '../operators/core/address.js';
import { IntroductionCodec, decodeControl, encodeControl } from '../operators/core/wire/control.js';
import { FrameType, HEADER_BYTES } from '../operators/core/wire/frames.js';
import { forwardingPolicy } from '../pipelines/forwarding.js';
import {
  INTRODUCTION_LIMITS,
  PATH_REPORT_LIMITS,
  introduce,
  introducedPair,
  noIntroductions,
  pairPath,
  reportPath,
  withdrawals,
  type PathReportVerdict,
  type DirectFacts,
  type IntroductionAsk,
  type IntroductionContext,
  type Introductions,
  type IntroductionVerdict,
} from '../pipelines/introductions.js';
import type { MemberRecord, Membership } from '../pipelines/membership.js';
import { hubState, ip, member } from './helpers/hub-state.js';

const ep = (text: string): HostPort => {
  const [host, port] = text.split(':');
  return { host: host!, port: Number(port) };
};

/** A (LAN 192.168.10.0/24 behind it), B, C: direct and UDP up. D: no `direct`. E: direct, no UDP path. */
const A = member('10.0.0.2', { routes: ['192.168.10.0/24'] });
const B = member('10.0.0.3');
const C = member('10.0.0.4');
const D = member('10.0.0.5');
const E = member('10.0.0.6');
const MEMBERS = { A, B, C, D, E } as const;
type Name = keyof typeof MEMBERS;
const ALL = hubState({ members: [A, B, C, D, E] }).membership;

const FACTS = new Map<MemberRecord, DirectFacts>([
  [A, { direct: true, observed: ep('203.0.113.2:40002'), local: [ep('192.168.10.2:41641')] }],
  [B, { direct: true, observed: ep('203.0.113.3:40003'), local: [ep('192.168.20.3:41641'), ep('172.17.0.1:41641')] }],
  [C, { direct: true, observed: ep('203.0.113.4:40004'), local: [] }],
  [D, { direct: false, observed: ep('203.0.113.5:40005'), local: [] }],
  [E, { direct: true, observed: undefined, local: [ep('192.168.30.6:41641')] }],
]);

const KEY = Uint8Array.from({ length: 32 }, (_, i) => 0xa0 + i);

interface World {
  readonly isolation?: boolean;
  readonly membership?: Membership;
  readonly facts?: ReadonlyMap<MemberRecord, DirectFacts>;
  readonly now?: number;
  readonly limits?: IntroductionContext['limits'];
}

/** A context over `w`: ids counted from 100, the key KEY (a fresh copy each time). */
function context(w: World = {}): IntroductionContext {
  const membership = w.membership ?? ALL;
  let id = 100;
  return {
    membership,
    policy: forwardingPolicy({ tunnel: { address: ip('10.0.0.1'), prefix: 24 }, broadcastGroups: undefined, membership: () => membership, isolation: () => w.isolation === true }),
    facts: (m) => (w.facts ?? FACTS).get(m),
    now: w.now ?? 0,
    cipher: 'chacha20-poly1305',
    randomKey: () => KEY.slice(),
    nextId: () => id++,
    ...(w.limits === undefined ? {} : { limits: w.limits }),
  };
}

const request = (from: Name, peer: string): IntroductionAsk => ({ kind: 'request', from: MEMBERS[from], peer: ip(peer) });
const flow = (from: Name, to: Name): IntroductionAsk => ({ kind: 'flow', from: MEMBERS[from], to: MEMBERS[to] });

/** A verdict as text: `introduce a-b`, or `refuse REASON` with ` → answer to X` when the asker is told. */
function named(v: IntroductionVerdict): string {
  if (v.kind === 'introduce') return `introduce ${v.pair.a.addressText}-${v.pair.b.addressText}`;
  const answer = v.answer === undefined ? '' : ` → answer to ${v.answer.to.addressText} (${v.answer.message.reason})`;
  return `refuse ${v.reason}${answer}`;
}

const decides = test.macro({
  exec(t, ask: IntroductionAsk, w: World, expected: string) {
    const before = noIntroductions();
    const { state, verdict } = introduce(before, ask, context(w));
    t.is(named(verdict), expected);
    t.is(before.pairs.size, 0, 'the state it was given is unchanged');
    t.is(state.pairs.size > 0, verdict.kind === 'introduce', 'only an introduction files a pair');
  },
  title: (provided = '') => provided,
});

test('a request between two members that both offer direct and have UDP introduces them', decides, request('A', '10.0.0.3'), {}, 'introduce 10.0.0.2-10.0.0.3');
test('a request from the higher address files the pair the same way round', decides, request('C', '10.0.0.2'), {}, 'introduce 10.0.0.2-10.0.0.4');
test('a flow between two such members introduces them', decides, flow('B', 'C'), {}, 'introduce 10.0.0.3-10.0.0.4');
test('a request for itself is refused', decides, request('A', '10.0.0.2'), {}, 'refuse same-member → answer to 10.0.0.2 (same-member)');
test('a request for an address no member holds is refused', decides, request('A', '10.0.0.77'), {}, 'refuse unknown-peer → answer to 10.0.0.2 (unknown-peer)');
test("a request for the hub's address is refused as no member", decides, request('A', '10.0.0.1'), {}, 'refuse unknown-peer → answer to 10.0.0.2 (unknown-peer)');
test('a request for an address in a LAN is refused: peers are named by tunnel address', decides, request('B', '192.168.10.5'), {}, 'refuse unknown-peer → answer to 10.0.0.3 (unknown-peer)');
test('a request under isolation is refused', decides, request('A', '10.0.0.3'), { isolation: true }, 'refuse isolation → answer to 10.0.0.2 (isolation)');
test('a flow under isolation is refused without a word', decides, flow('A', 'B'), { isolation: true }, 'refuse isolation');
test('a request for a member without direct is refused', decides, request('A', '10.0.0.5'), {}, 'refuse no-direct → answer to 10.0.0.2 (no-direct)');
test('a request from a member without direct is refused', decides, request('D', '10.0.0.2'), {}, 'refuse no-direct → answer to 10.0.0.5 (no-direct)');
test('a member the hub has no facts for counts as without direct', decides, request('A', '10.0.0.3'), { facts: new Map([[B, FACTS.get(B)!]]) }, 'refuse no-direct → answer to 10.0.0.2 (no-direct)');
test('a request for a member whose UDP path is not up is refused', decides, request('A', '10.0.0.6'), {}, 'refuse no-udp → answer to 10.0.0.2 (no-udp)');
test('a request from a member whose UDP path is not up is refused', decides, request('E', '10.0.0.2'), {}, 'refuse no-udp → answer to 10.0.0.6 (no-udp)');
test('a flow to a member without direct is refused without a word', decides, flow('A', 'D'), {}, 'refuse no-direct');
test('a request from a member that was replaced is refused without a word', decides, request('A', '10.0.0.3'), { membership: hubState({ members: [A, B, member('10.0.0.2', { id: 99 })] }).membership }, 'refuse unknown-peer');
test('a flow to a member that was replaced since is refused', decides, flow('A', 'B'), { membership: hubState({ members: [A, B, member('10.0.0.3', { id: 99 })] }).membership }, 'refuse unknown-peer');
test('a request from a member that left is refused without a word', decides, request('A', '10.0.0.3'), { membership: hubState({ members: [A, B], events: [{ type: 'left', member: A }] }).membership }, 'refuse unknown-peer');

test("each side's introduction names the other, its endpoints and LANs, one key, and the ids the right way round", (t) => {
  const { verdict } = introduce(noIntroductions(), request('B', '10.0.0.2'), context());
  if (verdict.kind !== 'introduce') return t.fail(named(verdict));
  const [first, second] = verdict.introductions;
  // The asker B takes the first id (100), A the second (101); the pair is filed as A-B.
  t.deepEqual([verdict.pair.a, verdict.pair.b, verdict.pair.aId, verdict.pair.bId], [A, B, 101, 100]);
  t.is(first.to, A);
  t.deepEqual(first.message, {
    version: 1,
    peer: B.address,
    routes: [],
    endpoints: [ep('203.0.113.3:40003'), ep('192.168.20.3:41641'), ep('172.17.0.1:41641')],
    key: KEY,
    cipher: 'chacha20-poly1305',
    id: 101,
    peerId: 100,
    self: ep('203.0.113.2:40002'),
  });
  t.is(second.to, B);
  t.deepEqual(second.message, {
    version: 1,
    peer: A.address,
    routes: A.routes,
    endpoints: [ep('203.0.113.2:40002'), ep('192.168.10.2:41641')],
    key: KEY,
    cipher: 'chacha20-poly1305',
    id: 100,
    peerId: 101,
    self: ep('203.0.113.3:40003'),
  });
  t.is(first.message.key, second.message.key, 'one key for both sides');
  t.is(verdict.replaces, undefined);
});

test('every introduction fits its frame and decodes to itself', (t) => {
  const { verdict } = introduce(noIntroductions(), request('A', '10.0.0.3'), context());
  if (verdict.kind !== 'introduce') return t.fail(named(verdict));
  for (const { message } of verdict.introductions) {
    const wire = encodeControl(FrameType.Introduction, message);
    t.deepEqual(decodeControl(FrameType.Introduction, IntroductionCodec, wire.subarray(HEADER_BYTES + 1)), message);
  }
});

test('candidates: the observed endpoint first, then the local ones without repeats, at most 8', (t) => {
  const many = Array.from({ length: 10 }, (_, i) => ep(`192.168.40.${i + 1}:41641`));
  const facts = new Map(FACTS).set(B, { direct: true, observed: ep('192.168.40.1:41641'), local: [ep('192.168.40.1:41641'), ...many] });
  const { verdict } = introduce(noIntroductions(), request('A', '10.0.0.3'), context({ facts }));
  if (verdict.kind !== 'introduce') return t.fail(named(verdict));
  const endpoints = verdict.introductions.find((o) => o.to === A)!.message.endpoints;
  // The local list is cut to its first 7 (MAX_LOCAL_ENDPOINTS); two of them repeat the observed one.
  t.deepEqual(
    endpoints.map((e) => `${e.host}:${e.port}`),
    ['192.168.40.1:41641', '192.168.40.2:41641', '192.168.40.3:41641', '192.168.40.4:41641', '192.168.40.5:41641', '192.168.40.6:41641'],
  );
});

test('a pair key that is not 32 bytes is a programming error', (t) => {
  t.throws(() => introduce(noIntroductions(), request('A', '10.0.0.3'), { ...context(), randomKey: () => new Uint8Array(16) }), { instanceOf: RangeError });
});

/** Runs asks in order from an empty state; each is `[ask, now]`. Returns the verdicts as text and the last state. */
function sequence(asks: readonly (readonly [IntroductionAsk, number])[], w: World = {}): { verdicts: string[]; state: Introductions } {
  let state = noIntroductions();
  const verdicts: string[] = [];
  for (const [ask, now] of asks) {
    const r = introduce(state, ask, context({ ...w, now }));
    verdicts.push(named(r.verdict));
    state = r.state;
  }
  return { verdicts, state };
}

test('a flow between members already introduced is refused as introduced, and costs nothing', (t) => {
  const { verdicts } = sequence(
    [
      [flow('A', 'B'), 0],
      [flow('A', 'B'), 0],
      [flow('B', 'A'), 0],
      [flow('A', 'C'), 0],
    ],
    { limits: { burst: 2, refillMs: 1000, maxPairs: 32 } },
  );
  t.deepEqual(verdicts, ['introduce 10.0.0.2-10.0.0.3', 'refuse introduced', 'refuse introduced', 'introduce 10.0.0.2-10.0.0.4']);
});

test('a request for a pair already introduced introduces it again with a fresh key and ids, replacing the old one', (t) => {
  const first = introduce(noIntroductions(), request('A', '10.0.0.3'), context());
  let next = 500;
  const again = introduce(first.state, request('B', '10.0.0.2'), { ...context(), nextId: () => next++, randomKey: () => new Uint8Array(32).fill(7) });
  if (first.verdict.kind !== 'introduce' || again.verdict.kind !== 'introduce') return t.fail('both introduce');
  t.is(again.verdict.replaces, first.verdict.pair);
  t.deepEqual([again.verdict.pair.aId, again.verdict.pair.bId], [501, 500]);
  t.notDeepEqual(again.verdict.introductions[0].message.key, first.verdict.introductions[0].message.key);
  t.is(introducedPair(again.state, A.address, B.address), again.verdict.pair);
  t.is(introducedPair(again.state, B.address, A.address), again.verdict.pair);
  t.is(again.state.pairs.get(A.address)?.size, 1);
});

test('requests are limited per member: a burst, then one per refill period; refused requests count too', (t) => {
  const limits = { burst: 2, refillMs: 1000, maxPairs: 32 };
  const { verdicts } = sequence(
    [
      [request('A', '10.0.0.77'), 0],
      [request('A', '10.0.0.3'), 0],
      [request('A', '10.0.0.4'), 500],
      [request('B', '10.0.0.4'), 500],
      [request('A', '10.0.0.4'), 1000],
      [request('A', '10.0.0.4'), 1500],
    ],
    { limits },
  );
  t.deepEqual(verdicts, [
    'refuse unknown-peer → answer to 10.0.0.2 (unknown-peer)',
    'introduce 10.0.0.2-10.0.0.3',
    'refuse rate-limited → answer to 10.0.0.2 (rate-limited)',
    'introduce 10.0.0.3-10.0.0.4',
    'introduce 10.0.0.2-10.0.0.4',
    'refuse rate-limited → answer to 10.0.0.2 (rate-limited)',
  ]);
});

test('flows are charged to the sender only when they introduce', (t) => {
  const { verdicts } = sequence(
    [
      [flow('A', 'D'), 0],
      [flow('A', 'D'), 0],
      [flow('A', 'B'), 0],
      [flow('A', 'C'), 0],
      [flow('C', 'B'), 0],
    ],
    { limits: { burst: 1, refillMs: 1000, maxPairs: 32 } },
  );
  t.deepEqual(verdicts, ['refuse no-direct', 'refuse no-direct', 'introduce 10.0.0.2-10.0.0.3', 'refuse rate-limited', 'introduce 10.0.0.3-10.0.0.4']);
});

test('a member has at most maxPairs peers, on either side of the ask', (t) => {
  const { verdicts } = sequence(
    [
      [request('A', '10.0.0.3'), 0],
      [request('A', '10.0.0.4'), 0],
      [request('C', '10.0.0.3'), 0],
      [request('A', '10.0.0.3'), 0],
    ],
    { limits: { burst: 8, refillMs: 1000, maxPairs: 1 } },
  );
  t.deepEqual(verdicts, ['introduce 10.0.0.2-10.0.0.3', 'refuse too-many-pairs → answer to 10.0.0.2 (too-many-pairs)', 'refuse too-many-pairs → answer to 10.0.0.4 (too-many-pairs)', 'introduce 10.0.0.2-10.0.0.3']);
});

// ---------------------------------------------------------------------------------------------
// Withdrawals

/** A-B and B-C introduced over ALL (ids: A-B 100/101, B-C 100/101 from a fresh context each). */
function introduced(): Introductions {
  let s = noIntroductions();
  for (const ask of [request('A', '10.0.0.3'), request('B', '10.0.0.4')]) s = introduce(s, ask, context()).state;
  return s;
}

interface Change {
  readonly membership?: Membership;
  readonly isolation?: boolean;
  readonly touched?: readonly Name[];
}

/** Each withdrawn pair as `a-b reason: to X (peer P, reason R, id N), ...`. */
const withdraws = test.macro({
  exec(t, change: Change, expected: readonly string[], left: readonly string[]) {
    const before = introduced();
    const { state, withdrawn } = withdrawals(before, { membership: change.membership ?? ALL, policy: context({ isolation: change.isolation === true, membership: change.membership ?? ALL }).policy }, change.touched?.map((n) => MEMBERS[n].address));
    t.deepEqual(
      withdrawn.map((w) => `${w.pair.a.addressText}-${w.pair.b.addressText} ${w.reason}: ${w.withdrawals.map((o) => `to ${o.to.addressText} (peer ${o.message.peer === A.address ? 'A' : o.message.peer === B.address ? 'B' : 'C'}, ${o.message.reason}, id ${o.message.id})`).join(', ')}`),
      expected,
    );
    const pairs = [
      ['A-B', A, B],
      ['B-C', B, C],
    ] as const;
    t.deepEqual(
      pairs.filter(([, x, y]) => introducedPair(state, x.address, y.address) !== undefined && introducedPair(state, y.address, x.address) !== undefined).map(([n]) => n),
      left,
    );
    t.is(introducedPair(before, A.address, B.address) !== undefined, true, 'the state it was given is unchanged');
  },
  title: (provided = '') => provided,
});

const replacedA = member('10.0.0.2', { id: 99 });
test('nothing changed: nothing is withdrawn', withdraws, {}, [], ['A-B', 'B-C']);
test('a member that left: its peers are told, it is not', withdraws, { membership: hubState({ members: [A, B, C], events: [{ type: 'left', member: A }] }).membership, touched: ['A'] }, ['10.0.0.2-10.0.0.3 left: to 10.0.0.3 (peer A, left, id 101)'], ['B-C']);
test('a member that was replaced: its peers are told so', withdraws, { membership: hubState({ members: [A, B, C, replacedA] }).membership, touched: ['A'] }, ['10.0.0.2-10.0.0.3 replaced: to 10.0.0.3 (peer A, replaced, id 101)'], ['B-C']);
test('a member with two pairs that left: both peers are told', withdraws, { membership: hubState({ members: [A, B, C], events: [{ type: 'left', member: B }] }).membership, touched: ['B'] }, ['10.0.0.2-10.0.0.3 left: to 10.0.0.2 (peer B, left, id 100)', '10.0.0.3-10.0.0.4 left: to 10.0.0.4 (peer B, left, id 101)'], []);
test('isolation turned on withdraws every pair from both sides', withdraws, { isolation: true }, ['10.0.0.2-10.0.0.3 isolation: to 10.0.0.2 (peer B, isolation, id 100), to 10.0.0.3 (peer A, isolation, id 101)', '10.0.0.3-10.0.0.4 isolation: to 10.0.0.3 (peer C, isolation, id 100), to 10.0.0.4 (peer B, isolation, id 101)'], []);
test('a change that touches other addresses looks at their pairs only', withdraws, { isolation: true, touched: ['D'] }, [], ['A-B', 'B-C']);
test('both members gone: the pair is withdrawn, nobody is told', withdraws, { membership: hubState({ members: [C], events: [] }).membership, touched: ['A', 'B'] }, ['10.0.0.2-10.0.0.3 left: ', '10.0.0.3-10.0.0.4 left: to 10.0.0.4 (peer B, left, id 101)'], []);

test('a withdrawn pair can be introduced again', (t) => {
  const gone = hubState({ members: [A, B, C], events: [{ type: 'left', member: A }] }).membership;
  const { state } = withdrawals(introduced(), { membership: gone, policy: context({ membership: gone }).policy }, [A.address]);
  const back = hubState({ members: [A, B, C] }).membership;
  const { verdict } = introduce(state, request('A', '10.0.0.3'), context({ membership: back }));
  t.is(named(verdict), 'introduce 10.0.0.2-10.0.0.3');
});

test("a leaver's budget is forgotten; a live member's is kept", (t) => {
  let s = noIntroductions();
  for (const ask of [request('A', '10.0.0.77'), request('B', '10.0.0.77')]) s = introduce(s, ask, context()).state;
  t.deepEqual([...s.budgets.keys()], [A.address, B.address]);
  const gone = hubState({ members: [B, C], events: [] }).membership;
  const { state } = withdrawals(s, { membership: gone, policy: context({ membership: gone }).policy });
  t.deepEqual([...state.budgets.keys()], [B.address]);
});

// ---------------------------------------------------------------------------------------------
// What members report of their pairs' paths (DIRECT-PATH), taken as hostile input.

/** A and B introduced (A takes the pair's datagrams under id 100, B under 101). */
function pairAB(): Introductions {
  const { state } = introduce(noIntroductions(), request('A', '10.0.0.3'), context());
  return state;
}
const says = (from: Name, peer: string, id: number, direct: boolean) => ({ from: MEMBERS[from], message: { version: 1, peer: ip(peer), id, direct } });
/** A report verdict as text: `recorded a/b` (each side's word, d or r) with ` changed` when the pair's shown path changed, or `refused REASON`. */
const verdictOf = (v: PathReportVerdict): string => (v.kind === 'refused' ? `refused ${v.reason}` : `recorded ${v.pair.aDirect ? 'd' : 'r'}/${v.pair.bDirect ? 'd' : 'r'} ${pairPath(v.pair)}${v.changed ? ' changed' : ''}`);

test('the hub shows a pair direct once both members report it direct, and relayed as soon as one does not', (t) => {
  const before = pairAB();
  let s = before;
  const seen: string[] = [];
  for (const r of [says('A', '10.0.0.3', 100, true), says('B', '10.0.0.2', 101, true), says('B', '10.0.0.2', 101, true), says('A', '10.0.0.3', 100, false), says('A', '10.0.0.3', 100, true)]) {
    const { state, verdict } = reportPath(s, r, { membership: ALL, now: 0 });
    s = state;
    seen.push(verdictOf(verdict));
  }
  t.deepEqual(seen, ['recorded d/r relayed', 'recorded d/d direct changed', 'recorded d/d direct', 'recorded r/d relayed changed', 'recorded d/d direct changed']);
  t.is(pairPath(introducedPair(s, A.address, B.address)!), 'direct', 'filed under both sides');
  t.is(introducedPair(s, B.address, A.address), introducedPair(s, A.address, B.address));
  t.is(pairPath(introducedPair(before, A.address, B.address)!), 'relayed', 'the state it was given is unchanged');
});

const reports = test.macro({
  exec(t, report: ReturnType<typeof says>, membership: Membership, expected: string) {
    const s = pairAB();
    const { state, verdict } = reportPath(s, report, { membership, now: 0 });
    t.is(verdictOf(verdict), expected);
    t.is(introducedPair(state, A.address, B.address), introducedPair(s, A.address, B.address), 'the pair is as it was');
  },
  title: (provided = '') => provided,
});
test('a report about a peer it was never introduced to is refused', reports, says('A', '10.0.0.4', 100, true), ALL, 'refused unknown-pair');
test('a report about a pair of two other members is refused', reports, says('C', '10.0.0.2', 100, true), ALL, 'refused unknown-pair');
test("a report under the peer's id of the pair (or an earlier pair's) is stale", reports, says('A', '10.0.0.3', 101, true), ALL, 'refused stale');
test('a report from a member that was replaced is refused', reports, says('A', '10.0.0.3', 100, true), hubState({ members: [A, B, member('10.0.0.2', { id: 99 })] }).membership, 'refused unknown-pair');

test('reports are limited per member: a burst, then one per refill period; refused ones count too', (t) => {
  let s = pairAB();
  const limits = { burst: 2, refillMs: 1000 };
  const seen: string[] = [];
  for (const [r, now] of [[says('A', '10.0.0.4', 100, true), 0], [says('A', '10.0.0.3', 100, true), 0], [says('A', '10.0.0.3', 100, false), 500], [says('B', '10.0.0.2', 101, true), 500], [says('A', '10.0.0.3', 100, true), 1000]] as const) {
    const { state, verdict } = reportPath(s, r, { membership: ALL, now, limits });
    s = state;
    seen.push(verdictOf(verdict));
  }
  t.deepEqual(seen, ['refused unknown-pair', 'recorded d/r relayed', 'refused rate-limited', 'recorded d/d direct changed', 'recorded d/d direct']);
  t.true(PATH_REPORT_LIMITS.burst >= 2 * INTRODUCTION_LIMITS.maxPairs, 'by default every pair may change twice at once');
});

test("a re-introduction starts relayed, and a report of the pair it replaced is stale; a leaver's report budget is forgotten", (t) => {
  let s = reportPath(reportPath(pairAB(), says('A', '10.0.0.3', 100, true), { membership: ALL, now: 0 }).state, says('B', '10.0.0.2', 101, true), { membership: ALL, now: 0 }).state;
  let next = 500;
  const again = introduce(s, request('B', '10.0.0.2'), { ...context(), nextId: () => next++ });
  if (again.verdict.kind !== 'introduce') return t.fail('introduces');
  t.is(pairPath(again.verdict.pair), 'relayed');
  s = again.state;
  t.is(verdictOf(reportPath(s, says('A', '10.0.0.3', 100, true), { membership: ALL, now: 0 }).verdict), 'refused stale');
  t.deepEqual([...reportPath(s, says('A', '10.0.0.3', 501, true), { membership: ALL, now: 0 }).state.reports.keys()], [A.address, B.address]);
  const gone = hubState({ members: [B, C], events: [] }).membership;
  const { state } = withdrawals(s, { membership: gone, policy: context({ membership: gone }).policy });
  t.deepEqual([...state.reports.keys()], [B.address]);
});
