// Whole-scenario tests of the client pipeline over fake ports, in virtual time (1 frame = 1 ms).
import test, { type ExecutionContext } from 'ava';
import { filter, of, tap, throwError, type Observable, type Subscription } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { clientPipeline } from '../pipelines/client.js';
import { AddressSetupError, NoAssignmentError, RejectedError, type ClientEvent } from '../pipelines/events.js';
import type { HostNetworkPort, ResolverPort, RoutesPort } from '../pipelines/ports.js';
import type { ClientSettings } from '../pipelines/settings.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { encodeControl } from '../operators/core/wire/control.js';
import { FakeRoutes, connectError, fakes, type DialOutcome, type FakeConnection, type FakeDialer, type FakeTun } from './helpers/fake-ports.js';
import { bytes, ipv4Packet, marbles } from './helpers/marbles.js';
import { parseIpv4 } from '../operators/core/address.js';

const SETTINGS: ClientSettings = {
  tunnel: { address: parseIpv4('10.0.0.2')!, prefix: 24 },
  mtu: 1400,
  keepaliveMs: 10_000,
  timeoutMs: 30_000,
  sendQueueSize: 4,
  recvQueueSize: 4,
  remotes: [{ host: 'hub.test', port: 9000 }],
  backoff: { initialMs: 1_000, maxMs: 30_000 },
};

/** The hub's endpoint as the fake connections report it. */
const HUB_ENDPOINT = '192.0.2.1:9000';
/** With random() = 0.5 the jitter factor 0.5 + 0.5·random() is 0.75. */
const JITTER = 0.75;
const WELCOME = { address: '10.0.0.2', prefix: 24, hub: '10.0.0.1', mtu: 1400, keepalive: 10, timeout: 30, caps: [] };

type RunHelpers = Parameters<Parameters<TestScheduler['run']>[0]>[0];
type EventType = ClientEvent['type'];

interface Client {
  readonly helpers: RunHelpers;
  readonly scheduler: TestScheduler;
  readonly tun: FakeTun;
  readonly dialer: FakeDialer;
  /** Every event with its virtual time. */
  readonly log: Array<{ readonly at: number; readonly event: ClientEvent }>;
  /** What the pipeline errored with (undefined while it did not). */
  readonly failure: { error?: unknown; at?: number };
  /** Runs `fn` at virtual time `ms` (at least 1: the pipeline is subscribed at 0). */
  at(ms: number, fn: () => void): void;
  /** A new fake connection to the hub. */
  connection(): FakeConnection;
  /** Asserts, as a marble, the events of the given types. */
  expectEvents(types: readonly EventType[], marble: string, values: Record<string, ClientEvent>): void;
}

interface ClientOptions {
  readonly until: number;
  readonly settings?: Partial<ClientSettings>;
  /** Outcome of dial attempts beyond the script (hang by default). */
  readonly otherwise?: (attempt: number) => DialOutcome;
  readonly random?: () => number;
  /** The scenario expects the pipeline to error. */
  readonly errors?: boolean;
  readonly routes?: RoutesPort;
  readonly hostNetwork?: HostNetworkPort;
  readonly resolver?: ResolverPort;
}

/** Runs a client scenario until virtual time `until`, when the pipeline is unsubscribed. */
function client(t: ExecutionContext, options: ClientOptions, body: (c: Client) => void): void {
  marbles(t, (helpers, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const dialer = make.dialer(options.otherwise);
    const log: Array<{ at: number; event: ClientEvent }> = [];
    const failure: { error?: unknown; at?: number } = {};
    const events$: Observable<ClientEvent> = clientPipeline(
      { ...SETTINGS, ...options.settings },
      {
        tun,
        dialer,
        scheduler,
        random: options.random ?? (() => 0.5),
        ...(options.routes === undefined ? {} : { routes: options.routes }),
        ...(options.hostNetwork === undefined ? {} : { hostNetwork: options.hostNetwork }),
        ...(options.resolver === undefined ? {} : { resolver: options.resolver }),
      },
    ).pipe(
      tap({
        next: (event) => log.push({ at: scheduler.now(), event }),
        error: (err: unknown) => {
          failure.error = err;
          failure.at = scheduler.now();
          if (options.errors !== true) t.fail(`the client pipeline errored: ${String(err)}`);
        },
      }),
    );
    let observed = false;
    const c: Client = {
      helpers,
      scheduler,
      tun,
      dialer,
      log,
      failure,
      at(ms, fn) {
        if (ms < 1) throw new RangeError('scenario steps start at 1 ms');
        scheduler.schedule(fn, ms);
      },
      connection: () => make.connection(HUB_ENDPOINT),
      expectEvents(types, marble, values) {
        observed = true;
        helpers.expectObservable(events$.pipe(filter((e) => types.includes(e.type))), `^ ${options.until - 1}ms !`).toBe(marble, values);
      },
    };
    body(c);
    if (!observed) {
      let sub: Subscription | undefined;
      scheduler.schedule(() => (sub = events$.subscribe({ error: () => undefined })), 0);
      scheduler.schedule(() => sub?.unsubscribe(), options.until);
    }
  });
}

const only = <K extends EventType>(log: Client['log'], type: K): Array<{ at: number; event: Extract<ClientEvent, { type: K }> }> =>
  log.filter((l): l is { at: number; event: Extract<ClientEvent, { type: K }> } => l.event.type === type);

const connecting: ClientEvent = { type: 'connecting', remote: 'hub.test:9000' };
const connected = (c: FakeConnection): ClientEvent => ({ type: 'connected', id: c.id, remote: c.remote });
const welcomed: ClientEvent = { type: 'welcomed', address: '10.0.0.2', prefix: 24, hub: '10.0.0.1' };
const refused = () => connectError('ECONNREFUSED', HUB_ENDPOINT);

// ---------------------------------------------------------------- the session

test('the client sends HELLO first and reports welcomed on the hub\'s WELCOME', (t) => {
  let conn!: FakeConnection;
  let dialer!: FakeDialer;
  client(t, { until: 100 }, (c) => {
    dialer = c.dialer;
    conn = c.connection();
    c.dialer.then({ connect: conn });
    c.at(5, () => conn.sendWelcome(WELCOME));
    c.expectEvents(['connecting', 'connected', 'welcomed', 'established', 'disconnected'], '(ab)-w', {
      a: connecting,
      b: connected(conn),
      w: welcomed,
    });
  });
  t.deepEqual(dialer.attempts, [{ at: 0, host: 'hub.test', port: 9000 }]);
  t.deepEqual(conn.types(), [FrameType.Hello]);
  t.is(conn.frames[0]!.at, 0);
  t.deepEqual(conn.hellos(), [{ version: 1, address: '10.0.0.2', prefix: 24, mtu: 1400, caps: ['rtt', 'routes'] }]);
});

test('TUN packets go out as DATA frames and DATA frames in go to the TUN', (t) => {
  const out1 = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
  const out2 = ipv4Packet('10.0.0.2', '10.0.0.1', bytes(2));
  const in1 = ipv4Packet('10.0.0.3', '10.0.0.2', bytes(3));
  const in2 = ipv4Packet('10.0.0.1', '10.0.0.2', bytes(4));
  const in3 = ipv4Packet('10.0.0.1', '10.0.0.2', bytes(5));
  let conn!: FakeConnection;
  let tun!: FakeTun;
  client(t, { until: 100 }, (c) => {
    tun = c.tun;
    conn = c.connection();
    c.dialer.then({ connect: conn });
    c.at(1, () => conn.sendWelcome(WELCOME));
    c.at(5, () => c.tun.read(out1, out2));
    c.at(6, () => conn.sendData(in1, in2));
    c.at(7, () => conn.sendData(bytes(0x60, 0, 0, 0), in3));
    c.expectEvents(['drops', 'disconnected'], '-------d', { d: { type: 'drops', who: '10.0.0.2', drops: { 'not-ipv4': 1 } } });
  });
  t.deepEqual(conn.dataPackets(), [out1, out2]);
  t.deepEqual(
    conn.frames.filter((f) => f.type === FrameType.Data).map((f) => f.at),
    [5, 5],
  );
  t.deepEqual(tun.written, [
    { at: 6, packet: in1 },
    { at: 6, packet: in2 },
    { at: 7, packet: in3 },
  ]);
});

test('packets read while there is no session are dropped as not-connected', (t) => {
  const p = (n: number): Uint8Array => ipv4Packet('10.0.0.2', '10.0.0.1', bytes(n));
  let conn!: FakeConnection;
  client(t, { until: 300 }, (c) => {
    conn = c.connection();
    c.dialer.then({ connect: conn, afterMs: 100 });
    c.at(50, () => c.tun.read(p(1), p(2)));
    c.at(150, () => c.tun.read(p(3)));
    c.at(200, () => conn.end());
    c.at(250, () => c.tun.read(p(4)));
    c.expectEvents(['drops', 'connected', 'disconnected'], '50ms a 49ms b 99ms c 49ms d', {
      a: { type: 'drops', who: 'tun', drops: { 'not-connected': 2 } },
      b: connected(conn),
      c: { type: 'disconnected', remote: HUB_ENDPOINT, reason: 'closed', detail: 'the hub closed the connection' },
      d: { type: 'drops', who: 'tun', drops: { 'not-connected': 1 } },
    });
  });
  t.deepEqual(conn.dataPackets(), [p(3)]);
  t.is(conn.closedAt, 200);
});

test('the client sends a KEEPALIVE every keepaliveMs and stays up while the hub sends its own', (t) => {
  let conn!: FakeConnection;
  let log!: Client['log'];
  client(t, { until: 45_000 }, (c) => {
    log = c.log;
    conn = c.connection();
    c.dialer.then({ connect: conn });
    c.at(1, () => conn.sendWelcome(WELCOME));
    for (const ms of [5_000, 15_000, 25_000, 35_000]) c.at(ms, () => conn.sendKeepalive());
  });
  t.deepEqual(conn.keepaliveTimes(), [10_000, 20_000, 30_000, 40_000]);
  t.deepEqual(
    log.map((l) => l.event.type),
    ['connecting', 'connected', 'welcomed'],
    'no disconnect, and no `established` after a WELCOME',
  );
  t.is(conn.closedAt, 45_000);
});

test('a hub silent for timeoutMs ends the session as idle, then the client retries', (t) => {
  let conn!: FakeConnection;
  let dialer!: FakeDialer;
  client(t, { until: 31_000 }, (c) => {
    dialer = c.dialer;
    conn = c.connection();
    c.dialer.then({ connect: conn });
    c.expectEvents(['disconnected', 'retrying'], '30000ms (dr)', {
      d: { type: 'disconnected', remote: HUB_ENDPOINT, reason: 'idle', detail: 'peer silent for 30 s' },
      r: { type: 'retrying', attempt: 1, delayMs: 1_000 * JITTER, cause: 'idle' },
    });
  });
  t.is(conn.closedAt, 30_000);
  t.false(conn.reading);
  t.deepEqual(
    conn.keepaliveTimes().filter((ms) => ms < 30_000),
    [10_000, 20_000],
    'the client kept sending keepalives while it waited',
  );
  t.deepEqual(dialer.times(), [0, 30_000 + 1_000 * JITTER]);
});

// ---------------------------------------------------------------- reconnecting

test('dial failures back off 1 s, 2 s, 4 s, ... capped at 30 s, scaled by the jitter factor', (t) => {
  let dialer!: FakeDialer;
  let log!: Client['log'];
  client(t, { until: 100_000, otherwise: () => ({ fail: refused() }) }, (c) => {
    dialer = c.dialer;
    log = c.log;
  });
  const bases = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000];
  const delays = bases.map((b) => b * JITTER);
  const retries = only(log, 'retrying');
  t.deepEqual(
    retries.map((r) => r.event),
    delays.map((delayMs, i) => ({ type: 'retrying', attempt: i + 1, delayMs, cause: `connect ECONNREFUSED ${HUB_ENDPOINT}` })),
  );
  const starts = [0];
  for (const d of delays.slice(0, -1)) starts.push(starts.at(-1)! + d);
  t.deepEqual(dialer.times(), starts);
  t.deepEqual(starts, [0, 750, 2_250, 5_250, 11_250, 23_250, 45_750, 68_250, 90_750]);
  t.deepEqual(
    retries.map((r) => r.at),
    starts,
    'each failure is announced when it happens',
  );
  t.is(only(log, 'connecting').length, 9, 'every attempt announces itself');
});

test('the jitter factor is 0.5 + 0.5·random()', (t) => {
  const randoms = [0, 0.5, 0.9]; // then 0
  let dialer!: FakeDialer;
  client(t, { until: 6_000, otherwise: () => ({ fail: refused() }), random: () => randoms.shift() ?? 0 }, (c) => {
    dialer = c.dialer;
    c.expectEvents(['retrying'], 'a 499ms b 1499ms c 3799ms d', {
      a: { type: 'retrying', attempt: 1, delayMs: 500, cause: `connect ECONNREFUSED ${HUB_ENDPOINT}` },
      b: { type: 'retrying', attempt: 2, delayMs: 1_500, cause: `connect ECONNREFUSED ${HUB_ENDPOINT}` },
      c: { type: 'retrying', attempt: 3, delayMs: 3_800, cause: `connect ECONNREFUSED ${HUB_ENDPOINT}` },
      d: { type: 'retrying', attempt: 4, delayMs: 4_000, cause: `connect ECONNREFUSED ${HUB_ENDPOINT}` },
    });
  });
  t.deepEqual(dialer.times(), [0, 500, 2_000, 5_800]);
});

const backoffAfterSession = test.macro({
  exec(t, hubSays: ((conn: FakeConnection) => void) | undefined, progress: 'welcomed' | 'established' | undefined) {
    let dialer!: FakeDialer;
    let log!: Client['log'];
    let conn!: FakeConnection;
    client(t, { until: 10_000, otherwise: () => ({ fail: refused() }) }, (c) => {
      dialer = c.dialer;
      log = c.log;
      conn = c.connection();
      c.dialer.then({ fail: refused() }, { fail: refused() }, { connect: conn });
      if (hubSays !== undefined) c.at(2_300, () => hubSays(conn));
      c.at(5_000, () => conn.end());
    });
    t.deepEqual(
      log.filter((l) => l.event.type === 'welcomed' || l.event.type === 'established').map((l) => [l.at, l.event.type]),
      progress === undefined ? [] : [[2_300, progress]],
    );
    const retries = only(log, 'retrying').map((r) => [r.at, r.event.attempt, r.event.delayMs]);
    if (progress === undefined) {
      t.deepEqual(retries, [
        [0, 1, 750],
        [750, 2, 1_500],
        [5_000, 3, 3_000],
        [8_000, 4, 6_000],
      ]);
      t.deepEqual(dialer.times(), [0, 750, 2_250, 8_000]);
    } else {
      t.deepEqual(retries, [
        [0, 1, 750],
        [750, 2, 1_500],
        [5_000, 1, 750],
        [5_750, 2, 1_500],
        [7_250, 3, 3_000],
      ]);
      t.deepEqual(dialer.times(), [0, 750, 2_250, 5_750, 7_250]);
    }
  },
  title: (what = '') => `the backoff ${what}`,
});

test('starts over after a session the hub welcomed', backoffAfterSession, (conn: FakeConnection) => conn.sendWelcome(WELCOME), 'welcomed');
test(
  'starts over after a session with a 0.0.1-era hub that sent DATA',
  backoffAfterSession,
  (conn: FakeConnection) => conn.sendData(ipv4Packet('10.0.0.1', '10.0.0.2')),
  'established',
);
test('starts over after a session with a 0.0.1-era hub that sent KEEPALIVE', backoffAfterSession, (conn: FakeConnection) => conn.sendKeepalive(), 'established');
test('keeps growing after a session that connected but never heard from the hub', backoffAfterSession, undefined, undefined);

test('a 0.0.1-era hub that never answers HELLO still carries packets both ways', (t) => {
  const early = ipv4Packet('10.0.0.2', '10.0.0.1', bytes(1));
  const fromHub = ipv4Packet('10.0.0.1', '10.0.0.2', bytes(2));
  const later = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(3));
  let conn!: FakeConnection;
  let tun!: FakeTun;
  client(t, { until: 35_000 }, (c) => {
    tun = c.tun;
    conn = c.connection();
    c.dialer.then({ connect: conn });
    c.at(5, () => c.tun.read(early));
    c.at(10, () => conn.sendData(fromHub));
    c.at(20, () => c.tun.read(later));
    for (const ms of [10_000, 20_000, 30_000]) c.at(ms, () => conn.sendKeepalive());
    c.expectEvents(['welcomed', 'established', 'disconnected', 'retrying'], '10ms e', { e: { type: 'established', remote: HUB_ENDPOINT } });
  });
  t.deepEqual(conn.dataPackets(), [early, later]);
  t.deepEqual(tun.written, [{ at: 10, packet: fromHub }]);
  t.is(conn.types()[0], FrameType.Hello);
});

// ---------------------------------------------------------------- backpressure

test('while the connection needs drain, packets for the hub queue up to sendQueueSize and drain flushes them in order', (t) => {
  const p = (n: number): Uint8Array => ipv4Packet('10.0.0.2', '10.0.0.1', bytes(n));
  let conn!: FakeConnection;
  client(t, { until: 15_000 }, (c) => {
    conn = c.connection();
    c.dialer.then({ connect: conn });
    c.at(1, () => conn.sendWelcome(WELCOME));
    c.at(2, () => conn.block());
    // The packets come within the send queue's 10 ms limit of the drain (older ones would go as queue-age).
    c.at(11_995, () => c.tun.read(p(1), p(2), p(3)));
    c.at(11_996, () => c.tun.read(p(4), p(5), p(6)));
    c.at(11_997, () => t.deepEqual(conn.dataPackets(), [], 'nothing is written while the connection needs drain'));
    c.at(12_000, () => conn.drain());
    c.at(12_001, () => c.tun.read(p(7)));
    c.at(5_000, () => conn.sendKeepalive());
    c.expectEvents(['drops'], '11996ms d', { d: { type: 'drops', who: 'hub', drops: { 'queue-full': 2 } } });
  });
  t.deepEqual(conn.dataPackets(), [p(1), p(2), p(3), p(4), p(7)]);
  t.deepEqual(
    conn.frames.filter((f) => f.type === FrameType.Data).map((f) => f.at),
    [12_000, 12_000, 12_000, 12_000, 12_001],
  );
  t.deepEqual(conn.keepaliveTimes(), [], 'the keepalive due at 10 s is skipped while the buffer is full');
});

test('while the TUN device is full, packets from the hub queue up to recvQueueSize and are written when it has room', (t) => {
  const q = (n: number): Uint8Array => ipv4Packet('10.0.0.1', '10.0.0.2', bytes(n));
  let tun!: FakeTun;
  client(t, { until: 100 }, (c) => {
    tun = c.tun;
    const conn = c.connection();
    c.dialer.then({ connect: conn });
    c.at(2, () => c.tun.block());
    c.at(5, () => conn.sendData(q(1), q(2), q(3), q(4), q(5), q(6)));
    c.at(50, () => c.tun.makeRoom());
    c.expectEvents(['drops'], '-----d', { d: { type: 'drops', who: 'tun', drops: { 'queue-full': 2 } } });
  });
  t.deepEqual(
    tun.written.map((w) => [w.at, w.packet[20]]),
    [
      [50, 1],
      [50, 2],
      [50, 3],
      [50, 4],
    ],
  );
});

// ---------------------------------------------------------------- refusals

const pushedBack = test.macro({
  exec(t, reason: 'replaced' | 'duplicate-identity') {
    let dialer!: FakeDialer;
    let c!: Client;
    client(t, { until: 60_000 }, (cl) => {
      c = cl;
      dialer = cl.dialer;
      const first = cl.connection();
      cl.dialer.then({ connect: first }, { connect: cl.connection() });
      cl.at(1, () => first.sendWelcome(WELCOME));
      cl.at(5, () => first.sendReject(reason, 'another live client uses this identity'));
    });
    t.deepEqual(only(c.log, 'rejected').map((e) => e.event.reason), [reason]);
    // The longest backoff at once (30 s, jitter factor 0.75), not the 1 s of a fresh failure.
    t.deepEqual(only(c.log, 'retrying').map((e) => e.event.delayMs).slice(0, 1), [22_500]);
    t.deepEqual(dialer.times().slice(0, 2), [0, 22_505]);
  },
  title: (_provided, reason) => `REJECT ${reason} makes the client wait the longest backoff before it tries again (no flapping)`,
});

test(pushedBack, 'replaced');
test(pushedBack, 'duplicate-identity');

test('REJECT max-clients is reported, then the client retries and can be welcomed', (t) => {
  let first!: FakeConnection;
  let second!: FakeConnection;
  let dialer!: FakeDialer;
  client(t, { until: 1_000 }, (c) => {
    dialer = c.dialer;
    first = c.connection();
    second = c.connection();
    c.dialer.then({ connect: first }, { connect: second });
    c.at(5, () => first.sendReject('max-clients', 'the hub already has 2 members (max_clients 2)'));
    c.at(800, () => second.sendWelcome(WELCOME));
    c.expectEvents(['connecting', 'connected', 'welcomed', 'rejected', 'disconnected', 'retrying'], '(ab)-(xyz) 745ms (cd) 41ms w', {
      a: connecting,
      b: connected(first),
      x: { type: 'rejected', reason: 'max-clients', message: 'the hub already has 2 members (max_clients 2)' },
      y: { type: 'disconnected', remote: HUB_ENDPOINT, reason: 'rejected', detail: 'max-clients: the hub already has 2 members (max_clients 2)' },
      z: { type: 'retrying', attempt: 1, delayMs: 750, cause: 'rejected' },
      c: connecting,
      d: connected(second),
      w: welcomed,
    });
  });
  t.is(first.closedAt, 5);
  t.deepEqual(dialer.times(), [0, 755]);
  t.is(second.hellos().length, 1, 'the new connection starts with HELLO again');
});

test('REJECT outside-subnet is fatal: the pipeline errors with RejectedError and stops', (t) => {
  let conn!: FakeConnection;
  let c!: Client;
  client(t, { until: 10_000, errors: true }, (cl) => {
    c = cl;
    conn = cl.connection();
    cl.dialer.then({ connect: conn });
    cl.at(5, () => conn.sendReject('outside-subnet', "10.0.0.2 is outside the hub's network 192.168.0.0/24"));
  });
  t.true(c.failure.error instanceof RejectedError);
  const err = c.failure.error as RejectedError;
  t.is(err.reason, 'outside-subnet');
  t.is(err.detail, "10.0.0.2 is outside the hub's network 192.168.0.0/24");
  t.is(c.failure.at, 5);
  t.deepEqual(
    c.log.map((l) => [l.at, l.event.type]),
    [
      [0, 'connecting'],
      [0, 'connected'],
      [5, 'rejected'],
      [5, 'disconnected'],
    ],
  );
  t.is(conn.closedAt, 5);
  t.deepEqual(c.dialer.times(), [0], 'no retry after a fatal refusal');
  t.false(c.tun.reading);
  t.is(c.tun.stoppedReadingAt, 5);
});

// ---------------------------------------------------------------- assigned addresses and LAN routes

const ASSIGN: Partial<ClientSettings> = { tunnel: undefined, clientId: 'ab'.repeat(16), welcomeTimeoutMs: 5000 };

test('without -t the client asks for an address with its id and sets the one the WELCOME assigns on the TUN device', (t) => {
  let conn!: FakeConnection;
  let c!: Client;
  client(t, { until: 100, settings: { ...ASSIGN, routes: [{ address: parseIpv4('192.168.77.0')!, prefix: 24 }] } }, (cl) => {
    c = cl;
    conn = cl.connection();
    cl.dialer.then({ connect: conn });
    cl.at(5, () => conn.sendWelcome({ ...WELCOME, address: '10.0.0.9' }));
    cl.at(6, () => cl.tun.read(ipv4Packet('10.0.0.9', '10.0.0.1')));
  });
  t.deepEqual(conn.hellos(), [{ version: 1, assign: true, mtu: 1400, caps: ['rtt', 'routes'], id: 'ab'.repeat(16), routes: ['192.168.77.0/24'] }]);
  t.deepEqual(c.tun.addresses, ['10.0.0.9/24']);
  t.like(only(c.log, 'welcomed')[0]?.event, { address: '10.0.0.9', assigned: true });
  t.is(conn.dataPackets().length, 1);
});

test('an assigned client reconnecting to the same address does not touch the TUN device again', (t) => {
  const first = { c: undefined as FakeConnection | undefined };
  let c!: Client;
  client(t, { until: 5000, settings: ASSIGN }, (cl) => {
    c = cl;
    const a = cl.connection();
    const b = cl.connection();
    first.c = a;
    cl.dialer.then({ connect: a }, { connect: b });
    cl.at(1, () => a.sendWelcome({ ...WELCOME, address: '10.0.0.9' }));
    cl.at(2, () => a.end());
    cl.at(1500, () => b.sendWelcome({ ...WELCOME, address: '10.0.0.9' }));
  });
  t.deepEqual(c.tun.addresses, ['10.0.0.9/24']);
  t.is(only(c.log, 'welcomed').length, 2);
});

test('an assigned client that hears no WELCOME on its first session stops with a clear error (a 0.0.1-era hub)', (t) => {
  let c!: Client;
  client(t, { until: 20_000, settings: ASSIGN, errors: true }, (cl) => {
    c = cl;
    const conn = cl.connection();
    cl.dialer.then({ connect: conn });
    cl.at(3000, () => conn.sendKeepalive());
  });
  t.true(c.failure.error instanceof NoAssignmentError);
  t.is(c.failure.at, 5000);
  t.regex(String((c.failure.error as Error).message), /sent no WELCOME within 5 s.*-t ADDRESS\/PREFIX/);
  t.deepEqual(c.dialer.times(), [0]);
});

test('after a welcome, a later session without WELCOME is retried instead', (t) => {
  let c!: Client;
  client(t, { until: 9000, settings: ASSIGN }, (cl) => {
    c = cl;
    const a = cl.connection();
    const b = cl.connection();
    cl.dialer.then({ connect: a }, { connect: b });
    cl.at(1, () => a.sendWelcome(WELCOME));
    cl.at(2, () => a.end());
  });
  t.is(c.failure.error, undefined);
  t.true(only(c.log, 'disconnected').some((d) => d.event.reason === 'handshake-timeout'));
  t.true(c.dialer.times().length >= 3);
});

test('a TUN device that refuses the assigned address stops the client', (t) => {
  let c!: Client;
  client(t, { until: 100, settings: ASSIGN, errors: true }, (cl) => {
    c = cl;
    cl.tun.refuseIpv4 = new Error('EPERM');
    const conn = cl.connection();
    cl.dialer.then({ connect: conn });
    cl.at(1, () => conn.sendWelcome(WELCOME));
  });
  t.true(c.failure.error instanceof AddressSetupError);
});

test('routes from WELCOME and ROUTES become the kernel route set (without its own LANs), and are withdrawn at the end', (t) => {
  const routes = new FakeRoutes();
  let c!: Client;
  client(t, { until: 100, routes, settings: { routes: [{ address: parseIpv4('192.168.1.0')!, prefix: 24 }] } }, (cl) => {
    c = cl;
    const conn = cl.connection();
    cl.dialer.then({ connect: conn });
    cl.at(1, () => conn.sendWelcome({ ...WELCOME, routes: [{ cidr: '192.168.77.0/24', via: '10.0.0.3' }, { cidr: '192.168.1.0/24', via: '10.0.0.2' }] }));
    cl.at(2, () => conn.sendRoutes([{ cidr: '192.168.88.0/24', via: '10.0.0.4' }]));
    cl.at(3, () => routes.events$.next({ type: 'kernel-route', action: 'add', cidr: '192.168.88.0/24', ok: true }));
  });
  t.deepEqual(routes.sets, [['192.168.77.0/24'], ['192.168.88.0/24'], []]);
  t.deepEqual(only(c.log, 'routes').map((r) => r.event.routes.length), [2, 1]);
  t.is(only(c.log, 'kernel-route').length, 1, 'the driver’s reports come out of the pipeline');
});

test('routes that would cover the hub’s address or this host’s own networks are never installed, and the event says why', (t) => {
  const routes = new FakeRoutes();
  const hostNetwork: HostNetworkPort = {
    guarded: () => [
      { prefix: { address: parseIpv4('192.168.1.5')!, prefix: 32 }, what: 'address 192.168.1.5 on wlan0' },
      { prefix: { address: parseIpv4('192.168.1.0')!, prefix: 24 }, what: 'network 192.168.1.0/24 on wlan0' },
    ],
  };
  let c!: Client;
  let hubRemote = '';
  client(t, { until: 100, routes, hostNetwork }, (cl) => {
    c = cl;
    const conn = cl.connection();
    hubRemote = conn.remote;
    cl.dialer.then({ connect: conn });
    const hubNet = `${conn.remote.split(':')[0]!.split('.').slice(0, 3).join('.')}.0/24`;
    cl.at(1, () =>
      conn.sendWelcome({
        ...WELCOME,
        routes: [
          { cidr: hubNet, via: '10.0.0.5' },
          { cidr: '192.168.1.0/24', via: '10.0.0.6' },
          { cidr: '127.0.0.0/8', via: '10.0.0.7' },
          { cidr: '172.16.5.0/24', via: '10.0.0.8' },
        ],
      }),
    );
  });
  t.deepEqual(routes.sets, [['172.16.5.0/24'], []], 'only the harmless route reaches the kernel');
  const event = only(c.log, 'routes')[0]!.event;
  t.is(event.routes.length, 4, 'the event still lists what the hub announced');
  t.deepEqual(
    event.refused?.map((r) => [r.via, r.why]),
    [
      ['10.0.0.5', `it covers the hub's address (${hubRemote})`],
      ['10.0.0.6', 'it covers address 192.168.1.5 on wlan0'],
      ['10.0.0.7', 'it covers the loopback range 127.0.0.0/8'],
    ],
  );
});

test('a WELCOME without routes clears the routes an earlier session installed (the hub restarted without their member)', (t) => {
  const routes = new FakeRoutes();
  client(t, { until: 3000, routes }, (cl) => {
    const first = cl.connection();
    const second = cl.connection();
    cl.dialer.then({ connect: first }, { connect: second });
    cl.at(1, () => first.sendWelcome({ ...WELCOME, routes: [{ cidr: '192.168.77.0/24', via: '10.0.0.3' }] }));
    cl.at(5, () => first.end());
    cl.at(2000, () => second.sendWelcome(WELCOME));
    cl.at(2001, () => t.deepEqual(routes.sets, [['192.168.77.0/24'], []], 'cleared by the WELCOME, before the teardown'));
  });
});

test('a ROUTES frame before the WELCOME is an unexpected control frame', (t) => {
  const routes = new FakeRoutes();
  let c!: Client;
  client(t, { until: 100, routes }, (cl) => {
    c = cl;
    const conn = cl.connection();
    cl.dialer.then({ connect: conn });
    cl.at(1, () => conn.push(encodeControl(FrameType.Routes, { version: 1, routes: [] })));
  });
  t.deepEqual(routes.sets, [[]], 'only the final withdrawal');
  t.deepEqual(only(c.log, 'drops').map((d) => d.event.drops), [{ 'unexpected-control': 1 }]);
});

// ---------------------------------------------------------------- teardown

test('unsubscribing closes the connection and stops reading the TUN device', (t) => {
  let conn!: FakeConnection;
  let c!: Client;
  client(t, { until: 1_000 }, (cl) => {
    c = cl;
    conn = cl.connection();
    cl.dialer.then({ connect: conn });
    cl.at(1, () => conn.sendWelcome(WELCOME));
    cl.at(999, () => {
      t.false(conn.closed);
      t.true(conn.reading);
      t.true(c.tun.reading);
    });
  });
  t.is(conn.closedAt, 1_000);
  t.false(conn.reading);
  t.is(conn.stoppedReadingAt, 1_000);
  t.false(c.tun.reading);
  t.deepEqual(c.dialer.times(), [0]);
});

test('unsubscribing while a dial is pending aborts it', (t) => {
  let c!: Client;
  client(t, { until: 1_000 }, (cl) => {
    c = cl;
    cl.dialer.then({ hang: true });
  });
  t.deepEqual(c.dialer.times(), [0]);
  t.is(c.dialer.aborted, 1);
  t.false(c.tun.reading);
});

test('unsubscribing during the backoff wait cancels the next attempt', (t) => {
  let c!: Client;
  client(t, { until: 2_000, otherwise: () => ({ fail: refused() }) }, (cl) => {
    c = cl;
  });
  t.deepEqual(c.dialer.times(), [0, 750], 'the attempt due at 2250 never happens');
  t.is(c.dialer.aborted, 0);
});

// ---------------------------------------------------------------- several hubs (docs/cluster.md, "Failover")

const hubs = (...names: string[]): Partial<ClientSettings> => ({ remotes: names.map((host) => ({ host, port: 9000 })) });

test('several hubs: one attempt each, in order and without a wait; the round after a session starts after its hub', (t) => {
  let log!: Client['log'];
  let dialer!: FakeDialer;
  let first!: FakeConnection;
  let second!: FakeConnection;
  client(t, { until: 2_000, settings: hubs('a.test', 'b.test', 'c.test') }, (c) => {
    log = c.log;
    dialer = c.dialer;
    first = c.connection();
    second = c.connection();
    c.dialer.then({ fail: refused() }, { connect: first }, { fail: refused() }, { connect: second });
    c.at(5, () => first.sendWelcome(WELCOME));
    c.at(100, () => first.end());
    c.at(900, () => second.sendWelcome(WELCOME));
  });
  t.deepEqual(
    dialer.attempts.map((a) => `${a.host}@${a.at}`),
    ['a.test@0', 'b.test@0', 'c.test@850', 'a.test@850'],
    'b took the client; when its session ended, the next round began with c and wrapped around to a',
  );
  t.deepEqual(
    only(log, 'next-hub').map((l) => l.event),
    [
      { type: 'next-hub', from: 'a.test:9000', to: 'b.test:9000', cause: `connect ECONNREFUSED ${HUB_ENDPOINT}` },
      { type: 'next-hub', from: 'c.test:9000', to: 'a.test:9000', cause: `connect ECONNREFUSED ${HUB_ENDPOINT}` },
    ],
  );
  t.deepEqual(only(log, 'connecting').map((l) => l.event.remote), ['a.test:9000', 'b.test:9000', 'c.test:9000', 'a.test:9000']);
  t.is(only(log, 'welcomed').length, 2);
  t.deepEqual(only(log, 'retrying').map((l) => l.at), [100], 'one wait: after the session ended, none between hubs');
});

test('several hubs: a refusal of this hub (ip-conflict, cluster-unavailable) moves on; a fatal refusal or a pushback ends the round', (t) => {
  let dialer!: FakeDialer;
  let log!: Client['log'];
  client(t, { until: 500, settings: hubs('a.test', 'b.test', 'c.test') }, (c) => {
    dialer = c.dialer;
    log = c.log;
    const [a, b, cc] = [c.connection(), c.connection(), c.connection()];
    c.dialer.then({ connect: a }, { connect: b }, { connect: cc });
    c.at(5, () => a.sendReject('ip-conflict', '10.0.0.2 is in use by another member'));
    c.at(10, () => b.sendReject('cluster-unavailable', 'the hub cannot reach its cluster store'));
    c.at(15, () => cc.sendWelcome(WELCOME));
  });
  t.deepEqual(dialer.attempts.map((a) => `${a.host}@${a.at}`), ['a.test@0', 'b.test@5', 'c.test@10']);
  t.deepEqual(only(log, 'next-hub').map((l) => l.event.cause), ['ip-conflict: 10.0.0.2 is in use by another member', 'cluster-unavailable: the hub cannot reach its cluster store']);

  let fatalDialer!: FakeDialer;
  let failure!: Client['failure'];
  client(t, { until: 500, settings: hubs('a.test', 'b.test'), errors: true }, (c) => {
    fatalDialer = c.dialer;
    failure = c.failure;
    const a = c.connection();
    c.dialer.then({ connect: a });
    c.at(5, () => a.sendReject('auth-failed', 'bad token'));
  });
  t.true(failure.error instanceof RejectedError);
  t.deepEqual(fatalDialer.attempts.map((a) => a.host), ['a.test'], 'no other hub accepts a bad token either');

  let pushDialer!: FakeDialer;
  client(t, { until: 40_000, settings: hubs('a.test', 'b.test') }, (c) => {
    pushDialer = c.dialer;
    const a = c.connection();
    c.dialer.then({ connect: a });
    c.at(5, () => a.sendReject('duplicate-identity', 'another live client uses this identity'));
  });
  t.deepEqual(pushDialer.attempts.map((a) => `${a.host}@${a.at}`), ['a.test@0', 'a.test@22505'], 'a live twin: the longest wait, then the next round (from the same start)');
});

test("several hubs: a LAN announced over another hub's address is never installed (the client must reach that hub when this one is gone)", (t) => {
  const routes = new FakeRoutes();
  let c!: Client;
  client(t, { until: 100, routes, settings: hubs('192.0.2.1', '198.51.100.20') }, (cl) => {
    c = cl;
    const conn = cl.connection();
    cl.dialer.then({ connect: conn });
    cl.at(1, () => conn.sendWelcome({ ...WELCOME, routes: [{ cidr: '198.51.100.0/24', via: '10.0.0.5' }, { cidr: '172.16.5.0/24', via: '10.0.0.8' }] }));
  });
  t.deepEqual(routes.sets, [['172.16.5.0/24'], []], 'the harmless route only (cleared when the client stops)');
  t.deepEqual(only(c.log, 'routes')[0]!.event.refused?.map((r) => [r.via, r.why]), [['10.0.0.5', "it covers another hub's address (198.51.100.20:9000)"]]);
});

test('several hubs: an assigned client whose first hub never says WELCOME moves on to the next (with one hub it would stop: a 0.0.1-era hub)', (t) => {
  let c!: Client;
  client(t, { until: 8000, settings: { ...ASSIGN, ...hubs('a.test', 'b.test') } }, (cl) => {
    c = cl;
    const [a, b] = [cl.connection(), cl.connection()];
    cl.dialer.then({ connect: a }, { connect: b });
    cl.at(5001, () => b.sendWelcome({ ...WELCOME, address: '10.0.0.9' }));
  });
  t.deepEqual(c.dialer.attempts.map((x) => `${x.host}@${x.at}`), ['a.test@0', 'b.test@5000']);
  t.deepEqual(only(c.log, 'next-hub').map((l) => l.event.cause), ['handshake-timeout: no WELCOME within 5 s']);
  t.like(only(c.log, 'welcomed')[0]?.event, { address: '10.0.0.9' });
});

test('several hubs: a name resolves into its addresses (dialed with the name, for TLS); a name that does not resolve is reported and passed', (t) => {
  let dialer!: FakeDialer;
  let log!: Client['log'];
  const resolver: ResolverPort = {
    resolve: (name) => (name === 'hubs.test' ? of(['192.0.2.1', '192.0.2.2', '192.0.2.1']) : throwError(() => new Error('no such name'))),
  };
  const settings = { remotes: [{ host: 'gone.test', port: 9000 }, { host: 'hubs.test', port: 9000 }, { host: '192.0.2.9', port: 9001 }] };
  client(t, { until: 500, settings, resolver }, (c) => {
    dialer = c.dialer;
    log = c.log;
    const conn = c.connection();
    c.dialer.then({ fail: refused() }, { connect: conn });
    c.at(5, () => conn.sendWelcome(WELCOME));
  });
  t.deepEqual(dialer.attempts, [
    { at: 0, host: '192.0.2.1', port: 9000, name: 'hubs.test' },
    { at: 0, host: '192.0.2.2', port: 9000, name: 'hubs.test' },
  ]);
  t.deepEqual(only(log, 'next-hub').map((l) => [l.event.from, l.event.to, l.event.cause]), [
    ['gone.test:9000', 'hubs.test:9000 (192.0.2.1:9000)', 'cannot resolve gone.test: no such name'],
    ['hubs.test:9000 (192.0.2.1:9000)', 'hubs.test:9000 (192.0.2.2:9000)', `connect ECONNREFUSED ${HUB_ENDPOINT}`],
  ]);
});

test('for settleMs after a session ended the rounds come every initialMs (jittered): a hub that just died has its claims expire meanwhile', (t) => {
  let log!: Client['log'];
  client(t, { until: 16_000, settings: { backoff: { initialMs: 1_000, maxMs: 30_000, settleMs: 10_000 } }, otherwise: () => ({ fail: refused() }) }, (c) => {
    log = c.log;
    const conn = c.connection();
    c.dialer.then({ connect: conn });
    c.at(5, () => conn.sendWelcome(WELCOME));
    c.at(100, () => conn.end());
  });
  // The session ended at 100: waits of 750 while 100 + 10 000 lasts (14 of them), then 1 500, 3 000, 6 000.
  t.deepEqual(only(log, 'retrying').map((l) => l.event.delayMs), [...Array<number>(14).fill(750), 1_500, 3_000, 6_000]);
});
