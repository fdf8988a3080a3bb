// replicate (operators/replicate.ts): broadcast/multicast fan-out at the hub, isolation, allow-list,
// and the per-sender token bucket in virtual time.
import test from 'ava';
import { Subject } from 'rxjs';
import { DEFAULT_GROUPS, replicate, type ReplicateInput, type ReplicateOptions, type ReplicatedBatch } from '../operators/replicate.js';
import { bytes, ipv4Packet, marbles } from './helpers/marbles.js';
import { parseIpv4 } from '../operators/core/address.js';

interface Member {
  readonly name: string;
}
const HUB: Member = { name: 'hub' };
const A: Member = { name: 'A' };
const B: Member = { name: 'B' };
const C: Member = { name: 'C' };

const SUBNET = { address: parseIpv4('10.0.0.0')!, prefix: 24 };

/** Options for a hub with members A, B, C; isolation off; 1000 packets/s so the limit stays out of the way. */
/** The test's knobs: the options, plus the members and isolation the receivers come from. */
type Over = Partial<ReplicateOptions<Member>> & { readonly members?: () => Iterable<Member>; readonly isolation?: () => boolean };

function options(over: Over = {}): ReplicateOptions<Member> {
  const { members = () => [A, B, C], isolation = () => false, ...rest } = over;
  // The hub's rule (pipelines/forwarding.ts), spelled out for these targets.
  const receivers = (sender: Member): Member[] => [...(sender === HUB ? [] : [HUB]), ...(sender !== HUB && isolation() ? [] : [...members()].filter((m) => m !== HUB))];
  return { subnet: SUBNET, receivers, rate: 1000, ...rest };
}

const bc = (n: number): Uint8Array => ipv4Packet('10.0.0.2', '10.0.0.255', bytes(n));
const all = (n: number): Uint8Array => ipv4Packet('10.0.0.2', '255.255.255.255', bytes(n));
const mdns = ipv4Packet('10.0.0.2', '224.0.0.251', bytes(1));
const ssdp = ipv4Packet('10.0.0.2', '239.255.255.250', bytes(1));
const otherGroup = ipv4Packet('10.0.0.2', '239.1.2.3', bytes(1));
const unicast = ipv4Packet('10.0.0.2', '10.0.0.3', bytes(1));
const network = ipv4Packet('10.0.0.2', '10.0.0.0', bytes(1));
const beyond = ipv4Packet('10.0.0.2', '192.168.1.255', bytes(1));
const runt = bc(9).subarray(0, 19);
const from = (sender: Member, ...packets: Uint8Array[]): ReplicateInput<Member> => ({ sender, packets });

test('a member broadcast is copied to the hub and every other member, not back to the sender', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a-|', { a: from(A, bc(1), unicast, bc(2)) });
    const out = '         -x-|';
    expectObservable(batches.pipe(replicate(options()))).toBe(out, {
      x: {
        sender: A,
        passed: [unicast],
        routes: [
          { target: HUB, packets: [bc(1), bc(2)] },
          { target: B, packets: [bc(1), bc(2)] },
          { target: C, packets: [bc(1), bc(2)] },
        ],
        drops: undefined,
      },
    } satisfies Record<string, ReplicatedBatch<Member>>);
  });
});

test('the copies are the input views and each receiver gets its own array', (t) => {
  const p = bc(1);
  const seen: ReplicatedBatch<Member>[] = [];
  const input = new Subject<ReplicateInput<Member>>();
  input.pipe(replicate(options())).subscribe((v) => seen.push(v));
  input.next(from(B, p));
  t.is(seen.length, 1);
  const routes = seen[0]!.routes;
  t.deepEqual(
    routes.map((r) => r.target),
    [HUB, A, C],
  );
  for (const r of routes) t.is(r.packets[0], p);
  t.not(routes[0]!.packets, routes[1]!.packets);
});

test('with isolation on, a member broadcast reaches only the hub', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a-|', { a: from(A, bc(1), all(2)) });
    const out = '         -x-|';
    expectObservable(batches.pipe(replicate(options({ isolation: () => true })))).toBe(out, {
      x: { sender: A, passed: [], routes: [{ target: HUB, packets: [bc(1), all(2)] }], drops: undefined },
    });
  });
});

test('isolation is read per batch, so it can change live', (t) => {
  let isolated = false;
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a-b-c-|', { a: from(A, bc(1)), b: from(A, bc(2)), c: from(A, bc(3)) });
    const toggles = cold('--t-t--', { t: 0 });
    toggles.subscribe(() => (isolated = !isolated));
    const out = '         -x-y-z-|';
    expectObservable(batches.pipe(replicate(options({ isolation: () => isolated })))).toBe(out, {
      x: { sender: A, passed: [], routes: [HUB, B, C].map((target) => ({ target, packets: [bc(1)] })), drops: undefined },
      y: { sender: A, passed: [], routes: [{ target: HUB, packets: [bc(2)] }], drops: undefined },
      z: { sender: A, passed: [], routes: [HUB, B, C].map((target) => ({ target, packets: [bc(3)] })), drops: undefined },
    });
  });
});

test('a broadcast from the hub reaches every member, also with isolation on', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a-|', { a: from(HUB, bc(1)) });
    const out = '         -x-|';
    expectObservable(batches.pipe(replicate(options({ isolation: () => true })))).toBe(out, {
      x: { sender: HUB, passed: [], routes: [A, B, C].map((target) => ({ target, packets: [bc(1)] })), drops: undefined },
    });
  });
});

test('the hub listed among the members is not given a second copy', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a-|', { a: from(A, bc(1)) });
    const out = '         -x-|';
    expectObservable(batches.pipe(replicate(options({ members: () => [HUB, A, B] })))).toBe(out, {
      x: { sender: A, passed: [], routes: [HUB, B].map((target) => ({ target, packets: [bc(1)] })), drops: undefined },
    });
  });
});

const classifies = test.macro({
  exec(t, packet: Uint8Array, replicated: boolean, over?: Partial<ReplicateOptions<Member>>) {
    marbles(t, ({ cold, expectObservable }) => {
      const batches = cold('-a-|', { a: from(A, packet) });
      const out = '         -x-|';
      expectObservable(batches.pipe(replicate(options({ members: () => [A, B], ...over })))).toBe(out, {
        x: replicated
          ? { sender: A, passed: [], routes: [HUB, B].map((target) => ({ target, packets: [packet] })), drops: undefined }
          : { sender: A, passed: [packet], routes: [], drops: undefined },
      });
    });
  },
  title: (provided = '', _p: Uint8Array, replicated: boolean, _over?: Partial<ReplicateOptions<Member>>) => `${provided} ${replicated ? 'is replicated' : 'passes through untouched'}`,
});

test('the subnet broadcast address', classifies, bc(1), true);
test('255.255.255.255', classifies, all(1), true);
test('mDNS 224.0.0.251 (default allow-list)', classifies, mdns, true);
test('SSDP 239.255.255.250 (default allow-list)', classifies, ssdp, true);
test('a multicast group not on the allow-list', classifies, otherGroup, false);
test('a unicast packet', classifies, unicast, false);
test('the subnet network address', classifies, network, false);
test('the broadcast address of a LAN outside the tunnel subnet', classifies, beyond, false);
test('a runt packet to the broadcast address', classifies, runt, false);
test('a group on a custom allow-list', classifies, otherGroup, true, { groups: [parseIpv4('239.1.2.3')!] });
test('mDNS when the custom allow-list leaves it out', classifies, mdns, false, { groups: [parseIpv4('239.1.2.3')!] });
test('any group with an empty allow-list', classifies, ssdp, false, { groups: [] });
test('the broadcast of a /16 tunnel subnet', classifies, ipv4Packet('10.0.0.2', '10.0.255.255'), true, { subnet: { address: parseIpv4('10.0.0.0')!, prefix: 16 } });

test('the default allow-list is mDNS and SSDP', (t) => {
  t.deepEqual(DEFAULT_GROUPS, [parseIpv4('224.0.0.251'), parseIpv4('239.255.255.250')]);
});

test('a batch with nothing to replicate does not read the members', (t) => {
  let reads = 0;
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a-b-|', { a: from(A, unicast), b: from(A) });
    const out = '         -x-y-|';
    const op = replicate(
      options({
        members: () => {
          reads++;
          return [A, B];
        },
      }),
    );
    expectObservable(batches.pipe(op)).toBe(out, {
      x: { sender: A, passed: [unicast], routes: [], drops: undefined },
      y: { sender: A, passed: [], routes: [], drops: undefined },
    });
  });
  t.is(reads, 0);
});

test('a sender alone on the hub with isolation on still reaches the hub', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const batches = cold('-a-|', { a: from(A, bc(1)) });
    const out = '         -x-|';
    expectObservable(batches.pipe(replicate(options({ members: () => [A] })))).toBe(out, {
      x: { sender: A, passed: [], routes: [{ target: HUB, packets: [bc(1)] }], drops: undefined },
    });
  });
});

test('over the limit, replicable packets are dropped as broadcast-limit with exact counts; others pass', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    // rate 2/s, burst 3: the first batch spends the burst and loses 2; nothing has refilled 1 ms later.
    const batches = cold('-a-b-|', { a: from(A, bc(1), bc(2), unicast, bc(3), bc(4), mdns), b: from(A, bc(5), unicast) });
    const out = '         -x-y-|';
    expectObservable(batches.pipe(replicate(options({ members: () => [A, B], rate: 2, burst: 3, scheduler })))).toBe(out, {
      x: { sender: A, passed: [unicast], routes: [HUB, B].map((target) => ({ target, packets: [bc(1), bc(2), bc(3)] })), drops: { 'broadcast-limit': 2 } },
      y: { sender: A, passed: [unicast], routes: [], drops: { 'broadcast-limit': 1 } },
    });
  });
});

test('the limit is per sender: one member flooding does not starve another', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const batches = cold('-a-b-|', { a: from(A, bc(1), bc(2), bc(3)), b: from(B, bc(4), bc(5), bc(6)) });
    const out = '         -x-y-|';
    expectObservable(batches.pipe(replicate(options({ members: () => [A, B], rate: 2, scheduler })))).toBe(out, {
      x: { sender: A, passed: [], routes: [HUB, B].map((target) => ({ target, packets: [bc(1), bc(2)] })), drops: { 'broadcast-limit': 1 } },
      y: { sender: B, passed: [], routes: [HUB, A].map((target) => ({ target, packets: [bc(4), bc(5)] })), drops: { 'broadcast-limit': 1 } },
    });
  });
});

test('the bucket refills at the rate in virtual time and never above the burst', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    // rate 4/s = one packet per 250 ms, burst 2. Each batch offers 3 broadcasts.
    //  0 ms: full (2): 2 pass, 1 dropped.     249 ms: 0.996 tokens: 3 dropped.
    //  250 ms (1 ms later): 1.0: 1 passes, 2 dropped.   10 s later: capped at 2: 2 pass, 1 dropped.
    const three = from(A, bc(1), bc(2), bc(3));
    const batches = cold('a 248ms b c 9999ms d|', { a: three, b: three, c: three, d: three });
    const out = '         x 248ms y z 9999ms w|';
    const passed = (n: number) => [HUB, B].map((target) => ({ target, packets: [bc(1), bc(2), bc(3)].slice(0, n) }));
    expectObservable(batches.pipe(replicate(options({ members: () => [A, B], rate: 4, burst: 2, scheduler })))).toBe(out, {
      x: { sender: A, passed: [], routes: passed(2), drops: { 'broadcast-limit': 1 } },
      y: { sender: A, passed: [], routes: [], drops: { 'broadcast-limit': 3 } },
      z: { sender: A, passed: [], routes: passed(1), drops: { 'broadcast-limit': 2 } },
      w: { sender: A, passed: [], routes: passed(2), drops: { 'broadcast-limit': 1 } },
    });
  });
});

test('a steady sender at the rate loses nothing; at twice the rate it loses half after the burst', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    // rate 10/s, burst 1: one packet every 100 ms passes, one every 50 ms loses every second one.
    const one = from(A, bc(1));
    const steady = cold('a 99ms a 99ms a 99ms a|', { a: one });
    const fast = cold('  a 49ms a 49ms a 49ms a 49ms a|', { a: one });
    const ok = { sender: A, passed: [], routes: [{ target: HUB, packets: [bc(1)] }], drops: undefined };
    const lost = { sender: A, passed: [], routes: [], drops: { 'broadcast-limit': 1 } };
    const opts = options({ members: () => [A], rate: 10, burst: 1, scheduler });
    expectObservable(steady.pipe(replicate(opts))).toBe('o 99ms o 99ms o 99ms o|', { o: ok });
    expectObservable(fast.pipe(replicate(opts))).toBe('  o 49ms l 49ms o 49ms l 49ms o|', { o: ok, l: lost });
  });
});

test('forget$ drops a sender bucket, so its next packet starts with a full one', (t) => {
  marbles(t, ({ cold, hot, expectObservable }, scheduler) => {
    const two = from(A, bc(1), bc(2));
    const batches = cold('-a-a-a-|', { a: two });
    const forget$ = hot(' ----f---', { f: A });
    const out = '         -x-y-x-|';
    expectObservable(batches.pipe(replicate(options({ members: () => [A], rate: 2, forget$, scheduler })))).toBe(out, {
      x: { sender: A, passed: [], routes: [{ target: HUB, packets: [bc(1), bc(2)] }], drops: undefined },
      y: { sender: A, passed: [], routes: [], drops: { 'broadcast-limit': 2 } },
    });
  });
});

test('each subscription has its own buckets', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const op = replicate(options({ members: () => [A], rate: 1, scheduler }));
    const batches = cold('-a-|', { a: from(A, bc(1), bc(2)) });
    const x = { sender: A, passed: [], routes: [{ target: HUB, packets: [bc(1)] }], drops: { 'broadcast-limit': 1 } };
    expectObservable(batches.pipe(op)).toBe('-x-|', { x });
    expectObservable(batches.pipe(op)).toBe('-x-|', { x });
  });
});

test('errors and completion of the source are mirrored, and forget$ errors too', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const err = new Error('session gone');
    const batches = cold('-a-#', { a: from(A, unicast) }, err);
    expectObservable(batches.pipe(replicate(options()))).toBe('-x-#', { x: { sender: A, passed: [unicast], routes: [], drops: undefined } }, err);
    const forget$ = cold<Member>('--#', undefined, err);
    expectObservable(cold('-a---|', { a: from(A) }).pipe(replicate(options({ forget$ })))).toBe('-x#', { x: { sender: A, passed: [], routes: [], drops: undefined } }, err);
  });
});

test('a rate that is not above 0 or a burst below 1 is a RangeError', (t) => {
  t.throws(() => replicate(options({ rate: 0 })), { instanceOf: RangeError });
  t.throws(() => replicate(options({ rate: Number.NaN })), { instanceOf: RangeError });
  t.throws(() => replicate(options({ rate: 5, burst: 0.5 })), { instanceOf: RangeError });
});
