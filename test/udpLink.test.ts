// udpLink (pipelines/udpLink.ts) and dataPath over a fake channel in virtual time: nothing goes over
// UDP before the path is up, SuperPackets are segmented to the datagram size, what does not fit or
// does not fit in the socket is counted, and the data path picks UDP or TCP by the path's state.
import test from 'ava';
import type { Subscription } from 'rxjs';
import { SuperPacket } from '../operators/core/wire/gso.js';
import type { PacketBatch } from '../pipelines/ports.js';
import { dataPath, udpLink, type LinkEvent } from '../pipelines/udpLink.js';
import { FakeChannel } from './helpers/fake-udp.js';
import { bytes, ipv4Packet, marbles } from './helpers/marbles.js';
import { ACK, tcpSegment } from './helpers/tcp-reference.js';

/** Runs `body` with a link over a fake channel that is up (heard at 1 ms); the link's events are collected. */
function upLink(t: Parameters<typeof marbles>[0], body: (o: { link: ReturnType<typeof udpLink>; channel: FakeChannel; events: LinkEvent[]; tcp: PacketBatch[] }) => void): void {
  marbles(t, (_h, scheduler) => {
    const channel = new FakeChannel(scheduler, 1, new Uint8Array(32));
    const link = udpLink(channel, { mode: 'auto', scheduler });
    const events: LinkEvent[] = [];
    const tcp: PacketBatch[] = [];
    let sub: Subscription | undefined;
    scheduler.schedule(() => (sub = link.events$.subscribe((e) => events.push(e))), 0);
    scheduler.schedule(() => channel.arrive([], true), 1);
    scheduler.schedule(() => body({ link, channel, events, tcp }), 2);
    scheduler.schedule(() => sub?.unsubscribe(), 10);
  });
}

test('before the path is up, send() declines (the caller uses TCP) and nothing goes over UDP', (t) => {
  marbles(t, (_h, scheduler) => {
    const channel = new FakeChannel(scheduler, 1, new Uint8Array(32));
    const link = udpLink(channel, { mode: 'auto', scheduler });
    const sub = link.events$.subscribe();
    t.false(link.up);
    t.is(link.transport, 'tcp');
    t.is(link.send([ipv4Packet('10.0.0.2', '10.0.0.1', bytes(1))]), undefined);
    t.deepEqual(channel.dataPackets(), []);
    sub.unsubscribe();
    t.true(channel.closed, 'unsubscribing closes the channel');
  });
});

test('a SuperPacket goes to the channel whole (it segments to the datagram size); one that cannot segment and a packet larger than it are counted too-big; what the socket cannot take is queue-full', (t) => {
  const payload = Uint8Array.from({ length: 4000 }, (_, i) => i & 0xff);
  const whole = tcpSegment({ src: '10.0.0.2', dst: '10.0.0.3', sport: 1, dport: 2 }, { seq: 1, id: 1, flags: ACK, payload });
  const sp = new SuperPacket(whole.buffer as ArrayBuffer, whole.byteOffset, whole.length, 1400);
  const big = ipv4Packet('10.0.0.2', '10.0.0.3', new Uint8Array(1500));
  upLink(t, ({ link, channel }) => {
    t.true(link.up);
    t.is(link.transport, 'udp');
    channel.max = 1440;
    t.deepEqual(link.send([sp]), { drops: undefined });
    const sent = channel.dataPackets();
    t.is(sent.length, 1, 'the super-packet is handed over whole');
    t.true(sent[0] instanceof SuperPacket);
    t.is(sent[0]!.length, whole.length);
    channel.max = 40; // no room for payload behind the 40 bytes of headers
    t.deepEqual(link.send([sp]), { drops: { 'too-big': 1 } });
    channel.max = 1440;
    t.deepEqual(link.send([big, ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1))]), { drops: { 'too-big': 1 } });
    channel.room = 1;
    t.deepEqual(link.send([ipv4Packet('10.0.0.2', '10.0.0.3', bytes(2)), ipv4Packet('10.0.0.2', '10.0.0.3', bytes(3))]), { drops: { 'queue-full': 1 } });
  });
});

test('dataPath: over TCP before the path is up, over UDP while up with the smaller of the two sizes', (t) => {
  marbles(t, (_h, scheduler) => {
    const channel = new FakeChannel(scheduler, 1, new Uint8Array(32));
    const link = udpLink(channel, { mode: 'auto', scheduler });
    const tcp: PacketBatch[] = [];
    const path = dataPath({ send: (p) => tcp.push(p), encoding: { maxPacket: 1495 } }, () => link);
    const p = ipv4Packet('10.0.0.2', '10.0.0.1', bytes(1));
    let sub: Subscription | undefined;
    scheduler.schedule(() => (sub = link.events$.subscribe()), 0);
    scheduler.schedule(() => {
      t.is(path.maxPacket(), 1495);
      t.is(path.send([p]), undefined);
      t.is(tcp.length, 1);
      channel.arrive([], true);
      channel.max = 1440;
      t.is(path.maxPacket(), 1440);
      t.is(path.send([p]), undefined);
      t.is(tcp.length, 1, 'nothing more over TCP');
      t.deepEqual(channel.dataPackets(), [p]);
    }, 1);
    scheduler.schedule(() => sub?.unsubscribe(), 5);
  });
  const noLink = dataPath({ send: () => undefined, encoding: { maxPacket: 1400 } }, () => undefined);
  t.is(noLink.maxPacket(), 1400);
});
