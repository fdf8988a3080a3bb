// The resolver driver (src/drivers/resolver.ts): a name from /etc/hosts (no query leaves the machine).
import test from 'ava';
import { firstValueFrom } from 'rxjs';
import { makeResolver, oneFamily } from '../src/drivers/resolver.js';
import { MAX_RESOLVED_ADDRESSES } from '../pipelines/ports.js';

test('localhost resolves to loopback addresses, each once, at most MAX_RESOLVED_ADDRESSES', async (t) => {
  const addresses = await firstValueFrom(makeResolver({ timeoutMs: 5000 }).resolve('localhost'));
  t.true(addresses.length >= 1 && addresses.length <= MAX_RESOLVED_ADDRESSES);
  t.is(new Set(addresses).size, addresses.length);
  t.true(addresses.every((a) => a === '::1' || a.startsWith('127.')), addresses.join(', '));
});

test('oneFamily: a host with IPv4 and IPv6 addresses is one hub, by its IPv4 ones; IPv6 only when there is no IPv4; repeats once, at most MAX_RESOLVED_ADDRESSES', (t) => {
  t.deepEqual(oneFamily([{ address: '2001:db8::1', family: 6 }, { address: '192.0.2.1', family: 4 }, { address: '192.0.2.2', family: 4 }, { address: '192.0.2.1', family: 4 }]), ['192.0.2.1', '192.0.2.2']);
  t.deepEqual(oneFamily([{ address: '2001:db8::1', family: 6 }, { address: '2001:db8::2', family: 6 }]), ['2001:db8::1', '2001:db8::2']);
  t.is(oneFamily(Array.from({ length: 40 }, (_, i) => ({ address: `192.0.2.${i + 1}`, family: 4 }))).length, MAX_RESOLVED_ADDRESSES);
  t.deepEqual(oneFamily([]), []);
});
