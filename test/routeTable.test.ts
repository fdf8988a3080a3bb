// RouteTable (operators/core/routeTable.ts): longest-prefix match, overlap refusals, removal.
import test from 'ava';
import { RouteTable } from '../operators/core/routeTable.js';
import { formatPrefix, normalizePrefix, parseIpv4, parsePrefix, type Ipv4Prefix } from '../operators/core/address.js';

interface Target {
  readonly name: string;
}
const A: Target = { name: 'A' };
const B: Target = { name: 'B' };
const HUB: Target = { name: 'hub' };

/** `a.b.c.d/n` text to an Ipv4Prefix (test input only). */
function cidr(text: string): Ipv4Prefix {
  const [address, prefix] = text.split('/');
  return { address: parseIpv4(address!)!, prefix: Number(prefix) };
}
const ip = (text: string): number => parseIpv4(text)!;

/** A hub's table: members by tunnel address, a LAN behind A, a narrower LAN behind B inside 172.16/12, a 0/0 default to the hub. */
function hubTable(): RouteTable<Target> {
  const t = new RouteTable<Target>();
  const ok = [
    t.add(cidr('0.0.0.0/0'), HUB, { fallback: true }),
    t.add(cidr('10.0.0.0/24'), HUB, { fallback: true }),
    t.add(cidr('10.0.0.1/32'), HUB),
    t.add(cidr('10.0.0.2/32'), A),
    t.add(cidr('10.0.0.3/32'), B),
    t.add(cidr('192.168.10.0/24'), A),
    t.add(cidr('172.16.0.0/12'), A),
    t.add(cidr('172.16.5.0/24'), A),
  ];
  if (!ok.every((r) => r.ok)) throw new Error('hubTable: a setup route was refused');
  return t;
}

const looksUp = test.macro({
  exec(t, address: string, expected: Target | undefined) {
    t.is(hubTable().lookup(ip(address)), expected);
  },
  title: (provided = '', address: string, expected: Target | undefined) => `lookup of ${address} gives ${expected?.name ?? 'nothing'}${provided ? ` (${provided})` : ''}`,
});

test('member /32', looksUp, '10.0.0.2', A);
test('the other member /32', looksUp, '10.0.0.3', B);
test('the hub /32', looksUp, '10.0.0.1', HUB);
test('an unassigned tunnel address falls to the tunnel subnet', looksUp, '10.0.0.77', HUB);
test('a LAN behind a member', looksUp, '192.168.10.200', A);
test('the longer of two prefixes of one target', looksUp, '172.16.5.9', A);
test('the shorter prefix outside the longer one', looksUp, '172.17.0.1', A);
test('anything else takes the 0/0 default', looksUp, '8.8.8.8', HUB);
test('the top of the address space (unsigned)', looksUp, '255.255.255.255', HUB);

test('the longest prefix wins over shorter ones of other targets', (t) => {
  const table = new RouteTable<Target>();
  t.true(table.add(cidr('10.0.0.0/8'), HUB, { fallback: true }).ok);
  t.true(table.add(cidr('10.1.0.0/16'), A).ok);
  t.true(table.add(cidr('10.1.2.3/32'), B, { fallback: true }).ok);
  t.is(table.lookup(ip('10.1.2.3')), B);
  t.is(table.lookup(ip('10.1.2.4')), A);
  t.is(table.lookup(ip('10.2.0.1')), HUB);
  t.is(table.lookup(ip('11.0.0.1')), undefined);
});

test('an empty table finds nothing', (t) => {
  const table = new RouteTable<Target>();
  t.is(table.lookup(0), undefined);
  t.is(table.lookup(0xffffffff), undefined);
  t.is(table.size, 0);
  t.deepEqual(table.entries(), []);
});

test('0/0 alone catches every address, including 0.0.0.0 and 255.255.255.255', (t) => {
  const table = new RouteTable<Target>();
  t.deepEqual(table.add(cidr('0.0.0.0/0'), HUB), { ok: true });
  for (const a of ['0.0.0.0', '1.2.3.4', '128.0.0.0', '255.255.255.255']) t.is(table.lookup(ip(a)), HUB, a);
});

test('a non-fallback 0/0 refuses every other target, and a fallback 0/0 refuses none', (t) => {
  const strict = new RouteTable<Target>();
  strict.add(cidr('0.0.0.0/0'), HUB);
  t.deepEqual(strict.add(cidr('192.168.10.0/24'), A), { ok: false, reason: 'overlap', with: cidr('0.0.0.0/0') });
  const loose = new RouteTable<Target>();
  loose.add(cidr('0.0.0.0/0'), HUB, { fallback: true });
  t.deepEqual(loose.add(cidr('192.168.10.0/24'), A), { ok: true });
});

const refuses = test.macro({
  exec(t, existing: string, added: string) {
    const table = new RouteTable<Target>();
    t.true(table.add(cidr(existing), A).ok);
    t.deepEqual(table.add(cidr(added), B), { ok: false, reason: 'overlap', with: cidr(existing) });
    t.deepEqual(
      table.entries().map((e) => e.prefix),
      [cidr(existing)],
      'the refused prefix was not installed',
    );
  },
  title: (provided = '', existing: string, added: string) => `${added} of another target is refused over ${existing}${provided ? ` (${provided})` : ''}`,
});

test('equal prefix', refuses, '192.168.10.0/24', '192.168.10.0/24');
test('inside an existing prefix', refuses, '192.168.0.0/16', '192.168.10.0/24');
test('containing an existing prefix', refuses, '192.168.10.0/24', '192.168.0.0/16');
test('a /32 inside', refuses, '192.168.10.0/24', '192.168.10.7/32');
test('containing a member /32', refuses, '10.0.0.2/32', '10.0.0.0/24');

test('the refusal names the clashing prefix of another target, not one of the same target', (t) => {
  const table = new RouteTable<Target>();
  table.add(cidr('192.168.0.0/16'), B);
  table.add(cidr('192.168.10.0/24'), B);
  table.add(cidr('10.0.0.0/8'), A);
  t.deepEqual(table.add(cidr('192.168.10.128/25'), A), { ok: false, reason: 'overlap', with: cidr('192.168.0.0/16') });
  t.true(table.add(cidr('10.9.0.0/16'), A).ok, 'nesting inside a prefix of the same target is allowed');
});

test('disjoint neighbours are accepted', (t) => {
  const table = new RouteTable<Target>();
  t.true(table.add(cidr('192.168.10.0/24'), A).ok);
  t.true(table.add(cidr('192.168.11.0/24'), B).ok);
  t.true(table.add(cidr('192.168.9.0/24'), B).ok);
  t.is(table.lookup(ip('192.168.10.255')), A);
  t.is(table.lookup(ip('192.168.11.0')), B);
  t.is(table.lookup(ip('192.168.9.1')), B);
});

test('re-adding the same prefix for the same target is idempotent', (t) => {
  const table = new RouteTable<Target>();
  t.deepEqual(table.add(cidr('192.168.10.0/24'), A), { ok: true });
  t.deepEqual(table.add(cidr('192.168.10.0/24'), A), { ok: true });
  t.deepEqual(table.add(cidr('192.168.10.99/24'), A), { ok: true }, 'host bits are ignored');
  t.is(table.size, 1);
  t.deepEqual(table.entries(), [{ prefix: cidr('192.168.10.0/24'), target: A, fallback: false }]);
});

test('a fallback prefix is still refused for another target at the exact same prefix', (t) => {
  const table = new RouteTable<Target>();
  table.add(cidr('10.0.0.0/24'), HUB, { fallback: true });
  t.deepEqual(table.add(cidr('10.0.0.0/24'), A), { ok: false, reason: 'overlap', with: cidr('10.0.0.0/24') });
  t.deepEqual(table.add(cidr('10.0.0.0/24'), A, { fallback: true }), { ok: false, reason: 'overlap', with: cidr('10.0.0.0/24') });
});

test('host bits are cleared on add, and entries report the network', (t) => {
  const table = new RouteTable<Target>();
  table.add(cidr('192.168.10.77/24'), A);
  t.is(table.lookup(ip('192.168.10.1')), A);
  t.deepEqual(table.entries(), [{ prefix: cidr('192.168.10.0/24'), target: A, fallback: false }]);
});

test('remove takes out exactly one prefix and the shorter ones take over', (t) => {
  const table = hubTable();
  t.is(table.remove(cidr('172.16.5.0/24')), A);
  t.is(table.lookup(ip('172.16.5.9')), A, 'the /12 of A still covers it');
  t.is(table.remove(cidr('10.0.0.2/32')), A);
  t.is(table.lookup(ip('10.0.0.2')), HUB, 'the tunnel subnet fallback');
  t.is(table.remove(cidr('10.0.0.2/32')), undefined, 'already gone');
  t.is(table.remove(cidr('10.0.0.0/25')), undefined, 'never there');
  t.is(table.remove(cidr('0.0.0.0/0')), HUB);
  t.is(table.lookup(ip('8.8.8.8')), undefined);
});

test('removing the last prefix of a length stops lookups probing that length', (t) => {
  const table = new RouteTable<Target>();
  table.add(cidr('10.0.0.0/8'), A);
  table.add(cidr('10.1.0.0/16'), A);
  table.remove(cidr('10.1.0.0/16'));
  t.is(table.lookup(ip('10.1.0.1')), A);
  t.deepEqual(
    table.entries().map((e) => formatPrefix(e.prefix)),
    ['10.0.0.0/8'],
  );
  t.true(table.add(cidr('10.1.0.0/16'), A).ok, 'and it can come back');
  t.is(table.size, 2);
});

test('removeTarget takes out every prefix of a member and frees them for others', (t) => {
  const table = hubTable();
  const removed = table.removeTarget(A);
  t.deepEqual(removed.map(formatPrefix), ['10.0.0.2/32', '172.16.5.0/24', '192.168.10.0/24', '172.16.0.0/12']);
  t.is(table.lookup(ip('192.168.10.1')), HUB);
  t.is(table.lookup(ip('10.0.0.3')), B);
  t.true(table.add(cidr('192.168.10.0/24'), B).ok, 'no longer an overlap');
  t.deepEqual(table.removeTarget(A), []);
});

test('entries lists longest prefix first, then by address, with the fallback flag', (t) => {
  t.deepEqual(
    hubTable()
      .entries()
      .map((e) => `${formatPrefix(e.prefix)} ${e.target.name}${e.fallback ? ' fallback' : ''}`),
    ['10.0.0.1/32 hub', '10.0.0.2/32 A', '10.0.0.3/32 B', '10.0.0.0/24 hub fallback', '172.16.5.0/24 A', '192.168.10.0/24 A', '172.16.0.0/12 A', '0.0.0.0/0 hub fallback'],
  );
});

test('entries is a snapshot: changing the table afterwards does not change it', (t) => {
  const table = hubTable();
  const before = table.entries();
  table.removeTarget(B);
  t.is(before.length, 8);
  t.is(table.entries().length, 7);
});

test('/32 member addresses stay a single Map lookup with hundreds of members and LANs', (t) => {
  const table = new RouteTable<Target>();
  const members: Target[] = [];
  for (let i = 0; i < 250; i++) {
    const m: Target = { name: `m${i}` };
    members.push(m);
    t.true(table.add({ address: ip('10.0.0.0') + i + 2, prefix: 32 }, m).ok);
    t.true(table.add({ address: ip('192.168.0.0') + i * 256, prefix: 24 }, m).ok);
  }
  table.add(cidr('0.0.0.0/0'), HUB, { fallback: true });
  for (let i = 0; i < 250; i++) {
    t.is(table.lookup(ip('10.0.0.0') + i + 2), members[i]);
    t.is(table.lookup(ip('192.168.0.0') + i * 256 + 9), members[i]);
  }
  // The per-length Maps are probed through Map.prototype.get; count the probes of one /32 hit.
  const get = Map.prototype.get;
  let probes = 0;
  Map.prototype.get = function (this: Map<unknown, unknown>, k: unknown) {
    probes++;
    return get.call(this, k);
  };
  try {
    table.lookup(ip('10.0.0.77'));
  } finally {
    Map.prototype.get = get;
  }
  t.is(probes, 2, 'one get for the length, one for the network');
});

test('a bad prefix length is a RangeError', (t) => {
  const table = new RouteTable<Target>();
  for (const prefix of [-1, 33, 8.5, Number.NaN]) {
    t.throws(() => table.add({ address: 0, prefix }, A), { instanceOf: RangeError }, String(prefix));
    t.throws(() => normalizePrefix({ address: 0, prefix }), { instanceOf: RangeError });
  }
});

test('normalizePrefix clears host bits and keeps addresses unsigned', (t) => {
  t.deepEqual(normalizePrefix(cidr('200.1.2.3/8')), cidr('200.0.0.0/8'));
  t.deepEqual(normalizePrefix(cidr('200.1.2.3/32')), { address: 0xc8010203, prefix: 32 });
  t.deepEqual(normalizePrefix(cidr('200.1.2.3/0')), { address: 0, prefix: 0 });
});

test('parsePrefix reads a.b.c.d/n as written and refuses anything else', (t) => {
  t.deepEqual(parsePrefix('192.168.77.0/24'), { address: 0xc0a84d00, prefix: 24 });
  t.deepEqual(parsePrefix('192.168.77.9/24'), { address: 0xc0a84d09, prefix: 24 }, 'host bits are kept for the caller to judge');
  t.deepEqual(parsePrefix('0.0.0.0/0'), { address: 0, prefix: 0 });
  for (const bad of ['192.168.77.0', '192.168.77.0/33', '192.168.77.0/', '192.168.77.0/2x', '192.168.300.0/24', '/24', '192.168.77.0/-1']) {
    t.is(parsePrefix(bad), undefined, bad);
  }
});
