// Admission (pipelines/admission.ts): every refusal the hub can answer a claim with, what the peer
// is told and what the hub logs, the events a verdict carries, and the admits (static, assigned,
// pinned, replacing a stale or silent session, a 0.0.1-era client, gso, LAN routes). States are
// made with the real reducers; admit must leave the state it was given as it was.
import test, { type ExecutionContext } from 'ava';
import { admit, type AdmissionSettings, type Admitted, type Claim, type Refused, type Verdict } from '../pipelines/admission.js';
import type { HubState } from '../pipelines/hubState.js';
import type { AuthDecision, AuthRequest, Authenticator } from '../pipelines/ports.js';
import type { GuardedPrefix } from '../pipelines/routeGuard.js';
import { ControlDecodeError, REJECT_REASONS, type Hello, type RejectReason } from '../operators/core/wire/control.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { makeAuthenticator, type AuthPolicy } from '../src/auth.js';
import { ADMISSION, SPACE, cidr, hubState, ip, member, snapshot, type HubStateOptions } from './helpers/hub-state.js';
import { clusterAdmission, initialClusterView, reduceCluster, type ClusterView } from '../pipelines/clusterView.js';
import { K, addrKv, routeKv, stickyKv, upView } from './helpers/cluster.js';

/** A cluster in which hub `b` serves 10.0.0.5 (with 192.168.10.0/24 behind it) and 10.0.0.6, and 10.0.0.7 is leased to another client; this hub is `a`. */
const CLUSTER = upView('a', [addrKv('10.0.0.5', 'b', 3, { remote: '172.31.0.9:4000' }), addrKv('10.0.0.6', 'b', 3), stickyKv('10.0.0.7', 'id:someone-else', 4), routeKv('192.168.10.0/24', 'b', '10.0.0.5', 3)]);
/** The same cluster while this hub cannot reach the store. */
const CLUSTER_DOWN = reduceCluster(CLUSTER, { type: 'store-failed', at: 1, detail: 'timeout: no answer from http://10.1.0.1:2379 within 2 s' });

/** scheduler.now() of every claim. */
const NOW = 100_000;
/** A holder heard 5 s ago (within the 30 s timeout). */
const LIVE = NOW - 5_000;
/** A holder silent for 40 s (past the 30 s timeout). */
const SILENT = NOW - 40_000;
/** Where the claimant connects from. */
const REMOTE = '203.0.113.9:5555';
const HOST = '203.0.113.9';

const IDA = 'a'.repeat(32);
const IDB = 'b'.repeat(32);
const LEASE_A = `id:${IDA}`;

/** What a state records of the claimant's failed authentication. */
const PENALIZED: Refused['events'] = [{ type: 'auth-failed', host: HOST, now: NOW }];
/** Client A's session at 10.0.0.5, heard 5 s ago or silent for 40 s. */
const A_LIVE = member('10.0.0.5', { lease: LEASE_A, lastSeen: LIVE });
const A_SILENT = member('10.0.0.5', { lease: LEASE_A, lastSeen: SILENT });
/** Alice's pin, and her session on it heard 5 s ago. */
const ALICE_PIN = { '10.0.0.7': 'alice' } as const;
const ALICE_LIVE = member('10.0.0.7', { identity: 'alice', exclusive: true, lease: 'token:alice', lastSeen: LIVE });
/** What a replaced session of `name` is logged and told. */
const reconnected = (name: string): { detail: string; told: string } => ({ detail: `${name} reconnected from ${REMOTE}`, told: `a newer session of this client's identity (${name}) took over its address` });

const NETWORK_TOKEN: AuthPolicy = { networkToken: 'network-secret', requireClientCert: false };
const ALICE_PINNED: AuthPolicy = { clients: [{ name: 'alice', token: 'alice-secret', address: ip('10.0.0.7') }], networkToken: 'network-secret', requireClientCert: false };
/** A network-token hub that blocked the claimant's host for 1 s, 1 s ago; and what forgets that penalty. */
const BLOCK_RAN_OUT: Pick<Claimed, 'auth' | 'state'> = { auth: NETWORK_TOKEN, state: { events: [{ type: 'auth-failed', host: HOST, now: NOW - 1_000 }] } };
const FORGIVEN: Refused['events'] = [{ type: 'auth-passed', host: HOST }];
/** A hub where alice (token alice-secret) is pinned to 10.0.0.7, and others use the network token. */
const ALICE_HUB: Pick<Claimed, 'auth' | 'state'> = { auth: ALICE_PINNED, state: { reserved: ALICE_PIN } };
const ALICE_LIMITED: AuthPolicy = { clients: [{ name: 'alice', token: 'alice-secret', routes: [cidr('192.168.10.0/24')] }], requireClientCert: false };

/** A HELLO of protocol version 1 with `fields`. */
const hello = (fields: Partial<Hello> = {}): Claim => ({ kind: 'hello', hello: { version: 1, ...fields } });
/** The first packet of a 0.0.1-era client, from `address`. */
const learned = (address: string): Claim => ({ kind: 'learned', address: ip(address) });
const routes = (...list: string[]): Hello['routes'] => list.map(cidr);
/** A HELLO for 10.0.0.5 that announces `list`. */
const announcing = (...list: string[]): Claim => hello({ address: ip('10.0.0.5'), routes: routes(...list) });
/** `n` /24 LANs 192.168.FROM.0/24 onwards, as CIDR text. */
const lans = (from: number, n: number): string[] => Array.from({ length: n }, (_, i) => `192.168.${from + i}.0/24`);

/** One claim and what surrounds it. */
interface Claimed {
  readonly claim: Claim;
  readonly state?: HubStateOptions;
  readonly settings?: Partial<AdmissionSettings>;
  readonly auth?: AuthPolicy;
  readonly underlay?: readonly GuardedPrefix[];
  readonly remote?: string;
  readonly peerIdentity?: string;
  /** How often the authenticator must have been asked (checked when given). */
  readonly authCalls?: number;
  /** The hub is in a cluster with this view (test/helpers/hub-state.ts clusterOf). */
  readonly cluster?: ClusterView;
}

/** An authenticator that counts how often it was asked. */
function counting(inner: Authenticator): Authenticator & { readonly calls: () => number } {
  let calls = 0;
  return {
    authenticate(request: AuthRequest): AuthDecision {
      calls++;
      return inner.authenticate(request);
    },
    calls: () => calls,
  };
}

/** Admits `c` against a frozen state and checks that the state reads the same afterwards. */
function decide(t: ExecutionContext, c: Claimed): { verdict: Verdict; state: HubState } {
  const state = hubState(c.state);
  Object.freeze(state);
  Object.freeze(state.membership);
  const before = snapshot(state);
  const authenticator = c.auth === undefined ? undefined : counting(makeAuthenticator(c.auth));
  const verdict = admit(
    c.claim,
    { remote: c.remote ?? REMOTE, peerIdentity: c.peerIdentity, now: NOW },
    state,
    { ...ADMISSION, ...c.settings },
    { ...(authenticator === undefined ? {} : { authenticator }), underlay: c.underlay ?? [], ...(c.cluster === undefined ? {} : { cluster: clusterAdmission(() => c.cluster!) }) },
  );
  t.deepEqual(snapshot(state), before, 'admit changed the state it was given');
  if (c.authCalls !== undefined) t.is(authenticator?.calls(), c.authCalls, 'authenticator calls');
  return { verdict, state };
}

// ---------------------------------------------------------------------------------------------
// Refusals

interface RefusalCase extends Claimed {
  readonly title: string;
  readonly reason: RejectReason;
  /** What the peer is told. */
  readonly detail: string;
  /** What the hub logs; the detail when not given. */
  readonly logDetail?: string;
  /** The address asked for, as text. */
  readonly address: string | undefined;
  readonly events?: Refused['events'];
}

const refuses = test.macro({
  exec(t, c: RefusalCase) {
    const { verdict } = decide(t, c);
    const expected: Refused = { ok: false, reason: c.reason, detail: c.detail, logDetail: c.logDetail ?? c.detail, address: c.address, events: c.events ?? [] };
    t.deepEqual(verdict, expected);
  },
  title: (_provided, c: RefusalCase) => c.title,
});

const UNDERLAY_TOLD = 'covers an underlay address or network that the hub or a member needs outside the tunnel';

const REFUSALS: readonly RefusalCase[] = [
  {
    title: 'a HELLO that could not be decoded is refused as bad-hello with what the decoder said',
    claim: { kind: 'hello', hello: new ControlDecodeError(FrameType.Hello, 'version: expected an integer') },
    reason: 'bad-hello',
    detail: 'version: expected an integer',
    address: undefined,
  },
  {
    title: 'a HELLO without an address that does not ask for one is refused as bad-hello',
    claim: hello({ id: IDA }),
    reason: 'bad-hello',
    detail: 'HELLO carries no address and does not ask for one (set -t on the client, or send "assign": true)',
    address: undefined,
  },
  {
    title: 'a HELLO that asks for an address without an id or a named identity is refused as bad-hello',
    claim: hello({ assign: true }),
    reason: 'bad-hello',
    detail: 'a HELLO that asks for an address must carry an "id" (or authenticate as a named client)',
    address: undefined,
  },
  {
    title: 'a LAN announced twice (or inside another announced one) is refused as bad-hello',
    claim: announcing('192.168.10.0/24', '192.168.10.128/25'),
    reason: 'bad-hello',
    detail: '192.168.10.128/25 is announced twice or overlaps another announced route',
    address: '10.0.0.5',
  },
  {
    title: 'a HELLO of protocol version 0 is refused as unsupported-version',
    claim: hello({ version: 0, address: ip('10.0.0.5') }),
    reason: 'unsupported-version',
    detail: 'protocol version 0 is not supported (this hub speaks 1)',
    address: undefined,
  },
  {
    title: 'a 0.0.1-era client is refused as auth-required by a hub that requires authentication',
    claim: learned('10.0.0.4'),
    auth: NETWORK_TOKEN,
    authCalls: 0,
    reason: 'auth-required',
    detail: 'this hub requires authentication, which 0.0.1-era clients (no HELLO) cannot do',
    address: '10.0.0.4',
  },
  {
    title: 'a wrong token is refused as auth-failed and penalizes the source host',
    claim: hello({ address: ip('10.0.0.5'), token: 'guess' }),
    auth: NETWORK_TOKEN,
    authCalls: 1,
    reason: 'auth-failed',
    detail: 'wrong token',
    address: '10.0.0.5',
    events: PENALIZED,
  },
  {
    title: 'a source whose block has run out is asked again, and a wrong token penalizes it again',
    claim: hello({ address: ip('10.0.0.5'), token: 'guess' }),
    ...BLOCK_RAN_OUT,
    authCalls: 1,
    reason: 'auth-failed',
    detail: 'wrong token',
    address: '10.0.0.5',
    events: PENALIZED,
  },
  {
    title: 'a HELLO without a token is refused as auth-failed by a hub with tokens',
    claim: hello({ assign: true, id: IDA }),
    auth: NETWORK_TOKEN,
    reason: 'auth-failed',
    detail: 'this hub requires a token (-token or -token-file on the client)',
    address: undefined,
    events: PENALIZED,
  },
  {
    title: 'a client pinned to one address asking for another is refused as address-not-allowed (and penalized)',
    claim: hello({ address: ip('10.0.0.8'), token: 'alice-secret' }),
    ...ALICE_HUB,
    reason: 'address-not-allowed',
    detail: 'client alice may only use 10.0.0.7, not 10.0.0.8',
    address: '10.0.0.8',
    events: PENALIZED,
  },
  {
    title: 'an address pinned to another client is refused as address-not-allowed',
    claim: hello({ address: ip('10.0.0.7'), token: 'network-secret' }),
    ...ALICE_HUB,
    reason: 'address-not-allowed',
    detail: '10.0.0.7 is reserved for client alice',
    address: '10.0.0.7',
    events: PENALIZED,
  },
  {
    title: 'a source blocked after failed authentications is refused as rate-limited before its token is compared',
    claim: hello({ address: ip('10.0.0.5'), token: 'network-secret' }),
    state: {
      events: [
        { type: 'auth-failed', host: HOST, now: NOW - 1_000 },
        { type: 'auth-failed', host: HOST, now: NOW - 900 },
      ],
    },
    auth: NETWORK_TOKEN,
    authCalls: 0,
    reason: 'rate-limited',
    detail: `2 failed authentication(s) from ${HOST}: try again in 2 s`,
    address: '10.0.0.5',
  },
  {
    title: 'a block is kept per host: another port of the same host is rate-limited too',
    claim: hello({ assign: true, id: IDA, token: 'network-secret' }),
    remote: `${HOST}:6000`,
    state: { events: [{ type: 'auth-failed', host: HOST, now: NOW - 200 }] },
    auth: NETWORK_TOKEN,
    authCalls: 0,
    reason: 'rate-limited',
    detail: `1 failed authentication(s) from ${HOST}: try again in 1 s`,
    address: undefined,
  },
  {
    title: 'a source that authenticates has its penalty forgotten even when its address is refused',
    claim: hello({ address: ip('10.0.1.5'), token: 'network-secret' }),
    ...BLOCK_RAN_OUT,
    authCalls: 1,
    reason: 'outside-subnet',
    detail: "10.0.1.5 is outside the hub's network 10.0.0.0/24",
    address: '10.0.1.5',
    events: FORGIVEN,
  },
  {
    title: 'a source that authenticates has its penalty forgotten even when its LANs are refused',
    claim: hello({ address: ip('10.0.0.5'), token: 'network-secret', routes: routes('172.16.0.0/24') }),
    ...BLOCK_RAN_OUT,
    reason: 'route-not-allowed',
    detail: '172.16.0.0/24 is not allowed (allowed: 192.168.0.0/16)',
    address: '10.0.0.5',
    events: FORGIVEN,
  },
  {
    title: "an address outside the hub's network is refused as outside-subnet",
    claim: hello({ address: ip('10.0.1.5') }),
    reason: 'outside-subnet',
    detail: "10.0.1.5 is outside the hub's network 10.0.0.0/24",
    address: '10.0.1.5',
  },
  {
    title: 'the network address is refused as outside-subnet',
    claim: hello({ address: ip('10.0.0.0') }),
    reason: 'outside-subnet',
    detail: '10.0.0.0 is the network or broadcast address of 10.0.0.0/24',
    address: '10.0.0.0',
  },
  {
    title: 'the broadcast address is refused as outside-subnet',
    claim: hello({ address: ip('10.0.0.255') }),
    reason: 'outside-subnet',
    detail: '10.0.0.255 is the network or broadcast address of 10.0.0.0/24',
    address: '10.0.0.255',
  },
  {
    title: 'a 0.0.1-era client from outside the network is refused as outside-subnet',
    claim: learned('10.0.1.5'),
    reason: 'outside-subnet',
    detail: "10.0.1.5 is outside the hub's network 10.0.0.0/24",
    address: '10.0.1.5',
  },
  {
    title: "the hub's own address is refused as hub-address",
    claim: hello({ address: ip('10.0.0.1') }),
    reason: 'hub-address',
    detail: "10.0.0.1 is the hub's own address",
    address: '10.0.0.1',
  },
  {
    title: 'an address leased to another identity is refused as leased-to-other',
    claim: hello({ address: ip('10.0.0.9'), id: IDB }),
    state: { leases: { [LEASE_A]: '10.0.0.9' } },
    reason: 'leased-to-other',
    detail: '10.0.0.9 is leased to another client',
    address: '10.0.0.9',
  },
  {
    title: 'a leased address is refused as leased-to-other to a client without an id',
    claim: hello({ address: ip('10.0.0.9') }),
    state: { leases: { [LEASE_A]: '10.0.0.9' } },
    reason: 'leased-to-other',
    detail: '10.0.0.9 is leased to another client',
    address: '10.0.0.9',
  },
  {
    title: 'a client asking for an address when every pool address is leased or in use is refused as pool-exhausted',
    claim: hello({ assign: true, id: IDB }),
    state: { space: { ...SPACE, pool: { first: ip('10.0.0.2'), last: ip('10.0.0.3') } }, leases: { [LEASE_A]: '10.0.0.2' }, members: [member('10.0.0.3')] },
    reason: 'pool-exhausted',
    detail: 'no free address in 10.0.0.2-10.0.0.3 (1 leased, 1 in use)',
    address: undefined,
  },
  {
    title: "an address a live member holds is refused as ip-conflict without telling the holder's endpoint",
    claim: hello({ address: ip('10.0.0.5'), id: IDB }),
    state: { members: [A_LIVE] },
    reason: 'ip-conflict',
    detail: '10.0.0.5 is in use by another member',
    logDetail: '10.0.0.5 is in use by 198.51.100.5:40000 (last heard 5 s ago)',
    address: '10.0.0.5',
  },
  {
    title: 'a 0.0.1-era client on the address of a live member is refused as ip-conflict',
    claim: learned('10.0.0.5'),
    state: { members: [member('10.0.0.5', { lastSeen: NOW - 29_400 })] },
    reason: 'ip-conflict',
    detail: '10.0.0.5 is in use by another member',
    logDetail: '10.0.0.5 is in use by 198.51.100.5:40000 (last heard 29 s ago)',
    address: '10.0.0.5',
  },
  {
    title: "a second client of a single-client hub is refused as single-client without telling the member's endpoint",
    claim: hello({ address: ip('10.0.0.5') }),
    settings: { multiClient: false },
    state: { members: [member('10.0.0.2', { lastSeen: LIVE })] },
    reason: 'single-client',
    detail: 'the hub serves one client at a time (multi_client is false) and another client is connected',
    logDetail: 'the hub serves one client at a time (multi_client is false) and 198.51.100.2:40000 is connected',
    address: '10.0.0.5',
  },
  {
    title: 'a static client beyond max_clients is refused as max-clients',
    claim: hello({ address: ip('10.0.0.5') }),
    settings: { maxClients: 2 },
    state: { members: [member('10.0.0.2'), member('10.0.0.3')] },
    reason: 'max-clients',
    detail: 'the hub already has 2 members (max_clients 2)',
    address: '10.0.0.5',
  },
  {
    title: 'a client without a lease beyond max_clients is refused as max-clients before an address is picked',
    claim: hello({ assign: true, id: IDB }),
    settings: { maxClients: 1 },
    state: { members: [member('10.0.0.2')] },
    reason: 'max-clients',
    detail: 'the hub already has 1 members (max_clients 1)',
    address: undefined,
  },
  {
    title: 'a LAN outside allow_routes is refused as route-not-allowed',
    claim: announcing('172.16.0.0/24'),
    reason: 'route-not-allowed',
    detail: '172.16.0.0/24 is not allowed (allowed: 192.168.0.0/16)',
    address: '10.0.0.5',
  },
  {
    title: 'a LAN on a hub that allows none is refused as route-not-allowed',
    claim: announcing('192.168.10.0/24'),
    settings: { allowRoutes: [] },
    reason: 'route-not-allowed',
    detail: '192.168.10.0/24 is not allowed (the hub allows no LAN routes (-allow-routes))',
    address: '10.0.0.5',
  },
  {
    title: 'a LAN overlapping the tunnel network is refused as route-not-allowed',
    claim: announcing('10.0.0.0/16'),
    settings: { allowRoutes: [cidr('0.0.0.0/0')] },
    reason: 'route-not-allowed',
    detail: '10.0.0.0/16 overlaps the tunnel network 10.0.0.0/24',
    address: '10.0.0.5',
  },
  {
    title: 'a LAN outside the routes the tokens file gives the client is refused as route-not-allowed',
    claim: hello({ address: ip('10.0.0.5'), token: 'alice-secret', routes: routes('192.168.20.0/24') }),
    auth: ALICE_LIMITED,
    reason: 'route-not-allowed',
    detail: '192.168.20.0/24 is not among the routes this client may announce (192.168.10.0/24)',
    address: '10.0.0.5',
  },
  {
    title: 'more than 16 announced LANs are refused as route-not-allowed',
    claim: announcing(...lans(0, 17)),
    reason: 'route-not-allowed',
    detail: '17 routes announced; at most 16',
    address: '10.0.0.5',
  },
  {
    title: "a LAN covering the hub's underlay is refused as route-not-allowed; only the log says what it covered",
    claim: announcing('192.168.1.0/24'),
    underlay: [{ prefix: cidr('192.168.1.0/24'), what: 'the network 192.168.1.0/24 on eth0' }],
    reason: 'route-not-allowed',
    detail: `192.168.1.0/24 ${UNDERLAY_TOLD}`,
    logDetail: '192.168.1.0/24 covers the network 192.168.1.0/24 on eth0',
    address: '10.0.0.5',
  },
  {
    title: "a LAN covering another member's endpoint is refused as route-not-allowed; only the log names the member",
    claim: announcing('192.168.50.0/24'),
    state: { members: [member('10.0.0.2', { remote: '192.168.50.7:40000' })] },
    reason: 'route-not-allowed',
    detail: `192.168.50.0/24 ${UNDERLAY_TOLD}`,
    logDetail: '192.168.50.0/24 covers the address member 10.0.0.2 connects from (192.168.50.7:40000)',
    address: '10.0.0.5',
  },
  {
    title: 'a LAN covering the address the client connects from is refused as route-not-allowed',
    claim: announcing('192.168.60.0/24'),
    remote: '192.168.60.3:5555',
    reason: 'route-not-allowed',
    detail: `192.168.60.0/24 ${UNDERLAY_TOLD}`,
    logDetail: '192.168.60.0/24 covers the address this member connects from (192.168.60.3:5555)',
    address: '10.0.0.5',
  },
  {
    title: 'a LAN overlapping a special range is refused as route-not-allowed, naming the range',
    claim: announcing('127.0.0.0/8'),
    settings: { allowRoutes: [cidr('0.0.0.0/0')] },
    reason: 'route-not-allowed',
    detail: '127.0.0.0/8 overlaps the loopback range 127.0.0.0/8',
    logDetail: '127.0.0.0/8 covers the loopback range 127.0.0.0/8',
    address: '10.0.0.5',
  },
  {
    title: "a LAN beyond the hub's 24 routes is refused as route-not-allowed",
    claim: announcing('192.168.100.0/24'),
    state: { members: [member('10.0.0.2', { routes: lans(0, 16) }), member('10.0.0.3', { routes: lans(16, 8) })] },
    reason: 'route-not-allowed',
    detail: "the hub's route table is full (24 of 24 LAN routes in use)",
    address: '10.0.0.5',
  },
  {
    title: "a LAN overlapping another member's LAN is refused as route-overlap",
    claim: announcing('192.168.10.128/25'),
    state: { members: [member('10.0.0.2', { routes: ['192.168.10.0/24'] })] },
    reason: 'route-overlap',
    detail: '192.168.10.128/25 overlaps 192.168.10.0/24 behind 10.0.0.2',
    address: '10.0.0.5',
  },
  {
    title: 'a client refused for its LANs does not count as replacing its own live session',
    claim: hello({ address: ip('10.0.0.5'), id: IDA, routes: routes('192.168.10.0/24') }),
    state: { members: [member('10.0.0.2', { routes: ['192.168.10.0/24'] }), A_LIVE] },
    reason: 'route-overlap',
    detail: '192.168.10.0/24 overlaps 192.168.10.0/24 behind 10.0.0.2',
    address: '10.0.0.5',
  },
  {
    title: 'a client refused for room does not count as replacing its own live session',
    claim: hello({ address: ip('10.0.0.5'), id: IDA }),
    settings: { maxClients: 1 },
    state: { members: [member('10.0.0.2'), A_LIVE] },
    reason: 'max-clients',
    detail: 'the hub already has 1 members (max_clients 1)',
    address: '10.0.0.5',
  },
  {
    title: 'an identity whose live session replaced itself 3 times within 60 s is refused as duplicate-identity and held',
    claim: hello({ address: ip('10.0.0.5'), id: IDA }),
    state: {
      members: [A_LIVE],
      events: [30_000, 20_000, 10_000].map((ago) => ({ type: 'replaced-live', identity: LEASE_A, now: NOW - ago })),
    },
    reason: 'duplicate-identity',
    detail: `the identity ${LEASE_A} is in use by another live client and replaced itself 3 times within 60 s: two clients share one identity (a copied state directory's client-id, or one token on two machines); give each client its own`,
    logDetail: `${LEASE_A} is in use by 198.51.100.5:40000 (last heard 5 s ago) and replaced itself 3 times within 60 s: two clients share it`,
    address: '10.0.0.5',
    events: [{ type: 'clone-refused', identity: LEASE_A, now: NOW }],
  },
  {
    title: 'a named client is refused as duplicate-identity while its clone hold lasts, and the hold is extended',
    claim: hello({ assign: true, token: 'alice-secret' }),
    auth: ALICE_PINNED,
    state: {
      reserved: ALICE_PIN,
      members: [ALICE_LIVE],
      events: [{ type: 'clone-refused', identity: 'alice', now: NOW - 200_000 }],
    },
    reason: 'duplicate-identity',
    detail: "the identity alice is in use by another live client and replaced itself 0 times within 60 s: two clients share one identity (a copied state directory's client-id, or one token on two machines); give each client its own",
    logDetail: 'alice is in use by 198.51.100.7:40000 (last heard 5 s ago) and replaced itself 0 times within 60 s: two clients share it',
    address: '10.0.0.7',
    events: [{ type: 'clone-refused', identity: 'alice', now: NOW }],
  },
  {
    title: 'on a hub of a cluster that cannot reach its store, a join the hub would admit is refused as cluster-unavailable (the penalty forgotten all the same)',
    claim: hello({ address: ip('10.0.0.9'), id: IDA, token: 'network-secret' }),
    ...BLOCK_RAN_OUT,
    cluster: CLUSTER_DOWN,
    reason: 'cluster-unavailable',
    detail: 'the hub cannot reach its cluster store; try again later',
    logDetail: 'the hub cannot reach its cluster store (timeout: no answer from http://10.1.0.1:2379 within 2 s)',
    address: '10.0.0.9',
    events: FORGIVEN,
  },
  {
    title: 'a hub of a cluster that has not joined it yet refuses as cluster-unavailable',
    claim: hello({ address: ip('10.0.0.9') }),
    cluster: initialClusterView('a', K),
    reason: 'cluster-unavailable',
    detail: 'the hub has not joined its cluster yet; try again later',
    logDetail: 'the hub has not joined its cluster yet',
    address: '10.0.0.9',
  },
  {
    title: 'an address a member of another hub holds is refused as ip-conflict, and only the log names the hub',
    claim: hello({ address: ip('10.0.0.5'), id: IDA }),
    cluster: CLUSTER,
    reason: 'ip-conflict',
    detail: '10.0.0.5 is in use by another member',
    logDetail: '10.0.0.5 is in use by a member of hub b (172.31.0.9:4000)',
    address: '10.0.0.5',
  },
  {
    title: 'an address the cluster leased to another identity is refused as leased-to-other',
    claim: hello({ address: ip('10.0.0.7'), id: IDA }),
    cluster: CLUSTER,
    reason: 'leased-to-other',
    detail: '10.0.0.7 is leased to another client',
    logDetail: '10.0.0.7 is leased to id:someone-else in the cluster',
    address: '10.0.0.7',
  },
  {
    title: 'a LAN overlapping one behind a member of another hub is refused as route-overlap',
    claim: hello({ address: ip('10.0.0.9'), routes: routes('192.168.10.0/25') }),
    settings: { allowRoutes: [cidr('192.168.0.0/16')] },
    cluster: CLUSTER,
    reason: 'route-overlap',
    detail: '192.168.10.0/25 overlaps 192.168.10.0/24 behind 10.0.0.5',
    logDetail: '192.168.10.0/25 overlaps 192.168.10.0/24 behind 10.0.0.5 (hub b)',
    address: '10.0.0.9',
  },
];

for (const c of REFUSALS) test(refuses, c);

/** Reasons only the session says, never admission: the hub stopping, and a member replaced by a newer session. */
const NOT_ADMISSIONS: readonly RejectReason[] = ['shutting-down', 'replaced'];

test('the refusal table covers every reject reason but shutting-down and replaced, which admission never returns', (t) => {
  const covered = [...new Set(REFUSALS.map((c) => c.reason))].sort();
  t.deepEqual(covered, REJECT_REASONS.filter((r) => !NOT_ADMISSIONS.includes(r)).sort());
});

// ---------------------------------------------------------------------------------------------
// Admits

/** What an admit case expects: the verdict's fields (defaults below), the address as text, and whom it replaces. */
type Expected = Partial<Omit<Admitted, 'ok' | 'address' | 'replaces'>> & {
  readonly address: string;
  /** The holder of the address in the state is replaced, with this log detail and what it is told. */
  readonly replaces?: { readonly detail: string; readonly told: string };
};

interface AdmitCase extends Claimed {
  readonly title: string;
  readonly admitted: Expected;
}

const DEFAULTS: Omit<Admitted, 'address'> = {
  ok: true,
  identity: undefined,
  exclusive: false,
  lease: undefined,
  newLease: false,
  assigned: false,
  routes: [],
  takesRoutes: false,
  pings: false,
  gso: false,
  mtu: undefined,
  via: 'hello',
  events: [],
};

const admits = test.macro({
  exec(t, c: AdmitCase) {
    const { verdict, state } = decide(t, c);
    if (!verdict.ok) return t.fail(`refused as ${verdict.reason}: ${verdict.logDetail}`);
    const { replaces, ...rest } = c.admitted;
    const address = ip(c.admitted.address);
    const expected: Admitted = { ...DEFAULTS, ...rest, address };
    const { replaces: got, ...verdictRest } = verdict;
    t.deepEqual(verdictRest, expected);
    if (replaces === undefined) return t.is(got, undefined);
    t.is(got?.member, state.membership.members.get(address), 'replaces the holder of the address');
    t.deepEqual({ detail: got?.detail, told: got?.told }, replaces);
  },
  title: (_provided, c: AdmitCase) => c.title,
});

const ADMITS: readonly AdmitCase[] = [
  {
    title: 'on a hub of a cluster, an assignment skips what other hubs serve and what is leased to others (the cluster-wide allocator)',
    claim: hello({ assign: true, id: IDB }),
    state: { members: [member('10.0.0.2')] },
    cluster: upView('a', [addrKv('10.0.0.3', 'b', 3), addrKv('10.0.0.4', 'b', 3, { self: true }), stickyKv('10.0.0.5', 'id:someone-else', 4)]),
    admitted: { address: '10.0.0.6', lease: `id:${IDB}`, newLease: true, assigned: true },
  },
  {
    title: 'on a hub of a cluster, a client asking for an address gets the cluster\'s sticky lease of it',
    claim: hello({ assign: true, id: IDA }),
    cluster: upView('a', [stickyKv('10.0.0.9', LEASE_A, 4)]),
    admitted: { address: '10.0.0.9', lease: LEASE_A, assigned: true },
  },
  {
    title: 'on a hub of a cluster, an address this hub\'s own member held is the local membership\'s to judge (a silent holder replaced)',
    claim: hello({ address: ip('10.0.0.5'), id: IDA }),
    state: { members: [member('10.0.0.5', { lastSeen: SILENT })] },
    cluster: upView('a', [addrKv('10.0.0.5', 'a', 3)]),
    admitted: { address: '10.0.0.5', lease: LEASE_A, replaces: { detail: '10.0.0.5 was claimed by 203.0.113.9:5555 after 40 s of silence', told: '10.0.0.5 was claimed by another client after 40 s of silence from this one' } },
  },
  {
    title: 'a free static address is admitted as asked, under the client id (no new lease)',
    claim: hello({ address: ip('10.0.0.5'), id: IDA }),
    admitted: { address: '10.0.0.5', lease: LEASE_A },
  },
  {
    title: 'a static client without an id is admitted without a lease',
    claim: hello({ address: ip('10.0.0.5'), mtu: 1300 }),
    admitted: { address: '10.0.0.5', mtu: 1300 },
  },
  {
    title: 'a client asking for an address gets the lowest free one with a new lease',
    claim: hello({ assign: true, id: IDB }),
    state: { leases: { [LEASE_A]: '10.0.0.3' }, members: [member('10.0.0.2')] },
    admitted: { address: '10.0.0.4', lease: `id:${IDB}`, newLease: true, assigned: true },
  },
  {
    title: 'a client asking for an address gets its sticky lease again',
    claim: hello({ assign: true, id: IDA }),
    state: { leases: { [LEASE_A]: '10.0.0.9' } },
    admitted: { address: '10.0.0.9', lease: LEASE_A, assigned: true },
  },
  {
    title: 'a client with a lease is admitted at max_clients when its silent session holds the address',
    claim: hello({ assign: true, id: IDA }),
    settings: { maxClients: 1 },
    state: { leases: { [LEASE_A]: '10.0.0.9' }, members: [member('10.0.0.9', { lease: LEASE_A, lastSeen: SILENT })] },
    admitted: {
      address: '10.0.0.9',
      lease: LEASE_A,
      assigned: true,
      replaces: reconnected(LEASE_A),
    },
  },
  {
    title: 'a pinned token client asking for an address gets its pin, under its name',
    claim: hello({ assign: true, token: 'alice-secret' }),
    ...ALICE_HUB,
    authCalls: 1,
    admitted: { address: '10.0.0.7', identity: 'alice', exclusive: true, lease: 'token:alice', assigned: true },
  },
  {
    title: 'a certificate identity is the lease of a client asking for an address',
    claim: hello({ assign: true }),
    auth: { requireClientCert: true },
    peerIdentity: 'laptop',
    admitted: { address: '10.0.0.2', identity: 'laptop', exclusive: true, lease: 'cert:laptop', newLease: true, assigned: true },
  },
  {
    title: 'a source that authenticates after its block ran out is admitted and its penalty forgotten',
    claim: hello({ address: ip('10.0.0.5'), token: 'network-secret' }),
    ...BLOCK_RAN_OUT,
    authCalls: 1,
    admitted: { address: '10.0.0.5', events: FORGIVEN },
  },
  {
    title: 'the same client id replaces its stale session without counting a live replacement',
    claim: hello({ address: ip('10.0.0.5'), id: IDA }),
    state: { members: [A_SILENT] },
    admitted: {
      address: '10.0.0.5',
      lease: LEASE_A,
      replaces: reconnected(LEASE_A),
    },
  },
  {
    title: 'the same client id replaces its live session and records a live replacement',
    claim: hello({ address: ip('10.0.0.5'), id: IDA }),
    state: {
      members: [A_LIVE],
      events: [20_000, 10_000].map((ago) => ({ type: 'replaced-live', identity: LEASE_A, now: NOW - ago })),
    },
    admitted: {
      address: '10.0.0.5',
      lease: LEASE_A,
      events: [{ type: 'replaced-live', identity: LEASE_A, now: NOW }],
      replaces: reconnected(LEASE_A),
    },
  },
  {
    title: 'replacements older than 60 s do not count toward a clone',
    claim: hello({ address: ip('10.0.0.5'), id: IDA }),
    state: {
      members: [A_LIVE],
      events: [90_000, 80_000, 70_000].map((ago) => ({ type: 'replaced-live', identity: LEASE_A, now: NOW - ago })),
    },
    admitted: {
      address: '10.0.0.5',
      lease: LEASE_A,
      events: [{ type: 'replaced-live', identity: LEASE_A, now: NOW }],
      replaces: reconnected(LEASE_A),
    },
  },
  {
    title: 'a named token client replaces its live session from another address under its name',
    claim: hello({ assign: true, token: 'alice-secret' }),
    auth: ALICE_PINNED,
    state: { reserved: ALICE_PIN, members: [ALICE_LIVE] },
    admitted: {
      address: '10.0.0.7',
      identity: 'alice',
      exclusive: true,
      lease: 'token:alice',
      assigned: true,
      events: [{ type: 'replaced-live', identity: 'alice', now: NOW }],
      replaces: reconnected('alice'),
    },
  },
  {
    title: 'another client takes over the address of a holder silent past the timeout',
    claim: hello({ address: ip('10.0.0.5'), id: IDB }),
    state: { members: [A_SILENT] },
    admitted: {
      address: '10.0.0.5',
      lease: `id:${IDB}`,
      replaces: { detail: `10.0.0.5 was claimed by ${REMOTE} after 40 s of silence`, told: '10.0.0.5 was claimed by another client after 40 s of silence from this one' },
    },
  },
  {
    title: 'a 0.0.1-era client is admitted at the source of its first packet',
    claim: learned('10.0.0.4'),
    admitted: { address: '10.0.0.4', via: 'data' },
  },
  {
    title: 'a 0.0.1-era client takes over the address of a silent holder',
    claim: learned('10.0.0.4'),
    state: { members: [member('10.0.0.4', { lastSeen: SILENT })] },
    admitted: {
      address: '10.0.0.4',
      via: 'data',
      replaces: { detail: `10.0.0.4 was claimed by ${REMOTE} after 40 s of silence`, told: '10.0.0.4 was claimed by another client after 40 s of silence from this one' },
    },
  },
  {
    title: 'a client offering gso to an offloading hub gets SUPER frames, and its other capabilities are taken',
    claim: hello({ address: ip('10.0.0.5'), caps: ['rtt', 'routes', 'gso'], mtu: 9000 }),
    settings: { offload: true },
    admitted: { address: '10.0.0.5', gso: true, pings: true, takesRoutes: true, mtu: 9000 },
  },
  {
    title: 'a client offering gso to a hub that does not offload gets no SUPER frames',
    claim: hello({ address: ip('10.0.0.5'), caps: ['gso'] }),
    settings: { offload: false },
    admitted: { address: '10.0.0.5' },
  },
  {
    title: 'a client that does not offer gso gets no SUPER frames from an offloading hub',
    claim: hello({ address: ip('10.0.0.5'), caps: ['rtt'] }),
    settings: { offload: true },
    admitted: { address: '10.0.0.5', pings: true },
  },
  {
    title: 'LANs inside allow_routes are accepted',
    claim: announcing('192.168.10.0/24', '192.168.20.0/24'),
    state: { members: [member('10.0.0.2', { routes: ['192.168.30.0/24'] })] },
    admitted: { address: '10.0.0.5', routes: routes('192.168.10.0/24', '192.168.20.0/24') },
  },
  {
    title: 'LANs inside the routes the tokens file gives the client are accepted',
    claim: hello({ address: ip('10.0.0.5'), token: 'alice-secret', routes: routes('192.168.10.128/25') }),
    auth: ALICE_LIMITED,
    admitted: { address: '10.0.0.5', identity: 'alice', exclusive: true, lease: 'token:alice', routes: routes('192.168.10.128/25') },
  },
  {
    title: 'a client replacing its own session announces the LANs that session had',
    claim: hello({ address: ip('10.0.0.5'), id: IDA, routes: routes('192.168.10.0/24') }),
    state: { members: [member('10.0.0.5', { lease: LEASE_A, lastSeen: SILENT, routes: ['192.168.10.0/24'] })] },
    admitted: {
      address: '10.0.0.5',
      lease: LEASE_A,
      routes: routes('192.168.10.0/24'),
      replaces: reconnected(LEASE_A),
    },
  },
];

for (const c of ADMITS) test(admits, c);
