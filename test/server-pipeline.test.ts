// Whole-scenario tests of the hub pipeline over fake ports, in virtual time (1 frame = 1 ms).
import test, { type ExecutionContext } from 'ava';
import { filter, map, tap, type Observable, type Subscription } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { serverPipeline } from '../pipelines/server.js';
import type { ServerEvent } from '../pipelines/events.js';
import type { ServerSettings } from '../pipelines/settings.js';
import { FrameType, encodeFrame } from '../operators/core/wire/frames.js';
import { fakes, type FakeConnection, type FakeListener, type FakeTun } from './helpers/fake-ports.js';
import { ipv4Packet, marbles } from './helpers/marbles.js';
import { parseIpv4 } from '../operators/core/address.js';

const SETTINGS: ServerSettings = {
  tunnel: { address: parseIpv4('10.0.0.1')!, prefix: 24 },
  mtu: 1400,
  keepaliveMs: 10_000,
  timeoutMs: 30_000,
  sendQueueSize: 4,
  recvQueueSize: 4,
  clientIsolation: false,
  maxClients: 100,
  multiClient: true,
  helloTimeoutMs: 5_000,
};

type RunHelpers = Parameters<Parameters<TestScheduler['run']>[0]>[0];
type EventType = ServerEvent['type'];

/** Everything a scenario works with. */
interface Hub {
  readonly helpers: RunHelpers;
  readonly scheduler: TestScheduler;
  readonly tun: FakeTun;
  readonly listener: FakeListener;
  /** Every event with its virtual time, filled while the run goes on. */
  readonly log: Array<{ readonly at: number; readonly event: ServerEvent }>;
  /** Runs `fn` at virtual time `ms` (at least 1: the pipeline is subscribed at 0). */
  at(ms: number, fn: () => void): void;
  /** A new fake connection (not yet accepted). */
  connection(remote?: string): FakeConnection;
  /** Accepts a new connection at `ms` and has it send HELLO for `address` in the same frame. */
  join(ms: number, address: string): FakeConnection;
  /** Asserts, as a marble, the events of the given types (rejected.message and left.detail left out). */
  expectEvents(types: readonly EventType[], marble: string, values: Record<string, Partial<ServerEvent>>): void;
  /** Events of one type from the log. */
  events<K extends EventType>(type: K): Array<Extract<ServerEvent, { type: K }>>;
}

/** Runs a hub scenario until virtual time `until`, when the pipeline is unsubscribed. */
function hub(t: ExecutionContext, options: { readonly until: number; readonly settings?: Partial<ServerSettings> }, body: (h: Hub) => void): void {
  marbles(t, (helpers, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const listener = make.listener();
    const log: Array<{ at: number; event: ServerEvent }> = [];
    const events$: Observable<ServerEvent> = serverPipeline({ ...SETTINGS, ...options.settings }, { tun, listener, scheduler }).pipe(
      tap({
        next: (event) => log.push({ at: scheduler.now(), event }),
        error: (err: unknown) => t.fail(`the hub pipeline errored: ${String(err)}`),
      }),
    );
    let observed = false;
    const h: Hub = {
      helpers,
      scheduler,
      tun,
      listener,
      log,
      at(ms, fn) {
        if (ms < 1) throw new RangeError('scenario steps start at 1 ms');
        scheduler.schedule(fn, ms);
      },
      connection: (remote) => make.connection(remote),
      join(ms, address) {
        const c = make.connection();
        h.at(ms, () => {
          listener.accept(c);
          c.sendHello(address);
        });
        return c;
      },
      expectEvents(types, marble, values) {
        observed = true;
        const view$ = events$.pipe(
          filter((e) => types.includes(e.type)),
          map((e) => {
            const { message: _m, detail: _d, ...rest } = e as ServerEvent & { message?: string; detail?: string };
            return rest as Partial<ServerEvent>;
          }),
        );
        helpers.expectObservable(view$, `^ ${options.until - 1}ms !`).toBe(marble, values);
      },
      events: <K extends EventType>(type: K) => log.map((l) => l.event).filter((e): e is Extract<ServerEvent, { type: K }> => e.type === type),
    };
    body(h);
    if (!observed) {
      let sub: Subscription | undefined;
      scheduler.schedule(() => (sub = events$.subscribe({ error: () => undefined })), 0);
      scheduler.schedule(() => sub?.unsubscribe(), options.until);
    }
  });
}

/** Expected event values (free text left out, as in Hub.expectEvents). */
const joined = (c: FakeConnection, address: string, via: 'hello' | 'data', members: number): Partial<ServerEvent> => ({
  type: 'joined',
  id: c.id,
  remote: c.remote,
  address,
  via,
  members,
});
const left = (c: FakeConnection, address: string | undefined, reason: string, members: number): Partial<ServerEvent> =>
  ({ type: 'left', id: c.id, remote: c.remote, address, reason, members }) as Partial<ServerEvent>;
const rejected = (c: FakeConnection, address: string | undefined, reason: string): Partial<ServerEvent> =>
  ({ type: 'rejected', id: c.id, remote: c.remote, address, reason }) as Partial<ServerEvent>;
const drops = (who: string, counts: Record<string, number>): Partial<ServerEvent> => ({ type: 'drops', who, drops: counts });

const payload = (...b: number[]): Uint8Array => Uint8Array.from(b);

// ---------------------------------------------------------------- joining

test('a client that sends HELLO gets a WELCOME and joins via hello', (t) => {
  let a!: FakeConnection;
  hub(t, { until: 100 }, (h) => {
    h.at(1, () => h.listener.listening());
    a = h.join(2, '10.0.0.2');
    h.expectEvents(['listening', 'connected', 'joined'], '-l(cj)', {
      l: { type: 'listening', address: '0.0.0.0:9000', tun: 'tun-test', hub: '10.0.0.1/24' },
      c: { type: 'connected', id: a.id, remote: a.remote },
      j: joined(a, '10.0.0.2', 'hello', 1),
    });
  });
  t.deepEqual(a.types(), [FrameType.Welcome], 'the WELCOME is the only frame before the first keepalive');
  t.is(a.frames[0]!.at, 2);
  t.deepEqual(a.welcomes(), [
    { version: 1, address: '10.0.0.2', prefix: 24, hub: '10.0.0.1', mtu: 1400, keepalive: 10, timeout: 30, caps: ['rtt', 'routes'] },
  ]);
  t.is(a.closedAt, 100, 'closed only by the teardown');
});

test('a 0.0.1-era client joins via its first DATA packet, which is delivered, and gets no WELCOME', (t) => {
  const first = ipv4Packet('10.0.0.5', '10.0.0.1', payload(7, 7));
  const back = ipv4Packet('10.0.0.1', '10.0.0.5', payload(8));
  let legacy!: FakeConnection;
  let tun!: FakeTun;
  hub(t, { until: 100 }, (h) => {
    tun = h.tun;
    legacy = h.connection();
    h.at(2, () => {
      h.listener.accept(legacy);
      legacy.sendData(first);
    });
    h.at(10, () => h.tun.read(back));
    h.expectEvents(['connected', 'joined', 'drops'], '--(cj)', {
      c: { type: 'connected', id: legacy.id, remote: legacy.remote },
      j: joined(legacy, '10.0.0.5', 'data', 1),
    });
  });
  t.deepEqual(tun.packets(), [first]);
  t.deepEqual(legacy.types(), [FrameType.Data], 'no WELCOME, only the routed packet');
  t.deepEqual(legacy.dataPackets(), [back]);
  t.is(legacy.frames[0]!.at, 10);
});

// ---------------------------------------------------------------- routing

test('a packet from one member to another arrives unchanged as a DATA frame on the other connection', (t) => {
  const p = ipv4Packet('10.0.0.2', '10.0.0.3', payload(1, 2, 3));
  const q = ipv4Packet('10.0.0.2', '10.0.0.3', payload(4, 5));
  let a!: FakeConnection;
  let b!: FakeConnection;
  let tun!: FakeTun;
  hub(t, { until: 100 }, (h) => {
    tun = h.tun;
    a = h.join(1, '10.0.0.2');
    b = h.join(2, '10.0.0.3');
    h.at(5, () => a.sendData(p, q));
    h.expectEvents(['joined', 'drops', 'left'], '-ab', { a: joined(a, '10.0.0.2', 'hello', 1), b: joined(b, '10.0.0.3', 'hello', 2) });
  });
  t.deepEqual(b.dataPackets(), [p, q]);
  t.deepEqual(
    b.frames.filter((f) => f.type === FrameType.Data).map((f) => f.at),
    [5, 5],
  );
  t.deepEqual(a.dataPackets(), []);
  t.deepEqual(tun.packets(), []);
});

test('a packet from a member to the hub address is written to the TUN device', (t) => {
  const p = ipv4Packet('10.0.0.2', '10.0.0.1', payload(9));
  let tun!: FakeTun;
  hub(t, { until: 100 }, (h) => {
    tun = h.tun;
    const a = h.join(1, '10.0.0.2');
    h.at(5, () => a.sendData(p));
  });
  t.deepEqual(tun.written, [{ at: 5, packet: p }]);
});

test('a packet from a member to an address outside the subnet goes to the TUN device', (t) => {
  const p = ipv4Packet('10.0.0.2', '8.8.8.8', payload(53));
  let tun!: FakeTun;
  hub(t, { until: 100 }, (h) => {
    tun = h.tun;
    const a = h.join(1, '10.0.0.2');
    h.at(5, () => a.sendData(p));
    h.expectEvents(['drops'], '', {});
  });
  t.deepEqual(tun.written, [{ at: 5, packet: p }]);
});

test('a packet read from the hub TUN goes to the member that owns the destination', (t) => {
  const p = ipv4Packet('10.0.0.1', '10.0.0.3', payload(1));
  let a!: FakeConnection;
  let b!: FakeConnection;
  hub(t, { until: 100 }, (h) => {
    a = h.join(1, '10.0.0.2');
    b = h.join(2, '10.0.0.3');
    h.at(5, () => h.tun.read(p));
  });
  t.deepEqual(b.dataPackets(), [p]);
  t.deepEqual(a.dataPackets(), []);
});

test('a packet read from the hub TUN for an unknown address is dropped as no-route at tun', (t) => {
  let a!: FakeConnection;
  hub(t, { until: 100 }, (h) => {
    a = h.join(1, '10.0.0.2');
    h.at(5, () => h.tun.read(ipv4Packet('10.0.0.1', '10.0.0.9'), ipv4Packet('10.0.0.1', '10.0.0.2')));
    h.expectEvents(['drops'], '-----d', { d: drops('tun', { 'no-route': 1 }) });
  });
  t.is(a.dataPackets().length, 1, 'the routable packet of the batch still goes out');
});

test('a packet from a member to an unknown address in the subnet is dropped as no-route', (t) => {
  let tun!: FakeTun;
  hub(t, { until: 100 }, (h) => {
    tun = h.tun;
    const a = h.join(1, '10.0.0.2');
    h.at(5, () => a.sendData(ipv4Packet('10.0.0.2', '10.0.0.9')));
    h.at(6, () => a.sendData(ipv4Packet('10.0.0.2', '10.0.0.255')));
    h.expectEvents(['drops'], '-----ab', {
      a: drops('10.0.0.2', { 'no-route': 1 }),
      b: drops('10.0.0.2', { broadcast: 1 }),
    });
  });
  t.deepEqual(tun.packets(), []);
});

test('with client isolation, member-to-member packets are dropped while member-to-hub packets pass', (t) => {
  const toPeer = ipv4Packet('10.0.0.2', '10.0.0.3', payload(1));
  const toHub = ipv4Packet('10.0.0.2', '10.0.0.1', payload(2));
  const fromHub = ipv4Packet('10.0.0.1', '10.0.0.3', payload(3));
  let b!: FakeConnection;
  let tun!: FakeTun;
  hub(t, { until: 100, settings: { clientIsolation: true } }, (h) => {
    tun = h.tun;
    const a = h.join(1, '10.0.0.2');
    b = h.join(2, '10.0.0.3');
    h.at(5, () => a.sendData(toPeer, toHub));
    h.at(6, () => h.tun.read(fromHub));
    h.expectEvents(['drops'], '-----i', { i: drops('10.0.0.2', { isolation: 1 }) });
  });
  t.deepEqual(tun.written, [{ at: 5, packet: toHub }]);
  t.deepEqual(b.dataPackets(), [fromHub], 'the hub still reaches an isolated member');
});

// ---------------------------------------------------------------- liveness

test('a silent member leaves as idle exactly timeoutMs after its last chunk, while keepalives keep another alive', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  hub(t, { until: 50_000 }, (h) => {
    a = h.join(1, '10.0.0.2');
    b = h.join(2, '10.0.0.3');
    for (const ms of [10_000, 20_000, 30_000, 40_000]) h.at(ms, () => b.sendKeepalive());
    h.at(30_002, () => h.tun.read(ipv4Packet('10.0.0.1', '10.0.0.2'), ipv4Packet('10.0.0.1', '10.0.0.3')));
    h.expectEvents(['joined', 'left'], '-ab 29998ms c', {
      a: joined(a, '10.0.0.2', 'hello', 1),
      b: joined(b, '10.0.0.3', 'hello', 2),
      c: left(a, '10.0.0.2', 'idle', 1),
    });
  });
  t.is(a.closedAt, 30_001);
  t.false(a.reading);
  t.is(b.closedAt, 50_000, 'closed only by the teardown');
  t.is(b.dataPackets().length, 1, 'the surviving member still gets its packets');
});

test('the idle member is removed from the route table', (t) => {
  let a!: FakeConnection;
  hub(t, { until: 40_000 }, (h) => {
    a = h.join(1, '10.0.0.2');
    h.at(30_002, () => h.tun.read(ipv4Packet('10.0.0.1', '10.0.0.2')));
    h.expectEvents(['left', 'drops'], '- 30000ms ld', {
      l: left(a, '10.0.0.2', 'idle', 0),
      d: drops('tun', { 'no-route': 1 }),
    });
  });
  t.deepEqual(a.dataPackets(), []);
});

test('the hub sends a KEEPALIVE to each member every keepaliveMs', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  hub(t, { until: 45_000 }, (h) => {
    a = h.join(1, '10.0.0.2');
    b = h.join(3_000, '10.0.0.3');
    for (const ms of [5_000, 15_000, 25_000, 35_000]) {
      h.at(ms, () => a.sendKeepalive());
      h.at(ms, () => b.sendKeepalive());
    }
  });
  t.deepEqual(a.keepaliveTimes(), [10_001, 20_001, 30_001, 40_001]);
  t.deepEqual(b.keepaliveTimes(), [13_000, 23_000, 33_000, 43_000]);
});

test('a member that closes its connection leaves, and packets to its address then drop as no-route', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  let details: string[] = [];
  hub(t, { until: 200 }, (h) => {
    a = h.join(1, '10.0.0.2');
    b = h.join(2, '10.0.0.3');
    h.at(100, () => a.end());
    h.at(199, () => (details = h.events('left').map((e) => e.detail)));
    h.at(101, () => h.tun.read(ipv4Packet('10.0.0.1', '10.0.0.2')));
    h.at(102, () => b.sendData(ipv4Packet('10.0.0.3', '10.0.0.2')));
    h.expectEvents(['left', 'drops'], '100ms lts', {
      l: left(a, '10.0.0.2', 'closed', 1),
      t: drops('tun', { 'no-route': 1 }),
      s: drops('10.0.0.3', { 'no-route': 1 }),
    });
  });
  t.is(a.closedAt, 100);
  t.deepEqual(details, ['the peer closed the connection']);
  t.is(b.closedAt, 200, 'closed only by the teardown');
});

test('a member whose socket fails leaves with reason reset and the error code in the detail', (t) => {
  let a!: FakeConnection;
  let events: Array<Extract<ServerEvent, { type: 'left' }>> = [];
  hub(t, { until: 200 }, (h) => {
    a = h.join(1, '10.0.0.2');
    h.at(50, () => a.fail(Object.assign(new Error('read failed'), { code: 'ECONNRESET' })));
    h.expectEvents(['left'], '50ms l', { l: left(a, '10.0.0.2', 'reset', 0) });
    h.at(199, () => (events = h.events('left')));
  });
  t.is(events[0]?.detail, 'ECONNRESET: read failed');
  t.is(a.closedAt, 50);
});

test('a connection that closes before joining leaves without an address', (t) => {
  let c!: FakeConnection;
  hub(t, { until: 100 }, (h) => {
    c = h.connection();
    h.at(1, () => h.listener.accept(c));
    h.at(20, () => c.end());
    h.expectEvents(['connected', 'joined', 'left'], '-c 18ms l', {
      c: { type: 'connected', id: c.id, remote: c.remote },
      l: left(c, undefined, 'closed', 0),
    });
  });
  t.is(c.closedAt, 20);
});

// ---------------------------------------------------------------- conflicts and limits

test('a second claimant of an address gets REJECT ip-conflict while the first keeps working', (t) => {
  const p = ipv4Packet('10.0.0.1', '10.0.0.2', payload(42));
  let a!: FakeConnection;
  let b!: FakeConnection;
  let messages: string[] = [];
  hub(t, { until: 100 }, (h) => {
    a = h.join(1, '10.0.0.2');
    b = h.join(10, '10.0.0.2');
    h.at(20, () => h.tun.read(p));
    h.at(99, () => (messages = h.events('rejected').map((e) => e.message)));
    h.expectEvents(['joined', 'rejected', 'left'], '-a 8ms (rl)', {
      a: joined(a, '10.0.0.2', 'hello', 1),
      r: rejected(b, '10.0.0.2', 'ip-conflict'),
      l: left(b, undefined, 'rejected', 1),
    });
  });
  t.deepEqual(a.dataPackets(), [p]);
  t.deepEqual(b.dataPackets(), []);
  t.is(b.closedAt, 10);
  t.is(a.closedAt, 100, 'closed only by the teardown');
  const reject = b.rejects();
  t.is(reject.length, 1);
  t.like(reject[0], { version: 1, reason: 'ip-conflict' });
  // The newcomer learns only that the address is taken; the hub's own event says by whom.
  t.is((reject[0] as { message: string }).message, '10.0.0.2 is in use by another member');
  t.false((reject[0] as { message: string }).message.includes(a.remote.split(':')[0]!), 'the REJECT does not reveal the holder');
  t.is(messages.length, 1);
  t.regex(messages[0]!, new RegExp(`in use by ${a.remote.replace(/\./g, '\\.')}`));
  t.deepEqual(b.types(), [FrameType.Reject]);
});

test('one frame before timeout of silence the holder still wins: the claimant is refused', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  let lefts: Array<[number, ServerEvent]> = [];
  hub(t, { until: 31_000 }, (h) => {
    a = h.join(1, '10.0.0.2');
    b = h.join(30_000, '10.0.0.2');
    h.at(30_999, () => (lefts = h.log.filter((l) => l.event.type === 'left').map((l) => [l.at, l.event])));
    h.expectEvents(['joined', 'rejected'], '-a 29998ms r', {
      a: joined(a, '10.0.0.2', 'hello', 1),
      r: rejected(b, '10.0.0.2', 'ip-conflict'),
    });
  });
  t.like(b.rejects()[0], { reason: 'ip-conflict' });
  t.like(lefts, [
    [30_000, { id: b.id, address: undefined, reason: 'rejected', members: 1 }],
    [30_001, { id: a.id, address: '10.0.0.2', reason: 'idle', members: 0 }],
  ]);
  t.is(lefts.length, 2);
  t.is(a.closedAt, 30_001, 'the holder idles out one frame later, as usual');
});

test('a claimant arriving exactly timeoutMs into the holder\'s silence replaces the holder', (t) => {
  // The holder's idle timer would end it in this very frame; the claimant's HELLO is processed first,
  // so the hub takes the "silent past timeout" path: the holder leaves as replaced, the claimant joins.
  let a!: FakeConnection;
  let b!: FakeConnection;
  let details: string[] = [];
  const p = ipv4Packet('10.0.0.1', '10.0.0.2', payload(5));
  hub(t, { until: 40_000 }, (h) => {
    a = h.join(1, '10.0.0.2');
    b = h.join(30_001, '10.0.0.2');
    h.at(30_002, () => h.tun.read(p));
    h.at(39_999, () => (details = h.events('left').map((e) => e.detail)));
    h.expectEvents(['joined', 'rejected', 'left'], '-a 29999ms (lb)', {
      a: joined(a, '10.0.0.2', 'hello', 1),
      l: left(a, '10.0.0.2', 'replaced', 0),
      b: joined(b, '10.0.0.2', 'hello', 1),
    });
  });
  t.is(a.closedAt, 30_001);
  t.deepEqual(details, [`10.0.0.2 was claimed by ${b.remote} after 30 s of silence`]);
  t.deepEqual(b.welcomes().length, 1);
  t.deepEqual(b.dataPackets(), [p]);
  t.deepEqual(a.dataPackets(), []);
});

test('once a silent holder has idled out, a new claimant of its address simply joins', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  hub(t, { until: 40_000 }, (h) => {
    a = h.join(1, '10.0.0.2');
    b = h.join(30_002, '10.0.0.2');
    h.expectEvents(['joined', 'rejected', 'left'], '-a 29999ms lb', {
      a: joined(a, '10.0.0.2', 'hello', 1),
      l: left(a, '10.0.0.2', 'idle', 0),
      b: joined(b, '10.0.0.2', 'hello', 1),
    });
  });
  t.is(a.closedAt, 30_001);
  t.is(b.welcomes().length, 1);
  t.deepEqual(b.rejects(), []);
});

test('beyond max_clients a newcomer gets REJECT max-clients, members keep working, and a freed slot can be taken', (t) => {
  const ab = ipv4Packet('10.0.0.2', '10.0.0.3', payload(1));
  const toD = ipv4Packet('10.0.0.1', '10.0.0.5', payload(2));
  let b!: FakeConnection;
  let c!: FakeConnection;
  let d!: FakeConnection;
  hub(t, { until: 100, settings: { maxClients: 2 } }, (h) => {
    const a = h.join(1, '10.0.0.2');
    b = h.join(2, '10.0.0.3');
    c = h.join(3, '10.0.0.4');
    h.at(5, () => a.sendData(ab));
    h.at(10, () => a.end());
    d = h.join(11, '10.0.0.5');
    h.at(12, () => h.tun.read(toD));
    h.expectEvents(['joined', 'rejected', 'left'], '-ab(rc)---ld', {
      a: joined(a, '10.0.0.2', 'hello', 1),
      b: joined(b, '10.0.0.3', 'hello', 2),
      r: rejected(c, '10.0.0.4', 'max-clients'),
      c: left(c, undefined, 'rejected', 2),
      l: left(a, '10.0.0.2', 'closed', 1),
      d: joined(d, '10.0.0.5', 'hello', 2),
    });
  });
  t.like(c.rejects()[0], { reason: 'max-clients' });
  t.is(c.closedAt, 3);
  t.deepEqual(b.dataPackets(), [ab]);
  t.deepEqual(d.dataPackets(), [toD]);
  t.is(d.welcomes().length, 1);
});

test('with multi_client false a second client is refused as single-client', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  hub(t, { until: 100, settings: { multiClient: false } }, (h) => {
    a = h.join(1, '10.0.0.2');
    b = h.join(2, '10.0.0.3');
    h.expectEvents(['joined', 'rejected', 'left'], '-a(rl)', {
      a: joined(a, '10.0.0.2', 'hello', 1),
      r: rejected(b, '10.0.0.3', 'single-client'),
      l: left(b, undefined, 'rejected', 1),
    });
  });
  t.like(b.rejects()[0], { reason: 'single-client' });
  t.is(b.closedAt, 2);
  t.is(a.closedAt, 100, 'closed only by the teardown');
});

const refusesHello = test.macro({
  exec(t, hello: Uint8Array, reason: string, address: string | undefined) {
    let c!: FakeConnection;
    let tun!: FakeTun;
    hub(t, { until: 100 }, (h) => {
      tun = h.tun;
      c = h.connection();
      h.at(1, () => {
        h.listener.accept(c);
        c.push(hello);
      });
      h.at(5, () => h.tun.read(ipv4Packet('10.0.0.1', address ?? '10.0.0.2')));
      h.expectEvents(['connected', 'joined', 'rejected', 'left'], '-(crl)', {
        c: { type: 'connected', id: c.id, remote: c.remote },
        r: rejected(c, address, reason),
        l: left(c, undefined, 'rejected', 0),
      });
    });
    t.deepEqual(c.types(), [FrameType.Reject]);
    t.like(c.rejects()[0], { version: 1, reason });
    t.is(c.closedAt, 1);
    t.deepEqual(tun.packets(), [], 'nothing was registered for the address');
  },
  title: (what = '', _hello, reason: string) => `a HELLO ${what} is refused with REJECT ${reason}`,
});

const hello = (msg: object): Uint8Array => encodeFrame(FrameType.Hello, new TextEncoder().encode(JSON.stringify(msg)));

test('for an address outside the subnet', refusesHello, hello({ version: 1, address: '192.168.1.2', prefix: 24 }), 'outside-subnet', '192.168.1.2');
test('for the hub\'s own address', refusesHello, hello({ version: 1, address: '10.0.0.1', prefix: 24 }), 'hub-address', '10.0.0.1');
test('for the network address', refusesHello, hello({ version: 1, address: '10.0.0.0', prefix: 24 }), 'outside-subnet', '10.0.0.0');
test('for the broadcast address', refusesHello, hello({ version: 1, address: '10.0.0.255', prefix: 24 }), 'outside-subnet', '10.0.0.255');
test('that is not JSON', refusesHello, encodeFrame(FrameType.Hello, new TextEncoder().encode('{"version": 1, "addr')), 'bad-hello', undefined);
test('without an address', refusesHello, hello({ version: 1 }), 'bad-hello', undefined);
test('with a version below 1', refusesHello, hello({ version: 0, address: '10.0.0.2' }), 'unsupported-version', undefined);

// ---------------------------------------------------------------- framing

test('frames of unknown type and empty frames are counted and ignored', (t) => {
  const p = ipv4Packet('10.0.0.2', '10.0.0.1');
  let a!: FakeConnection;
  let tun!: FakeTun;
  hub(t, { until: 100 }, (h) => {
    tun = h.tun;
    a = h.join(1, '10.0.0.2');
    h.at(5, () => a.push(encodeFrame(0x7f, payload(1, 2, 3))));
    h.at(6, () => a.sendData(p));
    h.at(7, () => a.push(Uint8Array.from([0, 0, 0, 0])));
    h.expectEvents(['drops', 'left'], '-----u-e', {
      u: drops('10.0.0.2', { 'unknown-type': 1 }),
      e: drops('10.0.0.2', { 'empty-frame': 1 }),
    });
  });
  t.deepEqual(tun.packets(), [p]);
  t.is(a.closedAt, 100, 'closed only by the teardown');
});

test('an oversize frame length ends the session with reason frame-error', (t) => {
  const header = Uint8Array.from([0, 0, 0x05, 0xd9, FrameType.Data, 0x45]); // 1497 bytes announced
  let a!: FakeConnection;
  let details: string[] = [];
  hub(t, { until: 100 }, (h) => {
    a = h.join(1, '10.0.0.2');
    h.at(5, () => a.push(header));
    h.at(6, () => h.tun.read(ipv4Packet('10.0.0.1', '10.0.0.2')));
    h.at(99, () => (details = h.events('left').map((e) => e.detail)));
    h.expectEvents(['left', 'drops'], '-----ld', {
      l: left(a, '10.0.0.2', 'frame-error', 0),
      d: drops('tun', { 'no-route': 1 }),
    });
  });
  t.deepEqual(details, ['frame body of 1497 bytes exceeds the limit of 1496']);
  t.is(a.closedAt, 5);
});

test('a frame of exactly the 0.0.1-era limit is accepted', (t) => {
  const p = ipv4Packet('10.0.0.2', '10.0.0.1', new Uint8Array(1495 - 20));
  let tun!: FakeTun;
  hub(t, { until: 100 }, (h) => {
    tun = h.tun;
    const a = h.join(1, '10.0.0.2');
    h.at(5, () => a.sendData(p));
    h.expectEvents(['left'], '', {});
  });
  t.is(tun.packets()[0]?.length, 1495);
});

// ---------------------------------------------------------------- backpressure

test('while a member connection needs drain its packets queue up to sendQueueSize, the rest drop, and drain flushes in order', (t) => {
  const toB = (n: number): Uint8Array => ipv4Packet('10.0.0.1', '10.0.0.3', payload(n));
  const fromA = (n: number): Uint8Array => ipv4Packet('10.0.0.2', '10.0.0.3', payload(n));
  let b!: FakeConnection;
  hub(t, { until: 25_000 }, (h) => {
    const a = h.join(1, '10.0.0.2');
    b = h.join(2, '10.0.0.3');
    h.at(5, () => b.block());
    // The packets come within the send queue's 10 ms limit of the drain (older ones would go as queue-age).
    h.at(14_995, () => h.tun.read(toB(1), toB(2), toB(3)));
    h.at(14_996, () => a.sendData(fromA(4), fromA(5), fromA(6)));
    h.at(14_997, () => h.tun.read(toB(7)));
    h.at(14_998, () => {
      t.deepEqual(b.dataPackets(), [], 'nothing is written while the connection needs drain');
    });
    h.at(15_000, () => b.drain());
    h.at(16_000, () => h.tun.read(toB(8)));
    for (const ms of [5_000, 15_000]) {
      h.at(ms, () => a.sendKeepalive());
      h.at(ms, () => b.sendKeepalive());
    }
    h.expectEvents(['drops', 'left'], '14996ms ab', {
      a: drops('10.0.0.3', { 'queue-full': 2 }),
      b: drops('10.0.0.3', { 'queue-full': 1 }),
    });
  });
  t.deepEqual(b.dataPackets(), [toB(1), toB(2), toB(3), fromA(4), toB(8)]);
  const data = b.frames.filter((f) => f.type === FrameType.Data).map((f) => f.at);
  t.deepEqual(data, [15_000, 15_000, 15_000, 15_000, 16_000]);
  t.is(b.chunks.filter((c) => c[4] === FrameType.Data).length, 2, 'the queue is flushed in one write');
  t.deepEqual(b.keepaliveTimes(), [20_002], 'no keepalive is queued behind a full send buffer');
});

test('while the hub TUN is full its packets queue up to recvQueueSize and are written as it makes room', (t) => {
  const p = (n: number): Uint8Array => ipv4Packet('10.0.0.2', '10.0.0.1', payload(n));
  let tun!: FakeTun;
  hub(t, { until: 100 }, (h) => {
    tun = h.tun;
    const a = h.join(1, '10.0.0.2');
    h.at(4, () => h.tun.block());
    h.at(5, () => a.sendData(p(1), p(2), p(3), p(4), p(5), p(6)));
    h.at(10, () => h.tun.makeRoom(2));
    h.at(20, () => h.tun.makeRoom());
    h.at(30, () => a.sendData(p(7)));
    h.expectEvents(['drops'], '-----d', { d: drops('tun', { 'queue-full': 2 }) });
  });
  t.deepEqual(
    tun.written.map((w) => [w.at, w.packet[20]]),
    [
      [10, 1],
      [10, 2],
      [20, 3],
      [20, 4],
      [30, 7],
    ],
  );
});

// ---------------------------------------------------------------- teardown

test('unsubscribing the hub closes every connection, stops listening and stops reading the TUN device', (t) => {
  let conns: FakeConnection[] = [];
  let tun!: FakeTun;
  let listener!: FakeListener;
  hub(t, { until: 100 }, (h) => {
    tun = h.tun;
    listener = h.listener;
    const a = h.join(1, '10.0.0.2');
    const b = h.join(2, '10.0.0.3');
    const pending = h.connection();
    h.at(3, () => h.listener.accept(pending));
    conns = [a, b, pending];
    h.at(99, () => {
      t.deepEqual(
        conns.map((c) => c.closed),
        [false, false, false],
      );
      t.true(tun.reading);
      t.true(listener.listeningNow);
    });
  });
  t.deepEqual(
    conns.map((c) => c.closedAt),
    [100, 100, 100],
  );
  t.deepEqual(
    conns.map((c) => c.reading),
    [false, false, false],
  );
  t.false(tun.reading);
  t.is(tun.stoppedReadingAt, 100);
  t.false(listener.listeningNow);
  t.is(listener.stoppedAt, 100);
});

test('a failing listener errors the hub pipeline', (t) => {
  marbles(t, ({ expectObservable }, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const listener = make.listener();
    const err = Object.assign(new Error('listen EADDRINUSE: address already in use 0.0.0.0:9000'), { code: 'EADDRINUSE' });
    scheduler.schedule(() => listener.fail(err), 3);
    expectObservable(serverPipeline(SETTINGS, { tun, listener, scheduler })).toBe('---#', undefined, err);
  });
});

test('without authentication, a connection that sends no HELLO and no packet (only KEEPALIVEs) is closed at keepalive + 5 s; a 0.0.1-era client whose first packet comes in time joins', (t) => {
  let lurker!: FakeConnection;
  let old!: FakeConnection;
  hub(t, { until: 20_000 }, (h) => {
    lurker = h.connection('192.0.2.50:5000');
    old = h.connection('192.0.2.51:5000');
    h.at(1, () => {
      h.listener.accept(lurker);
      h.listener.accept(old);
    });
    for (const ms of [2, 5_000, 10_000]) h.at(ms, () => lurker.sendKeepalive());
    h.at(10_000, () => old.sendKeepalive());
    h.at(14_000, () => old.sendData(ipv4Packet('10.0.0.7', '10.0.0.1', payload(1))));
  });
  t.is(lurker.closedAt, 15_001, 'closed at 10 s + 5 s');
  t.is(old.closedAt, 20_000, 'the 0.0.1-era client stays until the teardown');
});

// ---------------------------------------------------------------- pending connections (issue 10)

test('the listener hears admitted() once a connection becomes a member (HELLO or a 0.0.1-era first packet), never for a refused one', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  let legacy!: FakeConnection;
  hub(t, { until: 100 }, (h) => {
    a = h.join(2, '10.0.0.2');
    b = h.join(5, '10.0.0.2');
    legacy = h.connection();
    h.at(7, () => {
      h.listener.accept(legacy);
      legacy.sendData(ipv4Packet('10.0.0.5', '10.0.0.1'));
    });
    h.at(9, () => a.sendHello('10.0.0.2'));
  });
  t.deepEqual(a.admittedAt, [2]);
  t.deepEqual(b.admittedAt, [], 'refused with ip-conflict');
  t.deepEqual(legacy.admittedAt, [7]);
});

test("a listener's refused connections pass through as refused events", (t) => {
  hub(t, { until: 20 }, (h) => {
    h.at(1, () => h.listener.listening());
    h.at(3, () => h.listener.refuse('192.0.2.7:4000', 'pending-limit', '1024 connections are already waiting to be admitted (max_pending 1024)'));
    h.expectEvents(['refused'], '---r', { r: { type: 'refused', remote: '192.0.2.7:4000', reason: 'pending-limit' } });
  });
});
