// The UDP data path in the hub and client pipelines, over fake ports in virtual time (1 frame =
// 1 ms): who is offered a channel and with which secret, where data goes while the path is up and
// after it goes silent, what -transport tcp and udp change, and what a failed bind does.
import test, { type ExecutionContext } from 'ava';
import type { Subscription } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { clientPipeline } from '../pipelines/client.js';
import type { ClientEvent, ServerEvent } from '../pipelines/events.js';
import { UdpBindError, serverPipeline } from '../pipelines/server.js';
import type { ClientSettings, ServerSettings } from '../pipelines/settings.js';
import { UDP_TIMING } from '../pipelines/udpLink.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { fakes, type FakeConnection, type FakeListener, type FakeTun } from './helpers/fake-ports.js';
import { FakeUdpClientPort, FakeUdpHubPort } from './helpers/fake-udp.js';
import { bytes, ipv4Packet, marbles } from './helpers/marbles.js';
import { clientSettings, hubSettings } from './helpers/settings.js';


/** The secret the fake hub's randomSecret() gives first (bytes 1..32), as WELCOME carries it. */
const FIRST_SECRET = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

/** A hub scenario's handles. */
interface HubRun {
  readonly scheduler: TestScheduler;
  readonly tun: FakeTun;
  readonly listener: FakeListener;
  readonly udp: FakeUdpHubPort;
  readonly log: Array<{ readonly at: number; readonly event: ServerEvent }>;
  readonly failure: { error?: unknown };
  at(ms: number, fn: () => void): void;
  /** Accepts a connection at `ms` that says HELLO for `address` with `caps`. */
  join(ms: number, address: string, caps: readonly string[], tlsSecret?: Uint8Array): FakeConnection;
}

/** Runs a hub with a fake UDP port until `until` (the listener listens at 1 ms). */
function hub(t: ExecutionContext, o: { readonly until: number; readonly settings?: Partial<ServerSettings>; readonly bindFails?: Error }, body: (h: HubRun) => void): void {
  marbles(t, (_helpers, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const listener = make.listener();
    const udp = new FakeUdpHubPort(scheduler);
    udp.failWith = o.bindFails;
    const log: Array<{ at: number; event: ServerEvent }> = [];
    const failure: { error?: unknown } = {};
    const h: HubRun = {
      scheduler,
      tun,
      listener,
      udp,
      log,
      failure,
      at: (ms, fn) => void scheduler.schedule(fn, ms),
      join(ms, address, caps, tlsSecret) {
        const c = make.connection();
        if (tlsSecret !== undefined) c.tlsSecret = tlsSecret;
        h.at(ms, () => {
          listener.accept(c);
          c.sendHello(address, { caps: [...caps] });
        });
        return c;
      },
    };
    let sub: Subscription | undefined;
    scheduler.schedule(() => {
      sub = serverPipeline(hubSettings(16, o.settings), { tun, listener, scheduler, udp }).subscribe({
        next: (event) => log.push({ at: scheduler.now(), event }),
        error: (err: unknown) => (failure.error = err),
      });
    }, 0);
    h.at(1, () => listener.listening('0.0.0.0:9000'));
    body(h);
    scheduler.schedule(() => sub?.unsubscribe(), o.until);
  });
}

const ofType = <E extends { type: string }, K extends E['type']>(log: ReadonlyArray<{ at: number; event: E }>, type: K): Array<{ at: number; event: Extract<E, { type: K }> }> =>
  log.filter((l): l is { at: number; event: Extract<E, { type: K }> } => l.event.type === type);

test('the hub binds UDP at its listening port and offers a channel, with a fresh secret, only to members that offer udp', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  let run!: HubRun;
  hub(t, { until: 100 }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', ['rtt', 'udp']);
    b = h.join(3, '10.0.0.3', ['rtt']);
  });
  t.deepEqual(run.udp.bound, [9000]);
  t.deepEqual(ofType(run.log, 'udp-listening').map((l) => l.event), [{ type: 'udp-listening', address: '0.0.0.0:9000' }]);
  const [wa] = a.welcomes();
  t.like(wa, { address: '10.0.0.2', udp: { id: 1, port: 9000, cipher: 'aes-256-gcm', secret: b64(FIRST_SECRET) } });
  t.is(run.udp.channels.length, 1, 'only the member that offered udp has a channel');
  t.deepEqual(run.udp.channels[0]!.secret, FIRST_SECRET, 'keyed from the secret its WELCOME carries');
  const [wb] = b.welcomes();
  t.false(wb instanceof Error || 'udp' in wb!, 'no offer to a member without udp');
  t.true(run.udp.channels[0]!.closed, 'the channel closes with the session');
  t.true(run.udp.closed, 'the socket closes with the hub');
});

test('with TLS the channel is keyed from the TLS exporter and WELCOME carries no secret', (t) => {
  const exported = Uint8Array.from({ length: 32 }, (_, i) => 200 - i);
  let a!: FakeConnection;
  let run!: HubRun;
  hub(t, { until: 50 }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', ['udp'], exported);
  });
  const [w] = a.welcomes();
  t.like(w, { udp: { id: 1, port: 9000, cipher: 'aes-256-gcm' } });
  t.false(w instanceof Error || 'secret' in (w!.udp ?? {}), 'the secret never travels when TLS derives it');
  t.deepEqual(run.udp.channels[0]!.secret, exported);
});

test("a member's data goes over UDP while its path is up, back over TCP once the path is silent, and its UDP packets are routed like any", (t) => {
  const toA = ipv4Packet('10.0.0.3', '10.0.0.2', bytes(1));
  const toA2 = ipv4Packet('10.0.0.3', '10.0.0.2', bytes(2));
  const toA3 = ipv4Packet('10.0.0.3', '10.0.0.2', bytes(3));
  const fromA = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(4));
  const toHub = ipv4Packet('10.0.0.2', '10.0.0.1', bytes(5));
  let a!: FakeConnection;
  let b!: FakeConnection;
  let run!: HubRun;
  hub(t, { until: 3000 }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', ['udp']);
    b = h.join(3, '10.0.0.3', []);
    h.at(5, () => b.sendData(toA)); // probing: over TCP
    h.at(10, () => h.udp.channels[0]!.arrive([], true)); // a keepalive that says it hears us: up
    h.at(20, () => b.sendData(toA2)); // over UDP
    h.at(30, () => h.udp.channels[0]!.arrive([fromA, toHub]));
    h.at(2500, () => b.sendData(toA3)); // silent since 30: over TCP again
  });
  const ch = run.udp.channels[0]!;
  t.deepEqual(a.dataPackets(), [toA, toA3], 'TCP carries the data before the path is up and after it went silent');
  t.deepEqual(ch.dataPackets(), [toA2], 'UDP carries it while the path is up');
  t.deepEqual(b.dataPackets(), [fromA], 'a packet that came over UDP is forwarded to its member');
  t.deepEqual(run.tun.packets(), [toHub]);
  const transports = ofType(run.log, 'transport').map((l) => ({ at: l.at, transport: l.event.transport, who: l.event.who }));
  t.is(transports.length, 2);
  t.deepEqual(transports[0], { at: 10, transport: 'udp', who: '10.0.0.2' });
  t.is(transports[1]!.transport, 'tcp (udp blocked)');
  t.true(transports[1]!.at - 30 >= UDP_TIMING.silenceMs && transports[1]!.at - 30 <= 2000, `fell back at ${transports[1]!.at} ms, last heard at 30: within 2 s`);
  const keepalives = ch.sent.filter((s) => s.kind === 'keepalive' && s.at > 30 && s.at < 1000);
  t.true(keepalives.length >= 2, 'keepalive datagrams keep the path alive while up');
  t.true(keepalives.every((k) => k.hearsUs), 'and say the hub hears the member');
});

// Idle latency (issue 14): nothing on the hub's UDP path waits for a later turn. Each step below
// is checked inside the very action that starts it, before the scheduler runs anything else, so a
// deferral of any length (a zero-delay schedule, a batching tick) would leave it unseen.
test('the hub hands a UDP arrival to its TUN device or member, and a packet for a member to its channel, in the same action', (t) => {
  const toHub = ipv4Packet('10.0.0.2', '10.0.0.1', bytes(1));
  const toB = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(2));
  const toA = ipv4Packet('10.0.0.1', '10.0.0.2', bytes(3));
  const toA2 = ipv4Packet('10.0.0.3', '10.0.0.2', bytes(4));
  const seen: Record<string, number> = {};
  let b!: FakeConnection;
  hub(t, { until: 100 }, (h) => {
    h.join(2, '10.0.0.2', ['udp']);
    b = h.join(3, '10.0.0.3', []);
    h.at(10, () => h.udp.channels[0]!.arrive([], true)); // the path is up
    h.at(20, () => {
      h.udp.channels[0]!.arrive([toHub]);
      seen['arrival at the TUN'] = h.tun.packets().length;
    });
    h.at(30, () => {
      h.udp.channels[0]!.arrive([toB]);
      seen['arrival at the other member'] = b.dataPackets().length;
    });
    h.at(40, () => {
      const before = h.udp.channels[0]!.dataPackets().length;
      h.tun.read(toA);
      seen['TUN packet on the channel'] = h.udp.channels[0]!.dataPackets().length - before;
    });
    h.at(50, () => {
      const before = h.udp.channels[0]!.dataPackets().length;
      b.sendData(toA2);
      seen["other member's packet on the channel"] = h.udp.channels[0]!.dataPackets().length - before;
    });
  });
  t.deepEqual(seen, { 'arrival at the TUN': 1, 'arrival at the other member': 1, 'TUN packet on the channel': 1, "other member's packet on the channel": 1 });
});

test('-transport tcp on the hub: no UDP socket, no offer, even to members that offer udp', (t) => {
  let a!: FakeConnection;
  let run!: HubRun;
  hub(t, { until: 50, settings: { transport: 'tcp' } }, (h) => {
    run = h;
    a = h.join(2, '10.0.0.2', ['udp']);
  });
  t.deepEqual(run.udp.bound, []);
  const [w] = a.welcomes();
  t.false(w instanceof Error || 'udp' in w!);
});

test('a failed UDP bind leaves every member on TCP under auto (one udp-unavailable event) and stops the hub under -transport udp', (t) => {
  const inUse = Object.assign(new Error('bind EADDRINUSE 0.0.0.0:9000'), { code: 'EADDRINUSE' });
  let a!: FakeConnection;
  let auto!: HubRun;
  hub(t, { until: 50, bindFails: inUse }, (h) => {
    auto = h;
    a = h.join(2, '10.0.0.2', ['udp']);
  });
  t.is(auto.failure.error, undefined);
  t.deepEqual(ofType(auto.log, 'udp-unavailable').map((l) => l.event.detail), ['cannot bind UDP port 9000: bind EADDRINUSE 0.0.0.0:9000']);
  t.like(a.welcomes()[0], { address: '10.0.0.2' });
  t.false('udp' in (a.welcomes()[0] as object));

  let strict!: HubRun;
  hub(t, { until: 50, bindFails: inUse, settings: { transport: 'udp' } }, (h) => {
    strict = h;
  });
  t.true(strict.failure.error instanceof UdpBindError);
  t.regex(String((strict.failure.error as Error).message), /cannot bind UDP port 9000.*-transport udp needs it/);
});

test('a hub with -transport udp ends the session of a member whose UDP path fails (udp-failed)', (t) => {
  let run!: HubRun;
  hub(t, { until: 4000, settings: { transport: 'udp' } }, (h) => {
    run = h;
    h.join(2, '10.0.0.2', ['udp']);
    h.at(10, () => h.udp.channels[0]!.arrive([], true));
  });
  const left = ofType(run.log, 'left');
  t.is(left.length, 1);
  t.like(left[0]!.event, { address: '10.0.0.2', reason: 'udp-failed' });
  t.true(left[0]!.at <= 10 + 2000);
});

test('datagrams of no session are drops at udp', (t) => {
  let run!: HubRun;
  hub(t, { until: 20 }, (h) => {
    run = h;
    h.at(5, () => h.udp.unknown.next({ 'unknown-session': 3, 'malformed-datagram': 1 }));
  });
  t.deepEqual(ofType(run.log, 'drops').map((l) => l.event), [{ type: 'drops', who: 'udp', drops: { 'unknown-session': 3, 'malformed-datagram': 1 } }]);
});

// ---------------------------------------------------------------- the client

/** A client scenario's handles. */
interface ClientRun {
  readonly tun: FakeTun;
  readonly conn: FakeConnection;
  readonly udp: FakeUdpClientPort;
  readonly log: Array<{ readonly at: number; readonly event: ClientEvent }>;
  at(ms: number, fn: () => void): void;
}

/** Runs a client (with a fake UDP port unless `noUdp`) whose first dial connects at once. */
function client(t: ExecutionContext, o: { readonly until: number; readonly settings?: Partial<ClientSettings>; readonly noUdp?: boolean; readonly tlsSecret?: Uint8Array }, body: (c: ClientRun) => void): void {
  marbles(t, (_helpers, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const dialer = make.dialer();
    const conn = make.connection('192.0.2.1:9000');
    if (o.tlsSecret !== undefined) conn.tlsSecret = o.tlsSecret;
    dialer.then({ connect: conn });
    const udp = new FakeUdpClientPort(scheduler);
    const log: Array<{ at: number; event: ClientEvent }> = [];
    const c: ClientRun = { tun, conn, udp, log, at: (ms, fn) => void scheduler.schedule(fn, ms) };
    let sub: Subscription | undefined;
    scheduler.schedule(() => {
      sub = clientPipeline(clientSettings(16, o.settings), { tun, dialer, scheduler, random: () => 0.5, ...(o.noUdp === true ? {} : { udp }) }).subscribe({
        next: (event) => log.push({ at: scheduler.now(), event }),
        error: () => undefined,
      });
    }, 0);
    body(c);
    scheduler.schedule(() => sub?.unsubscribe(), o.until);
  });
}

const WELCOME = { address: '10.0.0.2', prefix: 24, hub: '10.0.0.1', mtu: 1400, keepalive: 10, timeout: 30, caps: ['rtt'] };
const OFFER = { id: 77, port: 9001, cipher: 'chacha20-poly1305' as const, secret: b64(FIRST_SECRET) };

test('a client offers udp only when it has a UDP port and its transport is not tcp, and direct beside it unless -direct=false', (t) => {
  const caps = (o: { settings?: Partial<ClientSettings>; noUdp?: boolean }): unknown => {
    let run!: ClientRun;
    client(t, { until: 10, ...o }, (c) => (run = c));
    const [hello] = run.conn.hellos();
    return hello instanceof Error ? hello : hello?.caps;
  };
  t.deepEqual(caps({}), ['rtt', 'routes', 'udp', 'direct']);
  t.deepEqual(caps({ settings: { transport: 'udp' } }), ['rtt', 'routes', 'udp', 'direct']);
  t.deepEqual(caps({ settings: { direct: false } }), ['rtt', 'routes', 'udp']);
  t.deepEqual(caps({ settings: { transport: 'tcp' } }), ['rtt', 'routes']);
  t.deepEqual(caps({ noUdp: true }), ['rtt', 'routes']);
});

test("a client takes up the hub's offer: a channel to the hub's address at the offered port; TUN packets go over it once the path is up, and its packets reach the TUN", (t) => {
  const out1 = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
  const out2 = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(2));
  const in1 = ipv4Packet('10.0.0.3', '10.0.0.2', bytes(3));
  let run!: ClientRun;
  client(t, { until: 100 }, (c) => {
    run = c;
    c.at(1, () => c.conn.sendWelcome({ ...WELCOME, udp: OFFER }));
    c.at(5, () => c.tun.read(out1)); // probing: over TCP
    c.at(10, () => c.udp.opened[0]!.channel.arrive([], true));
    c.at(20, () => c.tun.read(out2));
    c.at(30, () => c.udp.opened[0]!.channel.arrive([in1]));
  });
  t.is(run.udp.opened.length, 1);
  const o = run.udp.opened[0]!;
  t.like(o, { host: '192.0.2.1', port: 9001, id: 77, cipher: 'chacha20-poly1305' });
  t.deepEqual(o.secret, FIRST_SECRET);
  t.deepEqual(run.conn.dataPackets(), [out1]);
  t.deepEqual(o.channel.dataPackets(), [out2]);
  t.deepEqual(run.tun.packets(), [in1]);
  t.deepEqual(ofType(run.log, 'transport').map((l) => [l.at, l.event.transport]), [[10, 'udp']]);
  t.true(o.channel.closed, 'the channel closes with the session');
});

test('a client sends a TUN packet over its channel, and writes a UDP arrival to its TUN device, in the same action', (t) => {
  const out = ipv4Packet('10.0.0.2', '10.0.0.1', bytes(1));
  const into = ipv4Packet('10.0.0.1', '10.0.0.2', bytes(2));
  const seen: Record<string, number> = {};
  client(t, { until: 100 }, (c) => {
    c.at(1, () => c.conn.sendWelcome({ ...WELCOME, udp: OFFER }));
    c.at(10, () => c.udp.opened[0]!.channel.arrive([], true)); // the path is up
    c.at(20, () => {
      c.tun.read(out);
      seen['TUN packet on the channel'] = c.udp.opened[0]!.channel.dataPackets().length;
    });
    c.at(30, () => {
      c.udp.opened[0]!.channel.arrive([into]);
      seen['arrival at the TUN'] = c.tun.packets().length;
    });
  });
  t.deepEqual(seen, { 'TUN packet on the channel': 1, 'arrival at the TUN': 1 });
});

test('with TLS the client keys its channel from the TLS exporter; without TLS or a secret it stays on TCP (auto) and says why', (t) => {
  const exported = Uint8Array.from({ length: 32 }, (_, i) => 100 + i);
  let tls!: ClientRun;
  client(t, { until: 20, tlsSecret: exported }, (c) => {
    tls = c;
    c.at(1, () => c.conn.sendWelcome({ ...WELCOME, udp: { id: 3, port: 9000, cipher: 'aes-256-gcm' } }));
  });
  t.deepEqual(tls.udp.opened[0]?.secret, exported);

  let plain!: ClientRun;
  client(t, { until: 20 }, (c) => {
    plain = c;
    c.at(1, () => c.conn.sendWelcome({ ...WELCOME, udp: { id: 3, port: 9000, cipher: 'aes-256-gcm' } }));
  });
  t.deepEqual(plain.udp.opened, []);
  t.deepEqual(ofType(plain.log, 'udp-unavailable').map((l) => l.event.detail), ['the hub offered UDP without a secret on a connection without TLS']);
  t.deepEqual(ofType(plain.log, 'disconnected'), [], 'the session carries on over TCP');
});

test('a client that cannot open its UDP socket stays on TCP under auto', (t) => {
  const out = ipv4Packet('10.0.0.2', '10.0.0.1', bytes(9));
  let run!: ClientRun;
  client(t, { until: 30 }, (c) => {
    run = c;
    c.udp.failWith = new Error('socket: EMFILE');
    c.at(1, () => c.conn.sendWelcome({ ...WELCOME, udp: OFFER }));
    c.at(5, () => c.tun.read(out));
  });
  t.deepEqual(ofType(run.log, 'udp-unavailable').map((l) => l.event.detail), ['the UDP socket failed: socket: EMFILE']);
  t.deepEqual(run.conn.dataPackets(), [out]);
});

test('-transport udp on a client: no offer in WELCOME, or a UDP path that fails, ends the session with udp-failed', (t) => {
  let noOffer!: ClientRun;
  client(t, { until: 20, settings: { transport: 'udp' } }, (c) => {
    noOffer = c;
    c.at(1, () => c.conn.sendWelcome(WELCOME));
  });
  t.like(ofType(noOffer.log, 'disconnected')[0]?.event, { reason: 'udp-failed' });
  t.regex(ofType(noOffer.log, 'disconnected')[0]?.event.detail ?? '', /offers no UDP data path/);

  let silent!: ClientRun;
  client(t, { until: 8000, settings: { transport: 'udp' } }, (c) => {
    silent = c;
    c.at(1, () => c.conn.sendWelcome({ ...WELCOME, udp: OFFER }));
  });
  const d = ofType(silent.log, 'disconnected')[0];
  t.like(d?.event, { reason: 'udp-failed' });
  t.true(d !== undefined && d.at <= UDP_TIMING.probeMs + UDP_TIMING.keepaliveMs + 1, `a path that never came up failed at ${d?.at} ms`);
  t.is(silent.conn.frames.filter((f) => f.type === FrameType.Data).length, 0);
});
