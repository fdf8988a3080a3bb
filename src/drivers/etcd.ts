// Driver: the cluster's store (pipelines/clusterPorts.ts) over etcd's v3 JSON gateway with Node's
// own fetch (docs/cluster.md, "The etcd client"). etcd is a network input like any other: every
// operation has a deadline (AbortController), every answer a size bound, every answer is decoded
// with io-ts before anything reads it, and failures become StoreErrors with a reason.
import { Buffer } from 'node:buffer';
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either.js';
import { Observable } from 'rxjs';
import { firstErrorLine } from '../../operators/core/codecs.js';
import { StoreError, type ClusterStorePort, type LeaseGrant, type RangeResult, type StoreCompare, type StoreKv, type StoreOp, type TxnRequest, type TxnResult, type WatchEvent, type WatchMessage } from '../../pipelines/clusterPorts.js';

/** How the driver reaches etcd and what it bounds. */
export interface EtcdOptions {
  /** Client URLs of the etcd members (`http://10.1.0.1:2379`); tried in turn. */
  readonly endpoints: readonly string[];
  /** The whole of one operation, every endpoint tried included (default 3 s). */
  readonly deadlineMs?: number;
  /** One endpoint's share of it: a member that does not answer within this is passed over (default 1 s). */
  readonly attemptMs?: number;
  /** The largest answer (and watch line) read (default 1 MiB). */
  readonly maxBytes?: number;
  /** The fetch to use (default: the global one). */
  readonly fetch?: typeof fetch;
}

const ETCD_DEFAULTS = { deadlineMs: 3000, attemptMs: 1000, maxBytes: 1 << 20 } as const;

// ---------------------------------------------------------------------------------------------
// The gateway's JSON (proto3 JSON: 64-bit integers as strings, bytes as base64, defaults left out)

const Int64 = new t.Type<number, string, unknown>(
  'Int64',
  (u): u is number => typeof u === 'number',
  (u, c) => {
    if (typeof u !== 'string' && typeof u !== 'number') return t.failure(u, c);
    const n = Number(u);
    return Number.isSafeInteger(n) && n >= 0 ? t.success(n) : t.failure(u, c, 'a revision or TTL within 2^53');
  },
  String,
);
const Id = t.refinement(t.string, (s) => /^-?[0-9]{1,20}$/.test(s), 'lease id');
const Bytes = new t.Type<string, string, unknown>(
  'Base64',
  (u): u is string => typeof u === 'string',
  (u, c) => (typeof u === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(u) ? t.success(Buffer.from(u, 'base64').toString('utf8')) : t.failure(u, c, 'base64')),
  (s) => Buffer.from(s, 'utf8').toString('base64'),
);
const Header = t.partial({ revision: Int64 });
const Kv = t.intersection([t.type({ key: Bytes }), t.partial({ value: Bytes, create_revision: Int64, mod_revision: Int64, lease: Id })]);
const RangeResponse = t.intersection([t.type({ header: Header }), t.partial({ kvs: t.array(Kv), more: t.boolean })]);
const TxnResponse = t.intersection([
  t.type({ header: Header }),
  t.partial({ succeeded: t.boolean, responses: t.array(t.partial({ response_range: RangeResponse, response_put: t.unknown, response_delete_range: t.unknown })) }),
]);
const GrantResponse = t.intersection([t.type({ ID: Id, TTL: Int64 }), t.partial({ error: t.string })]);
const KeepaliveResponse = t.type({ result: t.intersection([t.type({ ID: Id }), t.partial({ TTL: Int64 })]) });
const Anything = t.unknown;
const ErrorBody = t.partial({ error: t.string, message: t.string, code: t.number });
const WatchLine = t.union([
  t.type({
    result: t.partial({
      header: Header,
      created: t.boolean,
      canceled: t.boolean,
      compact_revision: Int64,
      cancel_reason: t.string,
      events: t.array(t.intersection([t.type({ kv: Kv }), t.partial({ type: t.keyof({ PUT: null, DELETE: null }) })])),
    }),
  }),
  t.type({ error: ErrorBody }),
]);

const kvOf = (kv: t.TypeOf<typeof Kv>): StoreKv => ({
  key: kv.key,
  value: kv.value ?? '',
  createRevision: kv.create_revision ?? 0,
  modRevision: kv.mod_revision ?? 0,
  lease: kv.lease === undefined || kv.lease === '0' ? undefined : kv.lease,
});
const rangeOf = (r: t.TypeOf<typeof RangeResponse>): RangeResult => ({ revision: r.header.revision ?? 0, kvs: (r.kvs ?? []).map(kvOf), more: r.more === true });
/** A key or value as the gateway wants it (base64 of its UTF-8). */
const b64 = Bytes.encode;

const TARGETS = { mod: 'MOD', create: 'CREATE', lease: 'LEASE' } as const;
const RESULTS = { equal: 'EQUAL', 'not-equal': 'NOT_EQUAL', less: 'LESS', greater: 'GREATER' } as const;

function compareJson(c: StoreCompare): Record<string, unknown> {
  const base = { key: b64(c.key), target: TARGETS[c.target], result: RESULTS[c.result] };
  if (c.target === 'lease') return { ...base, lease: c.lease ?? '0' };
  return { ...base, ...(c.rangeEnd === undefined ? {} : { range_end: b64(c.rangeEnd) }), [c.target === 'mod' ? 'mod_revision' : 'create_revision']: String(c.revision) };
}

function opJson(op: StoreOp): Record<string, unknown> {
  switch (op.type) {
    case 'put':
      return { request_put: { key: b64(op.key), value: b64(op.value), ...(op.lease === undefined ? {} : { lease: op.lease }) } };
    case 'delete':
      return { request_delete_range: { key: b64(op.key), ...(op.rangeEnd === undefined ? {} : { range_end: b64(op.rangeEnd) }) } };
    case 'range':
      return { request_range: { key: b64(op.key), ...(op.rangeEnd === undefined ? {} : { range_end: b64(op.rangeEnd) }), ...(op.limit === undefined ? {} : { limit: String(op.limit) }) } };
  }
}

// ---------------------------------------------------------------------------------------------
// Transport

/** Whether a failed attempt never reached the member (a request that may be sent again elsewhere, even a transaction). */
const neverSent = (err: unknown): boolean => {
  const code = ((err as { cause?: { code?: string } }).cause ?? {}).code;
  return code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ENOTFOUND' || code === 'EAI_AGAIN';
};

const describe = (err: unknown): string => {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
};

/** Reads a response body up to `max` bytes; more is `too-large` (the read is cancelled). */
async function readBounded(res: Response, max: number, url: string): Promise<string> {
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > max) throw new StoreError('too-large', `${url}: an answer larger than ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The StoreError an error answer (non-2xx) stands for. */
function httpError(status: number, text: string, url: string): StoreError {
  let message = text.slice(0, 200);
  try {
    const body = ErrorBody.decode(JSON.parse(text));
    if (!isLeft(body)) message = body.right.message ?? body.right.error ?? message;
  } catch {
    // Not JSON: the text itself says what went wrong.
  }
  if (/lease not found/.test(message)) return new StoreError('lease-not-found', `${url}: ${message}`);
  if (/compacted/.test(message)) return new StoreError('compacted', `${url}: ${message}`);
  return new StoreError('refused', `${url}: HTTP ${status}: ${message}`);
}

const decodeOr = <A>(codec: t.Decoder<unknown, A>, json: unknown, url: string): A => {
  const d = codec.decode(json);
  if (isLeft(d)) throw new StoreError('bad-response', `${url}: ${firstErrorLine(d.left)}`);
  return d.right;
};

/** The store, and its owner's clean stop. */
export interface EtcdStore extends ClusterStorePort {
  /** Revokes every lease this driver granted and nobody revoked (etcd then deletes their keys at once, not at their expiry); never rejects. */
  close(): Promise<void>;
}

/** The cluster's store on etcd's JSON gateway (`<endpoint>/v3/...`). Throws RangeError without endpoints. */
export function makeEtcdStore(options: EtcdOptions): EtcdStore {
  if (options.endpoints.length === 0) throw new RangeError('etcd: no endpoints');
  const endpoints = options.endpoints.map((e) => e.replace(/\/+$/, ''));
  const deadlineMs = options.deadlineMs ?? ETCD_DEFAULTS.deadlineMs;
  const attemptMs = options.attemptMs ?? ETCD_DEFAULTS.attemptMs;
  const maxBytes = options.maxBytes ?? ETCD_DEFAULTS.maxBytes;
  const doFetch = options.fetch ?? fetch;
  /** The endpoint that answered last: tried first. */
  let current = 0;
  /** Leases granted and not revoked (revoked by close()). */
  const granted = new Set<string>();

  /**
   * POSTs `body` to `path` on the endpoints in turn, from the one that answered last, within the
   * deadline, and hands the first accepted answer to `read`: an endpoint that refuses or stays
   * silent for its share is passed over, as is one answering 5xx (no leader) when the request is
   * `idempotent`; a request that may have reached a member is sent elsewhere only when
   * `idempotent`. The attempt's timer runs until `read` calls `connected()` (a stream: from then
   * on only `outer` ends it, and a failure is not tried elsewhere).
   */
  const attempt = async <A>(path: string, body: string, idempotent: boolean, outer: AbortSignal, read: (res: Response, url: string, connected: () => void) => Promise<A>): Promise<A> => {
    const started = Date.now();
    let last: StoreError | undefined;
    for (let i = 0; i < endpoints.length; i++) {
      const remaining = deadlineMs - (Date.now() - started);
      if (remaining <= 0 || outer.aborted) break;
      const at = (current + i) % endpoints.length;
      const url = `${endpoints[at]}/v3${path}`;
      const one = new AbortController();
      const stop = (): void => one.abort();
      outer.addEventListener('abort', stop);
      let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(stop, Math.min(remaining, attemptMs));
      const connected = (): void => {
        clearTimeout(timer);
        timer = undefined;
      };
      try {
        const res = await doFetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' }, signal: one.signal });
        if (!res.ok) {
          const err = httpError(res.status, await readBounded(res, maxBytes, url), url);
          // A member without a leader (or shutting down) answers 5xx: another may do.
          if (res.status >= 500 && idempotent) {
            last = err;
            continue;
          }
          throw err;
        }
        const answer = await read(res, url, connected);
        current = at;
        return answer;
      } catch (err) {
        if (err instanceof StoreError) throw err;
        const streaming = timer === undefined;
        const timedOut = one.signal.aborted && !outer.aborted && !streaming;
        last = timedOut ? new StoreError('timeout', `no answer from ${endpoints[at]} within ${Math.min(remaining, attemptMs)} ms`) : new StoreError('unreachable', `${endpoints[at]}: ${describe(err)}`);
        if (streaming || (!idempotent && !neverSent(err))) throw last;
      } finally {
        clearTimeout(timer);
        outer.removeEventListener('abort', stop);
      }
    }
    throw last ?? new StoreError('timeout', `no answer from ${endpoints.join(', ')} within ${deadlineMs} ms`);
  };

  /** A unary POST: its answer read whole (bounded) and parsed as JSON. */
  const post = (path: string, body: unknown, idempotent: boolean, outer: AbortSignal): Promise<unknown> =>
    attempt(path, JSON.stringify(body), idempotent, outer, async (res, url) => {
      const text = await readBounded(res, maxBytes, url);
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw new StoreError('bad-response', `${url}: an answer that is not JSON`);
      }
    });

  /** One operation as a cold Observable: unsubscribing aborts it. */
  const unary = <A>(path: string, body: unknown, idempotent: boolean, decode: (json: unknown) => A): Observable<A> =>
    new Observable<A>((subscriber) => {
      const abort = new AbortController();
      post(path, body, idempotent, abort.signal).then(
        (json) => {
          try {
            subscriber.next(decode(json));
            subscriber.complete();
          } catch (err) {
            subscriber.error(err);
          }
        },
        (err: unknown) => subscriber.error(err),
      );
      return () => abort.abort();
    });

  return {
    range: (key, rangeEnd, limit) =>
      unary('/kv/range', { key: b64(key), ...(rangeEnd === undefined ? {} : { range_end: b64(rangeEnd) }), limit: String(limit) }, true, (json) => rangeOf(decodeOr(RangeResponse, json, '/v3/kv/range'))),
    txn: (request: TxnRequest) =>
      unary('/kv/txn', { compare: request.compare.map(compareJson), success: request.success.map(opJson), failure: request.failure.map(opJson) }, false, (json): TxnResult => {
        const r = decodeOr(TxnResponse, json, '/v3/kv/txn');
        return { revision: r.header.revision ?? 0, succeeded: r.succeeded === true, ranges: (r.responses ?? []).flatMap((x) => (x.response_range === undefined ? [] : [rangeOf(x.response_range)])) };
      }),
    grant: (ttlSeconds) =>
      unary('/lease/grant', { TTL: String(ttlSeconds) }, false, (json): LeaseGrant => {
        const g = decodeOr(GrantResponse, json, '/v3/lease/grant');
        if (g.error !== undefined && g.error !== '') throw new StoreError('refused', `lease grant: ${g.error}`);
        granted.add(g.ID);
        return { id: g.ID, ttlSeconds: g.TTL };
      }),
    keepalive: (id) =>
      unary('/lease/keepalive', { ID: id }, true, (json): LeaseGrant => {
        const k = decodeOr(KeepaliveResponse, json, '/v3/lease/keepalive');
        // A lease etcd no longer has is answered without a TTL.
        if (k.result.TTL === undefined || k.result.TTL <= 0) throw new StoreError('lease-not-found', `lease ${id} is gone`);
        return { id: k.result.ID, ttlSeconds: k.result.TTL };
      }),
    revoke: (id) =>
      new Observable<void>((subscriber) =>
        unary('/lease/revoke', { ID: id }, true, (json) => {
          decodeOr(Anything, json, '/v3/lease/revoke');
          granted.delete(id);
        }).subscribe({
          next: () => subscriber.next(),
          complete: () => subscriber.complete(),
          error: (err: unknown) => (err instanceof StoreError && err.reason === 'lease-not-found' ? subscriber.complete() : subscriber.error(err)),
        }),
      ),
    watch: (key, rangeEnd, startRevision) =>
      new Observable<WatchMessage>((subscriber) => {
        const abort = new AbortController();
        const body = JSON.stringify({ create_request: { key: b64(key), range_end: b64(rangeEnd), start_revision: String(startRevision) } });
        attempt('/watch', body, true, abort.signal, (res, url, connected) => {
          connected();
          return readWatch(res, url, maxBytes, startRevision, (m) => subscriber.next(m));
        }).catch((err: unknown) => {
          if (abort.signal.aborted && subscriber.closed) return;
          subscriber.error(err instanceof StoreError ? err : new StoreError('unreachable', describe(err)));
        });
        return () => abort.abort();
      }),
    async close() {
      const ids = [...granted];
      granted.clear();
      const abort = new AbortController();
      await Promise.all(ids.map((id) => post('/lease/revoke', { ID: id }, true, abort.signal).catch(() => undefined)));
    },
  };
}

/** Reads a watch's newline-delimited results as they come, decoded, each line bounded by `maxBytes`, into `emit`; rejects when the stream ends or says it failed. */
async function readWatch(res: Response, url: string, maxBytes: number, startRevision: number, emit: (m: WatchMessage) => void): Promise<never> {
  if (res.body === null) throw new StoreError('unreachable', `${url}: a watch answer without a body`);
  let pending = '';
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    pending += Buffer.from(chunk).toString('utf8');
    if (pending.length > maxBytes) throw new StoreError('too-large', `${url}: a watch message larger than ${maxBytes} bytes`);
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === '') continue;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        throw new StoreError('bad-response', `${url}: a watch line that is not JSON`);
      }
      const m = decodeOr(WatchLine, json, url);
      if ('error' in m) throw httpError(m.error.code ?? 0, JSON.stringify(m.error), url);
      const r = m.result;
      if ((r.compact_revision ?? 0) > 0) throw new StoreError('compacted', `${url}: revision ${startRevision} is compacted (oldest kept ${r.compact_revision})`);
      if (r.canceled === true) throw new StoreError('refused', `${url}: the watch was cancelled${r.cancel_reason === undefined ? '' : `: ${r.cancel_reason}`}`);
      const revision = r.header?.revision ?? 0;
      if (r.created === true) emit({ type: 'created', revision });
      const events = (r.events ?? []).map((e): WatchEvent => ({ type: e.type === 'DELETE' ? 'delete' : 'put', kv: kvOf(e.kv) }));
      if (events.length > 0) emit({ type: 'events', revision, events });
    }
  }
  throw new StoreError('unreachable', `${url}: the watch stream ended`);
}
