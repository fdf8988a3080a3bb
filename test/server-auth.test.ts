// The hub's authentication, rate limiting, HELLO deadline and anti-spoofing, in virtual time.
import test, { type ExecutionContext } from 'ava';
import { tap } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import type { ServerEvent } from '../pipelines/events.js';
import type { Authenticator } from '../pipelines/ports.js';
import { serverPipeline } from '../pipelines/server.js';
import type { ServerSettings } from '../pipelines/settings.js';
import { makeAuthenticator } from '../src/auth.js';
import { fakes, type FakeConnection, type FakeListener, type FakeTun } from './helpers/fake-ports.js';
import { ipv4Packet, marbles } from './helpers/marbles.js';
import { parseIpv4 } from '../operators/core/address.js';

const SETTINGS: ServerSettings = {
  tunnel: { address: parseIpv4('10.0.0.1')!, prefix: 24 },
  mtu: 1400,
  keepaliveMs: 10_000,
  timeoutMs: 30_000,
  sendQueueSize: 16,
  recvQueueSize: 16,
  clientIsolation: false,
  maxClients: 100,
  multiClient: true,
  helloTimeoutMs: 5_000,
};

const TOKENS = makeAuthenticator({
  requireClientCert: false,
  networkToken: 'network-secret',
  clients: [
    { name: 'alice', token: 'alice-secret', address: parseIpv4('10.0.0.2')! },
    { name: 'bob', token: 'bob-secret-1' },
  ],
});

interface Scenario {
  readonly scheduler: TestScheduler;
  readonly tun: FakeTun;
  readonly listener: FakeListener;
  readonly log: Array<{ readonly at: number; readonly event: ServerEvent }>;
  at(ms: number, fn: () => void): void;
  /** A connection from `remote` accepted at `ms`; `then` runs in the same frame. */
  connect(ms: number, remote: string, then?: (c: FakeConnection) => void): FakeConnection;
  events<K extends ServerEvent['type']>(type: K): Array<Extract<ServerEvent, { type: K }> & { at: number }>;
}

function scenario(t: ExecutionContext, authenticator: Authenticator, until: number, body: (s: Scenario) => void): void {
  marbles(t, (_helpers, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const listener = make.listener();
    const log: Array<{ at: number; event: ServerEvent }> = [];
    const sub = serverPipeline(SETTINGS, { tun, listener, scheduler, authenticator })
      .pipe(tap({ next: (event) => log.push({ at: scheduler.now(), event }), error: (e: unknown) => t.fail(String(e)) }))
      .subscribe();
    scheduler.schedule(() => sub.unsubscribe(), until);
    const s: Scenario = {
      scheduler,
      tun,
      listener,
      log,
      at: (ms, fn) => void scheduler.schedule(fn, ms),
      connect(ms, remote, then) {
        const c = make.connection(remote);
        s.at(ms, () => {
          listener.accept(c);
          then?.(c);
        });
        return c;
      },
      events: (type) =>
        log.filter((l) => l.event.type === type).map((l) => ({ ...(l.event as Extract<ServerEvent, { type: typeof type }>), at: l.at })) as never,
    };
    body(s);
  });
}

test('a per-client token joins with its name as identity; the network token joins without one', (t) => {
  scenario(t, TOKENS, 100, (s) => {
    const alice = s.connect(1, '192.0.2.10:1000', (c) => c.sendHello('10.0.0.2', { token: 'alice-secret' }));
    const anyone = s.connect(2, '192.0.2.11:1000', (c) => c.sendHello('10.0.0.7', { token: 'network-secret' }));
    s.at(50, () => {
      t.deepEqual(
        s.events('joined').map((j) => [j.address, j.identity]),
        [
          ['10.0.0.2', 'alice'],
          ['10.0.0.7', undefined],
        ],
      );
      t.is(alice.welcomes().length, 1);
      t.is(anyone.welcomes().length, 1);
    });
  });
});

test('a wrong token gets REJECT auth-failed, and the same source is then refused as rate-limited for a doubling time', (t) => {
  scenario(t, TOKENS, 20_000, (s) => {
    const host = '192.0.2.20';
    const wrong1 = s.connect(1, `${host}:1`, (c) => c.sendHello('10.0.0.9', { token: 'guess-1' }));
    const early = s.connect(500, `${host}:2`, (c) => c.sendHello('10.0.0.9', { token: 'network-secret' }));
    const wrong2 = s.connect(1_001, `${host}:3`, (c) => c.sendHello('10.0.0.9', { token: 'guess-2' }));
    const blocked = s.connect(2_900, `${host}:4`, (c) => c.sendHello('10.0.0.9', { token: 'network-secret' }));
    const other = s.connect(2_901, '192.0.2.99:5', (c) => c.sendHello('10.0.0.8', { token: 'network-secret' }));
    const right = s.connect(3_001, `${host}:6`, (c) => c.sendHello('10.0.0.9', { token: 'network-secret' }));
    s.at(19_000, () => {
      t.deepEqual(wrong1.rejects().map((r) => (r instanceof Error ? r.message : r.reason)), ['auth-failed']);
      t.deepEqual(early.rejects().map((r) => (r instanceof Error ? r.message : r.reason)), ['rate-limited'], 'blocked for 1 s after one failure');
      t.deepEqual(wrong2.rejects().map((r) => (r instanceof Error ? r.message : r.reason)), ['auth-failed']);
      t.deepEqual(blocked.rejects().map((r) => (r instanceof Error ? r.message : r.reason)), ['rate-limited'], 'blocked for 2 s after two failures');
      t.is(other.rejects().length, 0, 'another source is not affected');
      t.is(right.rejects().length, 0, 'after the block the right token joins');
      t.deepEqual(
        s.events('joined').map((j) => j.address),
        ['10.0.0.8', '10.0.0.9'],
      );
      t.true(wrong1.closed && early.closed && wrong2.closed && blocked.closed);
    });
  });
});

test('a client without HELLO (0.0.1-era) is refused as auth-required and its packet is not forwarded', (t) => {
  scenario(t, TOKENS, 100, (s) => {
    const legacy = s.connect(1, '192.0.2.30:1', (c) => c.sendData(ipv4Packet('10.0.0.5', '10.0.0.1')));
    s.at(50, () => {
      t.deepEqual(legacy.rejects().map((r) => (r instanceof Error ? r.message : r.reason)), ['auth-required']);
      t.is(s.tun.packets().length, 0);
      t.is(s.events('joined').length, 0);
    });
  });
});

test('a connection that sends no HELLO within helloTimeoutMs is closed, even if it sends keepalives', (t) => {
  scenario(t, TOKENS, 10_000, (s) => {
    const silent = s.connect(1, '192.0.2.40:1');
    const chatty = s.connect(1, '192.0.2.41:1');
    for (const ms of [1_000, 2_000, 3_000, 4_000]) s.at(ms, () => chatty.sendKeepalive());
    const prompt = s.connect(1, '192.0.2.42:1');
    s.at(4_999, () => prompt.sendHello('10.0.0.6', { token: 'network-secret' }));
    s.at(9_000, () => {
      const left = s.events('left').map((l) => [l.remote, l.reason, l.at]);
      t.deepEqual(left, [
        ['192.0.2.40:1', 'handshake-timeout', 5_001],
        ['192.0.2.41:1', 'handshake-timeout', 5_001],
      ]);
      t.true(silent.closed && chatty.closed);
      t.false(prompt.closed);
    });
  });
});

test('a named client reconnecting replaces its own session at once, but never takes another member address', (t) => {
  scenario(t, TOKENS, 1_000, (s) => {
    const first = s.connect(1, '192.0.2.50:1', (c) => c.sendHello('10.0.0.2', { token: 'alice-secret' }));
    const bob = s.connect(2, '192.0.2.51:1', (c) => c.sendHello('10.0.0.3', { token: 'bob-secret-1' }));
    const second = s.connect(10, '198.51.100.50:1', (c) => c.sendHello('10.0.0.2', { token: 'alice-secret' }));
    const thief = s.connect(20, '198.51.100.51:1', (c) => c.sendHello('10.0.0.2', { token: 'bob-secret-1' }));
    const shared = s.connect(30, '198.51.100.52:1', (c) => c.sendHello('10.0.0.3', { token: 'network-secret' }));
    s.at(500, () => {
      t.deepEqual(
        s.events('left').map((l) => [l.remote, l.reason]),
        [
          ['192.0.2.50:1', 'replaced'],
          ['198.51.100.51:1', 'rejected'],
          ['198.51.100.52:1', 'rejected'],
        ],
      );
      t.true(first.closed);
      t.false(second.closed);
      t.false(bob.closed);
      t.deepEqual(thief.rejects().map((r) => (r instanceof Error ? r.message : r.reason)), ['address-not-allowed'], "alice's pinned address is reserved for her");
      t.deepEqual(shared.rejects().map((r) => (r instanceof Error ? r.message : r.reason)), ['ip-conflict'], 'a shared network token is no identity');
      // The new session owns the route.
      s.tun.read(ipv4Packet('10.0.0.1', '10.0.0.2'));
      t.is(second.dataPackets().length, 1);
      t.is(first.dataPackets().length, 0);
    });
  });
});

test('a client pinned to an address asking for another gets address-not-allowed', (t) => {
  scenario(t, TOKENS, 100, (s) => {
    const c = s.connect(1, '192.0.2.60:1', (x) => x.sendHello('10.0.0.3', { token: 'alice-secret' }));
    s.at(50, () => {
      t.deepEqual(c.rejects().map((r) => (r instanceof Error ? r.message : r.reason)), ['address-not-allowed']);
      const rejected = s.events('rejected')[0]!;
      t.is(rejected.message, 'client alice may only use 10.0.0.2, not 10.0.0.3');
    });
  });
});

test('with client certificates required, the verified name is the identity and a connection without one is refused', (t) => {
  const mtls = makeAuthenticator({ requireClientCert: true });
  scenario(t, mtls, 100, (s) => {
    const carol = s.connect(1, '192.0.2.70:1', (c) => {
      (c as { peerIdentity?: string }).peerIdentity = 'carol';
      c.sendHello('10.0.0.4');
    });
    const anonymous = s.connect(2, '192.0.2.71:1', (c) => c.sendHello('10.0.0.5'));
    s.at(50, () => {
      t.deepEqual(s.events('joined').map((j) => [j.address, j.identity]), [['10.0.0.4', 'carol']]);
      t.is(carol.welcomes().length, 1);
      t.deepEqual(anonymous.rejects().map((r) => (r instanceof Error ? r.message : r.reason)), ['auth-failed']);
    });
  });
});

test('a member sending packets with a source address other than its own has them dropped as spoofed-source', (t) => {
  scenario(t, TOKENS, 100, (s) => {
    const victim = s.connect(1, '192.0.2.80:1', (c) => c.sendHello('10.0.0.3', { token: 'bob-secret-1' }));
    const spoofer = s.connect(2, '192.0.2.81:1', (c) => c.sendHello('10.0.0.9', { token: 'network-secret' }));
    s.at(10, () => spoofer.sendData(ipv4Packet('10.0.0.2', '10.0.0.3'), ipv4Packet('10.0.0.9', '10.0.0.3'), ipv4Packet('10.0.0.1', '10.0.0.1')));
    s.at(50, () => {
      t.deepEqual(victim.dataPackets(), [ipv4Packet('10.0.0.9', '10.0.0.3')]);
      t.is(s.tun.packets().length, 0);
      const drops = s.events('drops').filter((d) => d.who === '10.0.0.9');
      t.deepEqual(drops.map((d) => d.drops), [{ 'spoofed-source': 2 }]);
    });
  });
});

test('with authentication on, a stranger learns nothing about the tunnel network: a wrong token is auth-failed whatever address it claims', (t) => {
  scenario(t, TOKENS, 100, (s) => {
    const outside = s.connect(1, '192.0.2.30:1000', (c) => c.sendHello('172.16.0.9', { token: 'wrong-token' }));
    const hub = s.connect(2, '192.0.2.31:1000', (c) => c.sendHello('10.0.0.1', { token: 'wrong-token-2' }));
    const good = s.connect(3, '192.0.2.32:1000', (c) => c.sendHello('172.16.0.9', { token: 'network-secret' }));
    s.at(50, () => {
      t.deepEqual(outside.rejects().map((r) => (r as { reason: string }).reason), ['auth-failed']);
      t.deepEqual(hub.rejects().map((r) => (r as { reason: string }).reason), ['auth-failed']);
      // Once authenticated, the address checks speak as before.
      t.deepEqual(good.rejects().map((r) => (r as { reason: string }).reason), ['outside-subnet']);
    });
  });
});
