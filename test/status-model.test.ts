// The status model (pipelines/status.ts): events in, the /status document out.
import test from 'ava';
import { map, scan } from 'rxjs';
import type { ClientEvent, ServerEvent, SessionStats, TunStats } from '../pipelines/events.js';
import { DROP_REASONS, initialStatus, reduceStatus, statusSnapshot, type StatusMode, type StatusSnapshot } from '../pipelines/status.js';
import { marbles } from './helpers/marbles.js';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
type Ev = ServerEvent | ClientEvent;

/** Folds `[time offset ms, event]` pairs from T0 and returns the snapshot at the last time (or `at`). */
function fold(mode: StatusMode, events: readonly (readonly [number, Ev])[], at?: number): StatusSnapshot {
  let state = initialStatus({ version: '9.9.9', mode, startedAt: T0 });
  let last = 0;
  for (const [dt, e] of events) {
    state = reduceStatus(state, e, T0 + dt);
    last = dt;
  }
  return statusSnapshot(state, T0 + (at ?? last));
}

const tun: TunStats = { read: { packets: 3, bytes: 300 }, written: { packets: 4, bytes: 400 }, queued: 0 };
const session = (id: number, address: string | undefined, extra: Partial<SessionStats> = {}): SessionStats => ({
  id,
  remote: `192.0.2.${id}:5000${id}`,
  address,
  connectedAt: T0 + 100,
  lastSeen: T0 + 1900,
  rx: { packets: 10 * id, bytes: 1000 * id },
  tx: { packets: 20 * id, bytes: 2000 * id },
  queued: id,
  rttMs: 1.5 * id,
  transport: 'tcp',
  ...extra,
});
const listening: ServerEvent = { type: 'listening', address: '0.0.0.0:9000', tun: 'tun0', hub: '10.0.0.1/24' };
const joined = (id: number, address: string, identity?: string): ServerEvent => ({
  type: 'joined',
  id,
  remote: `192.0.2.${id}:5000${id}`,
  address,
  via: 'hello',
  members: id,
  ...(identity === undefined ? {} : { identity }),
});
const left = (id: number, address: string): ServerEvent => ({ type: 'left', id, remote: `192.0.2.${id}:5000${id}`, address, reason: 'closed', detail: '', members: 0 });

test('a fresh server is not ready, has no members and says which schema, version and mode it is', (t) => {
  const s = fold('server', [], 2500);
  t.like(s, { schema: 1, version: '9.9.9', mode: 'server', ready: false, tunnelAddress: null, listening: null, members: [], drops: {}, tun: null });
  t.is(s.uptimeSeconds, 2);
  t.is(s.startedAt, new Date(T0).toISOString());
  t.is(s.now, new Date(T0 + 2500).toISOString());
});

const serverFold = test.macro({
  exec(t, events: readonly (readonly [number, Ev])[], expected: Partial<StatusSnapshot>) {
    t.like(fold('server', events), expected);
  },
  title: (title) => `server: ${title ?? ''}`,
});

test('listening makes it ready with its tunnel and listening address', serverFold, [[10, listening]], {
  ready: true,
  tunnelAddress: '10.0.0.1/24',
  listening: '0.0.0.0:9000',
});

test('a connection that has not joined is not a member', serverFold, [[10, listening], [20, { type: 'connected', id: 1, remote: '192.0.2.1:50001' }]], {
  members: [],
});

test('joined adds a member with its identity and connection time', serverFold, [[10, listening], [500, joined(1, '10.0.0.2', 'alice')]], {
  members: [
    {
      address: '10.0.0.2',
      identity: 'alice',
      remote: '192.0.2.1:50001',
      connectedSince: new Date(T0 + 500).toISOString(),
      lastSeen: new Date(T0 + 500).toISOString(),
      rx: { packets: 0, bytes: 0 },
      tx: { packets: 0, bytes: 0 },
      queued: 0,
      rttMs: null,
      transport: 'tcp',
      udp: null,
      drops: {},
    },
  ],
});

test('stats update the counters, queue, RTT and last-seen of each member and the TUN counters', serverFold, [
  [10, listening],
  [500, joined(1, '10.0.0.2')],
  [2000, { type: 'stats', at: T0 + 2000, sessions: [session(1, '10.0.0.2'), session(2, undefined)], tun }],
], {
  members: [
    {
      address: '10.0.0.2',
      identity: null,
      remote: '192.0.2.1:50001',
      connectedSince: new Date(T0 + 100).toISOString(),
      lastSeen: new Date(T0 + 1900).toISOString(),
      rx: { packets: 10, bytes: 1000 },
      tx: { packets: 20, bytes: 2000 },
      queued: 1,
      rttMs: 1.5,
      transport: 'tcp',
      udp: null,
      drops: {},
    },
  ],
  tun,
});

test("a member's transport follows its transport events, and stats carry its UDP share", serverFold, [
  [10, listening],
  [500, joined(1, '10.0.0.2')],
  [600, { type: 'transport', who: '10.0.0.2', transport: 'udp', why: 'the peer answers over UDP' }],
  [2000, { type: 'stats', at: T0 + 2000, sessions: [session(1, '10.0.0.2', { transport: 'udp', udp: { rx: { packets: 7, bytes: 700 }, tx: { packets: 9, bytes: 900 } } })], tun }],
  [2100, { type: 'transport', who: '10.0.0.2', transport: 'tcp (udp blocked)', why: 'nothing over UDP for 1.5 s' }],
], {
  members: [{ address: '10.0.0.2', transport: 'tcp (udp blocked)', udp: { rx: { packets: 7, bytes: 700 }, tx: { packets: 9, bytes: 900 } } } as never],
});

test('drops count towards the member they name and towards the totals; others only towards the totals', serverFold, [
  [10, listening],
  [500, joined(1, '10.0.0.2')],
  [600, { type: 'drops', who: '10.0.0.2', drops: { isolation: 2 } }],
  [700, { type: 'drops', who: '10.0.0.2', drops: { isolation: 1, 'no-route': 4 } }],
  [800, { type: 'drops', who: 'tun', drops: { 'no-route': 1 } }],
  [900, { type: 'drops', who: '192.0.2.9:1234', drops: { unregistered: 5 } }],
], {
  members: [{ address: '10.0.0.2', drops: { isolation: 3, 'no-route': 4 } } as never],
  drops: { isolation: 3, 'no-route': 5, unregistered: 5 },
});

test('left removes the member (and its drops) but the totals keep them', serverFold, [
  [10, listening],
  [500, joined(1, '10.0.0.2')],
  [510, joined(2, '10.0.0.3')],
  [600, { type: 'drops', who: '10.0.0.2', drops: { 'queue-full': 7 } }],
  [700, left(1, '10.0.0.2')],
], {
  members: [{ address: '10.0.0.3' } as never],
  drops: { 'queue-full': 7 },
});

test('a member that rejoins starts with fresh drop counters', serverFold, [
  [500, joined(1, '10.0.0.2')],
  [600, { type: 'drops', who: '10.0.0.2', drops: { 'too-big': 1 } }],
  [700, left(1, '10.0.0.2')],
  [800, joined(3, '10.0.0.2')],
], {
  members: [{ address: '10.0.0.2', drops: {} } as never],
  drops: { 'too-big': 1 },
});

test('members joined before the model started watching appear from the stats', serverFold, [
  [2000, { type: 'stats', at: T0 + 2000, sessions: [session(4, '10.0.0.5')], tun }],
], {
  members: [{ address: '10.0.0.5', rx: { packets: 40, bytes: 4000 } } as never],
});

test('members are listed in address order', (t) => {
  const s = fold('server', [
    [1, joined(1, '10.0.0.10')],
    [2, joined(2, '10.0.0.9')],
    [3, joined(3, '10.0.0.100')],
  ]);
  t.deepEqual(s.members.map((m) => m.address), ['10.0.0.9', '10.0.0.10', '10.0.0.100']);
});

const clientFold = test.macro({
  exec(t, events: readonly (readonly [number, Ev])[], expected: Partial<StatusSnapshot>) {
    t.like(fold('client', events), expected);
  },
  title: (title) => `client: ${title ?? ''}`,
});

const connecting: ClientEvent = { type: 'connecting', remote: '192.0.2.1:9000' };
const connected: ClientEvent = { type: 'connected', id: 7, remote: '192.0.2.1:9000' };
const welcomed: ClientEvent = { type: 'welcomed', address: '10.0.0.2', prefix: 24, hub: '10.0.0.1' };

test('connecting and connected are not ready yet', clientFold, [[0, connecting], [10, connected]], { ready: false, remote: '192.0.2.1:9000', members: [] });

test('welcomed is ready, with the tunnel address and the hub as the one member', clientFold, [[0, connecting], [10, connected], [20, welcomed]], {
  ready: true,
  tunnelAddress: '10.0.0.2/24',
  members: [{ address: '10.0.0.1', remote: '192.0.2.1:9000' } as never],
});

test('established (a 0.0.1-era hub) is ready too', clientFold, [[0, connecting], [10, connected], [20, { type: 'established', remote: '192.0.2.1:9000' }]], {
  ready: true,
  members: [{ address: 'hub' } as never],
});

test('disconnected is not ready and has no session', clientFold, [
  [0, connecting],
  [10, connected],
  [20, welcomed],
  [30, { type: 'disconnected', remote: '192.0.2.1:9000', reason: 'reset', detail: 'ECONNRESET' }],
], { ready: false, members: [], tunnelAddress: '10.0.0.2/24' });

test("stats update the hub session's counters; drops at 'hub' are the session's, at 'tun' only in the totals", clientFold, [
  [10, connected],
  [20, welcomed],
  [1000, { type: 'stats', at: T0 + 1000, session: session(7, '10.0.0.2'), tun }],
  [1100, { type: 'drops', who: 'hub', drops: { 'unknown-type': 1 } }],
  [1200, { type: 'drops', who: 'tun', drops: { 'not-connected': 3 } }],
], {
  members: [{ address: '10.0.0.1', rx: { packets: 70, bytes: 7000 }, rttMs: 10.5, drops: { 'unknown-type': 1 } } as never],
  drops: { 'unknown-type': 1, 'not-connected': 3 },
  tun,
});

test('a join, a leave or stats never change the state they were given (each snapshot stays as it was)', (t) => {
  let state = reduceStatus(initialStatus({ version: '1', mode: 'server', startedAt: T0 }), listening, T0);
  const states = [state];
  // Each state's document as it was when that state was made, before any later event.
  const docs = [JSON.stringify(statusSnapshot(state, T0))];
  const events: Ev[] = [joined(1, '10.0.0.2'), joined(2, '10.0.0.3'), { type: 'drops', who: '10.0.0.2', drops: { 'queue-full': 1 } }, { type: 'stats', at: T0 + 30, sessions: [session(2, '10.0.0.3')], tun }, left(1, '10.0.0.2'), joined(3, '10.0.0.4')];
  for (const [i, e] of events.entries()) {
    state = reduceStatus(state, e, T0 + 10 * (i + 1));
    states.push(state);
    docs.push(JSON.stringify(statusSnapshot(state, T0 + 10 * (i + 1))));
  }
  t.deepEqual(
    states.map((s) => [...s.members.keys()]),
    [[], [1], [1, 2], [1, 2], [1, 2], [2], [2, 3]],
  );
  t.deepEqual(
    states.map((s, i) => JSON.stringify(statusSnapshot(s, T0 + 10 * i))),
    docs,
  );
});

test('events the model does not use leave the state as it was', (t) => {
  const before = initialStatus({ version: '1', mode: 'server', startedAt: T0 });
  const after = reduceStatus(before, { type: 'reloaded', changed: [], clientIsolation: true, maxClients: 3 }, T0 + 5);
  t.deepEqual(statusSnapshot(after, T0 + 5), statusSnapshot(before, T0 + 5));
});

test('DROP_REASONS lists every reason once', (t) => {
  t.is(new Set(DROP_REASONS).size, DROP_REASONS.length);
  t.true(DROP_REASONS.includes('isolation'));
  t.true(DROP_REASONS.includes('no-route'));
});

test('in virtual time: members and readiness follow the event stream (scan over the reducer)', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const values: Record<string, Ev> = {
      l: listening,
      a: joined(1, '10.0.0.2'),
      b: joined(2, '10.0.0.3'),
      x: left(1, '10.0.0.2'),
    };
    const events$ = cold('l 9ms a 9ms b 9ms x', values);
    const summary$ = events$.pipe(
      scan((s, e) => reduceStatus(s, e, scheduler.now()), initialStatus({ version: '1', mode: 'server', startedAt: 0 })),
      map((s) => {
        const snap = statusSnapshot(s, scheduler.now());
        return `${snap.ready ? 'R' : '-'}:${snap.members.map((m) => m.address).join(',')}`;
      }),
    );
    expectObservable(summary$).toBe('l 9ms a 9ms b 9ms x', {
      l: 'R:',
      a: 'R:10.0.0.2',
      b: 'R:10.0.0.2,10.0.0.3',
      x: 'R:10.0.0.3',
    });
  });
});

test('server: refused connections are counted by reason; pending connections come from the gauge the server reads', (t) => {
  const refused = (reason: 'pending-limit' | 'pending-source-limit'): ServerEvent => ({ type: 'refused', remote: '192.0.2.9:4000', reason, detail: 'x' });
  let state = initialStatus({ version: '1', mode: 'server', startedAt: T0 });
  for (const e of [listening, refused('pending-source-limit'), refused('pending-source-limit'), refused('pending-limit')]) state = reduceStatus(state, e, T0 + 1);
  t.like(statusSnapshot(state, T0 + 2, { pendingConnections: 7 }), { pendingConnections: 7, refusedConnections: { 'pending-limit': 1, 'pending-source-limit': 2 } });
  t.like(statusSnapshot(initialStatus({ version: '1', mode: 'server', startedAt: T0 }), T0), { pendingConnections: null, refusedConnections: { 'pending-limit': 0, 'pending-source-limit': 0 } });
});

test('client: no pending connections and no refusals in the document', (t) => {
  t.like(fold('client', [[1, { type: 'connecting', remote: 'h:9000' }]]), { pendingConnections: null, refusedConnections: {} });
});

test('client: direct paths: a path change shows at once, stats bring each peer’s counters and refusals, a closed pair and a disconnect remove them', (t) => {
  const traffic = (packets: number): { packets: number; bytes: number } => ({ packets, bytes: 100 * packets });
  const early: readonly (readonly [number, Ev])[] = [
    [10, connected],
    [20, welcomed],
    [30, { type: 'direct-path', peer: '10.0.0.3', path: 'relayed (probing)', why: 'introduced' }],
    [40, { type: 'direct-path', peer: '10.0.0.3', path: 'direct 192.0.2.7:41641', why: 'the peer answered' }],
  ];
  t.deepEqual(fold('client', early).peers, [{ address: '10.0.0.3', path: 'direct 192.0.2.7:41641', endpoint: '192.0.2.7:41641', rttMs: null, smoothedRttMs: null, rx: traffic(0), tx: traffic(0), drops: {} }]);
  const withStats: readonly (readonly [number, Ev])[] = [
    ...early,
    [
      1000,
      {
        type: 'stats',
        at: T0 + 1000,
        session: session(7, '10.0.0.2'),
        tun,
        peers: [
          { address: '10.0.0.10', path: 'relayed (no direct path: isolation)', endpoint: undefined, rtt: undefined, rx: traffic(0), tx: traffic(0), drops: {} },
          { address: '10.0.0.3', path: 'direct 192.0.2.7:41641', endpoint: '192.0.2.7:41641', rtt: { ms: 0.5, smoothedMs: 0.75 }, rx: traffic(4), tx: traffic(5), drops: { 'spoofed-source': 1 } },
        ],
      },
    ],
  ];
  t.deepEqual(fold('client', withStats).peers, [
    { address: '10.0.0.3', path: 'direct 192.0.2.7:41641', endpoint: '192.0.2.7:41641', rttMs: 0.5, smoothedRttMs: 0.75, rx: traffic(4), tx: traffic(5), drops: { 'spoofed-source': 1 } },
    { address: '10.0.0.10', path: 'relayed (no direct path: isolation)', endpoint: null, rttMs: null, smoothedRttMs: null, rx: traffic(0), tx: traffic(0), drops: {} },
  ]);
  // The round trip belongs to the direct path: a change to relayed shows none at once (the next stats agree).
  const relayed = fold('client', [...withStats, [1100, { type: 'direct-path', peer: '10.0.0.3', path: 'relayed (probing)', why: 'no answer from the peer for 2 s' }]]).peers.find((p) => p.address === '10.0.0.3');
  t.like(relayed, { path: 'relayed (probing)', endpoint: null, rttMs: null, smoothedRttMs: null });
  t.deepEqual(fold('client', [...withStats, [1100, { type: 'direct-path', peer: '10.0.0.3', path: 'relayed (no direct path: left)', why: 'withdrawn', closed: true }]]).peers.map((p) => p.address), ['10.0.0.10']);
  t.deepEqual(fold('client', [...withStats, [1100, { type: 'disconnected', remote: '192.0.2.1:9000', reason: 'reset', detail: 'x' }]]).peers, []);
  t.deepEqual(fold('client', withStats).pairs, []);
});

test('server: the introduced pairs, in address order with since when and the path their members report, until withdrawn', (t) => {
  const events: (readonly [number, Ev])[] = [
    [10, listening],
    [100, { type: 'introduced', a: '10.0.0.9', b: '10.0.0.10', by: 'flow' }],
    [200, { type: 'introduced', a: '10.0.0.2', b: '10.0.0.3', by: 'request' }],
    [300, { type: 'introduced', a: '10.0.0.2', b: '10.0.0.4', by: 'request' }],
    [350, { type: 'pair-path', a: '10.0.0.2', b: '10.0.0.3', path: 'direct' }],
    [360, { type: 'pair-path', a: '10.0.0.2', b: '10.0.0.4', path: 'direct' }],
    [370, { type: 'pair-path', a: '10.0.0.5', b: '10.0.0.6', path: 'direct' }],
    [400, { type: 'withdrawn', a: '10.0.0.2', b: '10.0.0.4', reason: 'left' }],
  ];
  const s = fold('server', events);
  t.deepEqual(s.pairs, [
    { a: '10.0.0.2', b: '10.0.0.3', since: new Date(T0 + 200).toISOString(), path: 'direct' },
    { a: '10.0.0.9', b: '10.0.0.10', since: new Date(T0 + 100).toISOString(), path: 'relayed' },
  ], 'a path of a pair not introduced (or withdrawn) makes none');
  t.deepEqual(s.peers, []);
  const again = fold('server', [...events, [500, { type: 'pair-path', a: '10.0.0.2', b: '10.0.0.3', path: 'relayed' }], [600, { type: 'introduced', a: '10.0.0.9', b: '10.0.0.10', by: 'request' }]]);
  t.deepEqual(again.pairs.map((p) => p.path), ['relayed', 'relayed'], 'relayed again, and a re-introduction starts relayed');
});
