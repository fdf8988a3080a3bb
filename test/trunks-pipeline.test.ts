// Trunks between three hubs of one cluster (pipelines/trunks.ts wired into server.ts and
// hubSession.ts) over fake ports, one fake etcd (5 ms per call) and connections piped between the
// hubs (1 ms each way), in virtual time: the hub whose name sorts lower dials, once per pair; a
// member's packets reach members and hubs of other hubs across one trunk; a broadcast reaches every
// member of every hub once; a trunk that is not a live hub, has the wrong token or claims an address
// is refused (and counted); a trunk's spoofed sources and packets for a third hub are dropped and
// counted; isolation holds across hubs.
import test, { type ExecutionContext } from 'ava';
import { defer, of, tap, throwError, type SchedulerLike } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { parseIpv4 } from '../operators/core/address.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { encodeValue } from '../pipelines/clusterKeys.js';
import type { ServerEvent } from '../pipelines/events.js';
import type { DialerPort } from '../pipelines/ports.js';
import { serverPipeline } from '../pipelines/server.js';
import { makeTrunkAuthenticator } from '../src/auth.js';
import { K } from './helpers/cluster.js';
import { FakeEtcd } from './helpers/fake-etcd.js';
import { FakeConnection, FakeRoutes, connectError, fakes, jsonFrame, type FakeTun } from './helpers/fake-ports.js';
import { RoutesCodec, decodeControl, type HelloJson } from '../operators/core/wire/control.js';
import { ipv4Packet, marbles } from './helpers/marbles.js';
import { hubSettings } from './helpers/settings.js';

const TOKEN = 'a-cluster-secret-for-tests';
const PIPE_MS = 1;

/** One end of a connection between two hubs: what it writes arrives at the other end PIPE_MS later. */
class Piped extends FakeConnection {
  other: Piped | undefined;
  constructor(
    private readonly clock: SchedulerLike,
    id: number,
    remote: string,
  ) {
    super(clock, id, remote);
  }
  override write(chunk: Uint8Array): boolean {
    super.write(chunk);
    const copy = Uint8Array.from(chunk);
    this.clock.schedule(() => this.other?.push(copy), PIPE_MS);
    return true;
  }
  override close(): void {
    if (!this.closed) this.clock.schedule(() => this.other?.end(), PIPE_MS);
    super.close();
  }
}

interface Hub {
  readonly tun: FakeTun;
  /** The prefixes the hub gave its kernel, each set in turn. */
  readonly routes: FakeRoutes;
  /** A member accepted at `ms` that says HELLO for `address` (with `extra` fields). */
  member(ms: number, address: string, extra?: Partial<HelloJson>): FakeConnection;
  /** A raw connection accepted at `ms` (the test plays the other side). */
  raw(ms: number): FakeConnection;
  events<T extends ServerEvent['type']>(type: T): Array<Extract<ServerEvent, { type: T }>>;
}

interface World {
  readonly scheduler: TestScheduler;
  readonly etcd: FakeEtcd;
  at(ms: number, fn: () => void): void;
  hub(name: string, tunnel: string): Hub;
}

function world(t: ExecutionContext, until: number, isolation: boolean, body: (w: World) => void): void {
  marbles(t, (_helpers, scheduler) => {
    const etcd = new FakeEtcd(scheduler, 5);
    const at = (ms: number, fn: () => void): void => void scheduler.schedule(fn, ms);
    const make = fakes(scheduler);
    let ids = 1000;
    const listeners = new Map<string, ReturnType<typeof make.listener>>();
    const dialer: DialerPort = {
      dial: (host, port) =>
        defer(() => {
          const listener = listeners.get(host);
          if (listener === undefined || port !== 9000) return throwError(() => connectError('ECONNREFUSED', `${host}:${port}`));
          const mine = new Piped(scheduler, ids++, `${host}:${port}`);
          const theirs = new Piped(scheduler, ids++, `192.0.2.250:${ids}`);
          mine.other = theirs;
          theirs.other = mine;
          listener.accept(theirs);
          return of(mine);
        }),
    };
    body({
      scheduler,
      etcd,
      at,
      hub(name, tunnel) {
        const listener = make.listener();
        const host = `192.0.2.${name.charCodeAt(0)}`;
        listeners.set(host, listener);
        const tun = make.tun();
        const routes = new FakeRoutes();
        const log: ServerEvent[] = [];
        const settings = hubSettings(64, { tunnel: { address: parseIpv4(tunnel)!, prefix: 24 }, broadcast: { groups: [], pps: 1000 }, clientIsolation: isolation, statsIntervalMs: 1000, allowRoutes: [{ address: parseIpv4('192.168.0.0')!, prefix: 16 }] });
        const sub = serverPipeline(settings, {
          tun,
          routes,
          listener,
          scheduler,
          cluster: {
            store: etcd,
            settings: { me: name, keys: K, ttlSeconds: 6, advertise: { host, port: 9000 }, tunnel: settings.tunnel },
            trunks: { auth: makeTrunkAuthenticator({ token: TOKEN }), dialer },
          },
        })
          .pipe(tap({ next: (e) => log.push(e), error: (e: unknown) => t.fail(String(e)) }))
          .subscribe();
        at(until, () => sub.unsubscribe());
        const raw = (ms: number): FakeConnection => {
          const c = new FakeConnection(scheduler, ids++, `198.51.100.7:${ids}`);
          at(ms, () => listener.accept(c));
          return c;
        };
        return {
          tun,
          routes,
          member(ms, address, extra = {}) {
            const c = raw(ms);
            at(ms, () => c.sendHello(address, extra));
            return c;
          },
          raw,
          events: <T extends ServerEvent['type']>(type: T) => log.filter((e): e is Extract<ServerEvent, { type: T }> => e.type === type),
        };
      },
    });
  });
}

/** Puts `key` = `value` in the store as the test (no lease). */
function put(etcd: FakeEtcd, entries: Parameters<typeof encodeValue>[0][]): void {
  etcd.txn({ compare: [], success: entries.map((e) => ({ type: 'put' as const, key: keyOf(e), value: encodeValue(e) })), failure: [] }).subscribe();
}
const keyOf = (e: Parameters<typeof encodeValue>[0]): string => (e.kind === 'hub' ? K.hub(e.name) : e.kind === 'addr' ? K.addr(e.address) : e.kind === 'route' ? K.route(e.prefix) : K.sticky(e.address));
const ip = (s: string): number => parseIpv4(s)!;
/** A rogue hub's keys: hub `0rogue` (sorts before a, so nobody dials it) at 10.0.0.9 with a member 10.0.0.8. */
const ROGUE = [
  { kind: 'hub' as const, name: '0rogue', value: { v: 1 as const, advertise: { host: '192.0.2.99', port: 9000 }, tunnel: { address: ip('10.0.0.9'), prefix: 24 } } },
  { kind: 'addr' as const, address: ip('10.0.0.9'), value: { v: 1 as const, hub: '0rogue', self: true } },
  { kind: 'addr' as const, address: ip('10.0.0.8'), value: { v: 1 as const, hub: '0rogue' } },
];
const trunkHello = (hub: string, extra: Record<string, unknown> = {}): Uint8Array => jsonFrame(FrameType.Hello, { version: 1, hub, caps: ['rtt', 'trunk'], token: TOKEN, ...extra });
const rejectOf = (c: FakeConnection): string | undefined => {
  const r = c.rejects()[0];
  return r === undefined || r instanceof Error ? undefined : `${r.reason}: ${r.message ?? ''}`;
};
/** Destinations of the DATA packets a connection was sent. */
const dsts = (c: FakeConnection): string[] => c.dataPackets().map((p) => `${p[16]}.${p[17]}.${p[18]}.${p[19]}`);
const tunDsts = (tun: FakeTun): string[] => tun.packets().map((p) => `${p[16]}.${p[17]}.${p[18]}.${p[19]}`);

test('three hubs: one trunk per pair (the lower name dials), unicast across one trunk, a broadcast reaches every member once; rogue trunks refused or their packets dropped and counted', (t) => {
  world(t, 6000, false, (w) => {
    const a = w.hub('a', '10.0.0.1');
    const b = w.hub('b', '10.0.0.2');
    const c = w.hub('c', '10.0.0.3');
    const m1 = a.member(500, '10.0.0.10');
    const m2 = a.member(500, '10.0.0.11');
    const m3 = b.member(500, '10.0.0.20');
    const m4 = c.member(500, '10.0.0.30');
    w.at(1000, () => {
      t.deepEqual(a.events('trunk-up').map((e) => `${e.side} ${e.hub}`).sort(), ['dialed b', 'dialed c']);
      t.deepEqual(b.events('trunk-up').map((e) => `${e.side} ${e.hub}`).sort(), ['accepted a', 'dialed c']);
      t.deepEqual(c.events('trunk-up').map((e) => `${e.side} ${e.hub}`).sort(), ['accepted a', 'accepted b']);
      m1.sendData(ipv4Packet('10.0.0.10', '10.0.0.20'), ipv4Packet('10.0.0.10', '10.0.0.30'), ipv4Packet('10.0.0.10', '10.0.0.2'), ipv4Packet('10.0.0.10', '10.0.0.11'));
      m3.sendData(ipv4Packet('10.0.0.20', '10.0.0.30'), ipv4Packet('10.0.0.20', '10.0.0.3'));
    });
    w.at(1100, () => {
      t.deepEqual(dsts(m3), ['10.0.0.20']);
      t.deepEqual(dsts(m4), ['10.0.0.30', '10.0.0.30']);
      t.deepEqual(dsts(m2), ['10.0.0.11']);
      t.deepEqual(tunDsts(b.tun), ['10.0.0.2']);
      t.deepEqual(tunDsts(c.tun), ['10.0.0.3']);
      m1.sendData(ipv4Packet('10.0.0.10', '10.0.0.255'));
    });
    w.at(1200, () => {
      for (const [m, name] of [[m2, 'm2'], [m3, 'm3'], [m4, 'm4']] as const) t.is(dsts(m).filter((d) => d === '10.0.0.255').length, 1, `${name} got the broadcast once`);
      t.is(dsts(m1).length, 0, 'the sender gets no copy');
      for (const h of [a, b, c]) t.is(tunDsts(h.tun).filter((d) => d === '10.0.0.255').length, 1, 'every hub once');
      put(w.etcd, ROGUE);
    });
    // A trunk with the wrong token, one of a hub that is not live, one that claims an address.
    const wrong = c.raw(1300);
    w.at(1300, () => wrong.push(trunkHello('0rogue', { token: 'not-the-cluster-secret' })));
    const ghost = c.raw(1300);
    w.at(1300, () => ghost.push(trunkHello('0ghost')));
    const claims = c.raw(1300);
    w.at(1300, () => claims.push(trunkHello('0rogue', { address: '10.0.0.9', prefix: 24 })));
    // The rogue with the token: admitted, but only what the view says it serves gets through, and only to c's own.
    const rogue = c.raw(1400);
    w.at(1400, () => rogue.push(trunkHello('0rogue')));
    w.at(1500, () => {
      t.is(rejectOf(wrong), 'auth-failed: the trunk did not authenticate (cluster token or certificate)');
      t.is(rejectOf(ghost), "cluster-unavailable: no live hub 0ghost in this hub's view of the cluster (yet)");
      t.is(rejectOf(claims), 'bad-hello: a trunk claims no address');
      t.true(wrong.closed && ghost.closed && claims.closed);
      t.deepEqual(rogue.welcomes().length, 1);
      rogue.sendData(
        ipv4Packet('10.0.0.10', '10.0.0.30'), // a's member's address: spoofed
        ipv4Packet('10.0.0.8', '10.0.0.20'), // for b's member: not onto another trunk
        ipv4Packet('10.0.0.8', '10.0.0.30'), // its own member to c's: delivered
        ipv4Packet('10.0.0.8', '10.0.0.255'), // a broadcast: c's members only
      );
    });
    w.at(1600, () => {
      t.deepEqual(dsts(m4).sort(), ['10.0.0.255', '10.0.0.255', '10.0.0.30', '10.0.0.30', '10.0.0.30'], 'one unicast and one broadcast more, from the rogue hub');
      t.is(dsts(m3).length, 2, "b's member got nothing more");
      t.is(dsts(m1).length + dsts(m2).length, 2, "a's members got nothing more");
    });
    w.at(5500, () => {
      const stats = c.events('cluster-stats').at(-1)!;
      t.is(stats.me, 'c');
      t.deepEqual(stats.hubs.map((h) => `${h.name} ${h.tunnel} ${h.members}`), ['0rogue 10.0.0.9/24 1', 'a 10.0.0.1/24 2', 'b 10.0.0.2/24 1', 'c 10.0.0.3/24 1']);
      t.deepEqual(stats.refusedTrunks, { 'auth-failed': 1, 'cluster-unavailable': 1, 'bad-hello': 1 });
      const byHub = new Map(stats.trunks.map((x) => [x.hub, x]));
      t.like(byHub.get('0rogue'), { side: 'accepted', state: 'up', rx: { packets: 4 }, drops: { 'spoofed-source': 1, 'trunk-transit': 1 } });
      t.like(byHub.get('a'), { side: 'accepted', state: 'up', rx: { packets: 2 }, tx: { packets: 0 } });
      t.like(byHub.get('b'), { side: 'accepted', state: 'up', rx: { packets: 2 } });
      const fromA = a.events('cluster-stats').at(-1)!;
      t.deepEqual(fromA.trunks.map((x) => `${x.hub} ${x.side} ${x.state} out ${x.tx.packets}`), ['b dialed up out 3', 'c dialed up out 2']);
    });
  });
});

test("a trunk closes when its hub's key goes and is dialed again when the key is back", (t) => {
  world(t, 8000, false, (w) => {
    const a = w.hub('a', '10.0.0.1');
    const b = w.hub('b', '10.0.0.2');
    let registration: string | undefined;
    w.at(1000, () => {
      t.deepEqual(a.events('trunk-up').map((e) => e.hub), ['b']);
      registration = w.etcd.get(K.hub('b'))?.value;
      // The store deletes b's registration (as when its lease ends): a closes its trunk to b.
      w.etcd.txn({ compare: [], success: [{ type: 'delete', key: K.hub('b') }], failure: [] }).subscribe();
    });
    w.at(1500, () => {
      t.like(b.events('trunk-down')[0], { hub: 'a', side: 'accepted', reason: 'closed' });
      t.like(a.events('trunk-down')[0], { hub: 'b', side: 'dialed', reason: 'closed', detail: 'hub b is no longer a live hub of the cluster at 192.0.2.98:9000 (or this hub is fenced)' });
      t.deepEqual(a.events('trunk-up').length, 1);
      w.etcd.txn({ compare: [], success: [{ type: 'put', key: K.hub('b'), value: registration! }], failure: [] }).subscribe();
    });
    w.at(2500, () => {
      t.deepEqual(a.events('trunk-up').map((e) => e.hub), ['b', 'b'], 'dialed again');
      t.deepEqual(b.events('trunk-up').map((e) => `${e.side} ${e.hub}`), ['accepted a', 'accepted a']);
    });
  });
});

test('a fenced hub closes its trunks, and they come back once it rejoins its cluster', (t) => {
  world(t, 20_000, false, (w) => {
    const a = w.hub('a', '10.0.0.1');
    const b = w.hub('b', '10.0.0.2');
    let fencedAt = 0;
    w.at(1000, () => {
      t.is(a.events('trunk-up').length, 1);
      w.etcd.down();
    });
    w.at(9000, () => {
      t.true(a.events('cluster-fenced').length >= 1, 'the store lost beyond the lease fences the hub');
      fencedAt = w.scheduler.now();
      t.like(a.events('trunk-down')[0], { hub: 'b', side: 'dialed' });
      t.like(b.events('trunk-down')[0], { hub: 'a', side: 'accepted' });
      t.is(a.events('trunk-up').length, 1, 'not dialed again while fenced');
      w.etcd.up();
    });
    w.at(16_000, () => {
      t.true(fencedAt > 0);
      t.is(a.events('trunk-up').length, 2, 'dialed again once both hubs are back in the cluster');
    });
  });
});

test('isolation across hubs: member to member is dropped at the sending hub and at the receiving one; member to hub and hub to member pass', (t) => {
  world(t, 3000, true, (w) => {
    const a = w.hub('a', '10.0.0.1');
    const c = w.hub('c', '10.0.0.3');
    const m1 = a.member(500, '10.0.0.10');
    const m4 = c.member(500, '10.0.0.30');
    w.at(600, () => put(w.etcd, ROGUE));
    const rogue = c.raw(1000);
    w.at(1000, () => rogue.push(trunkHello('0rogue')));
    w.at(1100, () => {
      m1.sendData(ipv4Packet('10.0.0.10', '10.0.0.30'), ipv4Packet('10.0.0.10', '10.0.0.3'));
      rogue.sendData(ipv4Packet('10.0.0.8', '10.0.0.30'), ipv4Packet('10.0.0.9', '10.0.0.30'));
      c.tun.read(ipv4Packet('10.0.0.3', '10.0.0.10'));
    });
    w.at(1200, () => {
      t.deepEqual(tunDsts(c.tun), ['10.0.0.3'], "a's member reaches hub c");
      t.deepEqual(dsts(m4), ['10.0.0.30'], "only the rogue hub's own packet reaches c's member");
      t.deepEqual(dsts(m1), ['10.0.0.10'], "hub c reaches a's member");
      t.deepEqual(a.events('drops').filter((e) => e.who === '10.0.0.10').map((e) => e.drops), [{ isolation: 1 }]);
      t.deepEqual(c.events('drops').filter((e) => e.who === 'trunk 0rogue').map((e) => e.drops), [{ isolation: 1 }]);
    });
  });
});

test("LANs behind another hub's members: told to this hub's members (in the WELCOME, then in ROUTES as they come and go), given to its kernel, and reached across the trunk", (t) => {
  world(t, 4000, false, (w) => {
    const a = w.hub('a', '10.0.0.1');
    const b = w.hub('b', '10.0.0.2');
    const m2 = b.member(500, '10.0.0.20', { routes: ['192.168.50.0/24'] });
    const m1 = a.member(1000, '10.0.0.10', { caps: ['routes'] });
    /** What m1 was told last: its WELCOME's routes, then each ROUTES frame. */
    const told = (): string[] => {
      const routes = m1.frames.filter((f) => f.type === FrameType.Routes).map((f) => {
        const r = decodeControl(FrameType.Routes, RoutesCodec, f.payload);
        if (r instanceof Error) throw r;
        return RoutesCodec.encode(r).routes;
      });
      const welcome = m1.welcomes()[0];
      const last = routes.at(-1) ?? (welcome === undefined || welcome instanceof Error ? [] : (welcome.routes ?? []));
      return last.map((r) => `${r.cidr} via ${r.via}`);
    };
    w.at(1100, () => {
      t.deepEqual(told(), ['192.168.50.0/24 via 10.0.0.20'], "the WELCOME names b's member's LAN");
      t.deepEqual(a.routes.sets.at(-1), ['192.168.50.0/24'], "hub a's kernel routes it into the tunnel");
      m1.sendData(ipv4Packet('10.0.0.10', '192.168.50.7'));
    });
    w.at(1200, () => t.deepEqual(dsts(m2), ['192.168.50.7'], "the packet reached b's member across the trunk"));
    w.at(1500, () => m2.end());
    w.at(2000, () => {
      t.deepEqual(told(), [], 'gone with the member that announced it');
      t.deepEqual(a.routes.sets.at(-1), []);
    });
    b.member(2500, '10.0.0.21', { routes: ['192.168.60.0/24'] });
    w.at(3000, () => {
      t.deepEqual(told(), ['192.168.60.0/24 via 10.0.0.21'], 'a new LAN at hub b is told in ROUTES');
      t.deepEqual(a.routes.sets.at(-1), ['192.168.60.0/24']);
    });
  });
});
