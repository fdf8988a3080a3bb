// The pipelines' stats events (counters, queue depth) and RTT by PING/PONG, in virtual time.
import test from 'ava';
import { tap } from 'rxjs';
import type { ClientEvent, ServerEvent } from '../pipelines/events.js';
import { clientPipeline } from '../pipelines/client.js';
import { serverPipeline } from '../pipelines/server.js';
import type { ClientSettings, ServerSettings } from '../pipelines/settings.js';
import { FrameType, encodeFrame } from '../operators/core/wire/frames.js';
import { fakes } from './helpers/fake-ports.js';
import { ipv4Packet, marbles } from './helpers/marbles.js';
import { parseIpv4 } from '../operators/core/address.js';

const COMMON = {
  tunnel: { address: parseIpv4('10.0.0.1')!, prefix: 24 },
  mtu: 1400,
  keepaliveMs: 1_000,
  timeoutMs: 5_000,
  sendQueueSize: 8,
  recvQueueSize: 8,
  statsIntervalMs: 500,
};
const HUB: ServerSettings = { ...COMMON, clientIsolation: false, maxClients: 10, multiClient: true, helloTimeoutMs: 5_000 };
const CLIENT: ClientSettings = { ...COMMON, tunnel: { address: parseIpv4('10.0.0.2')!, prefix: 24 }, remotes: [{ host: 'hub', port: 9000 }], backoff: { initialMs: 1_000, maxMs: 30_000 } };

test('the hub reports per-session traffic, queue depth and PING/PONG round-trip time every statsIntervalMs', (t) => {
  marbles(t, (_h, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const listener = make.listener();
    const stats: Array<Extract<ServerEvent, { type: 'stats' }>> = [];
    const sub = serverPipeline(HUB, { tun, listener, scheduler })
      .pipe(tap((e) => e.type === 'stats' && stats.push(e)))
      .subscribe();
    const a = make.connection('192.0.2.1:1');
    const b = make.connection('192.0.2.2:1');
    scheduler.schedule(() => {
      listener.accept(a);
      a.sendHello('10.0.0.2', { caps: ['rtt'] });
      listener.accept(b);
      b.sendHello('10.0.0.3'); // no rtt capability: never pinged
    }, 1);
    scheduler.schedule(() => a.sendData(ipv4Packet('10.0.0.2', '10.0.0.3', new Uint8Array(80)), ipv4Packet('10.0.0.2', '10.0.0.1')), 100);
    scheduler.schedule(() => b.block(), 200);
    scheduler.schedule(() => tun.read(ipv4Packet('10.0.0.1', '10.0.0.3'), ipv4Packet('10.0.0.1', '10.0.0.3')), 300);
    // a answers the hub's PING (sent at its first keepalive tick, 1001) 7 ms later.
    scheduler.schedule(() => {
      const ping = a.frames.find((f) => f.type === FrameType.Ping);
      t.truthy(ping, 'the hub pings a peer with the rtt capability');
      a.push(encodeFrame(FrameType.Pong, ping!.payload));
    }, 1_008);
    scheduler.schedule(() => {
      sub.unsubscribe();
      const at500 = stats.find((s) => s.at === 500)!;
      const sa = at500.sessions.find((s) => s.address === '10.0.0.2')!;
      const sb = at500.sessions.find((s) => s.address === '10.0.0.3')!;
      t.deepEqual(sa.rx, { packets: 2, bytes: 100 + 20 });
      t.deepEqual(sb.tx, { packets: 1, bytes: 100 }, 'the packet from a reached b');
      t.is(sb.queued, 2, 'the two packets from the TUN wait while b is blocked');
      t.deepEqual(at500.tun.read, { packets: 2, bytes: 40 });
      t.deepEqual(at500.tun.written, { packets: 1, bytes: 20 });
      t.is(sa.connectedAt, 1);
      t.is(sa.lastSeen, 100);
      const at1500 = stats.find((s) => s.at === 1_500)!;
      t.is(at1500.sessions.find((s) => s.address === '10.0.0.2')!.rttMs, 7);
      t.is(at1500.sessions.find((s) => s.address === '10.0.0.3')!.rttMs, undefined);
      t.false(b.frames.some((f) => f.type === FrameType.Ping));
      t.deepEqual(stats.map((s) => s.at), [500, 1000, 1500]);
    }, 1_600);
  });
});

test('a member that leaves disappears from the stats; a hub answers a PING with a PONG of the same payload', (t) => {
  marbles(t, (_h, scheduler) => {
    const make = fakes(scheduler);
    const listener = make.listener();
    const stats: Array<Extract<ServerEvent, { type: 'stats' }>> = [];
    const sub = serverPipeline(HUB, { tun: make.tun(), listener, scheduler })
      .pipe(tap((e) => e.type === 'stats' && stats.push(e)))
      .subscribe();
    const a = make.connection('192.0.2.1:1');
    scheduler.schedule(() => {
      listener.accept(a);
      a.sendHello('10.0.0.2');
      a.push(encodeFrame(FrameType.Ping, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8])));
    }, 1);
    scheduler.schedule(() => a.end(), 600);
    scheduler.schedule(() => {
      sub.unsubscribe();
      t.deepEqual(
        a.frames.filter((f) => f.type === FrameType.Pong).map((f) => [...f.payload]),
        [[1, 2, 3, 4, 5, 6, 7, 8]],
      );
      t.deepEqual(stats.map((s) => s.sessions.length), [1, 0]);
    }, 1_100);
  });
});

test('the client reports its session and TUN counters, and measures RTT to a hub that offers it', (t) => {
  marbles(t, (_h, scheduler) => {
    const make = fakes(scheduler);
    const tun = make.tun();
    const conn = make.connection('hub:9000');
    const dialer = make.dialer(() => ({ connect: conn }));
    const stats: Array<Extract<ClientEvent, { type: 'stats' }>> = [];
    const sub = clientPipeline(CLIENT, { tun, dialer, scheduler, random: () => 0.5 })
      .pipe(tap((e) => e.type === 'stats' && stats.push(e)))
      .subscribe();
    scheduler.schedule(() => conn.sendWelcome({ address: '10.0.0.2', prefix: 24, hub: '10.0.0.1', caps: ['rtt'] }), 10);
    scheduler.schedule(() => tun.read(ipv4Packet('10.0.0.2', '10.0.0.1')), 20);
    scheduler.schedule(() => conn.sendData(ipv4Packet('10.0.0.1', '10.0.0.2'), ipv4Packet('10.0.0.3', '10.0.0.2')), 30);
    scheduler.schedule(() => {
      const ping = conn.frames.find((f) => f.type === FrameType.Ping);
      t.truthy(ping, 'the client pings a hub that offered rtt');
      conn.push(encodeFrame(FrameType.Pong, ping!.payload));
    }, 1_003);
    scheduler.schedule(() => {
      sub.unsubscribe();
      const s = stats.find((x) => x.at === 500)!;
      t.is(s.session?.address, '10.0.0.2');
      t.deepEqual(s.session?.tx, { packets: 1, bytes: 20 });
      t.deepEqual(s.session?.rx, { packets: 2, bytes: 40 });
      t.deepEqual(s.tun, { read: { packets: 1, bytes: 20 }, written: { packets: 2, bytes: 40 }, queued: 0 });
      t.is(stats.find((x) => x.at === 1_500)!.session?.rttMs, 3);
    }, 1_600);
  });
});

test('packets the TUN device refuses are reported as tun-write-error drops, never silently lost', (t) => {
  marbles(t, (_h, scheduler) => {
    const make = fakes(scheduler);
    const fake = make.tun();
    let refused = 0;
    // A device that takes every packet but refuses those with a TTL of 0 (as the kernel refuses malformed ones).
    const tun = {
      ...fake,
      packets$: fake.packets$,
      sink: {
        write: (packets: readonly Uint8Array[]) => {
          for (const p of packets) if (p[8] === 0) refused++;
          return packets.length;
        },
        ready$: fake.ready$,
        rejected: () => refused,
      },
    };
    const listener = make.listener();
    const drops: unknown[] = [];
    const sub = serverPipeline(HUB, { tun, listener, scheduler })
      .pipe(tap((e) => e.type === 'drops' && e.who === 'tun' && drops.push(e.drops)))
      .subscribe();
    const a = make.connection();
    scheduler.schedule(() => {
      listener.accept(a);
      a.sendHello('10.0.0.2');
      const bad = ipv4Packet('10.0.0.2', '10.0.0.1');
      bad[8] = 0;
      a.sendData(ipv4Packet('10.0.0.2', '10.0.0.1'), bad, bad);
    }, 1);
    scheduler.schedule(() => {
      t.deepEqual(drops, [{ 'tun-write-error': 2 }]);
      sub.unsubscribe();
    }, 10);
  });
});
