// A fake of the cluster's store (pipelines/clusterPorts.ts) for marble tests: an in-memory etcd with
// revisions, transactions, leases that expire in virtual time (the injected scheduler), watches that
// replay from a start revision, and the faults a real one has: outages (every call fails as
// `unreachable`, live watches error), watch messages held back and released out of order or twice,
// and compaction.
import { Observable, Subject, defer, mergeMap, of, throwError, timer, type SchedulerLike, type Subscription } from 'rxjs';
import { StoreError, type ClusterStorePort, type LeaseGrant, type LeaseId, type RangeResult, type StoreCompare, type StoreKv, type StoreOp, type TxnRequest, type TxnResult, type WatchEvent, type WatchMessage } from '../../pipelines/clusterPorts.js';

interface Lease {
  readonly ttlSeconds: number;
  expiry: Subscription | undefined;
}

interface Watcher {
  readonly key: string;
  readonly rangeEnd: string;
  readonly out: Subject<WatchMessage>;
}

const inRange = (k: string, key: string, rangeEnd: string | undefined): boolean => (rangeEnd === undefined ? k === key : k >= key && (rangeEnd === '\0' || k < rangeEnd));

/** A fake etcd on a scheduler. Every call answers after `latencyMs` of that scheduler (0: at once). */
export class FakeEtcd implements ClusterStorePort {
  revision = 1;
  private readonly kvs = new Map<string, StoreKv>();
  private readonly leases = new Map<LeaseId, Lease>();
  private readonly watchers = new Set<Watcher>();
  /** Every change ever made, for watches that start in the past. */
  private readonly log: { revision: number; event: WatchEvent }[] = [];
  private compacted = 0;
  private nextLease = 0x1000;
  private outage = false;
  private held: WatchMessage[] | undefined;
  /** The calls made, by name, in order (for assertions). */
  readonly calls: string[] = [];

  constructor(
    private readonly scheduler: SchedulerLike,
    private readonly latencyMs = 0,
  ) {}

  // ----- faults

  /** From now on every call fails as `unreachable` and every live watch errors. */
  down(): void {
    this.outage = true;
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      w.out.error(new StoreError('unreachable', 'the fake store is down'));
    }
  }

  /** Every live watch errors (`unreachable`: its member died), while calls and new watches still work (the other members). */
  breakWatches(): void {
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      w.out.error(new StoreError('unreachable', 'the watch stream ended'));
    }
  }

  /** Ends an outage. */
  up(): void {
    this.outage = false;
  }

  /** Watch messages are kept back from now on (release sends them). */
  hold(): void {
    this.held ??= [];
  }

  /** Sends the held messages to every watcher in the order `order` gives (default as they came), and stops holding. */
  release(order: (held: WatchMessage[]) => WatchMessage[] = (h) => h): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const m of order(held)) this.deliver(m);
  }

  /** Sends `message` to every watcher as it is (a duplicate, a stale event, anything). */
  inject(message: WatchMessage): void {
    this.deliver(message);
  }

  /** Forgets the history before `revision`: a watch starting earlier errors `compacted`. */
  compact(revision: number): void {
    this.compacted = revision;
  }

  // ----- reading the state directly (no call recorded)

  /** The key's current value, or undefined. */
  get(key: string): StoreKv | undefined {
    return this.kvs.get(key);
  }

  /** Every key with `prefix`, in order. */
  keys(prefix = ''): string[] {
    return [...this.kvs.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  /** Live leases. */
  leaseIds(): LeaseId[] {
    return [...this.leases.keys()];
  }

  // ----- the port

  range(key: string, rangeEnd: string | undefined, limit: number): Observable<RangeResult> {
    return this.call('range', () => this.rangeNow(key, rangeEnd, limit));
  }

  txn(request: TxnRequest): Observable<TxnResult> {
    return this.call('txn', () => {
      for (const op of [...request.success, ...request.failure]) {
        if (op.type === 'put' && op.lease !== undefined && !this.leases.has(op.lease) && request.compare.every((c) => this.holds(c))) {
          throw new StoreError('lease-not-found', `lease ${op.lease} not found`);
        }
      }
      const succeeded = request.compare.every((c) => this.holds(c));
      const ops = succeeded ? request.success : request.failure;
      const writes = ops.some((op) => op.type !== 'range');
      const rev = writes ? this.revision + 1 : this.revision;
      const ranges: RangeResult[] = [];
      const events: WatchEvent[] = [];
      for (const op of ops) this.apply(op, rev, ranges, events);
      if (events.length > 0) this.commit(rev, events);
      return { revision: this.revision, succeeded, ranges };
    });
  }

  grant(ttlSeconds: number): Observable<LeaseGrant> {
    return this.call('grant', () => {
      const id = String(this.nextLease++);
      const lease: Lease = { ttlSeconds, expiry: undefined };
      this.leases.set(id, lease);
      this.arm(id, lease);
      return { id, ttlSeconds };
    });
  }

  keepalive(id: LeaseId): Observable<LeaseGrant> {
    return this.call('keepalive', () => {
      const lease = this.leases.get(id);
      if (lease === undefined) throw new StoreError('lease-not-found', `lease ${id} not found`);
      this.arm(id, lease);
      return { id, ttlSeconds: lease.ttlSeconds };
    });
  }

  revoke(id: LeaseId): Observable<void> {
    return this.call('revoke', () => this.expire(id));
  }

  watch(key: string, rangeEnd: string, startRevision: number): Observable<WatchMessage> {
    return new Observable<WatchMessage>((subscriber) => {
      this.calls.push('watch');
      if (this.outage) {
        subscriber.error(new StoreError('unreachable', 'the fake store is down'));
        return undefined;
      }
      if (startRevision < this.compacted) {
        subscriber.error(new StoreError('compacted', `revision ${startRevision} is compacted (oldest ${this.compacted})`));
        return undefined;
      }
      const w: Watcher = { key, rangeEnd, out: new Subject<WatchMessage>() };
      const sub = w.out.subscribe(subscriber);
      this.watchers.add(w);
      subscriber.next({ type: 'created', revision: this.revision });
      // The past from startRevision, one message per revision.
      const past = this.log.filter((e) => e.revision >= startRevision && inRange(e.event.kv.key, key, rangeEnd));
      for (const rev of [...new Set(past.map((e) => e.revision))]) {
        subscriber.next({ type: 'events', revision: rev, events: past.filter((e) => e.revision === rev).map((e) => e.event) });
      }
      return () => {
        this.watchers.delete(w);
        sub.unsubscribe();
      };
    });
  }

  // ----- inside

  private call<T>(name: string, run: () => T): Observable<T> {
    const answer = defer(() => {
      this.calls.push(name);
      if (this.outage) return throwError(() => new StoreError('unreachable', 'the fake store is down'));
      try {
        return of(run());
      } catch (err) {
        return throwError(() => err);
      }
    });
    return this.latencyMs === 0 ? answer : timer(this.latencyMs, this.scheduler).pipe(mergeMap(() => answer));
  }

  private rangeNow(key: string, rangeEnd: string | undefined, limit: number): RangeResult {
    const all = [...this.kvs.values()].filter((kv) => inRange(kv.key, key, rangeEnd)).sort((a, b) => (a.key < b.key ? -1 : 1));
    return { revision: this.revision, kvs: all.slice(0, limit), more: all.length > limit };
  }

  private holds(c: StoreCompare): boolean {
    const kvs = c.target === 'lease' || c.rangeEnd === undefined ? [this.kvs.get(c.key)] : [...this.kvs.values()].filter((kv) => inRange(kv.key, c.key, c.rangeEnd));
    return kvs.every((kv) => {
      if (c.target === 'lease') return (kv?.lease === c.lease) === (c.result === 'equal');
      const have = kv === undefined ? 0 : c.target === 'mod' ? kv.modRevision : kv.createRevision;
      switch (c.result) {
        case 'equal':
          return have === c.revision;
        case 'not-equal':
          return have !== c.revision;
        case 'less':
          return have < c.revision;
        case 'greater':
          return have > c.revision;
      }
    });
  }

  private apply(op: StoreOp, rev: number, ranges: RangeResult[], events: WatchEvent[]): void {
    switch (op.type) {
      case 'range':
        ranges.push(this.rangeNow(op.key, op.rangeEnd, op.limit ?? 1000));
        return;
      case 'put': {
        const old = this.kvs.get(op.key);
        const kv: StoreKv = { key: op.key, value: op.value, createRevision: old?.createRevision ?? rev, modRevision: rev, lease: op.lease };
        this.kvs.set(op.key, kv);
        events.push({ type: 'put', kv });
        return;
      }
      case 'delete':
        for (const kv of [...this.kvs.values()]) {
          if (!inRange(kv.key, op.key, op.rangeEnd)) continue;
          this.kvs.delete(kv.key);
          events.push({ type: 'delete', kv: { key: kv.key, value: '', createRevision: 0, modRevision: rev, lease: undefined } });
        }
    }
  }

  private commit(rev: number, events: WatchEvent[]): void {
    this.revision = rev;
    for (const event of events) this.log.push({ revision: rev, event });
    const message: WatchMessage = { type: 'events', revision: rev, events };
    if (this.held !== undefined) this.held.push(message);
    else this.deliver(message);
  }

  private deliver(message: WatchMessage): void {
    for (const w of [...this.watchers]) {
      if (message.type === 'created') {
        w.out.next(message);
        continue;
      }
      const mine = message.events.filter((e) => inRange(e.kv.key, w.key, w.rangeEnd));
      if (mine.length > 0) w.out.next({ ...message, events: mine });
    }
  }

  private arm(id: LeaseId, lease: Lease): void {
    lease.expiry?.unsubscribe();
    lease.expiry = this.scheduler.schedule(() => this.expire(id), lease.ttlSeconds * 1000);
  }

  /** Deletes a lease and all its keys in one revision. */
  private expire(id: LeaseId): void {
    const lease = this.leases.get(id);
    if (lease === undefined) return;
    lease.expiry?.unsubscribe();
    this.leases.delete(id);
    const rev = this.revision + 1;
    const events: WatchEvent[] = [];
    for (const kv of [...this.kvs.values()]) {
      if (kv.lease !== id) continue;
      this.kvs.delete(kv.key);
      events.push({ type: 'delete', kv: { key: kv.key, value: '', createRevision: 0, modRevision: rev, lease: undefined } });
    }
    if (events.length > 0) this.commit(rev, events);
  }
}
