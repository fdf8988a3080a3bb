// Segmentation offload through the pipelines, over fake ports in virtual time: who is offered the
// `gso` capability, who gets SUPER frames and who gets segmented DATA frames, byte for byte (the
// expected segments come from the independent reference in helpers/tcp-reference.ts).
import test, { type ExecutionContext } from 'ava';
import { Subject, type Observable, type Subscription } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { clientPipeline } from '../pipelines/client.js';
import { serverPipeline } from '../pipelines/server.js';
import type { ClientEvent, ServerEvent } from '../pipelines/events.js';
import type { PacketBatch, PacketSink, TunPort } from '../pipelines/ports.js';
import type { ClientSettings, ServerSettings } from '../pipelines/settings.js';
import { FrameType, encodeFrames } from '../operators/core/wire/frames.js';
import { SuperPacket, copyPacket } from '../operators/core/wire/gso.js';
import { fakes, type FakeConnection } from './helpers/fake-ports.js';
import { marbles } from './helpers/marbles.js';
import { clientSettings, hubSettings } from './helpers/settings.js';
import { ACK, PSH, expectedSegments, streamBytes, superPacketBytes, tcpSegment, timestampOption, type Flow, type SegmentFields } from './helpers/tcp-reference.js';

const SERVER: ServerSettings = hubSettings(64);

const CLIENT: ClientSettings = clientSettings(64);

/**
 * A fake TUN device that may offload: the test pushes read batches (SuperPackets among them);
 * the sink records what it accepts with copyPacket, so written SuperPackets stay SuperPackets.
 */
class OffloadTun implements TunPort {
  readonly name = 'tun-offload';
  readonly reads = new Subject<PacketBatch>();
  readonly packets$: Observable<PacketBatch> = this.reads.asObservable();
  readonly written: Uint8Array[] = [];
  readonly sink: PacketSink = {
    write: (packets) => {
      for (const p of packets) this.written.push(copyPacket(p));
      return packets.length;
    },
    ready$: new Subject<void>(),
  };

  constructor(
    readonly offload: boolean,
    readonly mtu = 1400,
  ) {}

  read(...packets: Uint8Array[]): void {
    this.reads.next(packets);
  }
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');

/** A SuperPacket over its own buffer. */
const asSuper = (bytes: Uint8Array, gso: number): SuperPacket => new SuperPacket(Uint8Array.from(bytes).buffer, 0, bytes.length, gso);

/** A SUPER frame as bytes on the wire (by hand: length, 0x16, u16 segment size, packet). */
function superFrame(gso: number, packet: Uint8Array): Uint8Array {
  const out = new Uint8Array(7 + packet.length);
  new DataView(out.buffer).setUint32(0, 3 + packet.length);
  out[4] = 0x16;
  out[5] = gso >>> 8;
  out[6] = gso & 255;
  out.set(packet, 7);
  return out;
}

/** Frames a connection got, summarised: DATA as the packet, SUPER as gso + packet. */
function received(c: FakeConnection): Array<{ type: number; gso?: number; packet: string }> {
  return c.frames
    .filter((f) => f.type === FrameType.Data || f.type === FrameType.Super)
    .map((f) => (f.type === FrameType.Super ? { type: f.type, gso: (f.payload[0]! << 8) | f.payload[1]!, packet: hex(f.payload.subarray(2)) } : { type: f.type, packet: hex(f.payload) }));
}

const dataFrames = (segments: readonly Uint8Array[]): Array<{ type: number; packet: string }> => segments.map((s) => ({ type: FrameType.Data, packet: hex(s) }));

/** A flow between two tunnel addresses with timestamps (52 header bytes, as Linux sends). */
const flow = (src: string, dst: string): Flow => ({ src, dst, sport: 40000, dport: 5201, ack: 1, window: 500, tcpOptions: timestampOption(7, 8) });
const fields = (payloadBytes: number, seed: number): SegmentFields => ({ seq: 0xfffff000 + seed, id: 0xfff0 + seed, flags: ACK | PSH, payload: streamBytes(payloadBytes, seed) });

type RunHelpers = Parameters<Parameters<TestScheduler['run']>[0]>[0];

interface HubRun {
  readonly helpers: RunHelpers;
  readonly tun: OffloadTun;
  readonly log: ServerEvent[];
  at(ms: number, fn: () => void): void;
  connection(): FakeConnection;
}

/** Runs a hub over an (offloading or not) fake TUN until `until`; returns the log for checks after the run. */
function hub(t: ExecutionContext, o: { readonly offload: boolean; readonly until?: number }, body: (h: HubRun) => void): { tun: OffloadTun; log: ServerEvent[] } {
  const tun = new OffloadTun(o.offload);
  const log: ServerEvent[] = [];
  marbles(t, (helpers, scheduler) => {
    const make = fakes(scheduler);
    const listener = make.listener();
    let sub: Subscription | undefined;
    scheduler.schedule(() => {
      sub = serverPipeline(SERVER, { tun, listener, scheduler }).subscribe({
        next: (e) => log.push(e),
        error: (err: unknown) => t.fail(`the hub errored: ${String(err)}`),
      });
    }, 0);
    scheduler.schedule(() => sub?.unsubscribe(), o.until ?? 1000);
    body({
      helpers,
      tun,
      log,
      at: (ms, fn) => scheduler.schedule(fn, ms),
      connection: () => {
        const c = make.connection();
        scheduler.schedule(() => listener.accept(c), 1);
        return c;
      },
    });
  });
  return { tun, log };
}

const gsoHello = { caps: ['rtt', 'gso'], mtu: 1400 };

// ---------------------------------------------------------------------------------------------
// Hub

test('an offloading hub offers gso to a member that offers it, and sends it TUN super-packets as one SUPER frame', (t) => {
  const f = flow('10.0.0.1', '10.0.0.2');
  const sp = superPacketBytes(f, fields(40_000, 1));
  let a!: FakeConnection;
  hub(t, { offload: true }, (h) => {
    a = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', gsoHello));
    h.at(5, () => h.tun.read(asSuper(sp, 1348)));
  });
  const w = a.welcomes();
  t.is(w.length, 1);
  t.true((w[0] as { caps?: string[] }).caps?.includes('gso'));
  t.deepEqual(received(a), [{ type: FrameType.Super, gso: 1348, packet: hex(sp) }]);
});

test('a gso member whose MTU is below header + segment size gets the SUPER frame with the segment size lowered', (t) => {
  const sp = superPacketBytes(flow('10.0.0.1', '10.0.0.2'), fields(40_000, 2));
  let a!: FakeConnection;
  hub(t, { offload: true }, (h) => {
    a = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', { caps: ['gso'], mtu: 1000 }));
    h.at(5, () => h.tun.read(asSuper(sp, 1348)));
  });
  t.deepEqual(received(a), [{ type: FrameType.Super, gso: 1000 - 52, packet: hex(sp) }]);
});

test('a member that does not offer gso gets TUN super-packets as byte-correct segments in DATA frames', (t) => {
  const f = flow('10.0.0.1', '10.0.0.2');
  const fs = fields(20_000, 3);
  let a!: FakeConnection;
  const { log } = hub(t, { offload: true }, (h) => {
    a = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', { caps: ['rtt'], mtu: 1400 }));
    h.at(5, () => h.tun.read(asSuper(superPacketBytes(f, fs), 1348)));
  });
  // The WELCOME still says the hub offloads; the member did not offer it, so it gets no SUPER frames.
  t.true((a.welcomes()[0] as { caps?: string[] }).caps?.includes('gso'));
  t.deepEqual(received(a), dataFrames(expectedSegments(f, fs, 1348)));
  t.deepEqual(log.filter((e) => e.type === 'drops'), []);
});

test('a 0.0.1-era member (no HELLO) gets TUN super-packets as segments of at most 1495 bytes', (t) => {
  const f = flow('10.0.0.1', '10.0.0.2');
  const fs = fields(20_000, 4);
  let a!: FakeConnection;
  hub(t, { offload: true }, (h) => {
    a = h.connection();
    h.at(2, () => a.sendData(tcpSegment(flow('10.0.0.2', '10.0.0.1'), fields(10, 9))));
    h.at(5, () => h.tun.read(asSuper(superPacketBytes(f, fs), 1448)));
  });
  t.deepEqual(a.welcomes(), [], 'a 0.0.1-era member gets no WELCOME');
  t.deepEqual(received(a), dataFrames(expectedSegments(f, fs, 1495 - 52)));
  t.true(a.frames.every((fr) => fr.payload.length + 1 <= 1496), 'every frame fits the 0.0.1-era body limit');
});

test('a member with a small MTU and no gso gets segments that fit its MTU', (t) => {
  const f = flow('10.0.0.1', '10.0.0.2');
  const fs = fields(5_000, 5);
  let a!: FakeConnection;
  hub(t, { offload: true }, (h) => {
    a = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', { mtu: 600 }));
    h.at(5, () => h.tun.read(asSuper(superPacketBytes(f, fs), 1348)));
  });
  t.deepEqual(received(a), dataFrames(expectedSegments(f, fs, 600 - 52)));
});

test('member to member: a SUPER frame from a gso member reaches a gso member whole and a member without gso as segments', (t) => {
  const toB = flow('10.0.0.2', '10.0.0.3');
  const toC = flow('10.0.0.2', '10.0.0.4');
  const fsB = fields(30_000, 6);
  const fsC = fields(30_000, 7);
  let a!: FakeConnection;
  let b!: FakeConnection;
  let c!: FakeConnection;
  const { log } = hub(t, { offload: true }, (h) => {
    a = h.connection();
    b = h.connection();
    c = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', gsoHello));
    h.at(2, () => b.sendHello('10.0.0.3', { caps: ['rtt'], mtu: 1400 }));
    h.at(2, () => c.sendHello('10.0.0.4', gsoHello));
    h.at(5, () => a.push(Buffer.concat([superFrame(1348, superPacketBytes(toB, fsB)), superFrame(1348, superPacketBytes(toC, fsC))])));
  });
  t.deepEqual(received(b), dataFrames(expectedSegments(toB, fsB, 1348)));
  t.deepEqual(received(c), [{ type: FrameType.Super, gso: 1348, packet: hex(superPacketBytes(toC, fsC)) }]);
  t.deepEqual(log.filter((e) => e.type === 'drops'), []);
});

test('member to member: segments for a member with a smaller MTU fit that MTU', (t) => {
  const toB = flow('10.0.0.2', '10.0.0.3');
  const fsB = fields(10_000, 8);
  let a!: FakeConnection;
  let b!: FakeConnection;
  hub(t, { offload: true }, (h) => {
    a = h.connection();
    b = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', gsoHello));
    h.at(2, () => b.sendHello('10.0.0.3', { mtu: 900 }));
    h.at(5, () => a.push(superFrame(1348, superPacketBytes(toB, fsB))));
  });
  t.deepEqual(received(b), dataFrames(expectedSegments(toB, fsB, 900 - 52)));
  t.true(b.frames.filter((fr) => fr.type === FrameType.Data).every((fr) => fr.payload.length <= 900));
});

test('super-packets queued behind a blocked connection keep their segment size after the read buffer is reused', (t) => {
  const f = flow('10.0.0.1', '10.0.0.2');
  const g = flow('10.0.0.1', '10.0.0.3');
  const fsA = fields(20_000, 30);
  const fsB = fields(20_000, 31);
  let a!: FakeConnection;
  let b!: FakeConnection;
  hub(t, { offload: true }, (h) => {
    a = h.connection();
    b = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', gsoHello));
    h.at(2, () => b.sendHello('10.0.0.3', { mtu: 1400 }));
    h.at(3, () => {
      a.block();
      b.block();
    });
    h.at(5, () => {
      // One reused read arena, as the TUN driver has: overwritten right after the emission.
      const arena = new Uint8Array(50_000);
      const pa = superPacketBytes(f, fsA);
      const pb = superPacketBytes(g, fsB);
      arena.set(pa, 0);
      arena.set(pb, 25_000);
      h.tun.read(new SuperPacket(arena.buffer, 0, pa.length, 1348), new SuperPacket(arena.buffer, 25_000, pb.length, 1348));
      arena.fill(0xee);
    });
    h.at(8, () => {
      a.drain();
      b.drain();
    });
  });
  t.deepEqual(received(a), [{ type: FrameType.Super, gso: 1348, packet: hex(superPacketBytes(f, fsA)) }]);
  t.deepEqual(received(b), dataFrames(expectedSegments(g, fsB, 1348)));
});

test('a SUPER frame from a gso member to the hub address is written to the offloading TUN as a SuperPacket', (t) => {
  const f = flow('10.0.0.2', '10.0.0.1');
  const sp = superPacketBytes(f, fields(30_000, 9));
  let a!: FakeConnection;
  const { tun } = hub(t, { offload: true }, (h) => {
    a = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', gsoHello));
    h.at(5, () => a.push(superFrame(1348, sp)));
  });
  t.is(tun.written.length, 1);
  t.true(tun.written[0] instanceof SuperPacket);
  t.is((tun.written[0] as SuperPacket).gsoSize, 1348);
  t.is(hex(tun.written[0]!), hex(sp));
});

test('an offloading hub treats a SUPER frame from a member that did not offer gso as unknown-type', (t) => {
  const sp = superPacketBytes(flow('10.0.0.2', '10.0.0.1'), fields(500, 10));
  let a!: FakeConnection;
  const { tun, log } = hub(t, { offload: true }, (h) => {
    a = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', { caps: ['rtt'] }));
    h.at(5, () => a.push(superFrame(1348, sp)));
  });
  t.deepEqual(tun.written, []);
  t.deepEqual(
    log.filter((e) => e.type === 'drops'),
    [{ type: 'drops', who: '10.0.0.2', drops: { 'unknown-type': 1 } }],
  );
});

test('a hub without offload never offers gso, treats SUPER frames as unknown-type and sends only DATA', (t) => {
  const sp = superPacketBytes(flow('10.0.0.2', '10.0.0.1'), fields(500, 11));
  const plain = tcpSegment(flow('10.0.0.1', '10.0.0.2'), fields(300, 12));
  let a!: FakeConnection;
  const { tun, log } = hub(t, { offload: false }, (h) => {
    a = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', gsoHello));
    h.at(5, () => a.push(superFrame(1348, sp)));
    h.at(6, () => h.tun.read(plain));
  });
  t.is(a.welcomes().length, 1);
  t.false((a.welcomes()[0] as { caps?: string[] }).caps?.includes('gso'));
  t.deepEqual(tun.written, []);
  t.deepEqual(
    log.filter((e) => e.type === 'drops'),
    [{ type: 'drops', who: '10.0.0.2', drops: { 'unknown-type': 1 } }],
  );
  t.deepEqual(received(a), [{ type: FrameType.Data, packet: hex(plain) }]);
});

test('a hub without offload refuses a SUPER frame larger than the 0.0.1-era limit by ending that session', (t) => {
  const sp = superPacketBytes(flow('10.0.0.2', '10.0.0.1'), fields(3000, 13));
  let a!: FakeConnection;
  const { log } = hub(t, { offload: false }, (h) => {
    a = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', gsoHello));
    h.at(5, () => a.push(superFrame(1348, sp)));
  });
  const left = log.filter((e) => e.type === 'left');
  t.is(left.length, 1);
  t.like(left[0], { address: '10.0.0.2', reason: 'frame-error' });
  t.true(a.closed);
});

// ---------------------------------------------------------------------------------------------
// Client

interface ClientRun {
  readonly tun: OffloadTun;
  readonly conn: FakeConnection;
  at(ms: number, fn: () => void): void;
}

/** Runs a client whose dial connects at once to one fake connection; returns it and the log. */
function client(t: ExecutionContext, o: { readonly offload: boolean; readonly until?: number }, body: (c: ClientRun) => void): { conn: FakeConnection; tun: OffloadTun; log: ClientEvent[] } {
  const tun = new OffloadTun(o.offload);
  const log: ClientEvent[] = [];
  let conn!: FakeConnection;
  marbles(t, (_helpers, scheduler) => {
    const make = fakes(scheduler);
    conn = make.connection('192.0.2.1:9000');
    const dialer = make.dialer().then({ connect: conn });
    let sub: Subscription | undefined;
    scheduler.schedule(() => {
      sub = clientPipeline(CLIENT, { tun, dialer, scheduler, random: () => 0.5 }).subscribe({
        next: (e) => log.push(e),
        error: (err: unknown) => t.fail(`the client errored: ${String(err)}`),
      });
    }, 0);
    scheduler.schedule(() => sub?.unsubscribe(), o.until ?? 1000);
    body({ tun, conn, at: (ms, fn) => scheduler.schedule(fn, ms) });
  });
  return { conn, tun, log };
}

const WELCOME = { address: '10.0.0.2', prefix: 24, hub: '10.0.0.1', mtu: 1400, keepalive: 10, timeout: 30 };

test('a client offers gso exactly when its TUN device offloads', (t) => {
  const on = client(t, { offload: true }, () => undefined);
  const off = client(t, { offload: false }, () => undefined);
  t.is(on.conn.hellos().length, 1);
  t.is(off.conn.hellos().length, 1);
  t.true((on.conn.hellos()[0] as { caps?: string[] }).caps?.includes('gso'));
  t.false((off.conn.hellos()[0] as { caps?: string[] }).caps?.includes('gso'));
});

test('an offloading client segments super-packets until a WELCOME with gso, then sends SUPER frames', (t) => {
  const f = flow('10.0.0.2', '10.0.0.3');
  const before = fields(5_000, 20);
  const after = fields(30_000, 21);
  const { conn } = client(t, { offload: true }, (c) => {
    c.at(3, () => c.tun.read(asSuper(superPacketBytes(f, before), 1448)));
    c.at(5, () => c.conn.sendWelcome({ ...WELCOME, caps: ['rtt', 'gso'] }));
    c.at(7, () => c.tun.read(asSuper(superPacketBytes(f, after), 1348)));
  });
  t.deepEqual(received(conn), [...dataFrames(expectedSegments(f, before, 1495 - 52)), { type: FrameType.Super, gso: 1348, packet: hex(superPacketBytes(f, after)) }]);
});

test('an offloading client whose hub does not offer gso keeps segmenting, to the hub MTU', (t) => {
  const f = flow('10.0.0.2', '10.0.0.3');
  const fs = fields(10_000, 22);
  const { conn } = client(t, { offload: true }, (c) => {
    c.at(5, () => c.conn.sendWelcome({ ...WELCOME, mtu: 1200, caps: ['rtt'] }));
    c.at(7, () => c.tun.read(asSuper(superPacketBytes(f, fs), 1348)));
  });
  t.deepEqual(received(conn), dataFrames(expectedSegments(f, fs, 1200 - 52)));
});

test('an offloading client takes SUPER frames from the hub from the start and writes them to its TUN whole', (t) => {
  const f = flow('10.0.0.3', '10.0.0.2');
  const sp = superPacketBytes(f, fields(30_000, 23));
  const plain = tcpSegment(f, fields(100, 24));
  const { tun, log } = client(t, { offload: true }, (c) => {
    // Before any WELCOME: the client offered gso, so SUPER frames are data at once.
    c.at(3, () => c.conn.push(Buffer.concat([superFrame(1348, sp), encodeFrames(FrameType.Data, [plain])])));
  });
  t.is(tun.written.length, 2);
  t.true(tun.written[0] instanceof SuperPacket);
  t.is((tun.written[0] as SuperPacket).gsoSize, 1348);
  t.is(hex(tun.written[0]!), hex(sp));
  t.false(tun.written[1] instanceof SuperPacket);
  t.is(hex(tun.written[1]!), hex(plain));
  t.deepEqual(log.filter((e) => e.type === 'drops'), []);
});

test('a client without offload treats a SUPER frame as unknown-type and writes nothing to its TUN', (t) => {
  const sp = superPacketBytes(flow('10.0.0.3', '10.0.0.2'), fields(500, 25));
  const { tun, log } = client(t, { offload: false }, (c) => {
    c.at(3, () => c.conn.sendWelcome({ ...WELCOME, caps: ['rtt', 'gso'] }));
    c.at(5, () => c.conn.push(superFrame(1348, sp)));
  });
  t.deepEqual(tun.written, []);
  t.deepEqual(
    log.filter((e) => e.type === 'drops'),
    [{ type: 'drops', who: 'hub', drops: { 'unknown-type': 1 } }],
  );
});

// ---------------------------------------------------------------------------------------------
// Oversize plain packets (issue 10): a gso member's body limit is 64 KiB, a 0.0.1-era member's 1496

/** A UDP packet of `size` bytes from `src` to `dst`, DF as given, with a valid header checksum. */
function udpOf(src: string, dst: string, size: number, df: boolean): Uint8Array {
  const p = new Uint8Array(size);
  p[0] = 0x45;
  p[2] = size >>> 8;
  p[3] = size & 0xff;
  p[6] = df ? 0x40 : 0;
  p[8] = 64;
  p[9] = 17;
  src.split('.').forEach((o, i) => (p[12 + i] = Number(o)));
  dst.split('.').forEach((o, i) => (p[16 + i] = Number(o)));
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  p[10] = (~sum >>> 8) & 0xff;
  p[11] = ~sum & 0xff;
  for (let i = 28; i < size; i++) p[i] = i & 0xff;
  return p;
}

test('a plain 3000-byte packet with DF from a gso member never reaches a member without gso: too-big, and the sender gets ICMP fragmentation-needed from the hub', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  const big = udpOf('10.0.0.2', '10.0.0.3', 3000, true);
  const { log } = hub(t, { offload: true }, (h) => {
    a = h.connection();
    b = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', gsoHello));
    h.at(2, () => b.sendHello('10.0.0.3', { caps: ['rtt'], mtu: 1400 }));
    h.at(5, () => a.sendData(big));
  });
  t.deepEqual(received(b), [], 'nothing for the member without gso');
  t.true((b.closedAt ?? Infinity) >= 1000, 'its session stays up until the hub stops');
  const answers = received(a);
  t.is(answers.length, 1);
  const icmp = Buffer.from(answers[0]!.packet, 'hex');
  t.deepEqual([...icmp.subarray(12, 20)], [10, 0, 0, 1, 10, 0, 0, 2], 'from the hub to the sender');
  t.deepEqual([icmp[20], icmp[21], icmp.readUInt16BE(26)], [3, 4, 1400], 'fragmentation needed, next-hop MTU 1400');
  const drops = log.filter((e) => e.type === 'drops');
  t.deepEqual(drops, [{ type: 'drops', who: '10.0.0.2', drops: { 'too-big': 1 } }]);
});

test('a plain 3000-byte packet without DF from a gso member reaches a member without gso as fragments of at most its MTU', (t) => {
  let a!: FakeConnection;
  let b!: FakeConnection;
  hub(t, { offload: true }, (h) => {
    a = h.connection();
    b = h.connection();
    h.at(2, () => a.sendHello('10.0.0.2', gsoHello));
    h.at(2, () => b.sendHello('10.0.0.3', { caps: ['rtt'], mtu: 1000 }));
    h.at(5, () => a.sendData(udpOf('10.0.0.2', '10.0.0.3', 3000, false)));
  });
  const frags = received(b).map((f) => Buffer.from(f.packet, 'hex'));
  t.is(frags.length, 4);
  t.true(frags.every((f) => f.length <= 1000));
  t.is(frags.reduce((n, f) => n + f.length - 20, 0), 3000 - 20);
  t.deepEqual(received(a), []);
});

test('a client whose TUN hands it a packet larger than the hub takes answers its own kernel with ICMP fragmentation-needed and sends nothing oversize', (t) => {
  const { conn, tun, log } = client(t, { offload: false }, (c) => {
    c.at(2, () => c.conn.sendWelcome(WELCOME));
    c.at(5, () => c.tun.read(udpOf('10.0.0.2', '10.0.0.3', 3000, true)));
  });
  t.deepEqual(received(conn), []);
  t.is(tun.written.length, 1);
  const icmp = tun.written[0]!;
  t.deepEqual([...icmp.subarray(12, 16)], [10, 0, 0, 1], 'from the hub');
  t.deepEqual([icmp[20], icmp[21], (icmp[26]! << 8) | icmp[27]!], [3, 4, 1400]);
  t.deepEqual(log.filter((e) => e.type === 'drops'), [{ type: 'drops', who: 'tun', drops: { 'too-big': 1 } }]);
});
