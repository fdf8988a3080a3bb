// peerSession (pipelines/peer.ts): what both ends of a session share, over a fake connection in
// virtual time: the first frame, keepalive ticks, PING/PONG and the round-trip time, unknown types,
// what it hands its owner, the end when the peer closes, and the teardown.
import test from 'ava';
import type { Subscription } from 'rxjs';
import type { DropCounts } from '../operators/core/packet.js';
import { FrameType, encodeFrame } from '../operators/core/wire/frames.js';
import { encodePing, peerSession, type PeerItem } from '../pipelines/peer.js';
import type { CommonSettings } from '../pipelines/settings.js';
import { fakes, type FakeConnection } from './helpers/fake-ports.js';
import { bytes, ipv4Packet, marbles } from './helpers/marbles.js';

const SETTINGS: CommonSettings = { mtu: 1400, keepaliveMs: 1000, timeoutMs: 3000, sendQueueSize: 8, recvQueueSize: 8 };

interface Run {
  conn: FakeConnection;
  items: { at: number; item: PeerItem }[];
  drops: DropCounts[];
  error: unknown;
  stats: () => ReturnType<ReturnType<typeof peerSession>['stats']>;
}

/** Runs a peer session until `until`; `body` acts as the peer at virtual times. */
function run(t: Parameters<typeof marbles>[0], until: number, body: (conn: FakeConnection, at: (ms: number, fn: () => void) => void, pings: (on: boolean) => void) => void): Run {
  const out: Run = { conn: undefined as unknown as FakeConnection, items: [], drops: [], error: undefined, stats: () => undefined as never };
  marbles(t, (_h, scheduler) => {
    const conn = fakes(scheduler).connection('192.0.2.1:9000');
    out.conn = conn;
    const peer = peerSession(conn, { settings: SETTINGS, scheduler, onDrops: (d) => out.drops.push(d), superFrames: () => false, first: encodeFrame(FrameType.Hello, bytes(1)), closedDetail: 'the peer went away' });
    out.stats = () => peer.stats('10.0.0.2');
    let sub: Subscription | undefined;
    scheduler.schedule(() => {
      sub = peer.items$.subscribe({ next: (item) => out.items.push({ at: scheduler.now(), item }), error: (e: unknown) => (out.error = e) });
    }, 0);
    scheduler.schedule(() => sub?.unsubscribe(), until);
    body(conn, (ms, fn) => void scheduler.schedule(fn, ms), (on) => (peer.pings = on));
  });
  return out;
}

test('the first frame goes out before anything else; keepalives follow every keepaliveMs while idle', (t) => {
  const r = run(t, 2500, () => undefined);
  t.deepEqual(r.conn.types(), [FrameType.Hello, FrameType.Keepalive, FrameType.Keepalive]);
  t.deepEqual(r.conn.keepaliveTimes(), [1000, 2000]);
});

test('PING is answered with PONG; a PONG to our PING gives the round-trip time; a malformed one is unexpected-control', (t) => {
  const r = run(t, 1500, (conn, at, pings) => {
    pings(true);
    at(10, () => conn.push(encodeFrame(FrameType.Ping, bytes(1, 2, 3, 4, 5, 6, 7, 8))));
    // Our PING at 1000 carries the clock; the peer echoes it 40 ms later.
    at(1040, () => {
      const ping = conn.frames.find((f) => f.type === FrameType.Ping)!;
      conn.push(encodeFrame(FrameType.Pong, ping.payload));
    });
    at(1041, () => conn.push(encodeFrame(FrameType.Pong, bytes(1))));
  });
  const pong = r.conn.frames.find((f) => f.type === FrameType.Pong);
  t.deepEqual([...(pong?.payload ?? [])], [1, 2, 3, 4, 5, 6, 7, 8]);
  t.is(r.stats().rttMs, 40);
  t.deepEqual(r.drops, [{ 'unexpected-control': 1 }]);
  t.is(encodePing(5).length, 4 + 1 + 8);
});

test('data, KEEPALIVE and the protocol\u2019s control frames go to the owner; unknown types are counted, not passed', (t) => {
  const p = ipv4Packet('10.0.0.3', '10.0.0.2', bytes(9));
  const r = run(t, 100, (conn, at) => {
    at(1, () => conn.sendData(p));
    at(2, () => conn.sendKeepalive());
    at(3, () => conn.push(encodeFrame(FrameType.Routes, bytes(0x7b, 0x7d))));
    at(4, () => conn.push(encodeFrame(0x7e, bytes(1))));
  });
  t.deepEqual(
    r.items.map((i) => (i.item.kind === 'control' ? `control ${i.item.type}` : i.item.kind)),
    ['data', `control ${FrameType.Keepalive}`, `control ${FrameType.Routes}`],
  );
  t.deepEqual(r.drops, [{ 'unknown-type': 1 }]);
  t.deepEqual(r.stats().rx, { packets: 1, bytes: p.length });
});

test('the peer closing its side ends the session with SessionEnd closed and the owner\u2019s detail; the connection is closed', (t) => {
  const r = run(t, 100, (conn, at) => at(5, () => conn.end()));
  t.like(r.error as object, { name: 'SessionEnd', reason: 'closed', detail: 'the peer went away' });
  t.is(r.conn.closedAt, 5);
});

test('a peer silent for timeoutMs ends the session as idle', (t) => {
  const r = run(t, 10_000, () => undefined);
  t.like(r.error as object, { name: 'IdleError' });
  t.is(r.conn.closedAt, 3000);
});
