// The etcd driver (src/drivers/etcd.ts) against hostile and failing answers from fake gateways on
// loopback: every failure has its reason (too-large, bad-response, lease-not-found, compacted,
// refused, timeout, unreachable), bounded in time and size; idempotent calls pass over a silent or
// failing member, a transaction only over one that refused the connection. The real thing is in
// etcd-driver-e2e.
import test, { type ExecutionContext } from 'ava';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { firstValueFrom, take, toArray } from 'rxjs';
import { StoreError, type TxnRequest } from '../pipelines/clusterPorts.js';
import { makeEtcdStore } from '../src/drivers/etcd.js';

type Handler = (path: string, body: string, res: ServerResponse) => void;

/** A fake gateway on 127.0.0.1; closed when the test ends. */
async function gateway(t: { teardown(fn: () => void): void }, handler: Handler): Promise<{ url: string; paths: string[] }> {
  const paths: string[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      paths.push(req.url ?? '');
      handler(req.url ?? '', body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, paths };
}

/** A loopback URL nothing listens on (connections refused). */
async function refusedUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

const json = (res: ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
};
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const RANGE_OK = { header: { revision: '7' }, kvs: [{ key: b64('/k'), value: b64('v'), create_revision: '5', mod_revision: '6', lease: '7587899385634918149' }], count: '1' };
const TXN: TxnRequest = { compare: [{ key: '/k', target: 'mod', result: 'equal', revision: 0 }], success: [{ type: 'put', key: '/k', value: 'v' }], failure: [] };

/** The error has `reason` and its message matches `re`. */
function checks(t: ExecutionContext, err: unknown, reason: string, re: RegExp): void {
  t.like(err, { reason });
  t.regex(String((err as Error).message), re);
}

async function failure(p: Promise<unknown>): Promise<StoreError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof StoreError) return err;
    throw err;
  }
  throw new Error('it did not fail');
}

test('answers decode: base64 keys and values, 64-bit lease ids kept as text, defaults left out', async (t) => {
  const g = await gateway(t, (path, body, res) => {
    if (path === '/v3/kv/range') return json(res, 200, RANGE_OK);
    if (path === '/v3/kv/txn') {
      t.deepEqual(JSON.parse(body), { compare: [{ key: b64('/k'), target: 'MOD', result: 'EQUAL', mod_revision: '0' }], success: [{ request_put: { key: b64('/k'), value: b64('v') } }], failure: [] });
      return json(res, 200, { header: { revision: '8' }, responses: [{ response_range: { header: {} } }] });
    }
    if (path === '/v3/lease/keepalive') return json(res, 200, { result: { header: {}, ID: '42' } });
    json(res, 404, { error: 'nope' });
  });
  const store = makeEtcdStore({ endpoints: [g.url] });
  t.deepEqual(await firstValueFrom(store.range('/k', undefined, 10)), { revision: 7, kvs: [{ key: '/k', value: 'v', createRevision: 5, modRevision: 6, lease: '7587899385634918149' }], more: false });
  t.deepEqual(await firstValueFrom(store.txn(TXN)), { revision: 8, succeeded: false, ranges: [{ revision: 0, kvs: [], more: false }] });
  t.like(await failure(firstValueFrom(store.keepalive('42'))), { reason: 'lease-not-found' }, 'a keepalive answered without a TTL: the lease is gone');
});

test('hostile answers: too large, not JSON, the wrong shape, bad base64, a revision beyond 2^53 are errors with their reason', async (t) => {
  let answer: (res: ServerResponse) => void = () => undefined;
  const g = await gateway(t, (_p, _b, res) => answer(res));
  const store = makeEtcdStore({ endpoints: [g.url], maxBytes: 4096 });
  const range = () => failure(firstValueFrom(store.range('/k', undefined, 10)));
  answer = (res) => json(res, 200, { header: {}, kvs: [{ key: b64('x'.repeat(5000)) }] });
  t.like(await range(), { reason: 'too-large' });
  answer = (res) => json(res, 200, '{"header":');
  t.like(await range(), { reason: 'bad-response' });
  answer = (res) => json(res, 200, { header: {}, kvs: 'many' });
  t.like(await range(), { reason: 'bad-response' });
  answer = (res) => json(res, 200, { header: {}, kvs: [{ key: '***' }] });
  t.like(await range(), { reason: 'bad-response' });
  answer = (res) => json(res, 200, { header: { revision: '99999999999999999999' } });
  t.like(await range(), { reason: 'bad-response' });
  answer = (res) => json(res, 404, { error: 'etcdserver: requested lease not found', message: 'etcdserver: requested lease not found', code: 5 });
  t.like(await failure(firstValueFrom(store.keepalive('1'))), { reason: 'lease-not-found' });
  answer = (res) => json(res, 400, { error: 'json: cannot unmarshal', message: 'json: cannot unmarshal', code: 3 });
  checks(t, await range(), 'refused', /HTTP 400: json: cannot unmarshal/);
  answer = (res) => json(res, 404, { error: 'nope', message: 'nope', code: 5 });
  t.is((await failure(firstValueFrom(store.revoke('1')))).reason, 'refused');
  answer = (res) => json(res, 404, { error: 'etcdserver: requested lease not found', message: 'etcdserver: requested lease not found', code: 5 });
  await firstValueFrom(store.revoke('1'), { defaultValue: 'completed' });
  t.pass('revoking a lease that is gone completes');
});

test('a silent member is passed over by idempotent calls within the deadline; a transaction that may have reached it is not sent again', async (t) => {
  const silent = await gateway(t, () => undefined);
  const good = await gateway(t, (path, _b, res) => json(res, 200, path === '/v3/kv/range' ? RANGE_OK : { header: { revision: '9' }, succeeded: true }));
  const store = makeEtcdStore({ endpoints: [silent.url, good.url], attemptMs: 200, deadlineMs: 1000 });
  t.is((await firstValueFrom(store.range('/k', undefined, 10))).revision, 7);
  // The driver now starts with the member that answered.
  t.true((await firstValueFrom(store.txn(TXN))).succeeded);
  const fresh = makeEtcdStore({ endpoints: [silent.url, good.url], attemptMs: 200, deadlineMs: 1000 });
  const started = Date.now();
  t.like(await failure(firstValueFrom(fresh.txn(TXN))), { reason: 'timeout' });
  t.true(Date.now() - started < 1000);
  t.is(good.paths.filter((p) => p === '/v3/kv/txn').length, 1, 'the timed-out transaction was not sent elsewhere');
  const alone = makeEtcdStore({ endpoints: [silent.url], attemptMs: 200, deadlineMs: 300 });
  t.like(await failure(firstValueFrom(alone.range('/k', undefined, 1))), { reason: 'timeout' });
});

test('a member that refuses the connection is passed over, also by a transaction; none left: unreachable', async (t) => {
  const refused = await refusedUrl();
  const good = await gateway(t, (_p, _b, res) => json(res, 200, { header: { revision: '9' }, succeeded: true }));
  t.true((await firstValueFrom(makeEtcdStore({ endpoints: [refused, good.url] }).txn(TXN))).succeeded);
  checks(t, await failure(firstValueFrom(makeEtcdStore({ endpoints: [refused] }).range('/k', undefined, 1))), 'unreachable', /ECONNREFUSED/);
  t.throws(() => makeEtcdStore({ endpoints: [] }), { instanceOf: RangeError });
});

test('a member answering 5xx is passed over by idempotent calls; a transaction takes its answer', async (t) => {
  const sick = await gateway(t, (_p, _b, res) => json(res, 503, { error: 'etcdserver: no leader', message: 'etcdserver: no leader', code: 14 }));
  const good = await gateway(t, (_p, _b, res) => json(res, 200, RANGE_OK));
  t.is((await firstValueFrom(makeEtcdStore({ endpoints: [sick.url, good.url] }).range('/k', undefined, 1))).revision, 7);
  checks(t, await failure(firstValueFrom(makeEtcdStore({ endpoints: [sick.url, good.url] }).txn(TXN))), 'refused', /HTTP 503: etcdserver: no leader/);
  // The watch too: the first member without a leader, the second's stream taken.
  const watching = await gateway(t, (_p, _b, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ result: { header: { revision: '3' }, created: true } }) + '\n');
  });
  const got: unknown[] = [];
  const err = await new Promise<unknown>((resolve) => makeEtcdStore({ endpoints: [sick.url, watching.url, good.url] }).watch('/', '0', 1).subscribe({ next: (m) => got.push(m), error: resolve }));
  t.deepEqual(got, [{ type: 'created', revision: 3 }]);
  checks(t, err, 'unreachable', /the watch stream ended/);
  t.deepEqual(watching.paths, ['/v3/watch']);
  t.false(good.paths.includes('/v3/watch'), 'a stream that ended after it was taken is not tried elsewhere: the hub starts a new watch from its revision');
});

test('the watch: created, then puts and deletes line by line; compaction, cancellation, an oversize line and the end of the stream are errors', async (t) => {
  let lines: string[] = [];
  const g = await gateway(t, (_p, _b, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    // Lines split across writes, as a stream may deliver them.
    const text = lines.join('\n') + '\n';
    res.write(text.slice(0, 7));
    setTimeout(() => res.end(text.slice(7)), 20);
  });
  const store = makeEtcdStore({ endpoints: [g.url], maxBytes: 2048 });
  lines = [
    JSON.stringify({ result: { header: { revision: '4' }, created: true } }),
    JSON.stringify({ result: { header: { revision: '5' }, events: [{ kv: { key: b64('/a'), value: b64('1'), mod_revision: '5', create_revision: '5' } }, { type: 'DELETE', kv: { key: b64('/b'), mod_revision: '5' } }] } }),
  ];
  const got: unknown[] = [];
  const err = await new Promise<unknown>((resolve) => store.watch('/', '0', 5).subscribe({ next: (m) => got.push(m), error: resolve }));
  t.deepEqual(got, [
    { type: 'created', revision: 4 },
    {
      type: 'events',
      revision: 5,
      events: [
        { type: 'put', kv: { key: '/a', value: '1', createRevision: 5, modRevision: 5, lease: undefined } },
        { type: 'delete', kv: { key: '/b', value: '', createRevision: 0, modRevision: 5, lease: undefined } },
      ],
    },
  ]);
  checks(t, err, 'unreachable', /the watch stream ended/);
  lines = [JSON.stringify({ result: { header: {}, created: true } }), JSON.stringify({ result: { header: {}, canceled: true, compact_revision: '9' } })];
  t.like(await failure(firstValueFrom(store.watch('/', '0', 2).pipe(take(2), toArray()))), { reason: 'compacted' });
  lines = [JSON.stringify({ result: { header: {}, canceled: true, cancel_reason: 'because' } })];
  checks(t, await failure(firstValueFrom(store.watch('/', '0', 2))), 'refused', /cancelled: because/);
  lines = [JSON.stringify({ result: { header: {}, events: [{ kv: { key: b64('x'.repeat(3000)) } }] } })];
  t.like(await failure(firstValueFrom(store.watch('/', '0', 2))), { reason: 'too-large' });
  lines = ['{"result":'];
  t.like(await failure(firstValueFrom(store.watch('/', '0', 2))), { reason: 'bad-response' });
});
