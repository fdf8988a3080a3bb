// The etcd driver (src/drivers/etcd.ts) against a real three-member etcd cluster, each member in a
// namespace of its own (test/helpers/etcd-lab.ts); the driver runs in a fourth namespace
// (test/fixtures/etcd-ctl.ts): transactions that claim a key once and only once, a range, a watch
// that sees puts and deletes in order, a lease that expires with its keys (and a keepalive that then
// says lease-not-found), a revoke; then the leader SIGKILLed and the driver still serving; and a
// dead endpoint listed first passed over.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import type { LeaseGrant, RangeResult, TxnRequest, TxnResult, WatchMessage } from '../pipelines/clusterPorts.js';
import { prefixEnd } from '../pipelines/clusterPorts.js';
import type { EtcdCtlCommand, EtcdCtlReply } from './fixtures/etcd-ctl.js';
import { ETCD_BIN, startEtcdLab } from './helpers/etcd-lab.js';
import { Lab, type LabHost, type LabProcess } from './helpers/lab.js';
import { waitUntil } from './helpers/wait.js';

const CTL = fileURLToPath(new URL('./fixtures/etcd-ctl.js', import.meta.url));
const labTest = Lab.supported().ok && ETCD_BIN !== undefined ? test.serial : test.skip;

/** A command without its id (the driver helper numbers them). */
type Ask = EtcdCtlCommand extends infer C ? (C extends unknown ? Omit<C, 'id'> : never) : never;

/** The driver in `host` over `endpoints`, asked one command at a time; watch messages collected by watch id. */
function driver(host: LabHost, endpoints: readonly string[]) {
  const proc: LabProcess = host.spawnNode(CTL, [endpoints.join(',')], { stdin: 'pipe', label: `${host.name}:etcd-ctl` });
  let next = 0;
  const replies = (id: number): EtcdCtlReply[] =>
    proc.stdout.flatMap((l) => {
      const r = JSON.parse(l) as EtcdCtlReply;
      return r.id === id ? [r] : [];
    });
  return {
    proc,
    /** Sends `cmd` and waits for its reply. */
    async ask(cmd: Ask): Promise<EtcdCtlReply> {
      const id = ++next;
      proc.write(`${JSON.stringify({ ...cmd, id })}\n`);
      const line = await proc.waitForLine(new RegExp(`^\\{"id":${id},`));
      return JSON.parse(line) as EtcdCtlReply;
    },
    /** Starts a watch; its messages so far, by `messages()`. */
    watch(key: string, from: number): { id: number; messages: () => WatchMessage[]; errors: () => EtcdCtlReply[] } {
      const id = ++next;
      proc.write(`${JSON.stringify({ op: 'watch', key, rangeEnd: prefixEnd(key), from, id })}\n`);
      return { id, messages: () => replies(id).flatMap((r) => (r.ok ? [r.value as WatchMessage] : [])), errors: () => replies(id).filter((r) => !r.ok) };
    },
  };
}

const value = <T>(r: EtcdCtlReply): T => {
  if (!r.ok) throw new Error(`${r.reason}: ${r.detail}`);
  return r.value as T;
};

/** Claims `key` for `holder` under `lease` unless somebody has it: the claim transaction's shape. */
const claimKey = (key: string, holder: string, lease?: string): TxnRequest => ({
  compare: [{ key, target: 'mod', result: 'equal', revision: 0 }],
  success: [{ type: 'put', key, value: JSON.stringify({ holder }), ...(lease === undefined ? {} : { lease }) }],
  failure: [{ type: 'range', key }],
});

labTest('the driver against three etcd members: claims once, range, watch, lease expiry and revoke, the leader killed, a dead endpoint passed over', async (t) => {
  const etcd = await startEtcdLab(t, ['drv']);
  const drv = driver(etcd.lab.host('drv'), etcd.endpoints);
  t.teardown(() => void drv.proc.kill('SIGKILL'));
  const P = '/lwt/test/';

  // A lease and a claim made under it, once.
  const lease = value<LeaseGrant>(await drv.ask({ op: 'grant', ttl: 2 }));
  t.is(lease.ttlSeconds, 2);
  t.regex(lease.id, /^[0-9]+$/);
  const start = value<RangeResult>(await drv.ask({ op: 'range', key: P, rangeEnd: prefixEnd(P) })).revision;
  const w = drv.watch(P, start + 1);
  await waitUntil(() => w.messages().some((m) => m.type === 'created'), 'the watch created');
  const first = value<TxnResult>(await drv.ask({ op: 'txn', request: claimKey(`${P}addr/10.0.0.5`, 'hub-a', lease.id) }));
  t.true(first.succeeded);
  const second = value<TxnResult>(await drv.ask({ op: 'txn', request: claimKey(`${P}addr/10.0.0.5`, 'hub-b') }));
  t.false(second.succeeded, 'a second claim of a held key fails');
  t.is(second.ranges[0]?.kvs[0]?.value, JSON.stringify({ holder: 'hub-a' }), 'and reads the holder');
  t.is(second.ranges[0]?.kvs[0]?.lease, lease.id);
  t.is(second.ranges[0]?.kvs[0]?.modRevision, first.revision);
  const plain = value<TxnResult>(await drv.ask({ op: 'txn', request: claimKey(`${P}sticky/10.0.0.5`, 'id:aa') }));
  t.true(plain.succeeded);
  const range = value<RangeResult>(await drv.ask({ op: 'range', key: P, rangeEnd: prefixEnd(P) }));
  t.deepEqual(range.kvs.map((kv) => kv.key), [`${P}addr/10.0.0.5`, `${P}sticky/10.0.0.5`]);
  t.is(range.kvs[1]?.lease, undefined);
  t.is(value<RangeResult>(await drv.ask({ op: 'range', key: P, rangeEnd: prefixEnd(P), limit: 1 })).more, true);

  // The lease expires (nobody renews it): its key goes, the watch says so after the puts, the keepalive says the lease is gone.
  await waitUntil(async () => value<RangeResult>(await drv.ask({ op: 'range', key: `${P}addr/10.0.0.5` })).kvs.length === 0, 'the lease expired with its key', 30_000);
  await waitUntil(() => w.messages().some((m) => m.type === 'events' && m.events.some((e) => e.type === 'delete')), 'the watch saw the delete');
  const seen = w.messages().flatMap((m) => (m.type === 'events' ? m.events.map((e) => `${e.type} ${e.kv.key.slice(P.length)} @${e.kv.modRevision}`) : []));
  t.deepEqual(seen.slice(0, 2), [`put addr/10.0.0.5 @${first.revision}`, `put sticky/10.0.0.5 @${plain.revision}`]);
  t.regex(seen[2]!, /^delete addr\/10\.0\.0\.5 @\d+$/);
  t.like(await drv.ask({ op: 'keepalive', lease: lease.id }), { ok: false, reason: 'lease-not-found' });

  // A lease renewed, then revoked: its key goes at once.
  const l2 = value<LeaseGrant>(await drv.ask({ op: 'grant', ttl: 30 }));
  t.is(value<LeaseGrant>(await drv.ask({ op: 'keepalive', lease: l2.id })).ttlSeconds, 30);
  t.true(value<TxnResult>(await drv.ask({ op: 'txn', request: claimKey(`${P}addr/10.0.0.6`, 'hub-a', l2.id) })).succeeded);
  t.like(await drv.ask({ op: 'revoke', lease: l2.id }), { ok: true, value: 'revoked' });
  t.is(value<RangeResult>(await drv.ask({ op: 'range', key: `${P}addr/10.0.0.6` })).kvs.length, 0);
  t.like(await drv.ask({ op: 'revoke', lease: l2.id }), { ok: true }, 'revoking a lease that is gone is not an error');
  t.like(await drv.ask({ op: 'txn', request: claimKey(`${P}addr/10.0.0.7`, 'hub-a', l2.id) }), { ok: false, reason: 'lease-not-found' });

  // The leader killed: once the other two have elected one, everything works through the driver as before.
  const leader = await etcd.leader(etcd.lab.host('drv'));
  await etcd.kill(leader);
  let l3: LeaseGrant | undefined;
  await waitUntil(async () => {
    const r = await drv.ask({ op: 'grant', ttl: 30 });
    if (r.ok) l3 = r.value as LeaseGrant;
    return r.ok;
  }, 'a lease granted after the leader died');
  if (l3 === undefined) return t.fail('no lease');
  t.true(value<TxnResult>(await drv.ask({ op: 'txn', request: claimKey(`${P}addr/10.0.0.8`, 'hub-a', l3.id) })).succeeded);
  t.false(value<TxnResult>(await drv.ask({ op: 'txn', request: claimKey(`${P}addr/10.0.0.8`, 'hub-b') })).succeeded);
  t.is(value<LeaseGrant>(await drv.ask({ op: 'keepalive', lease: l3.id })).ttlSeconds, 30);
  for (let i = 0; i < 5; i++) t.is(value<RangeResult>(await drv.ask({ op: 'range', key: `${P}addr/10.0.0.8` })).kvs.length, 1, `range ${i} after the leader died`);
  // A new watch from before the kill replays the history on a live member.
  const w2 = drv.watch(P, start + 1);
  await waitUntil(() => w2.messages().some((m) => m.type === 'events' && m.events.some((e) => e.kv.key.endsWith('10.0.0.8'))), 'a watch on a live member sees the claim');
  t.log(`leader ${leader.name} killed; the driver carried on`);

  // A driver whose first endpoint is the dead member passes over it.
  const other = driver(etcd.lab.host('drv'), [leader.clientUrl, ...etcd.endpoints.filter((e) => e !== leader.clientUrl)]);
  t.teardown(() => void other.proc.kill('SIGKILL'));
  t.is(value<RangeResult>(await other.ask({ op: 'range', key: `${P}addr/10.0.0.8` })).kvs.length, 1);
  t.false(value<TxnResult>(await other.ask({ op: 'txn', request: claimKey(`${P}addr/10.0.0.8`, 'hub-c') })).succeeded, 'a transaction refused at the connect goes to the next member');
  // Only the dead member: unreachable, said at once.
  const lone = driver(etcd.lab.host('drv'), [leader.clientUrl]);
  t.teardown(() => void lone.proc.kill('SIGKILL'));
  t.like(await lone.ask({ op: 'range', key: P }), { ok: false, reason: 'unreachable' });
});
