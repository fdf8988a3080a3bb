// Direct paths between members (issue 12) in the hub and client pipelines, over fake ports in
// virtual time (1 frame = 1 ms): the hub introduces two members that take part (asked, or for a
// flow it forwards), says nothing more for an introduced pair, refuses what its policy refuses,
// withdraws a pair when a member leaves or isolation comes on; the client tells its local
// endpoints, asks for a peer it sends to, opens a pair channel on an INTRODUCTION, relays while
// probing, sends over the pair while direct and to the hub again once it is silent, checks the
// inner source of what arrives, and closes the pair on a WITHDRAWAL.
import test, { type ExecutionContext } from 'ava';
import { Subject, type Subscription } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { clientPipeline } from '../pipelines/client.js';
import type { ClientEvent, PeerStats, ServerEvent } from '../pipelines/events.js';
import { serverPipeline, type ReloadableSettings } from '../pipelines/server.js';
import type { ClientSettings, ServerSettings } from '../pipelines/settings.js';
import { DIRECT_TIMING } from '../operators/directPath.js';
import { parseIpv4 } from '../operators/core/address.js';
import {
  DirectPathCodec,
  DirectRequestCodec,
  IntroductionCodec,
  PROTOCOL_VERSION,
  WithdrawalCodec,
  decodeControl,
  type DirectRequestJson,
  type IntroductionJson,
  type WithdrawalJson,
} from '../operators/core/wire/control.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { fakes, jsonFrame, type FakeConnection, type FakeTun } from './helpers/fake-ports.js';
import { FakeUdpClientPort, FakeUdpHubPort, type FakeChannel, type FakePairChannel } from './helpers/fake-udp.js';
import { bytes, ipv4Packet, marbles } from './helpers/marbles.js';
import { clientSettings, hubSettings } from './helpers/settings.js';

const ofType = <E extends { type: string }, K extends E['type']>(log: ReadonlyArray<{ at: number; event: E }>, type: K): Array<{ at: number; event: Extract<E, { type: K }> }> =>
  log.filter((l): l is { at: number; event: Extract<E, { type: K }> } => l.event.type === type);

/** The messages of `type` a fake connection was written, as their JSON (a broken one as an Error). */
function written<J>(c: FakeConnection, type: number, codec: { decode: (u: unknown) => unknown; encode: (a: never) => J }): Array<J | Error> {
  return c.frames
    .filter((f) => f.type === type)
    .map((f) => {
      const m = decodeControl(type, codec as never, f.payload) as unknown;
      return m instanceof Error ? m : codec.encode(m as never);
    });
}
const introductions = (c: FakeConnection): Array<IntroductionJson | Error> => written(c, FrameType.Introduction, IntroductionCodec);
const withdrawalsOf = (c: FakeConnection): Array<WithdrawalJson | Error> => written(c, FrameType.Withdrawal, WithdrawalCodec);
const requests = (c: FakeConnection): Array<DirectRequestJson | Error> => written(c, FrameType.DirectRequest, DirectRequestCodec);
const sendRequest = (c: FakeConnection, body: DirectRequestJson): void => c.push(jsonFrame(FrameType.DirectRequest, body));
const endpoint = (text: string): { address: number; port: number } => {
  const [host, port] = text.split(':');
  return { address: parseIpv4(host!)!, port: Number(port) };
};

// ---------------------------------------------------------------- the hub

interface HubRun {
  readonly scheduler: TestScheduler;
  readonly udp: FakeUdpHubPort;
  readonly log: Array<{ readonly at: number; readonly event: ServerEvent }>;
  readonly reload: Subject<ReloadableSettings>;
  at(ms: number, fn: () => void): void;
  /** A member at `ms` that says HELLO for `address` with `caps`; its UDP channel (the n-th the hub made) comes up at `ms + 2` from `seenAt`. */
  join(ms: number, address: string, caps: readonly string[], seenAt?: string): FakeConnection;
}

const DIRECT_CAPS = ['rtt', 'routes', 'udp', 'direct'];

function hub(t: ExecutionContext, o: { readonly until: number; readonly settings?: Partial<ServerSettings> }, body: (h: HubRun) => void): void {
  marbles(t, (_helpers, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const listener = make.listener();
    const udp = new FakeUdpHubPort(scheduler);
    const reload = new Subject<ReloadableSettings>();
    const log: Array<{ at: number; event: ServerEvent }> = [];
    let channels = 0;
    const h: HubRun = {
      scheduler,
      udp,
      log,
      reload,
      at: (ms, fn) => void scheduler.schedule(fn, ms),
      join(ms, address, caps, seenAt) {
        const c = make.connection();
        const n = caps.includes('udp') && o.settings?.transport !== 'tcp' ? channels++ : -1;
        h.at(ms, () => {
          listener.accept(c);
          c.sendHello(address, { caps: [...caps] });
        });
        if (n >= 0 && seenAt !== undefined) {
          h.at(ms + 2, () => {
            const ch = udp.channels[n]!;
            ch.at = endpoint(seenAt);
            ch.arrive([], true);
          });
        }
        return c;
      },
    };
    let sub: Subscription | undefined;
    scheduler.schedule(() => {
      sub = serverPipeline(hubSettings(16, o.settings), { tun, listener, scheduler, udp, reload$: reload }).subscribe({ next: (event) => log.push({ at: scheduler.now(), event }) });
    }, 0);
    h.at(1, () => listener.listening('0.0.0.0:9000'));
    body(h);
    scheduler.schedule(() => sub?.unsubscribe(), o.until);
  });
}

test('a DIRECT-REQUEST introduces two members that take part: each hears the other’s endpoints (observed first, then local), the same key, its own and the peer’s receiver ids, and where the hub saw it', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  let run!: HubRun;
  hub(t, { until: 100 }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', DIRECT_CAPS, '203.0.113.2:4002');
    b = h.join(3, '10.0.0.3', DIRECT_CAPS, '203.0.113.3:4003');
    h.at(10, () => sendRequest(b, { version: PROTOCOL_VERSION, local: ['192.168.1.3:4003'] }));
    h.at(20, () => sendRequest(a, { version: PROTOCOL_VERSION, local: ['192.168.1.2:4002', '203.0.113.2:4002'], peer: '10.0.0.3' }));
  });
  t.true((a.welcomes()[0] as { caps: string[] }).caps.includes('direct'), "the hub answers direct to a member it offers UDP");
  const [ia] = introductions(a);
  const [ib] = introductions(b);
  if (ia === undefined || ib === undefined || ia instanceof Error || ib instanceof Error) return t.fail('both sides are introduced');
  t.like(ia, { peer: '10.0.0.3', endpoints: ['203.0.113.3:4003', '192.168.1.3:4003'], self: '203.0.113.2:4002', routes: [], cipher: 'aes-256-gcm' });
  t.like(ib, { peer: '10.0.0.2', endpoints: ['203.0.113.2:4002', '192.168.1.2:4002'], self: '203.0.113.3:4003' });
  t.is(ia.key, ib.key, 'one pair key');
  t.is(ia.id, ib.peerId);
  t.is(ib.id, ia.peerId);
  t.not(ia.id, ib.id);
  t.deepEqual(
    ofType(run.log, 'introduced').map((l) => l.event),
    [{ type: 'introduced', a: '10.0.0.2', b: '10.0.0.3', by: 'request' }],
  );
});

test('the hub introduces two members it forwards traffic between, once: later batches of the introduced pair cost no new introduction', (t) => {
  const ab = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
  const ba = ipv4Packet('10.0.0.3', '10.0.0.2', bytes(2));
  let a!: FakeConnection;
  let b!: FakeConnection;
  let run!: HubRun;
  hub(t, { until: 100 }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', DIRECT_CAPS, '203.0.113.2:4002');
    b = h.join(3, '10.0.0.3', DIRECT_CAPS, '203.0.113.3:4003');
    h.at(10, () => a.sendData(ab));
    h.at(20, () => b.sendData(ba));
    h.at(30, () => a.sendData(ab, ab));
  });
  t.deepEqual(run.udp.channels[1]!.dataPackets(), [ab, ab, ab], 'the packets are relayed as before');
  t.deepEqual(run.udp.channels[0]!.dataPackets(), [ba]);
  t.is(introductions(a).length, 1);
  t.is(introductions(b).length, 1);
  t.deepEqual(
    ofType(run.log, 'introduced').map((l) => [l.at, l.event.by]),
    [[10, 'flow']],
  );
});

test('no introduction for a flow with a member that does not take part or whose UDP path is not up; a request for one is answered with the reason', (t) => {
  const ab = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
  const ac = ipv4Packet('10.0.0.2', '10.0.0.4', bytes(2));
  let a!: FakeConnection;
  let run!: HubRun;
  hub(t, { until: 100 }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', DIRECT_CAPS, '203.0.113.2:4002');
    h.join(3, '10.0.0.3', ['rtt', 'routes', 'udp'], '203.0.113.3:4003'); // no direct
    h.join(4, '10.0.0.4', DIRECT_CAPS); // its UDP path never comes up
    h.at(10, () => a.sendData(ab, ac));
    h.at(20, () => sendRequest(a, { version: PROTOCOL_VERSION, local: [], peer: '10.0.0.3' }));
    h.at(30, () => sendRequest(a, { version: PROTOCOL_VERSION, local: [], peer: '10.0.0.4' }));
    h.at(40, () => sendRequest(a, { version: PROTOCOL_VERSION, local: [], peer: '10.0.0.9' }));
  });
  t.deepEqual(introductions(a), []);
  t.deepEqual(withdrawalsOf(a), [
    { version: PROTOCOL_VERSION, peer: '10.0.0.3', reason: 'no-direct' },
    { version: PROTOCOL_VERSION, peer: '10.0.0.4', reason: 'no-udp' },
    { version: PROTOCOL_VERSION, peer: '10.0.0.9', reason: 'unknown-peer' },
  ]);
  t.deepEqual(ofType(run.log, 'introduced'), []);
});

test('members report their paths (DIRECT-PATH): the hub shows the pair direct once both say so and relayed again when one does not; a report of no pair of the member’s, under the wrong id or malformed is counted, and from a member that takes no part is an unknown type', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  let c!: FakeConnection;
  let run!: HubRun;
  const report = (conn: FakeConnection, peer: string, id: number | undefined, direct: boolean): void => conn.push(jsonFrame(FrameType.DirectPath, { version: PROTOCOL_VERSION, peer, id, direct }));
  const idOf = (conn: FakeConnection): number => {
    const [i] = introductions(conn);
    return i === undefined || i instanceof Error ? -1 : i.id;
  };
  hub(t, { until: 100 }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', DIRECT_CAPS, '203.0.113.2:4002');
    b = h.join(3, '10.0.0.3', DIRECT_CAPS, '203.0.113.3:4003');
    c = h.join(4, '10.0.0.4', ['rtt', 'routes', 'udp'], '203.0.113.4:4004');
    h.at(20, () => sendRequest(a, { version: PROTOCOL_VERSION, local: [], peer: '10.0.0.3' }));
    h.at(30, () => report(a, '10.0.0.3', idOf(a), true));
    h.at(31, () => report(b, '10.0.0.2', idOf(b), true));
    h.at(32, () => report(a, '10.0.0.4', idOf(a), true));
    h.at(33, () => report(a, '10.0.0.3', idOf(b), false));
    h.at(34, () => report(a, '10.0.0.3', undefined, false));
    h.at(35, () => report(c, '10.0.0.2', 1, true));
    h.at(40, () => report(a, '10.0.0.3', idOf(a), false));
  });
  t.deepEqual(
    ofType(run.log, 'pair-path').map((l) => [l.at, l.event]),
    [
      [31, { type: 'pair-path', a: '10.0.0.2', b: '10.0.0.3', path: 'direct' }],
      [40, { type: 'pair-path', a: '10.0.0.2', b: '10.0.0.3', path: 'relayed' }],
    ],
  );
  t.deepEqual(
    ofType(run.log, 'drops').filter((l) => l.at >= 30).map((l) => [l.at, l.event.who, l.event.drops]),
    [
      [32, '10.0.0.2', { 'unexpected-control': 1 }],
      [33, '10.0.0.2', { 'unexpected-control': 1 }],
      [34, '10.0.0.2', { 'unexpected-control': 1 }],
      [35, '10.0.0.4', { 'unknown-type': 1 }],
    ],
  );
});

test('a member that leaves ends its pairs: the other side hears a WITHDRAWAL naming its own receiver id', (t) => {
  const ab = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
  let a!: FakeConnection;
  let b!: FakeConnection;
  let run!: HubRun;
  hub(t, { until: 100 }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', DIRECT_CAPS, '203.0.113.2:4002');
    b = h.join(3, '10.0.0.3', DIRECT_CAPS, '203.0.113.3:4003');
    h.at(10, () => a.sendData(ab));
    h.at(20, () => b.end());
  });
  const [ia] = introductions(a);
  if (ia === undefined || ia instanceof Error) return t.fail('introduced');
  t.deepEqual(withdrawalsOf(a), [{ version: PROTOCOL_VERSION, peer: '10.0.0.3', reason: 'left', id: ia.id }]);
  t.deepEqual(
    ofType(run.log, 'withdrawn').map((l) => [l.at, l.event]),
    [[20, { type: 'withdrawn', a: '10.0.0.2', b: '10.0.0.3', reason: 'left' }]],
  );
});

test('isolation turned on by a reload withdraws every pair from both sides; under isolation nobody is introduced, asked or not', (t) => {
  const ab = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
  let a!: FakeConnection;
  let b!: FakeConnection;
  let run!: HubRun;
  hub(t, { until: 100 }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', DIRECT_CAPS, '203.0.113.2:4002');
    b = h.join(3, '10.0.0.3', DIRECT_CAPS, '203.0.113.3:4003');
    h.at(10, () => a.sendData(ab));
    h.at(20, () => h.reload.next({ clientIsolation: true, maxClients: 100 }));
    h.at(30, () => a.sendData(ab));
    h.at(40, () => sendRequest(a, { version: PROTOCOL_VERSION, local: [], peer: '10.0.0.3' }));
  });
  const [ia] = introductions(a);
  const [ib] = introductions(b);
  if (ia === undefined || ib === undefined || ia instanceof Error || ib instanceof Error) return t.fail('introduced before isolation');
  t.deepEqual(withdrawalsOf(a), [
    { version: PROTOCOL_VERSION, peer: '10.0.0.3', reason: 'isolation', id: ia.id },
    { version: PROTOCOL_VERSION, peer: '10.0.0.3', reason: 'isolation' },
  ]);
  t.deepEqual(withdrawalsOf(b), [{ version: PROTOCOL_VERSION, peer: '10.0.0.2', reason: 'isolation', id: ib.id }]);
  t.is(introductions(a).length, 1, 'no introduction after isolation came on');
  t.deepEqual(ofType(run.log, 'withdrawn').map((l) => [l.at, l.event.reason]), [[20, 'isolation']]);
  t.deepEqual(run.udp.channels[1]!.dataPackets(), [ab], 'and the isolated packet was dropped as before');
});

test('a hub with -direct=false answers no direct, introduces nobody, and takes a DIRECT-REQUEST as an unknown type', (t) => {
  const ab = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
  let a!: FakeConnection;
  let run!: HubRun;
  hub(t, { until: 100, settings: { direct: false } }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', DIRECT_CAPS, '203.0.113.2:4002');
    h.join(3, '10.0.0.3', DIRECT_CAPS, '203.0.113.3:4003');
    h.at(10, () => a.sendData(ab));
    h.at(20, () => sendRequest(a, { version: PROTOCOL_VERSION, local: [], peer: '10.0.0.3' }));
  });
  t.false((a.welcomes()[0] as { caps: string[] }).caps.includes('direct'));
  t.deepEqual(introductions(a), []);
  t.deepEqual(withdrawalsOf(a), []);
  t.deepEqual(
    ofType(run.log, 'drops').map((l) => l.event),
    [{ type: 'drops', who: '10.0.0.2', drops: { 'unknown-type': 1 } }],
  );
});

// ---------------------------------------------------------------- the client

interface ClientRun {
  readonly tun: FakeTun;
  readonly conn: FakeConnection;
  readonly udp: FakeUdpClientPort;
  readonly log: Array<{ readonly at: number; readonly event: ClientEvent }>;
  at(ms: number, fn: () => void): void;
  /** The hub channel of the session's socket. */
  hubChannel(): FakeChannel;
  /** The n-th pair channel the client opened. */
  pair(n?: number): FakePairChannel;
}

const OFFER = { id: 77, port: 9000, cipher: 'aes-256-gcm' as const, secret: Buffer.alloc(32, 7).toString('base64') };
const WELCOME = { address: '10.0.0.2', prefix: 24, hub: '10.0.0.1', mtu: 1400, keepalive: 10, timeout: 30, caps: ['rtt', 'routes', 'udp', 'direct'], udp: OFFER };
/** The client's socket port with the fake UDP port (40000 + the session id). */
const LOCAL_PORT = 40077;
const KEY = Buffer.alloc(32, 9).toString('base64');
/** The introduction of 10.0.0.3 (LAN 192.168.3.0/24): a candidate of each kind the client must not probe, and two it must. */
const INTRO: IntroductionJson = {
  version: PROTOCOL_VERSION,
  peer: '10.0.0.3',
  routes: ['192.168.3.0/24'],
  endpoints: ['203.0.113.3:4003', '127.0.0.1:4003', '224.0.0.5:4003', '10.0.0.3:4003', '0.1.2.3:4003', '192.168.1.3:4003'],
  key: KEY,
  cipher: 'aes-256-gcm',
  id: 501,
  peerId: 502,
  self: `203.0.113.2:${LOCAL_PORT}`,
};

/** Runs a client with a fake UDP port and a host with a few addresses; the hub welcomes it at 1 ms and its UDP path is up at 2 ms. */
function client(t: ExecutionContext, o: { readonly until: number; readonly settings?: Partial<ClientSettings> }, body: (c: ClientRun) => void): void {
  marbles(t, (_helpers, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const dialer = make.dialer();
    const conn = make.connection('192.0.2.1:9000');
    dialer.then({ connect: conn });
    const udp = new FakeUdpClientPort(scheduler);
    const log: Array<{ at: number; event: ClientEvent }> = [];
    const c: ClientRun = {
      tun,
      conn,
      udp,
      log,
      at: (ms, fn) => void scheduler.schedule(fn, ms),
      hubChannel: () => udp.opened[0]!.channel,
      pair: (n = 0) => udp.opened[0]!.pairs[n]!,
    };
    // The host: loopback, a LAN address, a link-local one, its tunnel address, a public one.
    const hostNetwork = { guarded: () => [], addresses: () => ['127.0.0.1', '192.168.1.2', '169.254.7.7', '10.0.0.2', '198.51.100.2'].map((a) => parseIpv4(a)!) };
    let sub: Subscription | undefined;
    scheduler.schedule(() => {
      sub = clientPipeline(clientSettings(16, { statsIntervalMs: 1000, ...o.settings }), { tun, dialer, scheduler, random: () => 0.5, udp, hostNetwork }).subscribe({
        next: (event) => log.push({ at: scheduler.now(), event }),
      });
    }, 0);
    c.at(1, () => conn.sendWelcome(WELCOME));
    // The hub keeps the UDP path to it up, and the connection.
    for (let ms = 2; ms < o.until; ms += 500) c.at(ms, () => c.hubChannel().arrive([], true));
    for (let ms = 5000; ms < o.until; ms += 5000) c.at(ms, () => conn.sendKeepalive());
    body(c);
    scheduler.schedule(() => sub?.unsubscribe(), o.until);
  });
}

const sendIntroduction = (c: FakeConnection, intro: IntroductionJson = INTRO): void => c.push(jsonFrame(FrameType.Introduction, intro));
const sendWithdrawal = (c: FakeConnection, w: Omit<WithdrawalJson, 'version'>): void => c.push(jsonFrame(FrameType.Withdrawal, { version: PROTOCOL_VERSION, ...w }));
const peersAt = (log: ClientRun['log'], at: number): readonly PeerStats[] | undefined => ofType(log, 'stats').find((l) => l.at === at)?.event.peers;

test('once its UDP path is up the client tells the hub its local endpoints (not loopback, link-local or the tunnel network), and asks for a peer it sends to, once in 30 s', (t) => {
  const toPeer = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
  const toHub = ipv4Packet('10.0.0.2', '10.0.0.1', bytes(2));
  const bcast = ipv4Packet('10.0.0.2', '10.0.0.255', bytes(3));
  let run!: ClientRun;
  client(t, { until: 40_000 }, (c) => {
    run = c;
    c.at(10, () => c.tun.read(toPeer, toHub, bcast));
    c.at(20, () => c.tun.read(toPeer));
    c.at(31_000, () => c.tun.read(toPeer));
  });
  const hello = run.conn.hellos()[0] as { caps: string[] };
  t.true(hello.caps.includes('direct'));
  const local = [`192.168.1.2:${LOCAL_PORT}`, `198.51.100.2:${LOCAL_PORT}`];
  t.deepEqual(requests(run.conn), [
    { version: PROTOCOL_VERSION, local },
    { version: PROTOCOL_VERSION, local, peer: '10.0.0.3' },
    { version: PROTOCOL_VERSION, local, peer: '10.0.0.3' },
  ]);
  t.deepEqual(run.hubChannel().dataPackets(), [toPeer, toHub, bcast, toPeer, toPeer], 'without a pair everything goes to the hub');
});

test('an INTRODUCTION opens a pair channel that probes only sound candidates; packets relay through the hub while probing, go over the pair once direct, and back to the hub when it is silent', (t) => {
  const p1 = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
  const p2 = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(2));
  const lan = ipv4Packet('10.0.0.2', '192.168.3.9', bytes(3));
  const p3 = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(4));
  let run!: ClientRun;
  client(t, { until: 6000 }, (c) => {
    run = c;
    c.at(5, () => c.conn.sendRoutes([{ cidr: '192.168.3.0/24', via: '10.0.0.3' }]));
    c.at(10, () => sendIntroduction(c.conn));
    c.at(20, () => c.tun.read(p1)); // probing: relayed
    c.at(30, () => c.pair().arrive(endpoint('203.0.113.3:4003'), [], true)); // the peer answers: direct
    c.at(40, () => c.tun.read(p2, lan));
    c.at(2500, () => c.tun.read(p3)); // silent since 30 ms: relayed
  });
  const pair = run.pair();
  t.like(pair, { id: 501, peerId: 502 });
  t.deepEqual(Buffer.from(pair.secret).toString('base64'), KEY);
  const probed = new Set(pair.probes.filter((p) => p.at < 30).map((p) => `${p.to.address >>> 24}.${(p.to.address >>> 16) & 255}.${(p.to.address >>> 8) & 255}.${p.to.address & 255}:${p.to.port}`));
  t.deepEqual([...probed], ['203.0.113.3:4003', '192.168.1.3:4003'], 'no loopback, multicast, tunnel or 0/8 candidate is probed');
  t.deepEqual(pair.dataPackets(), [p2, lan], 'direct: the peer’s packets and its LAN’s go over the pair');
  t.deepEqual(run.hubChannel().dataPackets(), [p1, p3], 'probing and after silence: through the hub');
  const paths = ofType(run.log, 'direct-path').map((l) => [l.at, l.event.path]);
  t.deepEqual(paths.slice(0, 3), [
    [10, 'relayed (probing)'],
    [30, 'direct 203.0.113.3:4003'],
    [30 + DIRECT_TIMING.silenceMs, 'relayed (probing)'],
  ]);
  t.like(peersAt(run.log, 1000)?.[0], { address: '10.0.0.3', path: 'direct 203.0.113.3:4003', endpoint: '203.0.113.3:4003', tx: { packets: 2 } });
  t.like(peersAt(run.log, 3000)?.[0], { address: '10.0.0.3', path: 'relayed (probing)', endpoint: undefined });
  t.deepEqual(
    written(run.conn, FrameType.DirectPath, DirectPathCodec),
    [
      { version: PROTOCOL_VERSION, peer: '10.0.0.3', id: 501, direct: true },
      { version: PROTOCOL_VERSION, peer: '10.0.0.3', id: 501, direct: false },
    ],
    'the hub hears each change of the path, under this side’s id of the pair',
  );
});

test('a direct pair pings its peer once a second and shows the round trip (latest and smoothed) in peers; a PING is answered with a PONG at its source; a stray PONG is counted; relayed shows none', (t) => {
  const at = endpoint('203.0.113.3:4003');
  let run!: ClientRun;
  client(t, { until: 4500 }, (c) => {
    run = c;
    c.at(10, () => sendIntroduction(c.conn));
    // The peer answers at 30 (direct: ping 1 goes at once) and keeps answering; pong 1 after 4 ms, pong 2 after 12 ms.
    for (let ms = 30; ms < 2100; ms += 300) c.at(ms, () => c.pair().arrive(at, [], true));
    c.at(34, () => c.pair().arrive(at, [], true, { pong: 1 }));
    c.at(1042, () => c.pair().arrive(at, [], true, { pong: 2 }));
    c.at(1050, () => c.pair().arrive(endpoint('198.51.100.9:5000'), [], true, { ping: 4242 }));
    c.at(1060, () => c.pair().arrive(at, [], true, { pong: 99 }));
    // Silent from the last answer on: relayed DIRECT_TIMING.silenceMs later.
  });
  const pair = run.pair();
  const pings = pair.pings.filter((p) => p.kind === 'ping');
  t.deepEqual(pings.slice(0, 3).map((p) => [p.at, p.token]), [[30, 1], [1030, 2], [2030, 3]], 'a ping at once when direct, then one a second');
  t.true(pings.every((p) => p.to.port === 4003));
  t.deepEqual(pair.pings.filter((p) => p.kind === 'pong').map((p) => [p.at, p.token, p.to.port]), [[1050, 4242, 5000]], 'answered at its source at once');
  t.like(peersAt(run.log, 1000)?.[0], { path: 'direct 203.0.113.3:4003', rtt: { ms: 4, smoothedMs: 4 } });
  t.like(peersAt(run.log, 2000)?.[0], { path: 'direct 203.0.113.3:4003', rtt: { ms: 12, smoothedMs: 5 }, drops: { 'unexpected-control': 1 } });
  t.like(peersAt(run.log, 4000)?.[0], { path: 'relayed (probing)', rtt: undefined });
});

test('arrivals over a pair reach the TUN device only with the peer’s address or one of its LANs as source; the rest are spoofed-source drops under the peer', (t) => {
  const fromPeer = ipv4Packet('10.0.0.3', '10.0.0.2', bytes(1));
  const fromLan = ipv4Packet('192.168.3.7', '10.0.0.2', bytes(2));
  const forged = ipv4Packet('10.0.0.4', '10.0.0.2', bytes(3));
  let run!: ClientRun;
  client(t, { until: 1500 }, (c) => {
    run = c;
    c.at(10, () => sendIntroduction(c.conn));
    c.at(30, () => c.pair().arrive(endpoint('203.0.113.3:4003'), [fromPeer, forged, fromLan], true));
  });
  t.deepEqual(run.tun.packets(), [fromPeer, fromLan]);
  t.deepEqual(ofType(run.log, 'drops').map((l) => l.event), [{ type: 'drops', who: '10.0.0.3', drops: { 'spoofed-source': 1 } }]);
  t.like(peersAt(run.log, 1000)?.[0], { address: '10.0.0.3', drops: { 'spoofed-source': 1 } });
});

test('a WITHDRAWAL naming the pair closes it (a stale one is ignored), a refusal is shown and not asked again, and the session’s end closes every pair', (t) => {
  const toOther = ipv4Packet('10.0.0.2', '10.0.0.4', bytes(2));
  let run!: ClientRun;
  const pairs: FakePairChannel[] = [];
  client(t, { until: 3500 }, (c) => {
    run = c;
    c.at(10, () => sendIntroduction(c.conn));
    c.at(20, () => sendWithdrawal(c.conn, { peer: '10.0.0.3', reason: 'left', id: 999 })); // stale
    c.at(30, () => sendIntroduction(c.conn, { ...INTRO, id: 601, peerId: 602 })); // replaces the first
    c.at(40, () => c.tun.read(toOther));
    c.at(50, () => sendWithdrawal(c.conn, { peer: '10.0.0.4', reason: 'isolation' }));
    c.at(60, () => c.tun.read(toOther));
    c.at(1500, () => {
      pairs.push(c.pair(0), c.pair(1));
      sendWithdrawal(c.conn, { peer: '10.0.0.3', reason: 'left', id: 601 });
    });
    c.at(2100, () => sendIntroduction(c.conn, { ...INTRO, id: 701, peerId: 702 }));
    c.at(2200, () => pairs.push(c.pair(2)));
  });
  t.true(pairs[0]!.closed, 'the first pair closed when it was introduced again');
  t.true(pairs[1]!.closed, 'the WITHDRAWAL with its id closed the second');
  t.true(pairs[2]!.closed, 'the session’s end closed the third');
  t.deepEqual(
    requests(run.conn).filter((r) => !(r instanceof Error) && r.peer === '10.0.0.4').length,
    1,
    'a refused peer is not asked again within 30 s',
  );
  // Each pair that closes says so (the log line `path to 10.0.0.3: closed (...)`, the status drops
  // the peer at once), before the pair that replaces it says it opened.
  t.deepEqual(
    ofType(run.log, 'direct-path')
      .filter((l) => l.event.peer === '10.0.0.3' && l.at < 2500)
      .map((l) => [l.at, l.event.closed === true ? `closed: ${l.event.why}` : l.event.why]),
    [
      [10, 'introduced: probing 2 candidate endpoints'],
      [30, 'closed: introduced again'],
      [30, 'introduced: probing 2 candidate endpoints'],
      [1500, 'closed: withdrawn by the hub: left'],
      [2100, 'introduced: probing 2 candidate endpoints'],
    ],
  );
  t.deepEqual(peersAt(run.log, 1000), [
    { address: '10.0.0.3', path: 'relayed (probing)', endpoint: undefined, rtt: undefined, rx: { packets: 0, bytes: 0 }, tx: { packets: 0, bytes: 0 }, drops: {} },
    { address: '10.0.0.4', path: 'relayed (no direct path: isolation)', endpoint: undefined, rtt: undefined, rx: { packets: 0, bytes: 0 }, tx: { packets: 0, bytes: 0 }, drops: {} },
  ]);
  t.deepEqual(peersAt(run.log, 2000)?.map((p) => p.address), ['10.0.0.4'], 'the withdrawn pair is gone from the status');
});

test('a client with -direct=false offers no direct, asks nothing, and takes an INTRODUCTION as an unknown type', (t) => {
  const toPeer = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
  let run!: ClientRun;
  client(t, { until: 100, settings: { direct: false } }, (c) => {
    run = c;
    c.at(10, () => c.tun.read(toPeer));
    c.at(20, () => sendIntroduction(c.conn));
  });
  t.false((run.conn.hellos()[0] as { caps: string[] }).caps.includes('direct'));
  t.deepEqual(requests(run.conn), []);
  t.deepEqual(run.udp.opened[0]!.pairs, []);
  t.deepEqual(ofType(run.log, 'drops').map((l) => l.event), [{ type: 'drops', who: 'hub', drops: { 'unknown-type': 1 } }]);
});

test('a symmetric NAT on the path (the hub saw this side at another port than its socket’s) is named when no direct path is found', (t) => {
  let run!: ClientRun;
  const timing = DIRECT_TIMING;
  client(t, { until: 3 * (timing.roundMs + 8000) }, (c) => {
    run = c;
    c.at(10, () => sendIntroduction(c.conn, { ...INTRO, self: '203.0.113.2:61000' }));
  });
  const paths = ofType(run.log, 'direct-path').map((l) => l.event.path);
  t.is(paths.at(-1), 'relayed (no direct path: symmetric NAT)');
});
