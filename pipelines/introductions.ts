// The hub's introduction policy for direct paths between members (docs/direct.md), pure: whether
// two members are introduced (a member's DIRECT-REQUEST, or a flow the hub forwards between two
// members), the INTRODUCTION each gets, and which introduced pairs a change of the hub's state
// ends (a member left or was replaced, isolation came on), with the WITHDRAWAL each live side gets,
// and what the members report of their pairs' paths (DIRECT-PATH: direct or relayed).
// Who may reach whom is the forwarding policy's word (forwarding.ts `separates`), never decided here
// again. The state is a value: every function returns a new one and leaves the one it got alone.
import type { HostPort } from '../operators/core/address.js';
import { PersistentMap } from '../operators/core/persistentMap.js';
import { MAX_ENDPOINTS, MAX_LOCAL_ENDPOINTS, PROTOCOL_VERSION, type DirectPath, type Introduction, type WithdrawReason, type Withdrawal } from '../operators/core/wire/control.js';
import type { ForwardingPolicy } from './forwarding.js';
import type { MemberRecord, Membership } from './membership.js';
import type { UdpCipher } from './ports.js';

/** How much one member may cause: `burst` introductions at once, one more every `refillMs`; at most `maxPairs` introduced peers. */
export const INTRODUCTION_LIMITS = { burst: 8, refillMs: 2000, maxPairs: 32 } as const;
/** How many DIRECT-PATH reports one member may make: `burst` at once (every pair it may have changing twice), one more every `refillMs`. */
export const PATH_REPORT_LIMITS = { burst: 2 * INTRODUCTION_LIMITS.maxPairs, refillMs: 250 } as const;

/** What the hub knows of a member's part in direct paths (its session keeps it; the wiring hands it in). */
export interface DirectFacts {
  /** It offered `direct`, and the hub runs with direct paths on. */
  readonly direct: boolean;
  /** Where its UDP datagrams come from (its channel's endpoint) while its UDP path to the hub is up; undefined otherwise. */
  readonly observed: HostPort | undefined;
  /** Its local endpoints from its latest DIRECT-REQUEST (at most MAX_LOCAL_ENDPOINTS are used). */
  readonly local: readonly HostPort[];
}

/** An introduced pair: members `a` and `b` (a's tunnel address the lower), the receiver id each takes the pair's datagrams under, and when. */
export interface IntroducedPair {
  readonly a: MemberRecord;
  readonly b: MemberRecord;
  readonly aId: number;
  readonly bId: number;
  /** The scheduler's time of the introduction. */
  readonly since: number;
  /** What each side last reported of its path to the other (DIRECT-PATH): direct, or not (relayed; also before any report). */
  readonly aDirect: boolean;
  readonly bDirect: boolean;
}

/** How the hub shows a pair: direct once both sides report their path direct, relayed otherwise. */
export const pairPath = (p: IntroducedPair): 'direct' | 'relayed' => (p.aDirect && p.bDirect ? 'direct' : 'relayed');

/** A member's introduction budget: a token bucket (fractional tokens) as of `at`. */
interface Budget {
  readonly tokens: number;
  readonly at: number;
}

/** The hub's introductions. Treat as immutable. */
export interface Introductions {
  /** Pairs by each side's address, then the other side's: every pair is filed under both. */
  readonly pairs: PersistentMap<number, PersistentMap<number, IntroducedPair>>;
  /** Budgets by member address (forgotten when no member holds the address). */
  readonly budgets: PersistentMap<number, Budget>;
  /** DIRECT-PATH report budgets by member address (forgotten likewise). */
  readonly reports: PersistentMap<number, Budget>;
}

/** Why the hub does not introduce: a reason it may tell the asking member, or (flows only) `introduced`: the pair already is. */
export type IntroductionRefusal = Exclude<WithdrawReason, 'left' | 'replaced'> | 'introduced';

/** What asks for an introduction. */
export type IntroductionAsk =
  /** A member's DIRECT-REQUEST with `peer` (a tunnel address): answered either way. */
  | { readonly kind: 'request'; readonly from: MemberRecord; readonly peer: number }
  /** The hub forwarded packets from one member to another: introduced if they may be, silently otherwise. */
  | { readonly kind: 'flow'; readonly from: MemberRecord; readonly to: MemberRecord };

/** A control message for a member. */
export interface Outgoing<M> {
  readonly to: MemberRecord;
  readonly message: M;
}

/** What the hub does about an ask. */
export type IntroductionVerdict =
  /** Send both introductions; `replaces` is the pair they supersede (its members replace it on receipt). */
  | { readonly kind: 'introduce'; readonly pair: IntroducedPair; readonly introductions: readonly [Outgoing<Introduction>, Outgoing<Introduction>]; readonly replaces: IntroducedPair | undefined }
  /** No introduction; `answer` (a request's) tells the asking member why. */
  | { readonly kind: 'refuse'; readonly reason: IntroductionRefusal; readonly answer: Outgoing<Withdrawal> | undefined };

/** What an introduction is decided and made from. */
export interface IntroductionContext {
  readonly membership: Membership;
  /** Who isolation keeps apart now. */
  readonly policy: Pick<ForwardingPolicy, 'separates'>;
  /** A member's part in direct paths; undefined for a member that has none (treated as no `direct`). */
  readonly facts: (member: MemberRecord) => DirectFacts | undefined;
  /** The scheduler's time now. */
  readonly now: number;
  /** The cipher of the hub's UDP socket (the pair's too). */
  readonly cipher: UdpCipher;
  /** 32 fresh random bytes: a pair key (the injected random source). */
  readonly randomKey: () => Uint8Array;
  /** A receiver id no socket of a member uses (the hub's session-id counter: ids are unique hub-wide). */
  readonly nextId: () => number;
  readonly limits?: { readonly burst: number; readonly refillMs: number; readonly maxPairs: number };
}

/** A pair that a change ended, and the WITHDRAWAL for each side that is still a member. */
export interface Withdrawn {
  readonly pair: IntroducedPair;
  readonly reason: 'left' | 'replaced' | 'isolation';
  readonly withdrawals: readonly Outgoing<Withdrawal>[];
}

const NO_PAIRS = PersistentMap.empty<number, IntroducedPair>();

/** No introductions yet. */
export function noIntroductions(): Introductions {
  return { pairs: PersistentMap.empty(), budgets: PersistentMap.empty(), reports: PersistentMap.empty() };
}

/** The pair of members at `x` and `y` (either order), if introduced. */
export function introducedPair(s: Introductions, x: number, y: number): IntroducedPair | undefined {
  return s.pairs.get(x)?.get(y);
}

/** `m` is the member its address belongs to now (not gone, not replaced). */
const live = (membership: Membership, m: MemberRecord): boolean => membership.members.get(m.address) === m;

/** The candidate endpoints of a member: the observed one first, then its local ones, without repeats, at most MAX_ENDPOINTS. */
function candidates(observed: HostPort, local: readonly HostPort[]): HostPort[] {
  const out: HostPort[] = [observed];
  for (const hp of local.slice(0, MAX_LOCAL_ENDPOINTS)) {
    if (out.length >= MAX_ENDPOINTS) break;
    if (!out.some((o) => o.host === hp.host && o.port === hp.port)) out.push(hp);
  }
  return out;
}

/** `budgets` with a token taken from `address`'s bucket (`burst` tokens, one more every `refillMs`), or undefined when it has none. */
function charged(budgets: PersistentMap<number, Budget>, address: number, now: number, limits: { readonly burst: number; readonly refillMs: number }): PersistentMap<number, Budget> | undefined {
  const b = budgets.get(address);
  const tokens = b === undefined ? limits.burst : Math.min(limits.burst, b.tokens + Math.max(0, now - b.at) / limits.refillMs);
  return tokens < 1 ? undefined : budgets.set(address, { tokens: tokens - 1, at: now });
}

/** `s` with `pair` filed under both its sides (replacing what was there). */
function withPair(s: Introductions, pair: IntroducedPair): Introductions {
  const file = (pairs: Introductions['pairs'], x: MemberRecord, y: MemberRecord) => pairs.set(x.address, (pairs.get(x.address) ?? NO_PAIRS).set(y.address, pair));
  return { ...s, pairs: file(file(s.pairs, pair.a, pair.b), pair.b, pair.a) };
}

/** `s` without the pair of addresses `x` and `y`. */
function withoutPair(s: Introductions, x: number, y: number): Introductions {
  const unfile = (pairs: Introductions['pairs'], from: number, other: number) => {
    const mine = pairs.get(from)?.delete(other);
    return mine === undefined ? pairs : mine.size === 0 ? pairs.delete(from) : pairs.set(from, mine);
  };
  return { ...s, pairs: unfile(unfile(s.pairs, x, y), y, x) };
}

/**
 * Decides an ask and makes what follows from it. A request is charged to its member's budget
 * first (so a member asking in a loop is limited whatever it asks); a flow only when it would
 * introduce. Checks, in order: the asking member is live (else a silent `unknown-peer`), the peer is
 * a live member (`unknown-peer`), not the asker (`same-member`), isolation (`isolation`), both offer
 * `direct` (`no-direct`), both have their UDP path up (`no-udp`), a flow's pair is not introduced
 * yet (`introduced`), neither has maxPairs peers (`too-many-pairs`, unless the pair is re-introduced),
 * a flow's budget (`rate-limited`). An introduction has a fresh key and two fresh receiver ids; a
 * request for a pair that is already introduced re-introduces it (its members replace the old one).
 */
export function introduce(s: Introductions, ask: IntroductionAsk, ctx: IntroductionContext): { readonly state: Introductions; readonly verdict: IntroductionVerdict } {
  const limits = ctx.limits ?? INTRODUCTION_LIMITS;
  const from = ask.from;
  let state = s;
  const refuse = (reason: IntroductionRefusal, peer: number): { state: Introductions; verdict: IntroductionVerdict } => ({
    state,
    verdict: { kind: 'refuse', reason, answer: ask.kind === 'request' && reason !== 'introduced' && live(ctx.membership, from) ? { to: from, message: { version: PROTOCOL_VERSION, peer, reason } } : undefined },
  });
  const peerAddress = ask.kind === 'request' ? ask.peer : ask.to.address;
  if (!live(ctx.membership, from)) return refuse('unknown-peer', peerAddress);

  /** Takes a token from `from`'s budget: false when it has none. */
  const charge = (): boolean => {
    const budgets = charged(state.budgets, from.address, ctx.now, limits);
    if (budgets === undefined) return false;
    state = { ...state, budgets };
    return true;
  };
  if (ask.kind === 'request' && !charge()) return refuse('rate-limited', peerAddress);

  const peer = ctx.membership.members.get(peerAddress);
  if (peer === undefined || (ask.kind === 'flow' && peer !== ask.to)) return refuse('unknown-peer', peerAddress);
  if (peer === from) return refuse('same-member', peerAddress);
  if (ctx.policy.separates(from, peer)) return refuse('isolation', peerAddress);
  const mine = ctx.facts(from);
  const theirs = ctx.facts(peer);
  if (mine?.direct !== true || theirs?.direct !== true) return refuse('no-direct', peerAddress);
  if (mine.observed === undefined || theirs.observed === undefined) return refuse('no-udp', peerAddress);
  const existing = introducedPair(state, from.address, peer.address);
  if (ask.kind === 'flow' && existing !== undefined) return refuse('introduced', peerAddress);
  const full = (m: MemberRecord): boolean => (state.pairs.get(m.address)?.size ?? 0) >= limits.maxPairs;
  if (existing === undefined && (full(from) || full(peer))) return refuse('too-many-pairs', peerAddress);
  if (ask.kind === 'flow' && !charge()) return refuse('rate-limited', peerAddress);

  interface Side {
    readonly member: MemberRecord;
    readonly id: number;
    readonly observed: HostPort;
    readonly local: readonly HostPort[];
  }
  const asker: Side = { member: from, id: ctx.nextId(), observed: mine.observed, local: mine.local };
  const other: Side = { member: peer, id: ctx.nextId(), observed: theirs.observed, local: theirs.local };
  const [a, b] = from.address < peer.address ? [asker, other] : [other, asker];
  const pair: IntroducedPair = { a: a.member, b: b.member, aId: a.id, bId: b.id, since: ctx.now, aDirect: false, bDirect: false };
  const key = ctx.randomKey();
  if (key.length !== 32) throw new RangeError(`a pair key is 32 bytes, not ${key.length}`);
  const to = (x: Side, y: Side): Outgoing<Introduction> => ({
    to: x.member,
    message: { version: PROTOCOL_VERSION, peer: y.member.address, routes: [...y.member.routes], endpoints: candidates(y.observed, y.local), key, cipher: ctx.cipher, id: x.id, peerId: y.id, self: x.observed },
  });
  return { state: withPair(state, pair), verdict: { kind: 'introduce', pair, introductions: [to(a, b), to(b, a)], replaces: existing } };
}

/**
 * The pairs a change of the hub's state ends, and the state without them: a pair one of whose
 * members is no longer the member of its address (`left`: nobody holds it; `replaced`: a newer
 * session does), or that isolation now separates (`isolation`). Each side that is still a member gets
 * a WITHDRAWAL naming its own receiver id. Only pairs of `touched` addresses are looked at when it
 * is given (a join or a leave), every pair otherwise (a reload). Budgets (introductions' and
 * reports') of addresses nobody holds are forgotten.
 */
export function withdrawals(s: Introductions, ctx: Pick<IntroductionContext, 'membership' | 'policy'>, touched?: Iterable<number>): { readonly state: Introductions; readonly withdrawn: readonly Withdrawn[] } {
  const m = ctx.membership;
  let state = s;
  const withdrawn: Withdrawn[] = [];
  const addresses = touched === undefined ? [...s.pairs.keys(), ...s.budgets.keys(), ...s.reports.keys()] : [...touched];
  for (const address of addresses) {
    if (m.members.get(address) === undefined && (state.budgets.has(address) || state.reports.has(address))) {
      state = { ...state, budgets: state.budgets.delete(address), reports: state.reports.delete(address) };
    }
    for (const pair of state.pairs.get(address)?.values() ?? []) {
      const gone = (x: MemberRecord): 'left' | 'replaced' | undefined => (live(m, x) ? undefined : m.members.get(x.address) === undefined ? 'left' : 'replaced');
      const reason = gone(pair.a) ?? gone(pair.b) ?? (ctx.policy.separates(pair.a, pair.b) ? 'isolation' : undefined);
      if (reason === undefined) continue;
      const tell = (x: MemberRecord, xId: number, y: MemberRecord): Outgoing<Withdrawal>[] => (live(m, x) ? [{ to: x, message: { version: PROTOCOL_VERSION, peer: y.address, reason: reason === 'isolation' ? reason : (gone(y) ?? reason), id: xId } }] : []);
      withdrawn.push({ pair, reason, withdrawals: [...tell(pair.a, pair.aId, pair.b), ...tell(pair.b, pair.bId, pair.a)] });
      state = withoutPair(state, pair.a.address, pair.b.address);
    }
  }
  return { state, withdrawn };
}

/** What the hub makes of a member's DIRECT-PATH. */
export type PathReportVerdict =
  /** Recorded: `pair` as it is now; `changed` when the path the hub shows for it (pairPath) changed. */
  | { readonly kind: 'recorded'; readonly pair: IntroducedPair; readonly changed: boolean }
  /**
   * Not recorded (a drop, counted as `unexpected-control`): `unknown-pair` (the member is not live or
   * was never introduced to `peer`), `stale` (`id` is not its id of the current pair: an earlier
   * pair's, or another's), `rate-limited` (over PATH_REPORT_LIMITS).
   */
  | { readonly kind: 'refused'; readonly reason: 'unknown-pair' | 'stale' | 'rate-limited' };

/**
 * A member's report of its path to an introduced peer, taken as hostile input: charged to the
 * member's report budget first, recorded only for a pair the hub introduced to that member and
 * under the member's own receiver id of it. Changes nothing else (the hub decides nothing on it).
 */
export function reportPath(
  s: Introductions,
  report: { readonly from: MemberRecord; readonly message: DirectPath },
  ctx: Pick<IntroductionContext, 'membership' | 'now'> & { readonly limits?: { readonly burst: number; readonly refillMs: number } },
): { readonly state: Introductions; readonly verdict: PathReportVerdict } {
  const { from, message } = report;
  const refused = (state: Introductions, reason: 'unknown-pair' | 'stale' | 'rate-limited') => ({ state, verdict: { kind: 'refused', reason } as const });
  if (!live(ctx.membership, from)) return refused(s, 'unknown-pair');
  const reports = charged(s.reports, from.address, ctx.now, ctx.limits ?? PATH_REPORT_LIMITS);
  if (reports === undefined) return refused(s, 'rate-limited');
  const state = { ...s, reports };
  const pair = introducedPair(state, from.address, message.peer);
  if (pair === undefined || (pair.a !== from && pair.b !== from)) return refused(state, 'unknown-pair');
  if ((pair.a === from ? pair.aId : pair.bId) !== message.id) return refused(state, 'stale');
  const now: IntroducedPair = pair.a === from ? { ...pair, aDirect: message.direct } : { ...pair, bDirect: message.direct };
  return { state: withPair(state, now), verdict: { kind: 'recorded', pair: now, changed: pairPath(now) !== pairPath(pair) } };
}
