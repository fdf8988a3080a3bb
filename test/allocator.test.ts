// AddressAllocator (pipelines/allocator.ts): lowest free address, sticky leases, static checks.
import test from 'ava';
import { AddressAllocator, AllocatorConfigError, allocatorOptionsProblem, type AllocatorOptions, type LeaseTable } from '../pipelines/allocator.js';
import { formatIpv4, parseIpv4 } from '../operators/core/address.js';

const ip = (s: string): number => parseIpv4(s)!;
const lan24: AllocatorOptions = { network: ip('10.0.0.0'), prefix: 24, hub: ip('10.0.0.1') };

/** Steps run in order on one allocator; each yields the address (dotted) or the failure reason. */
type Step = readonly ['assign', string] | readonly ['static', string | undefined, string] | readonly ['inUse' | 'release', string];

function run(a: AddressAllocator, steps: readonly Step[]): string[] {
  return steps.map((s) => {
    switch (s[0]) {
      case 'assign': {
        const r = a.assign(s[1]);
        return r.ok ? `${formatIpv4(r.address)}${r.sticky ? ' sticky' : ''}` : r.reason;
      }
      case 'static': {
        const r = a.claimStatic(s[1], ip(s[2]));
        return r.ok ? `ok ${formatIpv4(r.address)}` : r.reason;
      }
      case 'inUse':
        a.markInUse(ip(s[1]));
        return '-';
      case 'release':
        a.release(ip(s[1]));
        return '-';
    }
  });
}

const allocates = test.macro({
  exec(t, options: AllocatorOptions, initial: Record<string, string>, steps: readonly Step[], expected: string[]) {
    const table: LeaseTable = Object.fromEntries(Object.entries(initial).map(([k, v]) => [k, ip(v)]));
    const a = new AddressAllocator(options, table);
    t.deepEqual(run(a, steps), expected);
  },
  title: (provided = '') => provided,
});

test('hands out the lowest free address, skipping the network and the hub', allocates, lan24, {}, [['assign', 'a'], ['assign', 'b']], ['10.0.0.2', '10.0.0.3']);
test('skips a hub that sits in the middle of the pool', allocates, { ...lan24, hub: ip('10.0.0.3') }, {}, [['assign', 'a'], ['assign', 'b'], ['assign', 'c']], ['10.0.0.1', '10.0.0.2', '10.0.0.4']);
test('never hands out the broadcast address', allocates, { ...lan24, pool: { first: ip('10.0.0.253'), last: ip('10.0.0.255') } }, {}, [['assign', 'a'], ['assign', 'b'], ['assign', 'c']], ['10.0.0.253', '10.0.0.254', 'pool-exhausted']);
test('never hands out the network address even when the pool starts there', allocates, { ...lan24, hub: ip('10.0.0.254'), pool: { first: ip('10.0.0.0'), last: ip('10.0.0.1') } }, {}, [['assign', 'a'], ['assign', 'b']], ['10.0.0.1', 'pool-exhausted']);
test('skips addresses leased in the initial table', allocates, lan24, { old: '10.0.0.2', older: '10.0.0.4' }, [['assign', 'a'], ['assign', 'b']], ['10.0.0.3', '10.0.0.5']);
test('skips an address in use by a static member and reuses it once released', allocates, lan24, {}, [['inUse', '10.0.0.2'], ['assign', 'a'], ['release', '10.0.0.2'], ['assign', 'b'], ['assign', 'c']], ['-', '10.0.0.3', '-', '10.0.0.2', '10.0.0.4']);
test('keeps a lease sticky across release', allocates, lan24, {}, [['assign', 'a'], ['inUse', '10.0.0.2'], ['release', '10.0.0.2'], ['assign', 'b'], ['assign', 'a']], ['10.0.0.2', '-', '-', '10.0.0.3', '10.0.0.2 sticky']);
test('keeps a lease of the initial table sticky', allocates, lan24, { a: '10.0.0.9' }, [['assign', 'b'], ['assign', 'a']], ['10.0.0.2', '10.0.0.9 sticky']);
test('gives an identity its lease again even while the address is marked in use', allocates, lan24, {}, [['assign', 'a'], ['inUse', '10.0.0.2'], ['assign', 'a']], ['10.0.0.2', '-', '10.0.0.2 sticky']);
test('a replaced session releasing late does not free its successor', allocates, lan24, {}, [['inUse', '10.0.0.2'], ['inUse', '10.0.0.2'], ['release', '10.0.0.2'], ['assign', 'a'], ['release', '10.0.0.2'], ['assign', 'b']], ['-', '-', '-', '10.0.0.3', '-', '10.0.0.2']);
test('an extra release is ignored', allocates, lan24, {}, [['release', '10.0.0.2'], ['inUse', '10.0.0.2'], ['release', '10.0.0.2'], ['release', '10.0.0.2'], ['assign', 'a']], ['-', '-', '-', '-', '10.0.0.2']);
test('a /30 has room for one member besides the hub', allocates, { network: ip('10.9.0.0'), prefix: 30, hub: ip('10.9.0.1') }, {}, [['assign', 'a'], ['assign', 'b'], ['assign', 'a']], ['10.9.0.2', 'pool-exhausted', '10.9.0.2 sticky']);
test('a /30 whose one address is in use by a static member is exhausted until it is released', allocates, { network: ip('10.9.0.0'), prefix: 30, hub: ip('10.9.0.1') }, {}, [['inUse', '10.9.0.2'], ['assign', 'a'], ['release', '10.9.0.2'], ['assign', 'a']], ['-', 'pool-exhausted', '-', '10.9.0.2']);
test('a two-address pool is exhausted by two identities and stays so', allocates, { ...lan24, pool: { first: ip('10.0.0.100'), last: ip('10.0.0.101') } }, {}, [['assign', 'a'], ['assign', 'b'], ['assign', 'c'], ['assign', 'd'], ['assign', 'b']], ['10.0.0.100', '10.0.0.101', 'pool-exhausted', 'pool-exhausted', '10.0.0.101 sticky']);
test('a /32 hub has no pool at all', allocates, { network: ip('10.0.0.1'), prefix: 32, hub: ip('10.0.0.1') }, {}, [['assign', 'a']], ['pool-exhausted']);
test('a free static address inside the pool is allowed', allocates, lan24, {}, [['static', undefined, '10.0.0.7']], ['ok 10.0.0.7']);
test('a static address leased to another identity is refused', allocates, lan24, { b: '10.0.0.7' }, [['static', 'a', '10.0.0.7'], ['static', undefined, '10.0.0.7']], ['leased-to-other', 'leased-to-other']);
test('a static address leased to the same identity is allowed', allocates, lan24, { a: '10.0.0.7' }, [['static', 'a', '10.0.0.7']], ['ok 10.0.0.7']);
test('a static address outside the subnet, or its network or broadcast address, is refused', allocates, lan24, {}, [['static', 'a', '10.0.1.7'], ['static', 'a', '10.0.0.0'], ['static', 'a', '10.0.0.255']], ['outside-subnet', 'outside-subnet', 'outside-subnet']);
test("a static claim of the hub's address is refused", allocates, lan24, {}, [['static', 'a', '10.0.0.1']], ['hub-address']);
test('a static address in the subnet but outside a narrower pool is allowed', allocates, { ...lan24, pool: { first: ip('10.0.0.100'), last: ip('10.0.0.200') } }, {}, [['static', undefined, '10.0.0.7']], ['ok 10.0.0.7']);
test('a static member in use keeps its address out of the pool once the claim is recorded', allocates, lan24, {}, [['static', undefined, '10.0.0.2'], ['inUse', '10.0.0.2'], ['assign', 'a']], ['ok 10.0.0.2', '-', '10.0.0.3']);

test('a new lease is reported as not sticky and appears in the snapshot, sorted by identity', (t) => {
  const a = new AddressAllocator(lan24, { zed: ip('10.0.0.50') });
  const r = a.assign('alice');
  t.deepEqual(r, { ok: true, address: ip('10.0.0.2'), sticky: false });
  const snap = a.leases();
  t.deepEqual(Object.keys(snap), ['alice', 'zed']);
  t.deepEqual(snap, { alice: ip('10.0.0.2'), zed: ip('10.0.0.50') });
  t.true(Object.isFrozen(snap));
  a.assign('bob');
  t.false('bob' in snap, 'a snapshot does not change afterwards');
  t.is(a.leaseOf('bob'), ip('10.0.0.3'));
  t.is(a.leaseOf('nobody'), undefined);
});

test('an identity named __proto__ is an ordinary key of the lease table', (t) => {
  const a = new AddressAllocator(lan24);
  a.assign('__proto__');
  const snap = a.leases();
  t.deepEqual(Object.keys(snap), ['__proto__']);
  t.is(Object.getPrototypeOf(snap), Object.prototype);
  t.deepEqual(new AddressAllocator(lan24, snap).assign('__proto__'), { ok: true, address: ip('10.0.0.2'), sticky: true });
});

test('leases the allocator cannot honour are discarded with a reason, the first identity in sorted order keeping a duplicate', (t) => {
  const a = new AddressAllocator(
    { ...lan24, pool: { first: ip('10.0.0.10'), last: ip('10.0.0.20') } },
    { b: ip('10.0.0.12'), a: ip('10.0.0.12'), hub: ip('10.0.0.1'), far: ip('10.0.0.99'), net: ip('10.0.0.0'), junk: -1 },
  );
  t.deepEqual(a.leases(), { a: ip('10.0.0.12') });
  t.deepEqual(
    a.discarded.map((d) => `${d.identity} ${d.why}`),
    ['b duplicate', 'far outside-pool', 'hub hub-address', 'junk not-an-address', 'net outside-pool'],
  );
  t.deepEqual(a.assign('far'), { ok: true, address: ip('10.0.0.10'), sticky: false });
});

test('the failure says what is exhausted', (t) => {
  const a = new AddressAllocator({ ...lan24, pool: { first: ip('10.0.0.100'), last: ip('10.0.0.100') } });
  a.assign('a');
  const r = a.assign('b');
  t.false(r.ok);
  if (!r.ok) {
    t.is(r.reason, 'pool-exhausted');
    t.regex(r.detail, /10\.0\.0\.100-10\.0\.0\.100/);
  }
});

test('a /16 pool hands out all of its 65533 member addresses in order and then is exhausted', (t) => {
  const a = new AddressAllocator({ network: ip('10.1.0.0'), prefix: 16, hub: ip('10.1.0.1') });
  let expected = ip('10.1.0.2');
  let mismatches = 0;
  for (let i = 0; i < 65533; i++) {
    const r = a.assign(`id-${i}`);
    if (!r.ok || r.address !== expected) mismatches++;
    expected++;
  }
  t.is(mismatches, 0);
  t.is(expected - 1, ip('10.1.255.254'));
  t.like(a.assign('one-more'), { ok: false, reason: 'pool-exhausted' });
});

const rejectsOptions = test.macro({
  exec(t, options: AllocatorOptions, pattern: RegExp) {
    t.regex(allocatorOptionsProblem(options) ?? '', pattern);
    const err = t.throws(() => new AddressAllocator(options), { instanceOf: AllocatorConfigError });
    t.is(err?.name, 'AllocatorConfigError');
  },
  title: (provided = '') => `the options are refused when ${provided}`,
});

test('the hub is outside the subnet', rejectsOptions, { ...lan24, hub: ip('10.0.1.1') }, /hub address 10\.0\.1\.1 is outside 10\.0\.0\.0\/24/);
test('the prefix is out of range', rejectsOptions, { ...lan24, prefix: 33 }, /prefix 33/);
test('the pool runs backwards', rejectsOptions, { ...lan24, pool: { first: ip('10.0.0.9'), last: ip('10.0.0.8') } }, /empty/);
test('the pool leaves the subnet', rejectsOptions, { ...lan24, pool: { first: ip('10.0.0.200'), last: ip('10.0.1.10') } }, /not inside 10\.0\.0\.0\/24/);

test('host bits of the network are ignored', (t) => {
  t.is(allocatorOptionsProblem({ ...lan24, network: ip('10.0.0.77') }), undefined);
  t.like(new AddressAllocator({ ...lan24, network: ip('10.0.0.77') }).assign('a'), { ok: true, address: ip('10.0.0.2') });
});
