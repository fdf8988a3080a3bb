// Batched UDP sockets (src/udp/socket.ts over native/udp.cc) on real loopback sockets: batched
// reads, UDP GSO sends equal on the wire to plain ones, GRO split back into the datagrams sent,
// per-datagram destinations and refusals, forged datagrams rejected without side effects, close.
// No fixed sleeps: every wait is for an event, under a deadline generous enough for a loaded
// 2-core machine.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { parseIpv4 } from '../operators/core/address.js';
import { SuperPacket, segmentCount, segmentSuper } from '../operators/core/wire/gso.js';
import { ACK, CWR, DEFAULT_FLOW, ECE, FIN, PSH, superPacketBytes, timestampOption, type Flow } from './helpers/tcp-reference.js';
import {
  AeadError,
  AeadKey,
  DatagramBatch,
  DatagramStatus,
  UdpError,
  UdpSocket,
  type AeadCipher,
  type Endpoint,
  type UdpSocketOptions,
} from '../src/udp/index.js';

const LOOPBACK = parseIpv4('127.0.0.1')!;
const DEADLINE_MS = 20_000;
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** What a receiver kept of one row (copied during the callback, as the contract requires). */
interface Row {
  readonly bytes: Uint8Array;
  readonly address: number;
  readonly port: number;
  readonly segment: number;
  readonly status: number;
}

/** A socket on 127.0.0.1 that copies every row it reads (after opening them with `key`, if given). */
function receiver(
  t: { teardown: (fn: () => void) => void },
  options: UdpSocketOptions = {},
  open?: { key: AeadKey; receiverId: number },
): { socket: UdpSocket; to: Endpoint; rows: Row[]; batches: number[]; until: (n: number) => Promise<void> } {
  const socket = UdpSocket.open({ host: '127.0.0.1', ...options });
  t.teardown(() => socket.close());
  const rows: Row[] = [];
  const batches: number[] = [];
  let waiter: { n: number; resolve: () => void } | undefined;
  let failure: Error | undefined;
  socket.read(
    (batch, count) => {
      batches.push(count);
      if (open !== undefined) open.key.open(batch, { receiverId: open.receiverId }, 0, count);
      for (let i = 0; i < count; i++) {
        rows.push({
          bytes: batch.datagram(i).slice(),
          address: batch.addrs[i]!,
          port: batch.ports[i]!,
          segment: batch.segments[i]!,
          status: batch.status[i]!,
        });
      }
      if (waiter !== undefined && rows.length >= waiter.n) waiter.resolve();
    },
    (err) => {
      failure = err;
    },
  );
  const until = (n: number): Promise<void> =>
    new Promise((resolve, reject) => {
      if (failure !== undefined) return reject(failure);
      if (rows.length >= n) return resolve();
      const timer = setTimeout(() => reject(new Error(`got ${rows.length} of ${n} datagrams within ${DEADLINE_MS} ms`)), DEADLINE_MS);
      waiter = {
        n,
        resolve: () => {
          clearTimeout(timer);
          waiter = undefined;
          resolve();
        },
      };
    });
  return { socket, to: { address: LOOPBACK, port: socket.localPort }, rows, batches, until };
}

function sender(t: { teardown: (fn: () => void) => void }, options: UdpSocketOptions = {}): UdpSocket {
  const socket = UdpSocket.open({ host: '127.0.0.1', ...options });
  t.teardown(() => socket.close());
  return socket;
}

/** Two keys from one secret: sealing the same payloads with the same counters gives the same bytes. */
function twinKeys(cipher: AeadCipher): [AeadKey, AeadKey, AeadKey] {
  const secret = randomBytes(32);
  return [AeadKey.create(cipher, secret), AeadKey.create(cipher, secret), AeadKey.create(cipher, secret)];
}

test('open: bound port, buffers granted, GRO and GSO as the kernel offers them', (t) => {
  const socket = sender(t);
  t.true(socket.localPort > 0);
  t.is(socket.localAddress, '127.0.0.1');
  t.true(socket.rcvbuf > 0 && socket.sndbuf > 0);
  t.log(`rcvbuf ${socket.rcvbuf} sndbuf ${socket.sndbuf} (asked for 4 MiB each), gro ${socket.gro}, gso ${socket.gsoSupported}`);
  t.is(socket.gso, socket.gsoSupported);
  const noOffload = sender(t, { gro: false, gso: false, rcvbuf: 65536 });
  t.false(noOffload.gro);
  t.false(noOffload.gso);
  t.throws(() => UdpSocket.open({ host: 'localhost' }), { instanceOf: UdpError, code: 'EINVAL' });
  t.throws(() => UdpSocket.open({ batch: 0 }), { instanceOf: UdpError, code: 'EINVAL' });
  t.throws(() => UdpSocket.open({ host: '127.0.0.1', port: socket.localPort }), { instanceOf: UdpError, code: 'EADDRINUSE' });
});

for (const cipher of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
  test(`${cipher}: sealAndSend, then read and open in place, over loopback`, async (t) => {
    const [sealKey, openKey] = twinKeys(cipher);
    const rx = receiver(t, {}, { key: openKey, receiverId: 42 });
    const tx = sender(t);
    const payloads = [0, 1, 100, 1400, 1400, 1400, 900, 8000, 1400].map((n) => new Uint8Array(randomBytes(n)));
    t.is(tx.sealAndSend(sealKey, payloads, { type: 4, epoch: 1, receiverId: 42 }, rx.to), payloads.length);
    await rx.until(payloads.length);
    t.deepEqual(
      rx.rows.map((r) => hex(r.bytes)),
      payloads.map(hex),
    );
    for (const r of rx.rows) {
      t.is(r.status, DatagramStatus.Opened);
      t.is(r.address, LOOPBACK);
      t.is(r.port, tx.localPort);
    }
    t.is(sealKey.nextCounter, payloads.length);
  });
}

test('a burst of 1000 datagrams arrives in far fewer callbacks than datagrams', async (t) => {
  const rx = receiver(t, { gro: false, batch: 64 });
  const tx = sender(t, { gso: false });
  const key = AeadKey.create('chacha20-poly1305', randomBytes(32));
  const payloads = Array.from({ length: 1000 }, (_, i) => new Uint8Array(1400).fill(i & 0xff));
  t.is(tx.sealAndSend(key, payloads, { type: 4, epoch: 0, receiverId: 1 }, rx.to), 1000);
  await rx.until(1000);
  const ratio = 1000 / rx.batches.length;
  t.log(`1000 datagrams in ${rx.batches.length} callbacks (${ratio.toFixed(1)} per callback, largest ${Math.max(...rx.batches)})`);
  t.true(rx.batches.length <= 125, `${rx.batches.length} callbacks`);
  t.is(rx.socket.stats().received, 1000);
  t.is(rx.socket.stats().batches, rx.batches.length);
  // The 256 KiB send arena holds 183 sealed 1400-byte payloads: one sendmmsg per arena-full.
  t.true(tx.stats().sendCalls <= 8, `${tx.stats().sendCalls} send calls for 1000 datagrams`);
  t.log(`sender: ${tx.stats().sendCalls} sendmmsg calls`);
});

// Payload sizes with runs GSO can carry (equal sizes, a shorter last one) and ones it cannot.
const MIXED = [1400, 1400, 1400, 700, 1400, 1400, 40, 40, 40, 1472, 1400, 1, 1200, 1200, 1200, 1200, 1200, 1200, 1300];

test('GSO sends put the same datagrams on the wire as plain sends (raw and sealed)', async (t) => {
  const gsoTx = sender(t);
  if (!gsoTx.gsoSupported) return t.pass('no UDP GSO on this kernel');
  const plainTx = sender(t, { gso: false });
  const viaGso = receiver(t, { gro: false, maxDatagram: 4096 });
  const viaPlain = receiver(t, { gro: false, maxDatagram: 4096 });
  const raw = MIXED.map((n) => new Uint8Array(randomBytes(n)));
  t.is(gsoTx.send(raw, viaGso.to), raw.length);
  t.is(plainTx.send(raw, viaPlain.to), raw.length);
  const [a, b] = twinKeys('aes-256-gcm');
  const header = { type: 4, epoch: 3, receiverId: 9 };
  t.is(gsoTx.sealAndSend(a, raw, header, viaGso.to), raw.length);
  t.is(plainTx.sealAndSend(b, raw, header, viaPlain.to), raw.length);
  await Promise.all([viaGso.until(2 * raw.length), viaPlain.until(2 * raw.length)]);
  t.deepEqual(
    viaGso.rows.map((r) => hex(r.bytes)),
    viaPlain.rows.map((r) => hex(r.bytes)),
  );
  t.is(viaGso.rows.length, 2 * raw.length);
  t.true(gsoTx.stats().gsoMessages > 0, 'UDP_SEGMENT used');
  t.is(plainTx.stats().gsoMessages, 0);
  t.log(`${2 * raw.length} datagrams: ${gsoTx.stats().gsoMessages} GSO messages, ${gsoTx.stats().sendCalls} send calls`);
});

test('GRO: coalesced datagrams are split back into exactly the datagrams sent', async (t) => {
  const tx = sender(t);
  const rx = receiver(t, { gro: true });
  if (!tx.gsoSupported || !rx.socket.gro) return t.pass('no UDP GSO/GRO on this kernel');
  const sizes = [...MIXED, ...Array<number>(64).fill(1000), 999, ...Array<number>(3).fill(65507 >> 2)];
  const raw = sizes.map((n) => new Uint8Array(randomBytes(n)));
  t.is(tx.send(raw, rx.to), raw.length);
  await rx.until(raw.length);
  t.deepEqual(
    rx.rows.map((r) => hex(r.bytes)),
    raw.map(hex),
  );
  const coalesced = rx.rows.filter((r) => r.segment > 0);
  t.true(rx.socket.stats().groMessages > 0, 'some reads held several datagrams');
  for (const r of coalesced) t.true(r.bytes.length <= r.segment);
  t.log(`${raw.length} datagrams in ${rx.socket.stats().recvCalls} reads, ${rx.socket.stats().groMessages} coalesced messages, ${coalesced.length} rows from them`);
});

test('sendBatch: each row to its own destination, runs per destination', async (t) => {
  const tx = sender(t);
  const one = receiver(t, { gro: false });
  const two = receiver(t, { gro: false });
  const batch = DatagramBatch.create(32, 1 << 16);
  const arena = new Uint8Array(batch.buffer);
  const expected: [string[], string[]] = [[], []];
  let at = 0;
  for (let i = 0; i < 24; i++) {
    const which = i % 6 < 4 ? 0 : 1;
    const bytes = new Uint8Array(randomBytes(i === 23 ? 300 : 1000));
    arena.set(bytes, at);
    batch.offsets[i] = at;
    batch.lengths[i] = bytes.length;
    batch.addrs[i] = LOOPBACK;
    batch.ports[i] = (which === 0 ? one : two).socket.localPort;
    expected[which].push(hex(bytes));
    at += bytes.length;
  }
  t.is(tx.sendBatch(batch, 0, 24), 24);
  await Promise.all([one.until(expected[0].length), two.until(expected[1].length)]);
  t.deepEqual(one.rows.map((r) => hex(r.bytes)), expected[0]);
  t.deepEqual(two.rows.map((r) => hex(r.bytes)), expected[1]);
  // Rows JS pointed outside the arena are refused before anything is sent.
  batch.offsets[3] = (1 << 16) - 10;
  t.throws(() => tx.sendBatch(batch, 0, 24), { instanceOf: UdpError, code: 'EINVAL' });
});

test('a datagram the kernel refuses is reported on its own; the rest of the batch goes out', async (t) => {
  const refused: [number, string, number][] = [];
  const tx = sender(t, { onRejected: (index, code, to) => refused.push([index, code, to.port]) });
  const rx = receiver(t, { gro: false });
  const batch = DatagramBatch.create(8, 8192);
  for (let i = 0; i < 5; i++) {
    batch.offsets[i] = i * 100;
    batch.lengths[i] = 100;
    batch.addrs[i] = LOOPBACK;
    batch.ports[i] = i === 2 ? 0 : rx.socket.localPort; // port 0: EINVAL from the kernel
  }
  t.is(tx.sendBatch(batch, 0, 5), 5);
  t.deepEqual(refused, [[2, 'EINVAL', 0]]);
  await rx.until(4);
  t.is(tx.stats().sendRejected, 1);
  t.is(tx.stats().sent, 4);
});

test('forged, truncated, wrongly keyed and tampered datagrams over the wire are rejected; their bytes stay as sent', async (t) => {
  const [sealKey, openKey] = twinKeys('chacha20-poly1305');
  const wrongKey = AeadKey.create('chacha20-poly1305', randomBytes(32));
  const header = { type: 4, epoch: 0, receiverId: 5 };
  const seen: { before: string; after: string; status: number; length: number }[] = [];
  const rx = UdpSocket.open({ host: '127.0.0.1', gro: false });
  t.teardown(() => rx.close());
  let done: () => void = () => undefined;
  const all = new Promise<void>((resolve) => (done = resolve));
  const expectedCount = 7;
  rx.read(
    (batch, count) => {
      const before = Array.from({ length: count }, (_, i) => hex(batch.datagram(i)));
      openKey.open(batch, header, 0, count);
      for (let i = 0; i < count; i++) {
        const original = new Uint8Array(batch.buffer, batch.offsets[i]! - (batch.status[i] === DatagramStatus.Opened ? 16 : 0), batch.lengths[i]! + (batch.status[i] === DatagramStatus.Opened ? 32 : 0));
        seen.push({ before: before[i]!, after: hex(original), status: batch.status[i]!, length: batch.lengths[i]! });
      }
      if (seen.length >= expectedCount) done();
    },
    (err) => t.fail(err.message),
  );
  const to = { address: LOOPBACK, port: rx.localPort };
  const tx = sender(t, { gso: false });
  const scratch = DatagramBatch.create(4, 1 << 14);
  t.is(sealKey.seal([new Uint8Array(200)], header, scratch), 1);
  const good = scratch.datagram(0).slice();
  const tampered = good.slice();
  tampered[100]! ^= 0x40;
  t.is(wrongKey.seal([new Uint8Array(200)], header, scratch), 1);
  const wrong = scratch.datagram(0).slice();
  const garbage = new Uint8Array(randomBytes(300));
  garbage.set(good.subarray(0, 16)); // a plausible header, random rest
  const datagrams = [good.subarray(0, 31), good.subarray(0, 10), new Uint8Array(0), tampered, wrong, garbage, good];
  t.is(tx.send(datagrams, to), expectedCount);
  await Promise.race([all, new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), DEADLINE_MS))]);
  t.deepEqual(
    seen.map((s) => s.status),
    [DatagramStatus.Malformed, DatagramStatus.Malformed, DatagramStatus.Malformed, DatagramStatus.BadTag, DatagramStatus.BadTag, DatagramStatus.BadTag, DatagramStatus.Opened],
  );
  for (const s of seen.slice(0, 6)) t.is(s.after, s.before, 'a rejected datagram is unchanged');
  t.is(seen[6]!.length, 200);
});

test('close stops reading at once and frees the port', async (t) => {
  const rx = receiver(t, { gro: false });
  const tx = sender(t);
  t.is(tx.send([new Uint8Array(10)], rx.to), 1);
  await rx.until(1);
  const port = rx.socket.localPort;
  rx.socket.close();
  t.true(rx.socket.closed);
  rx.socket.close(); // idempotent
  // Datagrams to the closed port go nowhere (an unconnected sender hears no ICMP error).
  t.is(tx.send([new Uint8Array(10), new Uint8Array(10)], rx.to), 2);
  const again = receiver(t, { gro: false, port });
  t.is(again.socket.localPort, port, 'the port is free at once');
  t.is(tx.send([new Uint8Array(11)], again.to), 1);
  await again.until(1);
  t.is(rx.rows.length, 1, 'no callback after close');
  t.throws(() => rx.socket.send([new Uint8Array(1)], again.to), { instanceOf: UdpError, code: 'EBADF' });
  t.throws(() => rx.socket.read(() => undefined, () => undefined), { instanceOf: UdpError, code: 'EBADF' });
  rx.socket.onWritable(() => t.fail('never called after close'));
});

test('a datagram longer than a slot is dropped and counted, the next one delivered', async (t) => {
  const rx = receiver(t, { gro: false, maxDatagram: 512 });
  const tx = sender(t, { gso: false });
  t.is(tx.send([new Uint8Array(1000), new Uint8Array(512)], rx.to), 2);
  await rx.until(1);
  t.is(rx.rows[0]!.bytes.length, 512);
  t.is(rx.socket.stats().truncated, 1);
});

test('sealAndSend segments super-packets in the addon exactly as segmentSuper does, beside plain payloads', async (t) => {
  const [sealKey, openKey] = twinKeys('aes-256-gcm');
  const rx = receiver(t, {}, { key: openKey, receiverId: 7 });
  const tx = sender(t);
  const maxPacket = 1440;
  const flows: [Flow, number, number, number][] = [
    // flow, payload bytes, segment size, flags
    [DEFAULT_FLOW, 4001, 1400, ACK | PSH | FIN | CWR],
    [{ ...DEFAULT_FLOW, ipOptions: new Uint8Array(8).fill(1), tcpOptions: timestampOption(7, 9), sport: 40002 }, 65535 - 80, 1448, ACK | ECE],
    [{ ...DEFAULT_FLOW, sport: 40003 }, 0, 1400, ACK | FIN],
    [{ ...DEFAULT_FLOW, sport: 40004 }, 1000, 1400, ACK | PSH],
  ];
  const supers = flows.map(([flow, n, gso, flags]) => {
    const bytes = superPacketBytes(flow, { seq: 0xfffff000, id: 0xfffe, flags, payload: new Uint8Array(randomBytes(n)) });
    return new SuperPacket(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.length, gso);
  });
  const plain = new Uint8Array(randomBytes(300));
  const payloads = [supers[0]!, plain, supers[1]!, supers[2]!, supers[3]!];
  const gso = Uint32Array.from(payloads, (p) => (p instanceof SuperPacket ? p.gsoSize : 0));
  t.is(tx.sealAndSend(sealKey, payloads, { type: 4, epoch: 0, receiverId: 7 }, rx.to, 0, -1, { gso, maxPacket }), payloads.length);
  const expected: Uint8Array[] = [];
  for (const p of payloads) {
    if (p instanceof SuperPacket) t.is(segmentSuper(p, maxPacket, expected), segmentCount(p, maxPacket));
    else expected.push(p);
  }
  t.true(expected.length > 50);
  await rx.until(expected.length);
  t.deepEqual(
    rx.rows.map((r) => hex(r.bytes)),
    expected.map(hex),
  );
  t.true(rx.rows.every((r) => r.status === DatagramStatus.Opened && r.bytes.length <= maxPacket));
  t.is(sealKey.nextCounter, expected.length, 'one counter per segment');
  // A super-packet that cannot be segmented to maxPacket is refused before anything is sealed.
  t.throws(() => tx.sealAndSend(sealKey, [supers[0]!], { type: 4, epoch: 0, receiverId: 7 }, rx.to, 0, -1, { gso: Uint32Array.of(1400), maxPacket: 40 }), {
    instanceOf: AeadError,
    code: 'EINVAL',
  });
  t.is(sealKey.nextCounter, expected.length);
});
