// Live reload of the hub's reloadable settings (isolation, max_clients), in virtual time.
import test from 'ava';
import { Subject, tap } from 'rxjs';
import type { ServerEvent } from '../pipelines/events.js';
import { serverPipeline, type ReloadableSettings } from '../pipelines/server.js';
import type { ServerSettings } from '../pipelines/settings.js';
import { fakes } from './helpers/fake-ports.js';
import { ipv4Packet, marbles } from './helpers/marbles.js';
import { parseIpv4 } from '../operators/core/address.js';

const HUB: ServerSettings = {
  tunnel: { address: parseIpv4('10.0.0.1')!, prefix: 24 },
  mtu: 1400,
  keepaliveMs: 10_000,
  timeoutMs: 30_000,
  sendQueueSize: 8,
  recvQueueSize: 8,
  clientIsolation: false,
  maxClients: 2,
  multiClient: true,
  helloTimeoutMs: 5_000,
};

test('a reload switches isolation on for the next packets and changes max_clients for the next joins, without dropping members', (t) => {
  marbles(t, (_h, scheduler) => {
    const make = fakes(scheduler);
    const listener = make.listener();
    const reload$ = new Subject<ReloadableSettings>();
    const events: ServerEvent[] = [];
    const sub = serverPipeline(HUB, { tun: make.tun(), listener, scheduler, reload$ })
      .pipe(tap((e) => events.push(e)))
      .subscribe();
    const a = make.connection();
    const b = make.connection();
    const c = make.connection();
    const d = make.connection();
    scheduler.schedule(() => {
      listener.accept(a);
      a.sendHello('10.0.0.2');
      listener.accept(b);
      b.sendHello('10.0.0.3');
    }, 1);
    scheduler.schedule(() => a.sendData(ipv4Packet('10.0.0.2', '10.0.0.3')), 10);
    scheduler.schedule(() => reload$.next({ clientIsolation: true, maxClients: 3 }), 20);
    scheduler.schedule(() => a.sendData(ipv4Packet('10.0.0.2', '10.0.0.3')), 30);
    scheduler.schedule(() => {
      listener.accept(c);
      c.sendHello('10.0.0.4');
      listener.accept(d);
      d.sendHello('10.0.0.5');
    }, 40);
    scheduler.schedule(() => reload$.next({ clientIsolation: true, maxClients: 3 }), 50);
    scheduler.schedule(() => {
      t.is(b.dataPackets().length, 1, 'only the packet sent before isolation went on reached b');
      t.deepEqual(
        events.filter((e) => e.type === 'reloaded'),
        [
          { type: 'reloaded', changed: ['clientIsolation', 'maxClients'], clientIsolation: true, maxClients: 3 },
          { type: 'reloaded', changed: [], clientIsolation: true, maxClients: 3 },
        ],
      );
      t.is(c.welcomes().length, 1, 'a third member fits the raised limit');
      t.deepEqual(d.rejects().map((r) => (r instanceof Error ? r.message : r.reason)), ['max-clients']);
      t.false(a.closed || b.closed, 'no member was dropped by the reload');
      t.deepEqual(events.filter((e) => e.type === 'drops').map((e) => (e as { drops: unknown }).drops), [{ isolation: 1 }]);
      sub.unsubscribe();
    }, 100);
  });
});
