// The resolver driver (src/drivers/resolver.ts): a name from /etc/hosts (no query leaves the machine).
import test from 'ava';
import { firstValueFrom } from 'rxjs';
import { makeResolver } from '../src/drivers/resolver.js';
import { MAX_RESOLVED_ADDRESSES } from '../pipelines/ports.js';

test('localhost resolves to loopback addresses, each once, at most MAX_RESOLVED_ADDRESSES', async (t) => {
  const addresses = await firstValueFrom(makeResolver({ timeoutMs: 5000 }).resolve('localhost'));
  t.true(addresses.length >= 1 && addresses.length <= MAX_RESOLVED_ADDRESSES);
  t.is(new Set(addresses).size, addresses.length);
  t.true(addresses.every((a) => a === '::1' || a.startsWith('127.')), addresses.join(', '));
});
