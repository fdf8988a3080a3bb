// Pair channels (docs/direct.md) on a client's UDP socket (src/udp/channels.ts), over real sockets on
// loopback: two members' sockets each carry a hub channel and a pair channel told apart by receiver
// id; the pair's keys and format as docs/direct.md writes them (checked with Node's own HMAC and
// cipher); probes to explicit endpoints, arrivals with their source, data only where the owner
// chose; what hostile datagrams do (and that they allocate nothing in the driver, by V8's sampling
// heap profiler); closing one pair; rekeying; the socket's bounds.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { Session } from 'node:inspector/promises';
import type { DropCounts } from '../operators/core/packet.js';
import type { PairChannel, PairKeys, UdpCipher, UdpClientSocket, UdpEndpoint } from '../pipelines/ports.js';
import { INTRODUCTION_LIMITS } from '../pipelines/introductions.js';
import { MAX_PAIR_CHANNELS } from '../src/udp/channels.js';
import { clientSocket, hubSocket, openByHand, packet, plainSocket, sealByHand, send, toHubKey, total, until, watch } from './helpers/datagrams.js';

const CIPHERS: readonly UdpCipher[] = ['aes-256-gcm', 'chacha20-poly1305'];
const SECRET = Uint8Array.from({ length: 32 }, (_, i) => i * 7);
const LOOPBACK = 0x7f000001;
const at = (port: number): UdpEndpoint => ({ address: LOOPBACK, port });
const bytes = (ps: readonly Uint8Array[]): string[] => ps.map((p) => Buffer.from(p).toString('hex'));
const packetsOf = (arrivals: readonly { readonly packets: readonly Uint8Array[] }[]): Uint8Array[] => arrivals.flatMap((a) => a.packets);

/** Both sides of one introduction: one fresh pair key, `aId` and `bId` swapped between them. */
function introduce(aId: number, bId: number, cipher: UdpCipher = 'aes-256-gcm'): { a: PairKeys; b: PairKeys } {
  const key = new Uint8Array(randomBytes(32));
  return { a: { id: aId, peerId: bId, key, cipher }, b: { id: bId, peerId: aId, key, cipher } };
}

/** The pair channel `socket` opens for `keys` (the test fails if it refuses). */
function opened(socket: UdpClientSocket, keys: PairKeys): PairChannel {
  const o = socket.pair(keys);
  if (!o.ok) throw new Error(`pair refused: ${o.reason} (${o.detail})`);
  return o.channel;
}

/** Collects what a socket could give no channel. */
function unclaimed(t: { teardown(fn: () => void): void }, s: { readonly drops$: UdpClientSocket['drops$'] }): DropCounts[] {
  const drops: DropCounts[] = [];
  const sub = s.drops$.subscribe((d) => drops.push(d));
  t.teardown(() => sub.unsubscribe());
  return drops;
}

/** A hub socket, members a (session 1) and b (session 2) with their hub channels, and a pair between them: id 101 at a, 202 at b. */
async function twoMembers(t: { teardown(fn: () => void): void }, cipher: UdpCipher = 'aes-256-gcm', rekeyAfter?: number) {
  const hub = await hubSocket(t, cipher, rekeyAfter);
  const a = await clientSocket(t, hub.port, 1, cipher, SECRET, rekeyAfter);
  const b = await clientSocket(t, hub.port, 2, cipher, SECRET, rekeyAfter);
  const keys = introduce(101, 202, cipher);
  return { hub, a, b, keys, pa: opened(a, keys.a), pb: opened(b, keys.b) };
}

/** A loopback port nothing listens on (bound once, then closed). */
async function closedPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('two members talk straight to each other over a pair channel while each holds its hub channel on the same socket', async (t) => {
  const { hub, a, b, pa, pb } = await twoMembers(t);
  const h1 = hub.channel(1, SECRET);
  const h2 = hub.channel(2, SECRET);
  const w = { h1: watch(h1), h2: watch(h2), a: watch(a.hub), b: watch(b.hub), pa: watch(pa), pb: watch(pb) };
  t.teardown(() => Object.values(w).forEach((x) => x.sub.unsubscribe()));
  const strays = [unclaimed(t, a), unclaimed(t, b), unclaimed(t, hub)];

  t.is(a.hub.send([packet(1)], true), 1);
  t.is(b.hub.send([packet(2)], true), 1);
  await until('the hub hears both members', () => w.h1.arrivals.length === 1 && w.h2.arrivals.length === 1);
  t.deepEqual(h1.endpoint(), at(a.localPort), "the hub's channel shows where it saw member a: the socket a's pair channel uses too");
  t.deepEqual(h2.endpoint(), at(b.localPort));

  t.is(pa.endpoint(), undefined);
  t.is(pa.send([packet(3)], true), 0, 'a pair channel sends no data before its owner chooses an endpoint');
  // Each side sends to the other where the hub saw it (the first candidate of an INTRODUCTION).
  pa.use(h2.endpoint());
  pb.use(h1.endpoint());
  t.deepEqual(pa.endpoint(), at(b.localPort));
  const ab = [packet(4), packet(5, 1000)];
  t.is(pa.send(ab, true), 2);
  await until('b hears a directly', () => packetsOf(w.pb.arrivals).length === 2);
  t.deepEqual(bytes(packetsOf(w.pb.arrivals)), bytes(ab));
  t.deepEqual(w.pb.arrivals.map((x) => [x.from, x.hearsUs]), [[at(a.localPort), true]], "b's arrival says where it came from: a's one socket");
  const ba = [packet(6)];
  t.is(pb.send(ba, false), 1);
  await until('a hears b directly', () => w.pa.arrivals.length === 1);
  t.deepEqual(w.pa.arrivals.map((x) => [bytes(x.packets), x.from, x.hearsUs]), [[bytes(ba), at(b.localPort), false]]);

  // The hub channels carry on beside the pairs, each channel seeing only its own datagrams.
  t.is(h1.send([packet(7)], true), 1);
  t.is(h2.send([packet(8)], true), 1);
  await until('both members hear the hub', () => w.a.arrivals.length === 1 && w.b.arrivals.length === 1);
  t.deepEqual(bytes(packetsOf(w.a.arrivals)), bytes([packet(7)]));
  t.deepEqual(bytes(packetsOf(w.b.arrivals)), bytes([packet(8)]));
  t.deepEqual(bytes(packetsOf(w.h1.arrivals)), bytes([packet(1)]));
  t.deepEqual(bytes(packetsOf(w.h2.arrivals)), bytes([packet(2)]));
  t.deepEqual(pa.stats(), { rx: { packets: 1, bytes: 60 }, tx: { packets: 2, bytes: 1060 } }, 'the pair keeps its own counters');
  t.deepEqual(a.hub.stats(), { rx: { packets: 1, bytes: 60 }, tx: { packets: 1, bytes: 60 } });
  t.deepEqual([...Object.values(w).flatMap((x) => x.drops), ...strays.flat()], [], 'nothing dropped anywhere');
});

for (const cipher of CIPHERS) {
  test(`${cipher}: a pair seals to the peer's receiver id with that id's client→hub key of the pair key, and opens what is sealed so to its own id (docs/direct.md)`, async (t) => {
    const hub = await hubSocket(t, cipher);
    const a = await clientSocket(t, hub.port, 1, cipher, SECRET);
    const keys = introduce(17, 18, cipher);
    const pa = opened(a, keys.a);
    const w = watch(pa);
    t.teardown(() => w.sub.unsubscribe());
    const peer = await plainSocket(t);
    pa.use(at(peer.port));
    t.is(pa.send([packet(1)], true), 1);
    pa.keepaliveTo(at(peer.port), false);
    await until('both datagrams', () => peer.got.length === 2);
    const data = openByHand(cipher, toHubKey(keys.a.key, 18, 0), peer.got[0]!);
    t.like(data, { type: 1 | 0x80, epoch: 0, id: 18, counter: 0 });
    t.deepEqual(bytes([data?.payload ?? new Uint8Array(0)]), bytes([packet(1)]));
    t.like(openByHand(cipher, toHubKey(keys.a.key, 18, 0), peer.got[1]!), { type: 2, epoch: 0, id: 18, counter: 1, payload: Buffer.alloc(0) });
    t.is(openByHand(cipher, toHubKey(keys.a.key, 17, 0), peer.got[0]!), undefined, 'not the key of its own id: each direction has its own');

    await send(peer.socket, sealByHand(cipher, toHubKey(keys.a.key, 17, 0), { type: 1 | 0x80, epoch: 0, id: 17, counter: 0 }, packet(2)), a.localPort);
    await until('the peer is heard', () => w.arrivals.length === 1);
    t.deepEqual(w.arrivals, [{ packets: [packet(2)], hearsUs: true, from: at(peer.port) }]);
    t.deepEqual(w.drops, []);
  });
}

test('probes go to every candidate endpoint; only the one that answers is heard, from its own source, and data goes where the owner then chooses', async (t) => {
  const { hub, a, b, pa, pb } = await twoMembers(t);
  const h1 = hub.channel(1, SECRET);
  const wh1 = watch(h1);
  const silent = await plainSocket(t);
  const nobody = await closedPort();
  const wa = watch(pa);
  const wb = watch(pb);
  // b answers a datagram that does not hear it yet at its source, as directPath's `answer` says.
  const answering = pb.arrivals$.subscribe((x) => x.hearsUs || pb.keepaliveTo(x.from, true));
  t.teardown(() => [wh1, wa, wb].forEach((x) => x.sub.unsubscribe()));
  t.teardown(() => answering.unsubscribe());

  for (const candidate of [at(silent.port), at(nobody), at(b.localPort)]) pa.keepaliveTo(candidate, false);
  await until('the answer', () => wa.arrivals.length >= 1);
  t.deepEqual(wa.arrivals, [{ packets: [], hearsUs: true, from: at(b.localPort) }], 'one answer, from the candidate that can answer');
  t.deepEqual(wb.arrivals, [{ packets: [], hearsUs: false, from: at(a.localPort) }], "b heard a's probe from a's socket");
  await until('the silent candidate got its probe', () => silent.got.length === 1);
  t.is(silent.got[0]!.length, 32, 'a probe is an empty sealed keepalive');
  t.is(silent.got[0]!.readUInt32BE(4), 202, "under the peer's receiver id");
  t.is(pa.endpoint(), undefined, 'an answer does not move the endpoint: the owner does');

  pa.use(wa.arrivals[0]!.from);
  t.is(pa.send([packet(9)], true), 1);
  await until('the data', () => packetsOf(wb.arrivals).length === 1);
  t.is(silent.got.length, 1, 'data went only where the owner chose');
  t.deepEqual(wa.drops, []);
  // The closed candidate's ICMP answer left the socket working for the hub channel too.
  t.is(a.hub.send([packet(10)], true), 1);
  await until('the hub hears a', () => wh1.arrivals.length === 1);
});

test('datagrams of one read from several sources arrive as one arrival per run from each source, in order', async (t) => {
  const hub = await hubSocket(t, 'aes-256-gcm');
  const a = await clientSocket(t, hub.port, 1, 'aes-256-gcm', SECRET);
  const keys = introduce(31, 32);
  const pa = opened(a, keys.a);
  const w = watch(pa);
  t.teardown(() => w.sub.unsubscribe());
  const s1 = await plainSocket(t);
  const s2 = await plainSocket(t);
  const key = toHubKey(keys.a.key, 31, 0);
  const sealed = (counter: number, hears: boolean): Buffer => sealByHand('aes-256-gcm', key, { type: 1 | (hears ? 0x80 : 0), epoch: 0, id: 31, counter }, packet(counter));
  // All four wait in the socket's buffer before it reads: dgram sends on the next tick, then the
  // event loop is held a moment, so that one recvmmsg takes them together.
  for (const [s, c, hears] of [[s1, 0, false], [s1, 1, true], [s2, 2, true], [s1, 3, false]] as const) s.socket.send(sealed(c, hears), a.localPort, '127.0.0.1');
  await new Promise((r) => process.nextTick(r));
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  await until('all four', () => packetsOf(w.arrivals).length === 4);
  // Arrivals in separate reads would be split anyway: merge runs of one source, whatever the reads.
  const runs: { from: number; packets: string[]; hearsUs: boolean }[] = [];
  for (const x of w.arrivals) {
    const last = runs[runs.length - 1];
    if (last?.from === x.from.port) (last.packets.push(...bytes(x.packets)), (last.hearsUs = x.hearsUs));
    else runs.push({ from: x.from.port, packets: bytes(x.packets), hearsUs: x.hearsUs });
  }
  t.deepEqual(runs, [
    { from: s1.port, packets: bytes([packet(0), packet(1)]), hearsUs: true },
    { from: s2.port, packets: bytes([packet(2)]), hearsUs: true },
    { from: s1.port, packets: bytes([packet(3)]), hearsUs: false },
  ]);
});

test('hostile datagrams on a pair: a replay, forgeries, malformed ones and one of no channel are counted by reason and change nothing', async (t) => {
  const { a, b, pa, pb } = await twoMembers(t);
  const wa = watch(pa);
  const wb = watch(pb);
  t.teardown(() => (wa.sub.unsubscribe(), wb.sub.unsubscribe()));
  const strays = unclaimed(t, b);
  const relay = await plainSocket(t);
  const mallory = await plainSocket(t);
  // A genuine datagram a → b, seen on its way: a sends it to a relay, which hands it on to b.
  pa.use(at(relay.port));
  t.is(pa.send([packet(1)], true), 1);
  await until('the relay has it', () => relay.got.length === 1);
  const genuine = relay.got[0]!;
  await send(relay.socket, genuine, b.localPort);
  await until('b hears it', () => wb.arrivals.length === 1);
  t.deepEqual(wb.arrivals[0]!.from, at(relay.port), 'whatever authenticates under the pair id is the peer, from any source');
  pa.use(at(b.localPort));
  pb.use(at(a.localPort));
  const before = { stats: pb.stats(), endpoint: pb.endpoint(), maxPacket: pb.maxPacket() };

  const forged = Buffer.from(genuine);
  forged.writeBigUInt64BE(1_000_000n, 8); // far ahead: had it moved the replay window, a's next counter would be a replay
  forged[forged.length - 1]! ^= 1;
  const nextEpoch = Buffer.from(genuine);
  nextEpoch[1] = 1; // claims the next epoch: the header is the AAD, so it cannot authenticate
  const reserved = Buffer.from(genuine);
  reserved[2] = 1;
  const stranger = Buffer.from(genuine);
  stranger.writeUInt32BE(999, 4);
  const truncated = genuine.subarray(0, 20); // a header of the pair's id, too short to be sealed
  const scrap = genuine.subarray(0, 12); // not even a header: no receiver id to go by
  for (const d of [genuine, forged, nextEpoch, reserved, stranger, truncated, scrap]) await send(mallory.socket, d, b.localPort);
  const counted = (): string => JSON.stringify({ pair: wb.drops, socket: strays });
  await until(counted, () => total(wb.drops, 'replay') === 1 && total(wb.drops, 'bad-tag') === 2 && total(wb.drops, 'malformed-datagram') === 2 && total(strays, 'unknown-session') === 1 && total(strays, 'malformed-datagram') === 1);
  t.is(wb.arrivals.length, 1, 'nothing hostile arrived');
  t.deepEqual({ stats: pb.stats(), endpoint: pb.endpoint(), maxPacket: pb.maxPacket() }, before, 'nor moved the counters, the endpoint or the path MTU');

  // The pair goes on both ways; a's next counter (1) is no replay.
  t.is(pa.send([packet(2)], true), 1);
  t.is(pb.send([packet(3)], true), 1);
  await until('both directions after the attack', () => wb.arrivals.length === 2 && wa.arrivals.length === 1);
  t.deepEqual(wb.arrivals[1]!.from, at(a.localPort));
  t.is(mallory.got.length, 0, 'nothing was ever sent to mallory');
  t.deepEqual(wa.drops, []);
  t.is(total(wb.drops, 'replay'), 1, 'counted once each');
});

test('PING and PONG over a pair: types 3 and 4 sealed with a u32 token, arrivals carry the newest token of each; a PING of another length, or to a hub channel, is malformed', async (t) => {
  const { hub, a, b, keys, pa, pb } = await twoMembers(t);
  const wa = watch(pa);
  const wb = watch(pb);
  const h1 = hub.channel(1, SECRET);
  const wh1 = watch(h1);
  t.teardown(() => (wa.sub.unsubscribe(), wb.sub.unsubscribe(), wh1.sub.unsubscribe()));
  pa.use(at(b.localPort));
  pa.ping(0xfffffffe, true);
  await until('b hears the ping', () => wb.arrivals.length === 1);
  t.deepEqual(wb.arrivals[0], { packets: [], hearsUs: true, from: at(a.localPort), ping: 0xfffffffe });
  pb.pong(0xfffffffe, wb.arrivals[0]!.from, true);
  await until('a hears the pong', () => wa.arrivals.length === 1);
  t.deepEqual(wa.arrivals[0], { packets: [], hearsUs: true, from: at(b.localPort), pong: 0xfffffffe });
  t.deepEqual(pa.stats(), { rx: { packets: 0, bytes: 0 }, tx: { packets: 0, bytes: 0 } }, 'pings and pongs are not data');
  t.throws(() => pa.ping(2 ** 32, true), { instanceOf: RangeError });

  // On the wire, as a peer without this code sees it.
  const peer = await plainSocket(t);
  pa.use(at(peer.port));
  pa.ping(258, false);
  pa.pong(7, at(peer.port), true);
  await until('both at the peer', () => peer.got.length === 2);
  const key = toHubKey(keys.a.key, 202, 0);
  t.like(openByHand('aes-256-gcm', key, peer.got[0]!), { type: 3, id: 202, payload: Buffer.from([0, 0, 1, 2]) });
  t.like(openByHand('aes-256-gcm', key, peer.got[1]!), { type: 4 | 0x80, id: 202, payload: Buffer.from([0, 0, 0, 7]) });

  // Sealed right but the wrong length, or a PING to a hub channel: malformed, nothing arrives.
  const toA = toHubKey(keys.a.key, 101, 0);
  await send(peer.socket, sealByHand('aes-256-gcm', toA, { type: 3, epoch: 0, id: 101, counter: 100 }, Buffer.from([1, 2, 3, 4, 5])), a.localPort);
  await send(peer.socket, sealByHand('aes-256-gcm', toHubKey(SECRET, 1, 0), { type: 3, epoch: 0, id: 1, counter: 0 }, Buffer.from([0, 0, 0, 1])), hub.port);
  await until('both counted', () => total(wa.drops, 'malformed-datagram') === 1 && total(wh1.drops, 'malformed-datagram') === 1);
  t.is(wa.arrivals.length, 1);
  t.is(wh1.arrivals.length, 0);
});

test('closing a pair ends it alone: its datagrams are unknown-session from then on, the hub channel and another pair carry on, and its id can be taken again', async (t) => {
  const { hub, a, b, pa, pb, keys } = await twoMembers(t);
  const c = await clientSocket(t, hub.port, 3, 'aes-256-gcm', SECRET);
  const more = introduce(103, 303);
  const pa2 = opened(a, more.a);
  const pc = opened(c, more.b);
  const h1 = hub.channel(1, SECRET);
  const w = { h1: watch(h1), a: watch(a.hub), pa2: watch(pa2) };
  t.teardown(() => Object.values(w).forEach((x) => x.sub.unsubscribe()));
  const strays = unclaimed(t, a);
  let completed = false;
  pa.arrivals$.subscribe({ complete: () => (completed = true) });

  pa.close();
  t.true(completed, 'its arrivals complete');
  pa.use(at(b.localPort));
  t.is(pa.send([packet(1)], true), 0, 'a closed pair sends nothing');
  pb.use(at(a.localPort));
  t.is(pb.send([packet(2)], true), 1);
  await until('the datagram of the closed pair is counted', () => total(strays, 'unknown-session') === 1);

  t.is(a.hub.send([packet(3)], true), 1);
  await until('the hub hears a', () => w.h1.arrivals.length === 1);
  t.is(h1.send([packet(4)], true), 1);
  await until('a hears the hub', () => w.a.arrivals.length === 1);
  pc.use(at(a.localPort));
  t.is(pc.send([packet(5)], true), 1);
  await until('the other pair works', () => w.pa2.arrivals.length === 1);

  const again = opened(a, keys.a);
  const wag = watch(again);
  t.teardown(() => wag.sub.unsubscribe());
  t.is(pb.send([packet(6)], true), 1);
  await until('the id taken again hears b', () => wag.arrivals.length === 1);
  t.deepEqual(bytes(packetsOf(wag.arrivals)), bytes([packet(6)]));
  t.is(total(strays, 'unknown-session'), 1);
});

test('rekeying: with a small limit per key, a pair carries hundreds of packets across many epochs both ways, none lost or refused', async (t) => {
  const { a, b, pa, pb } = await twoMembers(t, 'chacha20-poly1305', 8);
  pa.use(at(b.localPort));
  pb.use(at(a.localPort));
  const wa = watch(pa);
  const wb = watch(pb);
  t.teardown(() => (wa.sub.unsubscribe(), wb.sub.unsubscribe()));
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 100; i++) {
    const batch = [packet(i * 3), packet(i * 3 + 1), packet(i * 3 + 2)];
    sent.push(...batch);
    t.is(pa.send(batch, true), 3);
    // One batch in flight at a time: a socket buffer that overflows would lose datagrams, not keys.
    await until(`batch ${i}`, () => packetsOf(wb.arrivals).length === sent.length);
    t.is(pb.send(batch, true), 3);
  }
  await until('the echo', () => packetsOf(wa.arrivals).length === sent.length);
  t.deepEqual(bytes(packetsOf(wb.arrivals)), bytes(sent));
  t.deepEqual(bytes(packetsOf(wa.arrivals)), bytes(sent));
  t.deepEqual([...wa.drops, ...wb.drops], []);
  // The epochs really moved (8 datagrams per key: two batches an epoch).
  const spy = await plainSocket(t);
  pa.use(at(spy.port));
  pa.send([packet(0)], true);
  await until('the spy', () => spy.got.length === 1);
  t.true(spy.got[0]![1]! >= 40, `epoch byte ${spy.got[0]![1]}`);
});

test(`bounds: a socket holds at most ${MAX_PAIR_CHANNELS} pair channels (the hub's own limit) and refuses an id another channel of it takes; keys and endpoints that are none are refused`, async (t) => {
  t.is(MAX_PAIR_CHANNELS, INTRODUCTION_LIMITS.maxPairs);
  const hub = await hubSocket(t, 'aes-256-gcm');
  const h1 = hub.channel(1, SECRET);
  const wh1 = watch(h1);
  t.teardown(() => wh1.sub.unsubscribe());
  const a = await clientSocket(t, hub.port, 1, 'aes-256-gcm', SECRET);
  const key = new Uint8Array(randomBytes(32));
  const keys = (id: number): PairKeys => ({ id, peerId: id + 5000, key, cipher: 'aes-256-gcm' });
  const pairs = Array.from({ length: MAX_PAIR_CHANNELS }, (_, i) => opened(a, keys(1000 + i)));
  t.like(a.pair(keys(2000)), { ok: false, reason: 'pair-limit' });
  pairs[0]!.close();
  t.true(a.pair(keys(2000)).ok, 'closing one frees its place');
  t.like(a.pair(keys(1)), { ok: false, reason: 'id-in-use' }, "the hub channel's session id");
  t.like(a.pair(keys(1001)), { ok: false, reason: 'id-in-use' }, "another pair's id");
  t.throws(() => a.pair({ id: 7, peerId: 7, key, cipher: 'aes-256-gcm' }), { instanceOf: RangeError }, 'one id for both directions would be one key for both');
  t.throws(() => a.pair({ id: 7, peerId: 8, key: new Uint8Array(16), cipher: 'aes-256-gcm' }), { instanceOf: RangeError });
  t.throws(() => a.pair({ id: 0, peerId: 8, key, cipher: 'aes-256-gcm' }), { instanceOf: RangeError });
  t.throws(() => pairs[1]!.keepaliveTo({ address: LOOPBACK, port: 0 }, false), { instanceOf: RangeError });
  t.throws(() => pairs[1]!.use({ address: -1, port: 1 }), { instanceOf: RangeError });
  // A full socket still carries its hub channel.
  t.is(a.hub.send([packet(1)], true), 1);
  await until('the hub hears a', () => wh1.arrivals.length === 1);
});

test('the largest packet follows the endpoint in use (the kernel path MTU toward it), and no endpoint is the default', async (t) => {
  const { b, pa } = await twoMembers(t);
  t.is(pa.maxPacket(), 1440, 'before any endpoint: an Ethernet path less the 60 bytes of overhead');
  pa.use(at(b.localPort));
  t.true(pa.maxPacket() > 60_000, `loopback's MTU toward the peer (maxPacket ${pa.maxPacket()})`);
  pa.use(undefined);
  t.is(pa.maxPacket(), 1440);
  t.is(pa.send([packet(1)], true), 0, 'and nothing is sent');
});

/** The bytes V8's sampling heap profiler saw allocated while `work` ran, by script and function (`url name:line`; every object, collected or not). */
async function allocations(work: () => Promise<void>): Promise<Map<string, number>> {
  const session = new Session();
  session.connect();
  try {
    await session.post('HeapProfiler.enable');
    await session.post('HeapProfiler.startSampling', { samplingInterval: 64, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    await work();
    const { profile } = await session.post('HeapProfiler.stopSampling');
    const byScript = new Map<string, number>();
    type Node = (typeof profile)['head'];
    const walk = (n: Node): void => {
      const where = `${n.callFrame.url} ${n.callFrame.functionName || '(anonymous)'}:${n.callFrame.lineNumber + 1}`;
      byScript.set(where, (byScript.get(where) ?? 0) + n.selfSize);
      n.children.forEach(walk);
    };
    walk(profile.head);
    return byScript;
  } finally {
    session.disconnect();
  }
}

test('hostile datagrams allocate nothing in the driver: 10,000 forged, replayed, malformed and unknown-receiver ones cost its optimised code no heap per datagram or per read', async (t) => {
  const { a, b, pa, pb } = await twoMembers(t);
  const wb = watch(pb);
  t.teardown(() => wb.sub.unsubscribe());
  const strays = unclaimed(t, b);
  pa.use(at(b.localPort));
  pb.use(at(a.localPort));
  const mallory = await plainSocket(t);
  const relay = await plainSocket(t);
  pa.use(at(relay.port));
  pa.send([packet(1)], true);
  await until('a genuine datagram', () => relay.got.length === 1);
  const genuine = relay.got[0]!;
  await send(relay.socket, genuine, b.localPort);
  await until('b hears it', () => wb.arrivals.length === 1);
  const forged = (i: number): Buffer => {
    const d = Buffer.from(genuine);
    d.writeBigUInt64BE(BigInt(10 + i), 8);
    return d;
  };
  const stranger = Buffer.from(genuine);
  stranger.writeUInt32BE(999, 4);
  const kinds = [forged, () => genuine, () => genuine.subarray(0, 20), () => stranger, () => genuine.subarray(0, 12)];
  let sent = 0;
  const flood = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i += kinds.length) {
      for (const kind of kinds) mallory.socket.send(kind(i), b.localPort, '127.0.0.1');
      // A pause now and then: the socket's buffer is not the thing under test.
      if (i % 100 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    sent += n;
    const dropped = (): number => [...wb.drops, ...strays].reduce((m, d) => m + Object.values(d).reduce((x, y) => x + y, 0), 0);
    await until(() => `${sent} drops counted (have ${dropped()})`, () => dropped() === sent, 20_000);
  };
  // Warm first: the hot code is optimised then, as on a long-running member (before that, V8's
  // interpreter boxes every double it reads). TurboFan compiles in the background, later on a loaded
  // machine: a round that still ran unoptimised code is warmed further and measured again.
  const driverBytes = (heap: Map<string, number>): [number, string] => {
    const driver = [...heap].filter(([where, n]) => /\/dist\/(src\/udp|operators\/core)\//.test(where) && n > 0);
    return [driver.reduce((n, [, b]) => n + b, 0), driver.map(([u, b]) => `${u.replace(/.*\/dist\//, '')} ${b}`).join(', ')];
  };
  const rounds: string[] = [];
  let bytes = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 8 && bytes >= 10_000; round++) {
    await flood(10_000);
    const [got, where] = driverBytes(await allocations(() => flood(10_000)));
    bytes = got;
    rounds.push(`${got} bytes${where === '' ? '' : ` (${where})`}`);
  }
  t.log(`the driver's allocations while 10,000 hostile datagrams arrived, per round: ${rounds.join('; ')}`);
  // One small object per datagram would be 16 bytes or more each: 160,000 bytes and more; one per
  // read as much or more (a paced flood comes a few datagrams a read). A report (one DropCounts per
  // channel per 100 ms) stays far below a byte per datagram.
  t.true(bytes < 10_000, rounds.join('; '));
  const each = sent / kinds.length;
  t.deepEqual(
    [total(wb.drops, 'bad-tag'), total(wb.drops, 'replay'), total(wb.drops, 'malformed-datagram'), total(strays, 'unknown-session'), total(strays, 'malformed-datagram')],
    [each, each, each, each, each],
    'every one counted, by reason',
  );
  t.is(wb.arrivals.length, 1, 'nothing hostile arrived');
});
