// The UDP data path's channel driver (src/udp/channels.ts) over real sockets on loopback: the key
// derivation and datagram format as docs/protocol.md writes them (checked against datagrams sealed
// here with Node's own HMAC and cipher, not with the addon), round trips both ways, rekeying across
// epochs, and what hostile datagrams do: replays, forgeries, truncated ones and strangers are
// dropped and counted, and only an authenticated datagram moves a member's endpoint.
import test from 'ava';
import { createHook, executionAsyncId } from 'node:async_hooks';
import type { DropCounts } from '../operators/core/packet.js';
import type { DatagramChannel, UdpCipher } from '../pipelines/ports.js';
import { clientSocket, hubSocket, packet, plainSocket, sealByHand, send, toHubKey, total, until, watch } from './helpers/datagrams.js';
import { SuperPacket, copyPacket, segmentSuper } from '../operators/core/wire/gso.js';
import { ACK, DEFAULT_FLOW, PSH, superPacketBytes } from './helpers/tcp-reference.js';

const CIPHERS: readonly UdpCipher[] = ['aes-256-gcm', 'chacha20-poly1305'];
const SECRET = Uint8Array.from({ length: 32 }, (_, i) => i * 7);

/** A client's channel to the hub at `port` on loopback, open until the test's teardown (unsubscribing closes it). */
async function clientChannel(t: { teardown(fn: () => void): void }, port: number, id: number, cipher: UdpCipher, rekeyAfter?: number): Promise<DatagramChannel> {
  return (await clientSocket(t, port, id, cipher, SECRET, rekeyAfter)).hub;
}

for (const cipher of CIPHERS) {
  test(`${cipher}: a datagram sealed by hand as docs/protocol.md says (HKDF-SHA256 keys, header as AAD, counter nonce) is accepted by the hub`, async (t) => {
    const hub = await hubSocket(t, cipher);
    const ch = hub.channel(9, SECRET);
    const w = watch(ch);
    t.teardown(() => w.sub.unsubscribe());
    const { socket } = await plainSocket(t);
    const p = packet(1);
    await send(socket, sealByHand(cipher, toHubKey(SECRET, 9, 0), { type: 1 | 0x80, epoch: 0, id: 9, counter: 0 }, p), hub.port);
    await until('the data datagram', () => w.arrivals.length === 1);
    await send(socket, sealByHand(cipher, toHubKey(SECRET, 9, 0), { type: 2, epoch: 0, id: 9, counter: 1 }, new Uint8Array(0)), hub.port);
    await until('two arrivals', () => w.arrivals.length === 2);
    t.deepEqual(w.arrivals[0], { packets: [p], hearsUs: true });
    t.deepEqual(w.arrivals[1], { packets: [], hearsUs: false }, 'a keepalive without the hears-you flag');
    t.deepEqual(ch.stats().rx, { packets: 1, bytes: p.length }, 'keepalives are not counted as data');
    t.deepEqual(w.drops, []);
  });
}

test('a client channel and the hub channel of one session carry packets both ways; the hub answers where the client is', async (t) => {
  const hub = await hubSocket(t, 'aes-256-gcm');
  const atHub = hub.channel(3, SECRET);
  const h = watch(atHub);
  const client = await clientChannel(t, hub.port, 3, 'aes-256-gcm');
  const c = watch(client);
  t.teardown(() => (h.sub.unsubscribe(), c.sub.unsubscribe()));
  t.is(atHub.send([packet(0)], true), 0, 'the hub sends nothing before it knows where the client is');
  const out = [packet(1), packet(2, 1400), packet(3, 20)];
  t.is(client.send(out, false), 3);
  await until('the hub hears the client', () => h.arrivals.length > 0);
  t.deepEqual(h.arrivals.flatMap((a) => a.packets), out);
  const back = [packet(4), packet(5)];
  t.is(atHub.send(back, true), 2);
  await until('the client hears the hub', () => c.arrivals.length > 0);
  t.deepEqual(c.arrivals.flatMap((a) => a.packets), back);
  t.true(c.arrivals.every((a) => a.hearsUs));
  t.is(client.maxPacket(), atHub.maxPacket(), 'both ends see the same loopback path MTU');
  t.true(client.maxPacket() >= 1400, `loopback carries a 1400-byte packet (maxPacket ${client.maxPacket()})`);
});

test('idle latency: a send goes to the kernel within the call, and a datagram reaches its channel inside the socket\'s read callback, with no timer, immediate, tick or microtask on the way', async (t) => {
  // The type of every async resource made from here on, to tell what a callback runs inside.
  const types = new Map<number, string>();
  const hook = createHook({ init: (id, type) => void types.set(id, type) }).enable();
  t.teardown(() => void hook.disable());
  const hub = await hubSocket(t, 'aes-256-gcm');
  const atHub = hub.channel(5, SECRET);
  const client = await clientChannel(t, hub.port, 5, 'aes-256-gcm');
  const seen: string[] = [];
  const subs = [
    atHub.arrivals$.subscribe(() => seen.push(`hub: ${types.get(executionAsyncId()) ?? 'unknown'}`)),
    client.arrivals$.subscribe(() => seen.push(`client: ${types.get(executionAsyncId()) ?? 'unknown'}`)),
  ];
  t.teardown(() => subs.forEach((s) => s.unsubscribe()));
  t.is(client.send([packet(1)], true), 1, 'the kernel took the datagram before send() returned');
  await until('the hub hears the client', () => seen.length === 1);
  t.is(atHub.send([packet(2)], true), 1);
  await until('the client hears the hub', () => seen.length === 2);
  t.deepEqual(seen, ['hub: UdpSocket', 'client: UdpSocket'], 'each arrival is emitted from the read callback of the socket (async resource UdpSocket)');
});

test('rekeying: with a small limit per key, hundreds of packets cross many epochs both ways and none is lost or refused', async (t) => {
  const hub = await hubSocket(t, 'chacha20-poly1305', 8);
  const atHub = hub.channel(11, SECRET);
  const h = watch(atHub);
  const client = await clientChannel(t, hub.port, 11, 'chacha20-poly1305', 8);
  const c = watch(client);
  t.teardown(() => (h.sub.unsubscribe(), c.sub.unsubscribe()));
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 100; i++) {
    const batch = [packet(i * 3), packet(i * 3 + 1), packet(i * 3 + 2)];
    sent.push(...batch);
    t.is(client.send(batch, true), 3);
    // One batch in flight at a time: a socket buffer that overflows would lose datagrams, not keys.
    await until(`batch ${i}`, () => h.arrivals.reduce((n, a) => n + a.packets.length, 0) === sent.length);
    atHub.send(batch, true);
  }
  t.deepEqual(h.arrivals.flatMap((a) => a.packets), sent);
  await until('the echo', () => c.arrivals.reduce((n, a) => n + a.packets.length, 0) === sent.length);
  t.deepEqual(c.arrivals.flatMap((a) => a.packets), sent);
  t.deepEqual(h.drops, []);
  t.deepEqual(c.drops, []);
});

test('hostile datagrams: a replay, a forgery, a truncated one and one of no session are dropped and counted, and change nothing', async (t) => {
  const hub = await hubSocket(t, 'aes-256-gcm');
  const ch = hub.channel(21, SECRET);
  const w = watch(ch);
  const strangers: DropCounts[] = [];
  const sub = hub.drops$.subscribe((d) => strangers.push(d));
  t.teardown(() => (w.sub.unsubscribe(), sub.unsubscribe()));
  const member = await plainSocket(t);
  const mallory = await plainSocket(t);
  const key = toHubKey(SECRET, 21, 0);
  const first = sealByHand('aes-256-gcm', key, { type: 1 | 0x80, epoch: 0, id: 21, counter: 5 }, packet(1));
  await send(member.socket, first, hub.port);
  await until('the member is heard', () => w.arrivals.length === 1);

  await send(mallory.socket, first, hub.port); // a replay from elsewhere
  const forged = Buffer.from(first);
  forged[forged.length - 1]! ^= 1;
  forged.writeBigUInt64BE(9n, 8); // a newer counter, a broken tag
  await send(mallory.socket, forged, hub.port);
  await send(mallory.socket, first.subarray(0, 20), hub.port); // truncated
  const stranger = sealByHand('aes-256-gcm', key, { type: 1, epoch: 0, id: 999, counter: 0 }, packet(2));
  await send(mallory.socket, stranger, hub.port);
  await until(() => `every drop counted (${JSON.stringify({ member: w.drops, strangers })})`, () => total(w.drops, 'replay') === 1 && total(w.drops, 'bad-tag') === 1 && total([...w.drops, ...strangers], 'malformed-datagram') === 1 && total(strangers, 'unknown-session') === 1);
  t.is(w.arrivals.length, 1, 'nothing hostile arrived');

  // None of them moved the member's endpoint: the hub still answers the member, not mallory.
  t.is(ch.send([packet(3)], true), 1);
  await until('the member gets the answer', () => member.got.length === 1);
  t.is(mallory.got.length, 0);
});

test('roaming: a member whose address or port changes keeps its session after its first authenticated datagram from there', async (t) => {
  const hub = await hubSocket(t, 'aes-256-gcm');
  const ch = hub.channel(31, SECRET);
  const w = watch(ch);
  t.teardown(() => w.sub.unsubscribe());
  const before = await plainSocket(t);
  const after = await plainSocket(t);
  const key = toHubKey(SECRET, 31, 0);
  t.is(ch.endpoint(), undefined, 'the hub knows no endpoint before the member is heard');
  await send(before.socket, sealByHand('aes-256-gcm', key, { type: 2 | 0x80, epoch: 0, id: 31, counter: 0 }, new Uint8Array(0)), hub.port);
  await until('heard at the first address', () => w.arrivals.length === 1);
  t.deepEqual(ch.endpoint(), { address: 0x7f000001, port: before.port }, 'endpoint() is where the hub saw the member');
  ch.send([packet(1)], true);
  await until('answered there', () => before.got.length === 1);
  await send(after.socket, sealByHand('aes-256-gcm', key, { type: 1 | 0x80, epoch: 0, id: 31, counter: 1 }, packet(2)), hub.port);
  await until('heard at the new address', () => w.arrivals.length === 2);
  t.deepEqual(ch.endpoint(), { address: 0x7f000001, port: after.port });
  ch.send([packet(3)], true);
  await until('answered at the new address', () => after.got.length === 1);
  t.is(before.got.length, 1, 'nothing more goes to the old address');
});

test('a SuperPacket leaves as one datagram per segment; a hub that coalesces hands the run back as SuperPackets carrying the same segments', async (t) => {
  const hub = await hubSocket(t, 'aes-256-gcm', undefined, true);
  const atHub = hub.channel(5, SECRET);
  const got: Uint8Array[] = [];
  const sub = atHub.arrivals$.subscribe((a) => got.push(...a.packets.map(copyPacket)));
  t.teardown(() => sub.unsubscribe());
  const client = await clientChannel(t, hub.port, 5, 'aes-256-gcm');
  const max = client.maxPacket();
  const bytes = superPacketBytes(DEFAULT_FLOW, { seq: 1000, id: 1, flags: ACK | PSH, payload: Uint8Array.from({ length: 30_000 }, (_, i) => i % 251) });
  const sp = new SuperPacket(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.length, 1400);
  const plain = packet(9, 100);
  const expected: Uint8Array[] = [];
  segmentSuper(sp, max, expected);
  expected.push(plain);
  t.is(client.send([sp, plain], true), 2);
  t.deepEqual(client.stats().tx, { packets: expected.length, bytes: sp.length + plain.length }, 'tx counts segments');
  const segments = (): Uint8Array[] => got.flatMap((p) => {
    if (!(p instanceof SuperPacket)) return [p];
    const out: Uint8Array[] = [];
    segmentSuper(p, max, out);
    return out;
  });
  await until(() => `${expected.length} segments (have ${segments().length})`, () => segments().length >= expected.length);
  t.deepEqual(segments().map((p) => Buffer.from(p).toString('hex')), expected.map((p) => Buffer.from(p).toString('hex')));
  t.true(got.some((p) => p instanceof SuperPacket), 'runs arrive coalesced');
  t.true(got.length < expected.length);
});
