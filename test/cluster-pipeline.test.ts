// Hubs of one cluster (pipelines/clusterMembers.ts wired into server.ts and hubSession.ts) over fake
// ports and one fake etcd (test/helpers/fake-etcd.ts, 5 ms per call) in virtual time: a member's
// WELCOME comes only after its claim was made in the store; the same address at the other hub is
// refused (ip-conflict) and free again once the member leaves (its key released); joins are refused
// with cluster-unavailable before the hub joined its cluster and while the store is unreachable,
// while the members stay; the fence (the store lost beyond the lease) ends every member's session.
import test, { type ExecutionContext } from 'ava';
import { tap } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { parseIpv4 } from '../operators/core/address.js';
import type { ServerEvent } from '../pipelines/events.js';
import { serverPipeline } from '../pipelines/server.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { FakeEtcd } from './helpers/fake-etcd.js';
import { K } from './helpers/cluster.js';
import { fakes, type FakeConnection } from './helpers/fake-ports.js';
import { marbles } from './helpers/marbles.js';
import { hubSettings } from './helpers/settings.js';

const LATENCY_MS = 5;
const TTL_S = 6;

interface Hub {
  /** A connection accepted at `ms` that sends a HELLO for `address` at once. */
  hello(ms: number, address: string, id?: string): FakeConnection;
  events<K extends ServerEvent['type']>(type: K): Array<Extract<ServerEvent, { type: K }>>;
}

interface Cluster {
  readonly scheduler: TestScheduler;
  readonly etcd: FakeEtcd;
  at(ms: number, fn: () => void): void;
  hub(name: string, tunnel: string): Hub;
}

function cluster(t: ExecutionContext, until: number, body: (c: Cluster) => void): void {
  marbles(t, (_helpers, scheduler) => {
    const etcd = new FakeEtcd(scheduler, LATENCY_MS);
    const at = (ms: number, fn: () => void): void => void scheduler.schedule(fn, ms);
    body({
      scheduler,
      etcd,
      at,
      hub(name, tunnel) {
        const make = fakes(scheduler);
        const listener = make.listener();
        const log: ServerEvent[] = [];
        const settings = hubSettings(64, { tunnel: { address: parseIpv4(tunnel)!, prefix: 24 } });
        const sub = serverPipeline(settings, {
          tun: make.tun(),
          listener,
          scheduler,
          cluster: { store: etcd, settings: { me: name, keys: K, ttlSeconds: TTL_S, advertise: { host: `192.0.2.${name.charCodeAt(0)}`, port: 9000 }, tunnel: settings.tunnel } },
        })
          .pipe(tap({ next: (e) => log.push(e), error: (e: unknown) => t.fail(String(e)) }))
          .subscribe();
        at(until, () => sub.unsubscribe());
        return {
          hello(ms, address, id) {
            const c = make.connection();
            at(ms, () => {
              listener.accept(c);
              c.sendHello(address, id === undefined ? {} : { id });
            });
            return c;
          },
          events: <K extends ServerEvent['type']>(type: K) => log.filter((e): e is Extract<ServerEvent, { type: K }> => e.type === type),
        };
      },
    });
  });
}

const rejectReason = (c: FakeConnection): string | undefined => {
  const r = c.rejects()[0];
  return r === undefined || r instanceof Error ? undefined : r.reason;
};
const welcomeAt = (c: FakeConnection): number | undefined => c.frames.find((f) => f.type === FrameType.Welcome)?.at;

test('a member is welcomed once its claim is made; the same address at another hub is refused until the member leaves and its key is released', (t) => {
  cluster(t, 5000, (c) => {
    const a = c.hub('a', '10.0.0.1');
    const b = c.hub('b', '10.0.0.2');
    const c1 = a.hello(100, '10.0.0.5', 'a'.repeat(32));
    const c2 = b.hello(200, '10.0.0.5');
    c.at(300, () => {
      t.is(welcomeAt(c1), 100 + LATENCY_MS, 'WELCOME after the claim transaction answered');
      t.deepEqual(c1.admittedAt, [100 + LATENCY_MS]);
      t.like(c.etcd.get(K.addr(parseIpv4('10.0.0.5')!)), { value: JSON.stringify({ v: 1, hub: 'a', remote: c1.remote, lease: `id:${'a'.repeat(32)}` }) });
      t.is(rejectReason(c2), 'ip-conflict');
      t.like(b.events('rejected')[0], { reason: 'ip-conflict', message: `10.0.0.5 is in use by a member of hub a (${c1.remote})` });
      t.is(c.etcd.calls.filter((x) => x === 'txn').length, 3, 'two registrations and one claim: b refused from its view');
      c1.end();
    });
    c.at(400, () => t.is(c.etcd.get(K.addr(parseIpv4('10.0.0.5')!)), undefined, 'released when the member left'));
    const c3 = b.hello(500, '10.0.0.5');
    c.at(600, () => {
      t.is(welcomeAt(c3), 500 + LATENCY_MS);
      t.like(c.etcd.get(K.addr(parseIpv4('10.0.0.5')!)), { value: JSON.stringify({ v: 1, hub: 'b', remote: c3.remote }) });
      t.deepEqual(a.events('cluster-joined').length, 1);
    });
  });
});

test('two members of one hub asking for one address at once: one claim wins, the other is refused', (t) => {
  cluster(t, 1000, (c) => {
    const a = c.hub('a', '10.0.0.1');
    const first = a.hello(100, '10.0.0.5');
    const second = a.hello(101, '10.0.0.5');
    c.at(300, () => {
      t.is(welcomeAt(first), 100 + LATENCY_MS);
      t.is(rejectReason(second), 'ip-conflict');
      t.is(a.events('joined').length, 1);
    });
  });
});

test('joins are refused with cluster-unavailable before the hub joined and while the store is unreachable; members stay; the fence ends their sessions', (t) => {
  cluster(t, 30_000, (c) => {
    c.at(0, () => c.etcd.down());
    const a = c.hub('a', '10.0.0.1');
    const early = a.hello(100, '10.0.0.5');
    c.at(1500, () => c.etcd.up());
    const member = a.hello(3000, '10.0.0.6');
    // The store goes away at 4000; the last renewal before it was sent at 3000 + ... (every 2 s from the grant).
    c.at(4000, () => c.etcd.down());
    const during = a.hello(4500, '10.0.0.7');
    c.at(29_000, () => {
      t.is(rejectReason(early), 'cluster-unavailable');
      t.like(a.events('rejected')[0], { reason: 'cluster-unavailable', message: 'the hub has not joined its cluster yet (unreachable: the fake store is down)' });
      t.truthy(welcomeAt(member));
      t.is(rejectReason(during), 'cluster-unavailable');
      const left = a.events('left').find((e) => e.address === '10.0.0.6');
      t.like(left, { reason: 'cluster-fenced' });
      const fenced = a.events('cluster-fenced');
      t.is(fenced.length >= 1, true);
      t.true(member.closed, 'the fenced member\'s connection is closed');
      t.is(a.events('cluster-release-failed').length, 0, 'a fenced hub releases nothing (its lease takes the keys)');
      t.is(a.events('cluster-unavailable').length, 1);
    });
  });
});
