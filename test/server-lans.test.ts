// The hub's assigned addresses (sticky leases, exhaustion, the lease store), LAN routes behind
// members (allow-list, overlap, push and withdraw, longest-prefix routing, anti-spoofing) and
// broadcast/multicast replication (isolation, per-member limit), over fake ports in virtual time.
import test, { type ExecutionContext } from 'ava';
import { tap } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import type { LeaseTable } from '../pipelines/allocator.js';
import type { ServerEvent } from '../pipelines/events.js';
import type { Authenticator, HostNetworkPort, LeaseStore, RoutesPort } from '../pipelines/ports.js';
import { LEASE_SAVE_MS, serverPipeline } from '../pipelines/server.js';
import type { ServerSettings } from '../pipelines/settings.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { RoutesCodec, decodeControl, type HelloJson, type RoutesJson } from '../operators/core/wire/control.js';
import { makeAuthenticator } from '../src/auth.js';
import { FakeRoutes, fakes, type FakeConnection, type FakeTun } from './helpers/fake-ports.js';
import { ipv4Packet, marbles } from './helpers/marbles.js';
import { hubSettings } from './helpers/settings.js';
import { formatIpv4, parseIpv4, type Ipv4Prefix } from '../operators/core/address.js';

const ip = (s: string): number => parseIpv4(s)!;
const cidr = (s: string): Ipv4Prefix => {
  const [a, p] = s.split('/');
  return { address: ip(a!), prefix: Number(p) };
};

const SETTINGS: ServerSettings = hubSettings(64);

const ID = (n: number): string => n.toString(16).padStart(32, '0');

/** A lease store in memory that records every save. */
class MemoryLeases implements LeaseStore {
  readonly saves: LeaseTable[] = [];
  failWith: string | undefined;
  constructor(readonly initial: LeaseTable = {}) {}
  save(leases: LeaseTable): { ok: true } | { ok: false; detail: string } {
    if (this.failWith !== undefined) return { ok: false, detail: this.failWith };
    this.saves.push(leases);
    return { ok: true };
  }
}

interface Scenario {
  readonly scheduler: TestScheduler;
  readonly tun: FakeTun;
  at(ms: number, fn: () => void): void;
  /** A connection (from `remote`, when given) accepted at `ms` that sends `hello` in the same frame. */
  hello(ms: number, hello: Partial<HelloJson>, remote?: string): FakeConnection;
  events<K extends ServerEvent['type']>(type: K): Array<Extract<ServerEvent, { type: K }>>;
}

interface Options {
  readonly settings?: Partial<ServerSettings>;
  readonly leases?: LeaseStore;
  readonly routes?: RoutesPort;
  readonly authenticator?: Authenticator;
  readonly hostNetwork?: HostNetworkPort;
  readonly until?: number;
}

function scenario(t: ExecutionContext, options: Options, body: (s: Scenario) => void): void {
  marbles(t, (_helpers, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const listener = make.listener();
    const log: ServerEvent[] = [];
    const sub = serverPipeline(
      { ...SETTINGS, ...options.settings },
      {
        tun,
        listener,
        scheduler,
        ...(options.leases === undefined ? {} : { leases: options.leases }),
        ...(options.routes === undefined ? {} : { routes: options.routes }),
        ...(options.authenticator === undefined ? {} : { authenticator: options.authenticator }),
        ...(options.hostNetwork === undefined ? {} : { hostNetwork: options.hostNetwork }),
      },
    )
      .pipe(tap({ next: (e) => log.push(e), error: (e: unknown) => t.fail(String(e)) }))
      .subscribe();
    scheduler.schedule(() => sub.unsubscribe(), options.until ?? 1000);
    const s: Scenario = {
      scheduler,
      tun,
      at: (ms, fn) => void scheduler.schedule(fn, ms),
      hello(ms, hello, remote) {
        const c = make.connection(remote);
        s.at(ms, () => {
          listener.accept(c);
          c.push(encodeHello(hello));
        });
        return c;
      },
      events: <K extends ServerEvent['type']>(type: K) => log.filter((e): e is Extract<ServerEvent, { type: K }> => e.type === type),
    };
    body(s);
  });
}

function encodeHello(hello: Partial<HelloJson>): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify({ version: 1, caps: ['rtt', 'routes'], ...hello }));
  const frame = new Uint8Array(5 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length + 1);
  frame[4] = FrameType.Hello;
  frame.set(body, 5);
  return frame;
}

const welcomed = (c: FakeConnection): string | undefined => {
  const w = c.welcomes()[0];
  return w === undefined || w instanceof Error ? undefined : w.address;
};
const rejectReason = (c: FakeConnection): string | undefined => {
  const r = c.rejects()[0];
  return r === undefined || r instanceof Error ? undefined : r.reason;
};
/** The ROUTES frames a connection got, as their JSON (checked by the codec first). */
const routesFrames = (c: FakeConnection): RoutesJson['routes'][] =>
  c.frames.filter((f) => f.type === FrameType.Routes).map((f) => {
    const r = decodeControl(FrameType.Routes, RoutesCodec, f.payload);
    if (r instanceof Error) throw r;
    return RoutesCodec.encode(r).routes;
  });

// ---------------------------------------------------------------------------------------------
// Assigned addresses

test('three clients that ask for an address get distinct ones from the pool, never the hub’s, saved as leases in one write', (t) => {
  const leases = new MemoryLeases();
  scenario(t, { leases }, (s) => {
    const a = s.hello(1, { assign: true, id: ID(1) });
    const b = s.hello(2, { assign: true, id: ID(2) });
    const c = s.hello(3, { assign: true, id: ID(3) });
    s.at(10, () => {
      t.deepEqual([welcomed(a), welcomed(b), welcomed(c)], ['10.0.0.2', '10.0.0.3', '10.0.0.4']);
      t.deepEqual(
        s.events('joined').map((e) => [e.address, e.assigned]),
        [
          ['10.0.0.2', true],
          ['10.0.0.3', true],
          ['10.0.0.4', true],
        ],
      );
      t.is(leases.saves.length, 0, 'new leases wait up to LEASE_SAVE_MS for the rest of a burst');
    });
    s.at(10 + LEASE_SAVE_MS, () => {
      t.is(leases.saves.length, 1, 'one write for the burst of three');
      t.deepEqual(leases.saves.at(-1), { [`id:${ID(1)}`]: ip('10.0.0.2'), [`id:${ID(2)}`]: ip('10.0.0.3'), [`id:${ID(3)}`]: ip('10.0.0.4') });
      t.deepEqual(s.events('leases').at(-1)?.leases.map((l) => l.address), ['10.0.0.2', '10.0.0.3', '10.0.0.4']);
    });
  });
});

test('a client reconnecting with its id gets its address again, replacing its stale session at once, without a new save', (t) => {
  const leases = new MemoryLeases();
  scenario(t, { leases }, (s) => {
    const first = s.hello(1, { assign: true, id: ID(7) });
    s.hello(2, { assign: true, id: ID(8) });
    const again = s.hello(5, { assign: true, id: ID(7) });
    s.at(10, () => {
      t.is(welcomed(first), '10.0.0.2');
      t.is(welcomed(again), '10.0.0.2');
      t.true(first.closed, 'the old session of the same identity was replaced');
      t.deepEqual(s.events('left').map((e) => e.reason), ['replaced']);
    });
    s.at(600, () => t.is(leases.saves.length, 1, 'the two new leases in one write; the reconnect made none'));
  });
});

test('a replaced session is told why in a REJECT replaced that names no endpoint', (t) => {
  scenario(t, {}, (s) => {
    const first = s.hello(1, { assign: true, id: ID(7) }, '192.0.2.1:1000');
    s.hello(5, { assign: true, id: ID(7) }, '203.0.113.9:2000');
    s.at(10, () => {
      const r = first.rejects();
      t.is(r.length, 1);
      t.like(r[0], { reason: 'replaced' });
      t.regex((r[0] as { message: string }).message, /a newer session of this client's identity \(id:0+7\) took over its address/);
      t.false((r[0] as { message: string }).message.includes('203.0.113.9'));
      t.regex(s.events('left')[0]!.detail, /reconnected from 203\.0\.113\.9:2000/, 'the hub’s own log says from where');
    });
  });
});

test('two live clients sharing one identity flap at most three times, then the newcomer is refused as duplicate-identity while the holder lives', (t) => {
  scenario(t, { until: 200_000 }, (s) => {
    // A and B alternate, each reconnecting as soon as it is replaced.
    const a1 = s.hello(1, { assign: true, id: ID(9) }, '192.0.2.1:1001');
    const b1 = s.hello(10, { assign: true, id: ID(9) }, '192.0.2.2:1001');
    const a2 = s.hello(20, { assign: true, id: ID(9) }, '192.0.2.1:1002');
    const b2 = s.hello(30, { assign: true, id: ID(9) }, '192.0.2.2:1002');
    const a3 = s.hello(40, { assign: true, id: ID(9) }, '192.0.2.1:1003');
    // The holder (b2) keeps talking; the clone retries much later and is still refused.
    s.at(100, () => b2.sendKeepalive());
    s.at(20_000, () => b2.sendKeepalive());
    const a4 = s.hello(25_000, { assign: true, id: ID(9) }, '192.0.2.1:1004');
    s.at(25_010, () => {
      t.deepEqual([a1, b1, a2].map((c) => (c.rejects()[0] as { reason: string } | undefined)?.reason), ['replaced', 'replaced', 'replaced']);
      t.is(welcomed(b2), '10.0.0.2');
      t.false(b2.closed, 'the third replacement stands: the holder keeps its session');
      for (const c of [a3, a4]) {
        t.is(rejectReason(c), 'duplicate-identity');
        t.regex((c.rejects()[0] as { message: string }).message, /two clients share one identity/);
        t.false((c.rejects()[0] as { message: string }).message.includes('192.0.2.2'), 'the refusal names no endpoint');
      }
      t.deepEqual(s.events('rejected').map((e) => e.reason), ['duplicate-identity', 'duplicate-identity']);
    });
  });
});

test('a clone is refused only while the holder lives: once the holder is gone (silent past the timeout), the newcomer gets the address', (t) => {
  scenario(t, { until: 200_000, settings: { timeoutMs: 30_000 } }, (s) => {
    s.hello(1, { assign: true, id: ID(10) });
    s.hello(2, { assign: true, id: ID(10) });
    s.hello(3, { assign: true, id: ID(10) });
    const holder = s.hello(4, { assign: true, id: ID(10) });
    const refused = s.hello(5, { assign: true, id: ID(10) });
    // The holder never speaks again (no keepalives from the fake): after 30 s it is gone.
    const later = s.hello(31_000, { assign: true, id: ID(10) });
    s.at(31_010, () => {
      t.is(rejectReason(refused), 'duplicate-identity');
      t.is(welcomed(later), '10.0.0.2');
      t.true(holder.closed);
    });
  });
});

test('leases loaded from the store are sticky across a hub restart, and other clients skip them', (t) => {
  const leases = new MemoryLeases({ [`id:${ID(1)}`]: ip('10.0.0.9') });
  scenario(t, { leases }, (s) => {
    const old = s.hello(2, { assign: true, id: ID(1) });
    const fresh = s.hello(3, { assign: true, id: ID(2) });
    s.at(10, () => {
      t.is(welcomed(old), '10.0.0.9');
      t.is(welcomed(fresh), '10.0.0.2');
      t.deepEqual(s.events('leases')[0]?.leases, [{ identity: `id:${ID(1)}`, address: '10.0.0.9' }], 'the start-up table is reported');
    });
  });
});

test('an exhausted pool is refused with pool-exhausted, and a static address leased to another identity with leased-to-other', (t) => {
  scenario(t, { leases: new MemoryLeases(), settings: { pool: { first: ip('10.0.0.50'), last: ip('10.0.0.51') } } }, (s) => {
    const a = s.hello(1, { assign: true, id: ID(1) });
    const b = s.hello(2, { assign: true, id: ID(2) });
    const c = s.hello(3, { assign: true, id: ID(3) });
    const thief = s.hello(4, { address: '10.0.0.50', prefix: 24, id: ID(9) });
    const outside = s.hello(5, { address: '10.0.0.7', prefix: 24 });
    s.at(10, () => {
      t.deepEqual([welcomed(a), welcomed(b)], ['10.0.0.50', '10.0.0.51']);
      t.is(rejectReason(c), 'pool-exhausted');
      t.regex((c.rejects()[0] as { message: string }).message, /10\.0\.0\.50-10\.0\.0\.51/);
      t.is(rejectReason(thief), 'leased-to-other');
      t.is(welcomed(outside), '10.0.0.7', 'a static address outside the pool still works');
    });
  });
});

test('a static member keeps its address out of the pool while it is connected', (t) => {
  scenario(t, { leases: new MemoryLeases() }, (s) => {
    s.hello(1, { address: '10.0.0.2', prefix: 24 });
    const a = s.hello(2, { assign: true, id: ID(1) });
    s.at(10, () => t.is(welcomed(a), '10.0.0.3'));
  });
});

test('asking for an address without an id or a named identity is a bad HELLO; so is a HELLO with neither', (t) => {
  scenario(t, {}, (s) => {
    const noId = s.hello(1, { assign: true });
    const nothing = s.hello(2, {});
    s.at(10, () => {
      t.is(rejectReason(noId), 'bad-hello');
      t.is(rejectReason(nothing), 'bad-hello');
    });
  });
});

test('a named token client is leased under its name and a pinned one gets its pin; pins are never assigned to others', (t) => {
  const authenticator = makeAuthenticator({
    requireClientCert: false,
    clients: [
      { name: 'alice', token: 'alice-secret', address: ip('10.0.0.2') },
      { name: 'bob', token: 'bob-secret-1' },
    ],
  });
  const leases = new MemoryLeases({ 'id:stale': ip('10.0.0.2') });
  scenario(t, { authenticator, leases }, (s) => {
    const bob = s.hello(1, { assign: true, token: 'bob-secret-1', id: ID(5) });
    const alice = s.hello(2, { assign: true, token: 'alice-secret' });
    s.at(10, () => {
      t.is(welcomed(bob), '10.0.0.3', 'the pinned 10.0.0.2 is skipped');
      t.is(welcomed(alice), '10.0.0.2');
    });
    s.at(10 + LEASE_SAVE_MS, () => {
      t.deepEqual(leases.saves.at(-1), { 'token:bob': ip('10.0.0.3') }, 'the stale lease on a pinned address is dropped, bob is leased by name');
    });
  });
});

test('a failing lease save is reported and the lease still works', (t) => {
  const leases = new MemoryLeases();
  leases.failWith = 'lease file /x: cannot be written (EROFS)';
  scenario(t, { leases }, (s) => {
    const a = s.hello(1, { assign: true, id: ID(1) });
    s.at(10, () => t.is(welcomed(a), '10.0.0.2'));
    s.at(10 + LEASE_SAVE_MS, () => {
      t.deepEqual(s.events('lease-error').map((e) => e.detail), ['lease file /x: cannot be written (EROFS)']);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// LANs behind members

const LAN_SETTINGS: Partial<ServerSettings> = { allowRoutes: [cidr('192.168.0.0/16')] };

test('an allowed route is installed, pushed to the other members and the kernel, and withdrawn when its member leaves', (t) => {
  const routes = new FakeRoutes();
  scenario(t, { settings: LAN_SETTINGS, routes }, (s) => {
    const b = s.hello(1, { address: '10.0.0.3', prefix: 24 });
    const a = s.hello(2, { address: '10.0.0.2', prefix: 24, routes: ['192.168.77.0/24'] });
    const late = s.hello(3, { address: '10.0.0.4', prefix: 24 });
    s.at(4, () => {
      t.deepEqual(routesFrames(b), [[{ cidr: '192.168.77.0/24', via: '10.0.0.2' }]], 'pushed to the member that was there');
      t.deepEqual(routesFrames(a), [], 'not pushed back to its own member');
      const w = late.welcomes()[0] as { routes?: unknown };
      t.deepEqual(w.routes, [{ cidr: '192.168.77.0/24', via: '10.0.0.2' }], 'a later member learns it in its WELCOME');
      t.deepEqual(s.events('joined')[1]?.routes, ['192.168.77.0/24']);
      a.end();
    });
    s.at(10, () => {
      t.deepEqual(routesFrames(b).at(-1), [], 'withdrawn when the member left');
      t.deepEqual(routesFrames(late).at(-1), []);
      t.deepEqual(routes.sets, [['192.168.77.0/24'], []], 'the hub kernel routes follow');
      t.deepEqual(s.events('routes').map((e) => e.routes.length), [1, 0]);
    });
  });
});

test('packets for a LAN go to its member by longest prefix; the member may send from its LAN; others may not', (t) => {
  scenario(t, { settings: { allowRoutes: [cidr('192.168.0.0/16'), cidr('172.16.0.0/12')] } }, (s) => {
    const a = s.hello(1, { address: '10.0.0.2', prefix: 24, routes: ['192.168.0.0/16'] });
    const b = s.hello(1, { address: '10.0.0.3', prefix: 24, routes: ['172.16.0.0/12'] });
    const c = s.hello(1, { address: '10.0.0.4', prefix: 24 });
    s.at(2, () => {
      c.sendData(ipv4Packet('10.0.0.4', '192.168.77.5'), ipv4Packet('10.0.0.4', '172.20.1.1'), ipv4Packet('10.0.0.4', '8.8.8.8'));
      a.sendData(ipv4Packet('192.168.77.5', '10.0.0.4'), ipv4Packet('172.20.1.1', '10.0.0.4'));
    });
    s.at(10, () => {
      t.deepEqual(a.dataPackets().map((p) => formatIpv4(ip(`${p[16]}.${p[17]}.${p[18]}.${p[19]}`))), ['192.168.77.5']);
      t.deepEqual(b.dataPackets().length, 1);
      t.deepEqual(s.tun.packets().length, 1, 'beyond every LAN: the hub TUN');
      t.deepEqual(c.dataPackets().length, 1, "from a's LAN to c passes");
      t.deepEqual(s.events('drops').filter((d) => d.who === '10.0.0.2').map((d) => d.drops), [{ 'spoofed-source': 1 }], "a may not send from b's LAN");
    });
  });
});

test('the hub TUN reaches a LAN behind a member', (t) => {
  scenario(t, { settings: LAN_SETTINGS }, (s) => {
    const a = s.hello(1, { address: '10.0.0.2', prefix: 24, routes: ['192.168.77.0/24'] });
    s.at(2, () => s.tun.read(ipv4Packet('10.0.0.1', '192.168.77.9'), ipv4Packet('10.0.0.1', '192.168.78.9')));
    s.at(10, () => {
      t.is(a.dataPackets().length, 1);
      t.deepEqual(s.events('drops').map((d) => [d.who, d.drops]), [['tun', { 'no-route': 1 }]]);
    });
  });
});

const refusesRoutes = test.macro({
  exec(t, settings: Partial<ServerSettings>, first: readonly string[] | undefined, second: readonly string[], reason: string, message: RegExp) {
    scenario(t, { settings }, (s) => {
      if (first !== undefined) s.hello(1, { address: '10.0.0.2', prefix: 24, routes: [...first] });
      const c = s.hello(2, { address: '10.0.0.3', prefix: 24, routes: [...second] });
      s.at(10, () => {
        t.is(rejectReason(c), reason);
        t.regex((c.rejects()[0] as { message: string }).message, message);
      });
    });
  },
  title: (provided = '') => `a route is refused when ${provided}`,
});

test('the hub allows none', refusesRoutes, {}, undefined, ['192.168.1.0/24'], 'route-not-allowed', /allows no LAN routes/);
test('it lies outside allow_routes', refusesRoutes, LAN_SETTINGS, undefined, ['10.1.0.0/16'], 'route-not-allowed', /not allowed \(allowed: 192\.168\.0\.0\/16\)/);
test('it overlaps the tunnel network', refusesRoutes, { allowRoutes: [cidr('0.0.0.0/0')] }, undefined, ['0.0.0.0/0'], 'route-not-allowed', /overlaps the tunnel network/);
test('it overlaps another member’s route', refusesRoutes, LAN_SETTINGS, ['192.168.0.0/20'], ['192.168.1.0/24'], 'route-overlap', /192\.168\.1\.0\/24 overlaps 192\.168\.0\.0\/20 behind 10\.0\.0\.2/);
test('it has host bits set', refusesRoutes, LAN_SETTINGS, undefined, ['192.168.1.1/24'], 'bad-hello', /host bits/);

// The route hijack of issue 10: an announced LAN that covers the underlay would pull the hub's and
// the members' own traffic (their tunnel sessions included) into the tunnel.
const HUB_UNDERLAY: HostNetworkPort = {
  guarded: () => [
    { prefix: cidr('172.30.9.10/32'), what: 'address 172.30.9.10 on eth0' },
    { prefix: cidr('172.30.9.0/24'), what: 'network 172.30.9.0/24 on eth0' },
    { prefix: cidr('203.0.113.1/32'), what: 'gateway 203.0.113.1 on eth1' },
  ],
};
const ANYTHING: Partial<ServerSettings> = { allowRoutes: [cidr('0.0.0.0/0')] };

const refusesHijack = test.macro({
  exec(t, route: string, logged: RegExp, told: RegExp) {
    scenario(t, { settings: ANYTHING, hostNetwork: HUB_UNDERLAY }, (s) => {
      const a = s.hello(1, { address: '10.0.0.2', prefix: 24 }, '198.51.100.7:40000');
      const c = s.hello(2, { address: '10.0.0.3', prefix: 24, routes: [route] }, '192.0.2.99:41000');
      s.at(10, () => {
        t.is(welcomed(a), '10.0.0.2');
        t.is(rejectReason(c), 'route-not-allowed');
        const message = (c.rejects()[0] as { message: string }).message;
        t.regex(message, told);
        t.false(/172\.30\.9\.10|198\.51\.100\.7|203\.0\.113\.1|eth0/.test(message), `the REJECT reveals no underlay address: ${message}`);
        t.regex(s.events('rejected')[0]!.message, logged);
        t.deepEqual(s.events('routes'), [], 'nothing was installed');
      });
    });
  },
  title: (provided = '') => `an announced LAN is refused when it ${provided}`,
});

test('covers the hub’s own address', refusesHijack, '172.30.9.0/28', /covers address 172\.30\.9\.10 on eth0/, /covers an underlay address or network/);
test('lies inside the hub’s own network', refusesHijack, '172.30.9.128/26', /covers network 172\.30\.9\.0\/24 on eth0/, /covers an underlay address or network/);
test('covers one of the hub’s gateways', refusesHijack, '203.0.113.0/24', /covers gateway 203\.0\.113\.1 on eth1/, /covers an underlay address or network/);
test('covers the address another member connects from', refusesHijack, '198.51.100.0/24', /covers the address member 10\.0\.0\.2 connects from \(198\.51\.100\.7:40000\)/, /covers an underlay address or network/);
test('covers the address its own member connects from', refusesHijack, '192.0.2.0/24', /covers the address this member connects from/, /covers an underlay address or network/);
test('is the default route', refusesHijack, '0.0.0.0/0', /overlaps the tunnel network|covers/, /overlaps|covers/);
test('overlaps the loopback range', refusesHijack, '127.0.0.0/16', /loopback range/, /overlaps the loopback range 127\.0\.0\.0\/8/);
test('overlaps the link-local range', refusesHijack, '169.254.169.254/32', /link-local/, /link-local/);
test('overlaps multicast', refusesHijack, '239.0.0.0/8', /multicast/, /multicast/);

test('a LAN that covers nothing of the underlay is accepted beside them', (t) => {
  scenario(t, { settings: ANYTHING, hostNetwork: HUB_UNDERLAY }, (s) => {
    s.hello(1, { address: '10.0.0.2', prefix: 24 }, '198.51.100.7:40000');
    const c = s.hello(2, { address: '10.0.0.3', prefix: 24, routes: ['192.168.50.0/24'] }, '192.0.2.99:41000');
    s.at(10, () => {
      t.is(welcomed(c), '10.0.0.3');
      t.deepEqual(s.events('routes').at(-1)?.routes, [{ cidr: '192.168.50.0/24', via: '10.0.0.3' }]);
    });
  });
});

test('a tokens file entry narrows the routes its client may announce', (t) => {
  const authenticator = makeAuthenticator({ requireClientCert: false, clients: [{ name: 'bob', token: 'bob-secret-1', routes: [cidr('192.168.10.0/24')] }] });
  scenario(t, { settings: LAN_SETTINGS, authenticator }, (s) => {
    const ok = s.hello(1, { address: '10.0.0.3', prefix: 24, token: 'bob-secret-1', routes: ['192.168.10.0/25'] });
    const no = s.hello(2, { address: '10.0.0.3', prefix: 24, token: 'bob-secret-1', routes: ['192.168.11.0/24'] });
    s.at(10, () => {
      t.is(welcomed(ok), '10.0.0.3');
      t.is(rejectReason(no), 'route-not-allowed');
      t.false(ok.closed, 'a refused announcement does not replace the session');
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Broadcast and multicast

const BROADCAST: Partial<ServerSettings> = { broadcast: { groups: [ip('224.0.0.251')], pps: 3 } };

test('with -broadcast a member broadcast reaches the hub TUN and every other member; unlisted multicast goes to the hub only', (t) => {
  scenario(t, { settings: BROADCAST }, (s) => {
    const a = s.hello(1, { address: '10.0.0.2', prefix: 24 });
    const b = s.hello(1, { address: '10.0.0.3', prefix: 24 });
    const c = s.hello(1, { address: '10.0.0.4', prefix: 24 });
    s.at(2, () => a.sendData(ipv4Packet('10.0.0.2', '10.0.0.255'), ipv4Packet('10.0.0.2', '255.255.255.255'), ipv4Packet('10.0.0.2', '224.0.0.251'), ipv4Packet('10.0.0.2', '239.9.9.9')));
    s.at(10, () => {
      t.is(a.dataPackets().length, 0, 'not back to the sender');
      t.is(b.dataPackets().length, 3);
      t.is(c.dataPackets().length, 3);
      t.is(s.tun.packets().length, 4, 'three copies and the unlisted group');
    });
  });
});

test('with isolation a member broadcast reaches only the hub; a hub broadcast reaches every member', (t) => {
  scenario(t, { settings: { ...BROADCAST, clientIsolation: true } }, (s) => {
    const a = s.hello(1, { address: '10.0.0.2', prefix: 24 });
    const b = s.hello(1, { address: '10.0.0.3', prefix: 24 });
    s.at(2, () => a.sendData(ipv4Packet('10.0.0.2', '10.0.0.255')));
    s.at(3, () => s.tun.read(ipv4Packet('10.0.0.1', '10.0.0.255')));
    s.at(10, () => {
      t.is(s.tun.packets().length, 1);
      t.is(a.dataPackets().length, 1, 'the hub’s own broadcast');
      t.is(b.dataPackets().length, 1, 'the hub’s own broadcast only');
    });
  });
});

test('a member over its packets-per-second limit has the excess dropped and counted as broadcast-limit; the bucket refills', (t) => {
  scenario(t, { settings: BROADCAST, until: 3000 }, (s) => {
    const a = s.hello(1, { address: '10.0.0.2', prefix: 24 });
    const b = s.hello(1, { address: '10.0.0.3', prefix: 24 });
    const burst = Array.from({ length: 10 }, () => ipv4Packet('10.0.0.2', '10.0.0.255'));
    s.at(2, () => a.sendData(...burst));
    s.at(1002, () => a.sendData(...burst));
    s.at(2000, () => {
      t.is(b.dataPackets().length, 6, '3 at once, 3 more a second later');
      const limited = s.events('drops').filter((d) => d.who === '10.0.0.2').map((d) => d.drops['broadcast-limit']);
      t.deepEqual(limited, [7, 7]);
    });
  });
});

test('without -broadcast the directed broadcast stays a broadcast drop', (t) => {
  scenario(t, {}, (s) => {
    const a = s.hello(1, { address: '10.0.0.2', prefix: 24 });
    const b = s.hello(1, { address: '10.0.0.3', prefix: 24 });
    s.at(2, () => a.sendData(ipv4Packet('10.0.0.2', '10.0.0.255')));
    s.at(10, () => {
      t.is(b.dataPackets().length, 0);
      t.deepEqual(s.events('drops').map((d) => d.drops), [{ broadcast: 1 }]);
    });
  });
});

test('a lease still waiting to be written when the hub stops is written then', (t) => {
  const leases = new MemoryLeases();
  scenario(t, { leases, until: 50 }, (s) => {
    s.hello(1, { assign: true, id: ID(4) });
    s.at(10, () => t.is(leases.saves.length, 0));
  });
  t.deepEqual(leases.saves, [{ [`id:${ID(4)}`]: ip('10.0.0.2') }]);
});
