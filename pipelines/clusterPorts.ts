// The port of the cluster's shared store (docs/cluster.md): an etcd-shaped key-value store with
// revisions, transactions, leases and a watch, as Observables, so the pure cluster code can be run
// over a fake in virtual time (test/helpers/fake-etcd.ts) and over etcd's JSON gateway in the CLI
// (src/drivers/etcd.ts). Keys and values are text (our keys are ASCII, our values JSON).
import type { Observable } from 'rxjs';

/** An etcd lease id: a 64-bit integer, kept as its decimal text (it does not fit a JavaScript number). */
export type LeaseId = string;

/** One key as the store holds it. */
export interface StoreKv {
  readonly key: string;
  readonly value: string;
  /** The revision that created the key (0 for none). */
  readonly createRevision: number;
  /** The revision of its latest change. */
  readonly modRevision: number;
  /** The lease it lives under, if any. */
  readonly lease: LeaseId | undefined;
}

/** The keys of a range at one revision. */
export interface RangeResult {
  /** The store's revision when it answered. */
  readonly revision: number;
  /** At most the limit asked for, in key order. */
  readonly kvs: readonly StoreKv[];
  /** More keys matched than were returned. */
  readonly more: boolean;
}

/** One condition of a transaction: a key's (or every key's of `[key, rangeEnd)`) revision or lease against a value; a missing key has revision 0 and no lease. */
export type StoreCompare =
  | { readonly key: string; readonly rangeEnd?: string; readonly target: 'mod' | 'create'; readonly result: 'equal' | 'not-equal' | 'less' | 'greater'; readonly revision: number }
  | { readonly key: string; readonly target: 'lease'; readonly result: 'equal' | 'not-equal'; readonly lease: LeaseId | undefined };

/** One operation of a transaction. */
export type StoreOp =
  | { readonly type: 'put'; readonly key: string; readonly value: string; readonly lease?: LeaseId }
  | { readonly type: 'delete'; readonly key: string; readonly rangeEnd?: string }
  | { readonly type: 'range'; readonly key: string; readonly rangeEnd?: string; readonly limit?: number };

/** An atomic if-then-else: when every compare holds, `success` runs, else `failure`. */
export interface TxnRequest {
  readonly compare: readonly StoreCompare[];
  readonly success: readonly StoreOp[];
  readonly failure: readonly StoreOp[];
}

/** What a transaction did. */
export interface TxnResult {
  /** The store's revision after it (the revision of its writes, when it wrote). */
  readonly revision: number;
  readonly succeeded: boolean;
  /** The answers of the branch's range operations, in order. */
  readonly ranges: readonly RangeResult[];
}

/** A granted lease. */
export interface LeaseGrant {
  readonly id: LeaseId;
  readonly ttlSeconds: number;
}

/** One change a watch reports: a put (with the new value) or a delete (key and revision only). */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly kv: StoreKv;
}

/** What a watch emits. */
export type WatchMessage =
  /** The watch is in place; events from `revision` + 1 on will follow. */
  | { readonly type: 'created'; readonly revision: number }
  /** Changes, in revision order as the store sent them (a consumer still orders by each event's modRevision). */
  | { readonly type: 'events'; readonly revision: number; readonly events: readonly WatchEvent[] };

/** Why a store operation failed. */
export type StoreErrorReason =
  /** No endpoint could be reached (refused, unroutable, reset). */
  | 'unreachable'
  /** No answer within the operation's bound. */
  | 'timeout'
  /** The store answered with an error (HTTP status and its message). */
  | 'refused'
  /** An answer that does not decode as the API's shape. */
  | 'bad-response'
  /** An answer larger than the driver's bound. */
  | 'too-large'
  /** The lease is gone (expired or revoked). */
  | 'lease-not-found'
  /** The watch's start revision was compacted away: take a new snapshot. */
  | 'compacted';

/** A failed store operation, with a reason and a sentence. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly reason: StoreErrorReason,
    readonly detail: string,
  ) {
    super(`${reason}: ${detail}`);
  }
}

/**
 * The cluster's store. Every unary operation is cold (it runs when subscribed; unsubscribing
 * abandons it), emits one answer and completes, or errors with a StoreError; each is bounded in
 * time and size by the implementation.
 */
export interface ClusterStorePort {
  /** The keys in `[key, rangeEnd)` (just `key` without rangeEnd), at most `limit`. */
  range(key: string, rangeEnd: string | undefined, limit: number): Observable<RangeResult>;
  /** One transaction. */
  txn(request: TxnRequest): Observable<TxnResult>;
  /** A new lease of `ttlSeconds`. */
  grant(ttlSeconds: number): Observable<LeaseGrant>;
  /** Renews a lease: emits its TTL from now; errors `lease-not-found` when it is gone. */
  keepalive(id: LeaseId): Observable<LeaseGrant>;
  /** Revokes a lease (its keys are deleted); a lease already gone is not an error. */
  revoke(id: LeaseId): Observable<void>;
  /** Changes to `[key, rangeEnd)` from `startRevision` on: `created` first, then events; never completes; errors on failure (`compacted` when startRevision is gone); unsubscribing cancels it. */
  watch(key: string, rangeEnd: string, startRevision: number): Observable<WatchMessage>;
}

/** The end of the range of every key that starts with `prefix` (etcd's prefix convention: the prefix with its last byte incremented). */
export function prefixEnd(prefix: string): string {
  if (prefix.length === 0) return '\0';
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}
