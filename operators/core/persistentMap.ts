// A persistent (immutable, structurally shared) map: `set` and `delete` return a new map that shares
// every untouched node with the old one, so an update costs O(depth) time and garbage and every
// older version stays valid and unchanged. Pure data structure, no time, no I/O.
//
// Shape: a compressed 32-ary trie over a 32-bit hash, most significant bits first. A number key is
// its own hash (key >>> 0); a string key is hashed (hashString below). A branch node covers one
// 5-bit chunk of the hash (the top chunk has 2 bits) and exists only where the hashes below it
// differ within that chunk: a chain of single-child levels is never built, so u32 addresses that
// share their top 16 bits (one /16) start branching at the chunk where they differ. Children are
// packed by a 32-bit bitmap (popcount indexing). Depth is at most 7 branches, in practice 2 or 3
// (1000 addresses of one /16: 2). Keys whose 32-bit hashes are equal share a bucket (a small array).
//
// Cost of a hash collision flood: string keys chosen by untrusted clients (a lease identity
// `id:HEX`) can be made to share one 32-bit hash (the hash is not keyed). Every key of such a bucket
// costs one string comparison per lookup, and an update copies the bucket, so b colliding keys cost
// O(b) per operation and O(b²) to build. b is bounded by what the map holds: the allocator's leases
// by the pool (one address per lease, and a lease needs a join), the penalties and replacement
// history by their caps (4096). Number keys never collide.

/** A key: a number (compared with ===, hashed as key >>> 0; NaN is never found) or a string. */
type Key = number | string;

class Leaf<K, V> {
  constructor(
    readonly hash: number,
    readonly key: K,
    readonly value: V,
  ) {}
}

/** Keys with one hash (two or more). */
class Bucket<K, V> {
  constructor(
    readonly hash: number,
    readonly keys: readonly K[],
    readonly values: readonly V[],
  ) {}
}

/** Children where the hashes below differ within the 5-bit chunk at `shift` (at least two). */
class Branch<K, V> {
  constructor(
    /** 30 for the top chunk (2 bits), then 25, 20, 15, 10, 5, 0. */
    readonly shift: number,
    /** Bit i set: a child for chunk value i; children are in chunk order. */
    readonly bitmap: number,
    readonly children: readonly TrieNode<K, V>[],
    /** The hash of some key below: every key below shares its bits above this chunk. */
    readonly hash: number,
  ) {}
}

type TrieNode<K, V> = Leaf<K, V> | Bucket<K, V> | Branch<K, V>;

const ABSENT: unique symbol = Symbol('absent');

/** A 32-bit hash of a string (unsigned): a multiply-xorshift mix per UTF-16 unit and a final avalanche. */
function hashString(s: string): number {
  let h = 0x811c9dc5 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    h = Math.imul(h ^ s.charCodeAt(i), 0x5bd1e995);
    h ^= h >>> 15;
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function hashOf(key: Key): number {
  return typeof key === 'number' ? key >>> 0 : hashString(key);
}

function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** The shift of the chunk holding bit `b` (0 = least significant). */
function chunkShift(b: number): number {
  return b >= 30 ? 30 : b - (b % 5);
}

/** A branch over two nodes whose hashes differ. */
function fork<K, V>(a: TrieNode<K, V>, ha: number, b: TrieNode<K, V>, hb: number): Branch<K, V> {
  const shift = chunkShift(31 - Math.clz32(ha ^ hb));
  const ia = (ha >>> shift) & 31;
  const ib = (hb >>> shift) & 31;
  return new Branch(shift, (1 << ia) | (1 << ib), ia < ib ? [a, b] : [b, a], ha);
}

function lookup<K, V>(root: TrieNode<K, V> | undefined, h: number, key: K): V | typeof ABSENT {
  let node = root;
  while (node !== undefined) {
    if (node instanceof Branch) {
      const bit = 1 << ((h >>> node.shift) & 31);
      if ((node.bitmap & bit) === 0) return ABSENT;
      node = node.children[popcount(node.bitmap & (bit - 1))];
    } else if (node instanceof Leaf) {
      return node.key === key ? node.value : ABSENT;
    } else {
      if (node.hash !== h) return ABSENT;
      const i = node.keys.indexOf(key);
      return i < 0 ? ABSENT : node.values[i]!;
    }
  }
  return ABSENT;
}

function insert<K, V>(node: TrieNode<K, V> | undefined, h: number, key: K, value: V): TrieNode<K, V> {
  if (node === undefined) return new Leaf(h, key, value);
  if (node instanceof Branch) {
    // A hash that leaves this branch's shared prefix gets a new branch above it.
    const above = node.shift === 30 ? 0 : (h ^ node.hash) >>> (node.shift + 5);
    if (above !== 0) return fork(node, node.hash, new Leaf(h, key, value), h);
    const bit = 1 << ((h >>> node.shift) & 31);
    const pos = popcount(node.bitmap & (bit - 1));
    const children = node.children.slice();
    if ((node.bitmap & bit) === 0) {
      children.splice(pos, 0, new Leaf(h, key, value));
      return new Branch(node.shift, node.bitmap | bit, children, node.hash);
    }
    children[pos] = insert(node.children[pos], h, key, value);
    return new Branch(node.shift, node.bitmap, children, node.hash);
  }
  if (node.hash !== h) return fork(node, node.hash, new Leaf(h, key, value), h);
  if (node instanceof Leaf) return node.key === key ? new Leaf(h, key, value) : new Bucket(h, [node.key, key], [node.value, value]);
  const i = node.keys.indexOf(key);
  if (i < 0) return new Bucket(h, [...node.keys, key], [...node.values, value]);
  const values = node.values.slice();
  values[i] = value;
  return new Bucket(h, node.keys, values);
}

/** `node` without `key` (the same node when it has no such key; undefined when nothing is left). */
function remove<K, V>(node: TrieNode<K, V>, h: number, key: K): TrieNode<K, V> | undefined {
  if (node instanceof Branch) {
    const bit = 1 << ((h >>> node.shift) & 31);
    if ((node.bitmap & bit) === 0) return node;
    const pos = popcount(node.bitmap & (bit - 1));
    const child = node.children[pos]!;
    const next = remove(child, h, key);
    if (next === child) return node;
    if (next === undefined) {
      // A branch keeps two children at least: the last one takes its place.
      if (node.children.length === 2) return node.children[1 - pos];
      const children = node.children.slice();
      children.splice(pos, 1);
      return new Branch(node.shift, node.bitmap & ~bit, children, node.hash);
    }
    const children = node.children.slice();
    children[pos] = next;
    return new Branch(node.shift, node.bitmap, children, node.hash);
  }
  if (node instanceof Leaf) return node.key === key ? undefined : node;
  if (node.hash !== h) return node;
  const i = node.keys.indexOf(key);
  if (i < 0) return node;
  if (node.keys.length === 2) return new Leaf(h, node.keys[1 - i]!, node.values[1 - i]!);
  return new Bucket(
    h,
    node.keys.filter((_, j) => j !== i),
    node.values.filter((_, j) => j !== i),
  );
}

function each<K, V>(node: TrieNode<K, V>, f: (value: V, key: K) => void): void {
  if (node instanceof Branch) {
    for (let i = 0; i < node.children.length; i++) each(node.children[i]!, f);
  } else if (node instanceof Leaf) {
    f(node.value, node.key);
  } else {
    for (let i = 0; i < node.keys.length; i++) f(node.values[i]!, node.keys[i]!);
  }
}

/** Every entry below `root` in order, as `pick` makes it: one generator and a stack of at most 8 levels. */
function* walk<K, V, T>(root: TrieNode<K, V> | undefined, pick: (key: K, value: V) => T): Generator<T, undefined, unknown> {
  if (root === undefined) return undefined;
  const nodes: TrieNode<K, V>[] = [root];
  const next: number[] = [0];
  while (nodes.length > 0) {
    const top = nodes.length - 1;
    const node = nodes[top]!;
    if (node instanceof Branch) {
      const i = next[top]!;
      if (i === node.children.length) {
        nodes.pop();
        next.pop();
      } else {
        next[top] = i + 1;
        nodes.push(node.children[i]!);
        next.push(0);
      }
      continue;
    }
    nodes.pop();
    next.pop();
    if (node instanceof Leaf) yield pick(node.key, node.value);
    else for (let i = 0; i < node.keys.length; i++) yield pick(node.keys[i]!, node.values[i]!);
  }
  return undefined;
}

/**
 * An immutable map with the ReadonlyMap read interface; `set`/`delete` return a new map (this one
 * when nothing changed) in O(depth) time and garbage. Iteration order: number keys ascending (as
 * unsigned 32-bit), string keys in an order fixed by their hashes. `get` walks a few arrays and allocates nothing.
 */
export class PersistentMap<K extends Key, V> implements ReadonlyMap<K, V> {
  static readonly #EMPTY = new PersistentMap<never, never>(undefined, 0);

  readonly #root: TrieNode<K, V> | undefined;
  readonly size: number;

  private constructor(root: TrieNode<K, V> | undefined, size: number) {
    this.#root = root;
    this.size = size;
  }

  /** The empty map (one shared instance). */
  static empty<K extends Key, V>(): PersistentMap<K, V> {
    return PersistentMap.#EMPTY as PersistentMap<K, V>;
  }

  /** The unsigned 32-bit hash the map files `key` under (keys with equal hashes share a bucket). */
  static hash(key: Key): number {
    return hashOf(key);
  }

  /** A map of `entries` (later entries of one key win). */
  static of<K extends Key, V>(entries: Iterable<readonly [K, V]>): PersistentMap<K, V> {
    let m = PersistentMap.empty<K, V>();
    for (const [k, v] of entries) m = m.set(k, v);
    return m;
  }

  get(key: K): V | undefined {
    // The packet path's lookup: inlined walk, no allocation.
    let node = this.#root;
    const h = typeof key === 'number' ? key >>> 0 : hashString(key);
    while (node !== undefined) {
      if (node instanceof Branch) {
        const bit = 1 << ((h >>> node.shift) & 31);
        if ((node.bitmap & bit) === 0) return undefined;
        node = node.children[popcount(node.bitmap & (bit - 1))];
      } else if (node instanceof Leaf) {
        return node.key === key ? node.value : undefined;
      } else {
        if (node.hash !== h) return undefined;
        const i = node.keys.indexOf(key);
        return i < 0 ? undefined : node.values[i];
      }
    }
    return undefined;
  }

  has(key: K): boolean {
    return lookup(this.#root, hashOf(key), key) !== ABSENT;
  }

  /** This map with `key → value` (this map itself when `key` already maps to `value`). */
  set(key: K, value: V): PersistentMap<K, V> {
    const h = hashOf(key);
    const old = lookup(this.#root, h, key);
    if (old === value) return this;
    return new PersistentMap(insert(this.#root, h, key, value), old === ABSENT ? this.size + 1 : this.size);
  }

  /** This map without `key` (this map itself when it has no such key). */
  delete(key: K): PersistentMap<K, V> {
    if (this.#root === undefined) return this;
    const root = remove(this.#root, hashOf(key), key);
    if (root === this.#root) return this;
    return root === undefined ? PersistentMap.empty() : new PersistentMap(root, this.size - 1);
  }

  /** The first entry in iteration order (for number keys: the smallest key), or undefined when empty; O(depth). */
  first(): readonly [K, V] | undefined {
    let node = this.#root;
    while (node instanceof Branch) node = node.children[0]!;
    if (node === undefined) return undefined;
    return node instanceof Leaf ? [node.key, node.value] : [node.keys[0]!, node.values[0]!];
  }

  forEach(callback: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    if (this.#root === undefined) return;
    each(this.#root, thisArg === undefined && callback.length < 3 ? (callback as (value: V, key: K) => void) : (v, k) => callback.call(thisArg, v, k, this));
  }

  keys(): Generator<K, undefined, unknown> {
    return walk(this.#root, (k) => k);
  }

  values(): Generator<V, undefined, unknown> {
    return walk(this.#root, (_, v) => v);
  }

  entries(): Generator<[K, V], undefined, unknown> {
    return walk(this.#root, (k, v): [K, V] => [k, v]);
  }

  [Symbol.iterator](): Generator<[K, V], undefined, unknown> {
    return this.entries();
  }
}
