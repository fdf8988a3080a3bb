// A persistent map of bounded size that forgets its oldest entry first: for what a hub remembers of
// strangers (authentication penalties, replacement history), where untrusted clients choose the keys
// and the memory must stay bounded. Built on two PersistentMaps (key → entry, age → key), so an
// update costs O(log n) time and garbage and every older version stays valid and unchanged.
import { PersistentMap } from './persistentMap.js';

interface Entry<V> {
  readonly value: V;
  /** Position in the age order: larger is younger. */
  readonly age: number;
}

/** The largest age before renumbering by default (ages are number keys of a PersistentMap: unsigned 32-bit). */
const MAX_AGE = 0xffffffff;

/**
 * An immutable map of at most `limit` entries with the ReadonlyMap read interface, iterated oldest
 * first; `set` makes its key the youngest and, when the map is full, forgets the oldest entry;
 * `set`/`delete` cost O(log n) and return a new map (this one when nothing changed).
 */
export class AgedMap<K extends number | string, V> implements ReadonlyMap<K, V> {
  readonly #byKey: PersistentMap<K, Entry<V>>;
  readonly #byAge: PersistentMap<number, K>;
  /** The age the next `set` gets. */
  readonly #next: number;
  readonly limit: number;
  /** Ages above this are renumbered from 0 first. */
  readonly #maxAge: number;

  private constructor(limit: number, maxAge: number, byKey: PersistentMap<K, Entry<V>>, byAge: PersistentMap<number, K>, next: number) {
    this.limit = limit;
    this.#maxAge = maxAge;
    this.#byKey = byKey;
    this.#byAge = byAge;
    this.#next = next;
  }

  /** An empty map that keeps at most `limit` entries (a positive integer, else RangeError); ages are renumbered past `maxAge` (smaller only in tests). */
  static empty<K extends number | string, V>(limit: number, maxAge = MAX_AGE): AgedMap<K, V> {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`AgedMap limit ${limit} is not a positive integer`);
    if (!Number.isInteger(maxAge) || maxAge < limit || maxAge > MAX_AGE) throw new RangeError(`AgedMap maxAge ${maxAge} is not an integer from the limit to ${MAX_AGE}`);
    return new AgedMap<K, V>(limit, maxAge, PersistentMap.empty(), PersistentMap.empty(), 0);
  }

  get size(): number {
    return this.#byKey.size;
  }

  get(key: K): V | undefined {
    return this.#byKey.get(key)?.value;
  }

  has(key: K): boolean {
    return this.#byKey.has(key);
  }

  /** This map with `key → value` as its youngest entry, its oldest entry forgotten when it held `limit` others. */
  set(key: K, value: V): AgedMap<K, V> {
    let byKey = this.#byKey;
    let byAge = this.#byAge;
    let next = this.#next;
    if (next > this.#maxAge) {
      // Four billion updates later: number the entries 0.. again, in their order (O(n), that rarely).
      ({ byKey, byAge, next } = renumbered(byKey, byAge));
    }
    const old = byKey.get(key);
    if (old !== undefined) byAge = byAge.delete(old.age);
    else if (byKey.size >= this.limit) {
      const [oldestAge, oldestKey] = byAge.first()!;
      byAge = byAge.delete(oldestAge);
      byKey = byKey.delete(oldestKey);
    }
    return new AgedMap(this.limit, this.#maxAge, byKey.set(key, { value, age: next }), byAge.set(next, key), next + 1);
  }

  /** This map without `key` (this map itself when it has no such key). */
  delete(key: K): AgedMap<K, V> {
    const old = this.#byKey.get(key);
    if (old === undefined) return this;
    return new AgedMap(this.limit, this.#maxAge, this.#byKey.delete(key), this.#byAge.delete(old.age), this.#next);
  }

  forEach(callback: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    this.#byAge.forEach((key) => callback.call(thisArg, this.#byKey.get(key)!.value, key, this));
  }

  *keys(): Generator<K, undefined, unknown> {
    yield* this.#byAge.values();
    return undefined;
  }

  *values(): Generator<V, undefined, unknown> {
    for (const key of this.#byAge.values()) yield this.#byKey.get(key)!.value;
    return undefined;
  }

  *entries(): Generator<[K, V], undefined, unknown> {
    for (const key of this.#byAge.values()) yield [key, this.#byKey.get(key)!.value];
    return undefined;
  }

  [Symbol.iterator](): Generator<[K, V], undefined, unknown> {
    return this.entries();
  }
}

function renumbered<K extends number | string, V>(byKey: PersistentMap<K, Entry<V>>, byAge: PersistentMap<number, K>): { byKey: PersistentMap<K, Entry<V>>; byAge: PersistentMap<number, K>; next: number } {
  let keys = PersistentMap.empty<K, Entry<V>>();
  let ages = PersistentMap.empty<number, K>();
  let next = 0;
  byAge.forEach((key) => {
    keys = keys.set(key, { value: byKey.get(key)!.value, age: next });
    ages = ages.set(next, key);
    next++;
  });
  return { byKey: keys, byAge: ages, next };
}
