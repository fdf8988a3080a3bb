// route (operators/route.ts): one RoutedBatch per batch, grouped per target, drops counted.
import test from 'ava';
import { route, routeBatch, type RouteDecision } from '../operators/route.js';
import type { DropReason, RoutedBatch } from '../operators/core/packet.js';
import { bytes, ipv4Packet, marbles } from './helpers/marbles.js';
import { parseIpv4 } from '../operators/core/address.js';

interface Member {
  readonly name: string;
}
const A: Member = { name: 'A' };
const B: Member = { name: 'B' };
const HUB: Member = { name: 'hub' };

/** A Map lookup, as the hub does it: members by address, the broadcast dropped, the rest no-route. */
function table(): { decide: RouteDecision<Member>; calls: number[] } {
  const members = new Map<number, Member>([
    [parseIpv4('10.0.0.2')!, A],
    [parseIpv4('10.0.0.3')!, B],
    [parseIpv4('10.0.0.1')!, HUB],
  ]);
  const calls: number[] = [];
  const decide: RouteDecision<Member> = (dst) => {
    calls.push(dst);
    if (dst === parseIpv4('10.0.0.255')) return 'broadcast';
    return members.get(dst) ?? ('no-route' satisfies DropReason);
  };
  return { decide, calls };
}

const toA1 = ipv4Packet('10.0.0.9', '10.0.0.2', bytes(1));
const toA2 = ipv4Packet('10.0.0.9', '10.0.0.2', bytes(2));
const toA3 = ipv4Packet('10.0.0.9', '10.0.0.2', bytes(3));
const toB1 = ipv4Packet('10.0.0.9', '10.0.0.3', bytes(1));
const toB2 = ipv4Packet('10.0.0.9', '10.0.0.3', bytes(2));
const toHub = ipv4Packet('10.0.0.9', '10.0.0.1');
const toNobody = ipv4Packet('10.0.0.9', '10.0.0.77');
const toAll = ipv4Packet('10.0.0.9', '10.0.0.255');
const runt = ipv4Packet('10.0.0.9', '10.0.0.2').subarray(0, 19);
const v6 = Uint8Array.from({ length: 40 }, (_, i) => (i === 0 ? 0x60 : 0));

test('each batch becomes one RoutedBatch with packets grouped per target in arrival order', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a--b-|', { a: [toA1, toA2, toB1, toA3, toHub, toB2, toB1], b: [toB1] });
    const routed = '     -x--y-|';
    expectObservable(batches.pipe(route(table().decide))).toBe(routed, {
      x: {
        routes: [
          { target: A, packets: [toA1, toA2, toA3] },
          { target: B, packets: [toB1, toB2, toB1] },
          { target: HUB, packets: [toHub] },
        ],
        drops: undefined,
      },
      y: { routes: [{ target: B, packets: [toB1] }], drops: undefined },
    } satisfies Record<string, RoutedBatch<Member>>);
  });
});

test('an IPv4 packet whose total length lies past its bytes, or whose header does, is dropped as malformed-ipv4 without asking decide', (t) => {
  const { decide, calls } = table();
  const longer = ipv4Packet('10.0.0.9', '10.0.0.3', bytes(1, 2, 3));
  longer[3]! += 100; // claims 100 bytes it does not have
  const badIhl = ipv4Packet('10.0.0.9', '10.0.0.3', bytes(1, 2, 3));
  badIhl[0] = 0x4f; // a 60-byte header in a 23-byte packet
  marbles(t, ({ cold, expectObservable, flush }) => {
    const batches = cold('-a-|', { a: [longer, toA1, badIhl] });
    expectObservable(batches.pipe(route(decide))).toBe('-x-|', {
      x: { routes: [{ target: A, packets: [toA1] }], drops: { 'malformed-ipv4': 2 } },
    });
    flush();
    t.deepEqual(calls, [parseIpv4('10.0.0.2')]);
  });
});

test('non-IPv4 and runt packets are dropped as not-ipv4 without asking decide', (t) => {
  const { decide, calls } = table();
  marbles(t, ({ cold, expectObservable, flush }) => {
    const batches = cold('-a-|', { a: [v6, toA1, runt, bytes()] });
    const routed = '     -x-|';
    expectObservable(batches.pipe(route(decide))).toBe(routed, {
      x: { routes: [{ target: A, packets: [toA1] }], drops: { 'not-ipv4': 3 } },
    });
    flush();
    t.deepEqual(calls, [parseIpv4('10.0.0.2')]);
  });
});

test('the drop reasons decide returns are counted per reason', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a-b-|', { a: [toNobody, toA1, toAll, toNobody, runt], b: [toAll] });
    const routed = '     -x-y-|';
    expectObservable(batches.pipe(route(table().decide))).toBe(routed, {
      x: { routes: [{ target: A, packets: [toA1] }], drops: { 'no-route': 2, broadcast: 1, 'not-ipv4': 1 } },
      y: { routes: [], drops: { broadcast: 1 } },
    });
  });
});

test('an empty batch routes nothing and drops nothing', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a-|', { a: [] });
    const routed = '     -x-|';
    expectObservable(batches.pipe(route(table().decide))).toBe(routed, { x: { routes: [], drops: undefined } });
  });
});

test('each batch gets fresh drop counts', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a-a-|', { a: [toNobody] });
    const routed = '     -x-x-|';
    expectObservable(batches.pipe(route(table().decide))).toBe(routed, { x: { routes: [], drops: { 'no-route': 1 } } });
  });
});

test('errors and completion of the source are mirrored', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const err = new Error('tun gone');
    const batches = cold('-a-#', { a: [toA1] }, err);
    const routed = '     -x-#';
    expectObservable(batches.pipe(route(table().decide))).toBe(routed, { x: { routes: [{ target: A, packets: [toA1] }], drops: undefined } }, err);
  });
});

test('targets are the objects decide returned and packets are the input views (no copies)', (t) => {
  const { decide, calls } = table();
  const rb = routeBatch([toB1, toA1, toB2], decide);
  t.is(rb.routes.length, 2);
  t.is(rb.routes[0]!.target, B);
  t.is(rb.routes[1]!.target, A);
  t.is(rb.routes[0]!.packets[0], toB1);
  t.is(rb.routes[0]!.packets[1], toB2);
  t.is(rb.routes[1]!.packets[0], toA1);
  t.deepEqual(calls, [parseIpv4('10.0.0.3'), parseIpv4('10.0.0.2'), parseIpv4('10.0.0.3')]);
});

test('targets that are equal in shape but distinct objects are routed apart', (t) => {
  const twin: Member = { name: 'A' };
  const rb = routeBatch([toA1, toB1], (dst) => (dst === parseIpv4('10.0.0.2') ? A : twin));
  t.is(rb.routes.length, 2);
  t.is(rb.routes[0]!.target, A);
  t.is(rb.routes[1]!.target, twin);
});

test('destinations above 127.255.255.255 reach decide as unsigned numbers', (t) => {
  const seen: number[] = [];
  routeBatch([ipv4Packet('10.0.0.9', '200.1.2.3')], (dst) => {
    seen.push(dst);
    return 'no-route';
  });
  t.deepEqual(seen, [0xc8010203]);
});

test('decide is given the packet along with its destination', (t) => {
  const seen: Array<[number, Uint8Array]> = [];
  routeBatch([toA1, runt, toB1], (dst, packet) => {
    seen.push([dst, packet]);
    return A;
  });
  t.is(seen.length, 2);
  t.is(seen[0]![1], toA1);
  t.is(seen[1]![1], toB1);
  t.deepEqual(
    seen.map(([dst]) => dst),
    [0x0a000002, 0x0a000003],
  );
});
