// PersistentMap (operators/core/persistentMap.ts) and AgedMap (operators/core/agedMap.ts): tables of
// updates and the map they lead to, checked against Node's Map as the model; every older version is
// checked again after later updates (structural sharing must never change a version).
import test from 'ava';
import { AgedMap } from '../operators/core/agedMap.js';
import { PersistentMap } from '../operators/core/persistentMap.js';
import { parseIpv4 } from '../operators/core/address.js';
import { xorshift32 } from './helpers/random.js';

type Op<K> = readonly ['set', K, string] | readonly ['delete', K];

function apply<K extends number | string>(m: PersistentMap<K, string>, ops: readonly Op<K>[]): PersistentMap<K, string> {
  for (const op of ops) m = op[0] === 'set' ? m.set(op[1], op[2]) : m.delete(op[1]);
  return m;
}

/** Everything a reader can see of a map, through each read method. */
function view<K extends number | string, V>(m: ReadonlyMap<K, V>): { size: number; entries: [K, V][]; keys: K[]; values: V[]; forEach: [K, V][] } {
  const forEach: [K, V][] = [];
  m.forEach((v, k, self) => {
    if (self !== m) throw new Error('forEach passed another map');
    forEach.push([k, v]);
  });
  return { size: m.size, entries: [...m], keys: [...m.keys()], values: [...m.values()], forEach };
}

const ascending = <V>(model: Map<number, V>): [number, V][] => [...model].sort(([a], [b]) => a - b);

const ip = (text: string): number => parseIpv4(text)!;

const updates = test.macro({
  exec(t, ops: readonly Op<number>[], expected: readonly (readonly [number, string])[]) {
    const m = apply(PersistentMap.empty<number, string>(), ops);
    t.deepEqual(view(m), { size: expected.length, entries: expected.map(([k, v]) => [k, v]), keys: expected.map(([k]) => k), values: expected.map(([, v]) => v), forEach: expected.map(([k, v]) => [k, v]) });
    for (const [k, v] of expected) {
      t.is(m.get(k), v);
      t.true(m.has(k));
    }
  },
  title: (given) => `updates: ${given ?? ''}`,
});

test('nothing', updates, [], []);
test('one key', updates, [['set', 7, 'a']], [[7, 'a']]);
test('a key set twice keeps the last value', updates, [['set', 7, 'a'], ['set', 7, 'b']], [[7, 'b']]);
test('number keys iterate ascending, whatever the order they came in', updates, [['set', 300, 'c'], ['set', 2, 'a'], ['set', 0xffffffff, 'd'], ['set', 40, 'b']], [[2, 'a'], [40, 'b'], [300, 'c'], [0xffffffff, 'd']]);
test('addresses of one /16 iterate ascending', updates, [['set', ip('10.0.3.1'), 'c'], ['set', ip('10.0.0.2'), 'a'], ['set', ip('10.0.1.200'), 'b']], [[ip('10.0.0.2'), 'a'], [ip('10.0.1.200'), 'b'], [ip('10.0.3.1'), 'c']]);
test('a deleted key is gone, the others stay', updates, [['set', 1, 'a'], ['set', 2, 'b'], ['set', 3, 'c'], ['delete', 2]], [[1, 'a'], [3, 'c']]);
test('deleting an absent key changes nothing', updates, [['set', 1, 'a'], ['delete', 9], ['delete', 1 + 32]], [[1, 'a']]);
test('deleting every key leaves the empty map', updates, [['set', 1, 'a'], ['set', 1 << 20, 'b'], ['delete', 1], ['delete', 1 << 20]], []);
test('keys with the top bit set and keys without', updates, [['set', 0x80000000, 'b'], ['set', 0x7fffffff, 'a'], ['set', 0xc0000001, 'c']], [[0x7fffffff, 'a'], [0x80000000, 'b'], [0xc0000001, 'c']]);
test(
  'a key outside the shared prefix of the keys so far goes above them, in order',
  updates,
  [['set', ip('10.0.0.2'), 'b'], ['set', ip('10.0.0.3'), 'c'], ['set', ip('11.0.0.1'), 'd'], ['set', ip('9.0.0.1'), 'a'], ['set', ip('10.0.0.66'), 'c2']],
  [[ip('9.0.0.1'), 'a'], [ip('10.0.0.2'), 'b'], [ip('10.0.0.3'), 'c'], [ip('10.0.0.66'), 'c2'], [ip('11.0.0.1'), 'd']],
);
test('a branch that loses all but one child gives way to it', updates, [['set', 1, 'a'], ['set', 2, 'b'], ['set', 1 << 30, 'c'], ['delete', 1 << 30], ['set', 3, 'd'], ['delete', 1], ['set', 0, 'e']], [[0, 'e'], [2, 'b'], [3, 'd']]);
test(
  'numbers with one unsigned 32-bit value share a bucket and stay apart',
  updates,
  [['set', 5, 'a'], ['set', 5 + 2 ** 32, 'b'], ['set', 5 - 2 ** 32, 'c'], ['set', 6, 'd'], ['delete', 5 + 2 ** 32], ['set', 5, 'e']],
  [[5, 'e'], [5 - 2 ** 32, 'c'], [6, 'd']],
);

test('get of an absent key is undefined, also between present ones and in a missing subtree', (t) => {
  const m = apply(PersistentMap.empty<number, string>(), [['set', ip('10.0.0.2'), 'a'], ['set', ip('10.0.0.3'), 'b'], ['set', ip('10.0.5.3'), 'c']]);
  for (const k of [ip('10.0.0.4'), ip('10.0.5.2'), ip('11.0.0.2'), ip('10.1.0.2'), 0, 0xffffffff, ip('10.0.0.3') + 2 ** 32]) {
    t.is(m.get(k), undefined);
    t.false(m.has(k));
  }
});

test('an update that changes nothing returns the same map; the empty map is one instance', (t) => {
  const value = 'a';
  const m = PersistentMap.empty<number, string>().set(1, value).set(2, 'b');
  t.is(m.set(1, value), m);
  t.is(m.delete(3), m);
  t.not(m.set(1, 'other'), m);
  t.is(m.delete(1).delete(2), PersistentMap.empty<number, string>());
  t.is(PersistentMap.empty<number, string>().delete(1), PersistentMap.empty<number, string>());
});

test('first is the smallest number key, undefined when empty', (t) => {
  t.is(PersistentMap.empty<number, string>().first(), undefined);
  const m = PersistentMap.of<number, string>([[900, 'c'], [17, 'a'], [0x90000000, 'd'], [64, 'b']]);
  t.deepEqual(m.first(), [17, 'a']);
  t.deepEqual(m.delete(17).first(), [64, 'b']);
});

test('100,000 random u32 keys: every get, the size, ascending iteration, then deletion down to empty', (t) => {
  const next = xorshift32(0x9e3779b9);
  const model = new Map<number, string>();
  let m = PersistentMap.empty<number, string>();
  for (let i = 0; i < 100_000; i++) {
    const k = next();
    model.set(k, `v${i}`);
    m = m.set(k, `v${i}`);
  }
  t.is(m.size, model.size);
  let wrong = 0;
  for (const [k, v] of model) if (m.get(k) !== v) wrong++;
  t.is(wrong, 0, 'gets that did not find their value');
  t.is(JSON.stringify([...m]), JSON.stringify(ascending(model)), 'iteration is ascending and complete');
  const keys = [...model.keys()];
  for (let i = keys.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [keys[i], keys[j]] = [keys[j]!, keys[i]!];
  }
  for (let i = 0; i < keys.length; i++) {
    m = m.delete(keys[i]!);
    if (i % 9973 === 0) {
      t.is(m.size, keys.length - i - 1);
      t.is(m.get(keys[i]!), undefined);
      if (i + 1 < keys.length) t.is(m.get(keys[i + 1]!), model.get(keys[i + 1]!));
    }
  }
  t.is(m.size, 0);
  t.deepEqual([...m], []);
  t.is(m, PersistentMap.empty<number, string>());
});

test('every older version reads the same after any number of later updates', (t) => {
  const next = xorshift32(12345);
  const versions: { map: PersistentMap<number, string>; model: Map<number, string> }[] = [];
  let m = PersistentMap.empty<number, string>();
  const model = new Map<number, string>();
  for (let i = 0; i < 3000; i++) {
    // Keys of one /22 and a few far away: deep and shallow branches, splits and collapses.
    const k = next() % 8 === 0 ? next() : ip('10.0.0.0') + (next() % 1024);
    if (next() % 3 === 0) {
      m = m.delete(k);
      model.delete(k);
    } else {
      m = m.set(k, `v${i}`);
      model.set(k, `v${i}`);
    }
    if (i % 10 === 0) versions.push({ map: m, model: new Map(model) });
  }
  let wrong = 0;
  for (const v of versions) {
    const expected = ascending(v.model);
    const seen = [...v.map];
    if (v.map.size !== expected.length || JSON.stringify(seen) !== JSON.stringify(expected)) wrong++;
    for (const [k, value] of expected) if (v.map.get(k) !== value) wrong++;
  }
  t.is(wrong, 0, 'versions that changed');
});

/** Pairs of distinct strings with one 32-bit hash, found by search over `id:HEX` lease identities. */
function collidingIds(pairs: number): [string, string][] {
  const seen = new Map<number, string>();
  const out: [string, string][] = [];
  for (let i = 0; out.length < pairs; i++) {
    const id = `id:${i.toString(16).padStart(8, '0')}`;
    const h = PersistentMap.hash(id);
    const other = seen.get(h);
    if (other !== undefined) out.push([other, id]);
    else seen.set(h, id);
  }
  return out;
}

test('string keys with one hash share a bucket: each keeps its value, and deleting one leaves the other', (t) => {
  const pairs = collidingIds(3);
  for (const [a, b] of pairs) t.is(PersistentMap.hash(a), PersistentMap.hash(b));
  let m = PersistentMap.empty<string, number>();
  pairs.forEach(([a, b], i) => {
    m = m.set(a, 2 * i).set(b, 2 * i + 1);
  });
  m = m.set('token:alice', 100);
  t.is(m.size, 7);
  pairs.forEach(([a, b], i) => {
    t.is(m.get(a), 2 * i);
    t.is(m.get(b), 2 * i + 1);
  });
  const [a0, b0] = pairs[0]!;
  const without = m.delete(a0);
  t.is(without.size, 6);
  t.is(without.get(a0), undefined);
  t.is(without.get(b0), 1);
  t.is(m.get(a0), 0, 'the older version still has it');
  // Setting the second key of a bucket to the first key's value is a change.
  const [a1, b1] = pairs[1]!;
  const same = m.set(b1, m.get(a1)!);
  t.not(same, m);
  t.is(same.get(b1), 2);
  t.is(same.get(a1), 2);
  t.true(m.has(b1));
  const changed = without.set(b0, 42);
  t.is(changed.get(b0), 42);
  t.is(without.get(b0), 1);
  t.deepEqual([...without.delete(b0).keys()].sort(), [...pairs.slice(1).flat(), 'token:alice'].sort());
  t.deepEqual([...m.keys()].sort(), [...pairs.flat(), 'token:alice'].sort());
});

test('string keys: many identities, every get and deletion to empty', (t) => {
  const model = new Map<string, number>();
  let m = PersistentMap.empty<string, number>();
  for (let i = 0; i < 20_000; i++) {
    const k = `id:${(i * 2654435761) >>> 0}`;
    model.set(k, i);
    m = m.set(k, i);
  }
  t.is(m.size, model.size);
  let wrong = 0;
  for (const [k, v] of model) if (m.get(k) !== v) wrong++;
  const seen = [...m];
  t.is(seen.length, model.size);
  for (const [k, v] of seen) if (model.get(k) !== v) wrong++;
  t.is(wrong, 0, 'entries that differ from the model');
  for (const k of model.keys()) m = m.delete(k);
  t.is(m.size, 0);
  t.deepEqual([...m.keys()], []);
});

// AgedMap

function aged(limit: number, ops: readonly Op<string>[], maxAge?: number): AgedMap<string, string> {
  let m = AgedMap.empty<string, string>(limit, maxAge);
  for (const op of ops) m = op[0] === 'set' ? m.set(op[1], op[2]) : m.delete(op[1]);
  return m;
}

const ages = test.macro({
  exec(t, limit: number, ops: readonly Op<string>[], expected: readonly (readonly [string, string])[]) {
    const m = aged(limit, ops);
    t.deepEqual(view(m), { size: expected.length, entries: expected.map(([k, v]) => [k, v]), keys: expected.map(([k]) => k), values: expected.map(([, v]) => v), forEach: expected.map(([k, v]) => [k, v]) });
    for (const [k, v] of expected) t.is(m.get(k), v);
  },
  title: (given) => `aged map: ${given ?? ''}`,
});

test('entries iterate oldest first', ages, 4, [['set', 'c', '1'], ['set', 'a', '2'], ['set', 'b', '3']], [['c', '1'], ['a', '2'], ['b', '3']]);
test('setting a key again makes it the youngest', ages, 4, [['set', 'c', '1'], ['set', 'a', '2'], ['set', 'c', '3']], [['a', '2'], ['c', '3']]);
test('a full map forgets its oldest entry', ages, 2, [['set', 'a', '1'], ['set', 'b', '2'], ['set', 'c', '3']], [['b', '2'], ['c', '3']]);
test('a full map keeps everything when a key it holds is set again', ages, 2, [['set', 'a', '1'], ['set', 'b', '2'], ['set', 'a', '3']], [['b', '2'], ['a', '3']]);
test('a refreshed key is not the oldest any more', ages, 2, [['set', 'a', '1'], ['set', 'b', '2'], ['set', 'a', '3'], ['set', 'c', '4']], [['a', '3'], ['c', '4']]);
test('deleting frees room: nothing is forgotten', ages, 2, [['set', 'a', '1'], ['set', 'b', '2'], ['delete', 'a'], ['set', 'c', '3']], [['b', '2'], ['c', '3']]);
test('deleting an absent key changes nothing', ages, 2, [['set', 'a', '1'], ['delete', 'z']], [['a', '1']]);

test('aged map: ages renumbered past maxAge keep the order, and older versions read the same', (t) => {
  const versions: { map: AgedMap<string, string>; expected: [string, string][] }[] = [];
  let m = AgedMap.empty<string, string>(3, 5);
  const model = new Map<string, string>();
  const keys = ['a', 'b', 'c', 'd'];
  for (let i = 0; i < 40; i++) {
    const k = keys[(i * 7) % keys.length]!;
    m = m.set(k, `v${i}`);
    model.delete(k);
    if (model.size >= 3) model.delete(model.keys().next().value!);
    model.set(k, `v${i}`);
    versions.push({ map: m, expected: [...model] });
  }
  for (const v of versions) t.deepEqual([...v.map], v.expected);
});

test('aged map: a delete and a no-op return what they should; bad limits are refused', (t) => {
  const m = aged(3, [['set', 'a', '1']]);
  t.is(m.delete('z'), m);
  t.is(m.delete('a').size, 0);
  t.is(m.size, 1);
  t.throws(() => AgedMap.empty(0), { instanceOf: RangeError });
  t.throws(() => AgedMap.empty(4, 3), { instanceOf: RangeError });
});
