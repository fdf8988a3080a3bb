// The hub's address allocator: which tunnel address a member without `-t` gets, and whether a
// static request may have the one it asks for. Bookkeeping, never on the packet path. The membership
// module (membership.ts) owns it: its reducer clones the allocator before applying a join or a leave,
// so every membership state keeps its own, and admission only asks (peek, claimStatic). Its tables
// are persistent maps, so a clone shares them (O(1)) and a change copies O(log n) of them.
import { broadcastAddress, formatIpv4, prefixHas, prefixMask } from '../operators/core/address.js';
import { PersistentMap } from '../operators/core/persistentMap.js';

/** Where addresses come from: the hub's subnet and, optionally, a narrower pool inside it. */
export interface AllocatorOptions {
  /** Any address of the subnet (host bits are ignored), as an unsigned 32-bit integer. */
  readonly network: number;
  readonly prefix: number;
  /** The hub's own tunnel address: never handed out. */
  readonly hub: number;
  /** Inclusive range to hand out from; the whole subnet minus network and broadcast by default. */
  readonly pool?: { readonly first: number; readonly last: number };
}

/** Identity (token, certificate or client-generated id) → leased address (unsigned 32-bit). */
export type LeaseTable = Readonly<Record<string, number>>;

/** Why an assignment or a static claim is refused. */
export type AllocationReason = 'pool-exhausted' | 'leased-to-other' | 'outside-subnet' | 'hub-address';

/** A refusal with a reason (for REJECT) and a sentence for the log. */
export interface AllocationFailure {
  readonly ok: false;
  readonly reason: AllocationReason;
  readonly detail: string;
}

/** The address an identity gets; `sticky` is false when the lease is new (the table must be saved). */
export type Assignment = { readonly ok: true; readonly address: number; readonly sticky: boolean } | AllocationFailure;

/** A static request that may go ahead. */
export type StaticClaim = { readonly ok: true; readonly address: number } | AllocationFailure;

/** A lease of the initial table the allocator could not honour, and why. */
export interface DiscardedLease {
  readonly identity: string;
  readonly address: number;
  readonly why: 'outside-pool' | 'hub-address' | 'duplicate' | 'not-an-address';
}

/** Options that cannot describe an allocator (raised by the constructor; config decoding should catch them first). */
export class AllocatorConfigError extends Error {
  override readonly name = 'AllocatorConfigError';
}

const isU32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffffffff;

/** The problem with `options` as a sentence, or undefined when they describe a usable allocator. */
export function allocatorOptionsProblem(options: AllocatorOptions): string | undefined {
  const { network, prefix, hub, pool } = options;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) return `prefix ${prefix} is not a prefix length 0..32`;
  if (!isU32(network)) return `network ${network} is not an IPv4 address`;
  if (!isU32(hub)) return `hub ${hub} is not an IPv4 address`;
  const net = (network & prefixMask(prefix)) >>> 0;
  const lan = `${formatIpv4(net)}/${prefix}`;
  if (!prefixHas({ address: net, prefix: prefix }, hub)) return `the hub address ${formatIpv4(hub)} is outside ${lan}`;
  if (pool === undefined) return undefined;
  if (!isU32(pool.first) || !isU32(pool.last)) return `the pool ${pool.first}..${pool.last} is not a range of IPv4 addresses`;
  const range = `${formatIpv4(pool.first)}-${formatIpv4(pool.last)}`;
  if (pool.first > pool.last) return `the pool ${range} is empty (first above last)`;
  if (!prefixHas({ address: net, prefix: prefix }, pool.first) || !prefixHas({ address: net, prefix: prefix }, pool.last)) return `the pool ${range} is not inside ${lan}`;
  return undefined;
}

/**
 * Leases and live addresses of one hub. `assign` and `claimStatic` answer in O(1) except that
 * `assign` scans the pool from the lowest address that may be free (amortised: the scan never
 * revisits addresses it found taken until one is released). Leases are sticky: nothing but a new
 * table removes them. Mutable, so never shared: one hub subscription owns it; `clone` is O(1) (the
 * tables are persistent maps that the copies share until one of them changes its own).
 */
export class AddressAllocator {
  #network = 0;
  #broadcast = 0;
  #prefix = 0;
  #hub = 0;
  #first = 0;
  #last = 0;
  #byIdentity = PersistentMap.empty<string, number>();
  #byAddress = PersistentMap.empty<number, string>();
  /** Live members per address: markInUse and release pair up, so a replaced session's late release does not free its successor's address. */
  #inUse = PersistentMap.empty<number, number>();
  /** Every pool address below this one is taken (leased, in use or the hub's). */
  #lowestMaybeFree = 0;
  /** Leases of the initial table that were dropped, for the hub to log once. */
  readonly discarded: readonly DiscardedLease[] = [];

  /** Builds the allocator over `options` with the leases of `initial` (invalid ones end up in `discarded`), or a copy of another allocator; throws AllocatorConfigError on bad options. */
  constructor(options: AllocatorOptions | AddressAllocator, initial: LeaseTable = {}) {
    if (options instanceof AddressAllocator) {
      this.#copyFrom(options);
      return;
    }
    const problem = allocatorOptionsProblem(options);
    if (problem !== undefined) throw new AllocatorConfigError(problem);
    this.#prefix = options.prefix;
    this.#network = (options.network & prefixMask(options.prefix)) >>> 0;
    this.#broadcast = broadcastAddress({ address: this.#network, prefix: options.prefix });
    this.#hub = options.hub;
    this.#first = options.pool?.first ?? this.#network + 1;
    this.#last = options.pool?.last ?? this.#broadcast - 1;
    this.#lowestMaybeFree = this.#first;
    const discarded: DiscardedLease[] = [];
    // Sorted so that which of two identities keeps a duplicated address does not depend on key order.
    for (const identity of Object.keys(initial).sort()) {
      const address = initial[identity]!;
      const why = !isU32(address)
        ? 'not-an-address'
        : address === this.#hub
          ? 'hub-address'
          : !this.#inPool(address)
            ? 'outside-pool'
            : this.#byAddress.has(address)
              ? 'duplicate'
              : undefined;
      if (why !== undefined) discarded.push({ identity, address, why });
      else this.#lease(identity, address);
    }
    (this as { discarded: readonly DiscardedLease[] }).discarded = Object.freeze(discarded);
  }

  /** The identity's sticky lease when it has one, else a new lease on the lowest free pool address, or `pool-exhausted`. */
  assign(identity: string): Assignment {
    const a = this.peek(identity);
    if (a.ok && !a.sticky) this.#lease(identity, a.address);
    return a;
  }

  /** What `assign` would answer, without leasing anything (admission asks this; the join applies it with `lease`); `elsewhere` names addresses taken outside this allocator (a cluster's other hubs), which it skips too. */
  peek(identity: string, elsewhere?: (address: number) => boolean): Assignment {
    const held = this.#byIdentity.get(identity);
    // A live session on the held address may be this identity's previous one: the route table decides.
    if (held !== undefined) return { ok: true, address: held, sticky: true };
    let a = this.#lowestMaybeFree;
    while (a <= this.#last && this.#taken(a)) a++;
    // Everything below `a` is taken: later scans start there (taken addresses stay taken until released).
    this.#lowestMaybeFree = Math.min(a, this.#last + 1);
    if (elsewhere !== undefined) while (a <= this.#last && (this.#taken(a) || elsewhere(a))) a++;
    if (a > this.#last) {
      return { ok: false, reason: 'pool-exhausted', detail: `no free address in ${this.#poolText()} (${this.#byIdentity.size} leased, ${this.#inUse.size} in use)` };
    }
    return { ok: true, address: a, sticky: false };
  }

  /** Leases `address` to `identity` (the address `peek` offered it). */
  lease(identity: string, address: number): void {
    if (this.#byIdentity.get(identity) === address) return;
    this.#lease(identity, address);
  }

  /** An independent copy (O(1): the tables are shared, persistent): changing one never changes the other. */
  clone(): AddressAllocator {
    return new AddressAllocator(this);
  }

  #copyFrom(o: AddressAllocator): void {
    (this as { discarded: readonly DiscardedLease[] }).discarded = o.discarded;
    this.#network = o.#network;
    this.#broadcast = o.#broadcast;
    this.#prefix = o.#prefix;
    this.#hub = o.#hub;
    this.#first = o.#first;
    this.#last = o.#last;
    this.#byIdentity = o.#byIdentity;
    this.#byAddress = o.#byAddress;
    this.#inUse = o.#inUse;
    this.#lowestMaybeFree = o.#lowestMaybeFree;
  }

  /** Whether a member asking for `address` with `-t` may have it: inside the subnet, not the hub's, not leased to another identity. Live conflicts are the route table's to judge. */
  claimStatic(identity: string | undefined, address: number): StaticClaim {
    const text = formatIpv4(address);
    const lan = `${formatIpv4(this.#network)}/${this.#prefix}`;
    if (!isU32(address) || !prefixHas({ address: this.#network, prefix: this.#prefix }, address)) {
      return { ok: false, reason: 'outside-subnet', detail: `${text} is outside the hub's network ${lan}` };
    }
    if (address === this.#network || address === this.#broadcast) {
      return { ok: false, reason: 'outside-subnet', detail: `${text} is the network or broadcast address of ${lan}` };
    }
    if (address === this.#hub) return { ok: false, reason: 'hub-address', detail: `${text} is the hub's own address` };
    const holder = this.#byAddress.get(address);
    if (holder !== undefined && holder !== identity) {
      return { ok: false, reason: 'leased-to-other', detail: `${text} is leased to another client` };
    }
    return { ok: true, address };
  }

  /** Records a live member on `address` (static or assigned): the pool skips it until the matching release. */
  markInUse(address: number): void {
    this.#inUse = this.#inUse.set(address, (this.#inUse.get(address) ?? 0) + 1);
  }

  /** Undoes one markInUse (extra releases are ignored); a lease on the address stays (sticky). */
  release(address: number): void {
    const n = this.#inUse.get(address);
    if (n === undefined) return;
    if (n > 1) {
      this.#inUse = this.#inUse.set(address, n - 1);
      return;
    }
    this.#inUse = this.#inUse.delete(address);
    if (!this.#taken(address) && this.#inPool(address) && address < this.#lowestMaybeFree) this.#lowestMaybeFree = address;
  }

  /** The identity's lease, or undefined. */
  leaseOf(identity: string): number | undefined {
    return this.#byIdentity.get(identity);
  }

  /** A frozen snapshot of the lease table, identities in sorted order (for the lease file and status). */
  leases(): LeaseTable {
    return Object.freeze(Object.fromEntries([...this.#byIdentity].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
  }

  #lease(identity: string, address: number): void {
    this.#byIdentity = this.#byIdentity.set(identity, address);
    this.#byAddress = this.#byAddress.set(address, identity);
  }

  #inPool(a: number): boolean {
    return a >= this.#first && a <= this.#last && a !== this.#network && a !== this.#broadcast;
  }

  #taken(a: number): boolean {
    return a === this.#hub || a === this.#network || a === this.#broadcast || this.#byAddress.has(a) || this.#inUse.has(a);
  }

  #poolText(): string {
    return `${formatIpv4(this.#first)}-${formatIpv4(this.#last)}`;
  }
}
