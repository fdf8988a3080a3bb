import test from 'ava';
import { broadcastAddress, formatHostPort, formatIpv4, formatPrefix, networkAddress, parseHost, parseHostPort, parseIpv4, parsePort, parsePrefix, prefixHas, prefixMask, type HostPort } from '../operators/core/address.js';

const parsesIpv4 = test.macro({
  exec(t, text: string, expected: number | undefined) {
    t.is(parseIpv4(text), expected);
  },
  title: (_, text: string, expected: number | undefined) =>
    expected === undefined
      ? `parseIpv4 refuses ${JSON.stringify(text)}`
      : `parseIpv4 reads ${JSON.stringify(text)} as 0x${expected.toString(16).padStart(8, '0')}`,
});

test(parsesIpv4, '10.0.0.1', 0x0a000001);
test(parsesIpv4, '0.0.0.0', 0);
test(parsesIpv4, '255.255.255.255', 0xffffffff);
test(parsesIpv4, '192.168.100.200', 0xc0a864c8);
test(parsesIpv4, '256.0.0.1', undefined);
test(parsesIpv4, '1.2.3.256', undefined);
test(parsesIpv4, '010.0.0.1', undefined);
test(parsesIpv4, '10.0.0.01', undefined);
test(parsesIpv4, '00.0.0.0', undefined);
test(parsesIpv4, '1.2.3', undefined);
test(parsesIpv4, '1.2.3.4.5', undefined);
test(parsesIpv4, '1..2.3', undefined);
test(parsesIpv4, '', undefined);
test(parsesIpv4, ' 1.2.3.4', undefined);
test(parsesIpv4, '1.2.3.4 ', undefined);
test(parsesIpv4, '+1.2.3.4', undefined);
test(parsesIpv4, '1.2.3.-4', undefined);
test(parsesIpv4, '0x1.2.3.4', undefined);
test(parsesIpv4, '1.2.3.4/24', undefined);
test(parsesIpv4, '1234.1.1.1', undefined);
test(parsesIpv4, '\u0661.2.3.4', undefined);

test('formatIpv4 writes a dotted quad and round-trips with parseIpv4', (t) => {
  t.is(formatIpv4(0x0a000001), '10.0.0.1');
  t.is(formatIpv4(0xffffffff), '255.255.255.255');
  t.is(formatIpv4(0), '0.0.0.0');
  for (const text of ['10.0.0.1', '172.16.254.3', '255.0.255.0', '1.2.3.4']) {
    t.is(formatIpv4(parseIpv4(text) ?? -1), text);
  }
});

test('formatIpv4 takes its argument modulo 2^32', (t) => {
  t.is(formatIpv4(-1), '255.255.255.255');
  t.is(formatIpv4(0x1_0000_0001), '0.0.0.1');
});

const parsesCidr = test.macro({
  exec(t, text: string, expected: { address: number; prefix: number } | undefined) {
    t.deepEqual(parsePrefix(text), expected);
  },
  title: (_, text: string, expected: { address: number; prefix: number } | undefined) =>
    expected === undefined ? `parsePrefix refuses ${JSON.stringify(text)}` : `parsePrefix reads ${JSON.stringify(text)}`,
});

test(parsesCidr, '10.0.0.1/24', { address: 0x0a000001, prefix: 24 });
test(parsesCidr, '0.0.0.0/0', { address: 0, prefix: 0 });
test(parsesCidr, '192.168.1.7/32', { address: 0xc0a80107, prefix: 32 });
test(parsesCidr, '10.0.0.1', undefined);
test(parsesCidr, '10.0.0.1/', undefined);
test(parsesCidr, '10.0.0.1/33', undefined);
test(parsesCidr, '10.0.0.1/024', undefined);
test(parsesCidr, '10.0.0.1/-1', undefined);
test(parsesCidr, '10.0.0.1/24/8', undefined);
test(parsesCidr, '10.0.0.256/24', undefined);
test(parsesCidr, '/24', undefined);

test('formatPrefix writes address/prefix and keeps the host bits', (t) => {
  t.is(formatPrefix({ address: 0x0a000002, prefix: 24 }), '10.0.0.2/24');
});

test('prefixMask, networkAddress and broadcastAddress cover the edges of the prefix range', (t) => {
  t.is(prefixMask(0), 0);
  t.is(prefixMask(8), 0xff000000);
  t.is(prefixMask(24), 0xffffff00);
  t.is(prefixMask(32), 0xffffffff);
  const lan = { address: 0x0a000005, prefix: 24 };
  t.is(formatIpv4(networkAddress(lan)), '10.0.0.0');
  t.is(formatIpv4(broadcastAddress(lan)), '10.0.0.255');
  t.is(formatIpv4(broadcastAddress({ address: 0xc0a80001, prefix: 0 })), '255.255.255.255');
  t.is(formatIpv4(networkAddress({ address: 0xc0a80001, prefix: 32 })), '192.168.0.1');
});

test('prefixHas tells addresses inside the block from those outside', (t) => {
  const lan = { address: 0x0a000001, prefix: 24 };
  t.true(prefixHas(lan, 0x0a0000fe));
  t.false(prefixHas(lan, 0x0a000100));
  t.true(prefixHas({ address: 0, prefix: 0 }, 0xffffffff));
});

test('parsePort accepts 0 to 65535 and nothing else', (t) => {
  t.is(parsePort('0'), 0);
  t.is(parsePort('9000'), 9000);
  t.is(parsePort('65535'), 65535);
  for (const bad of ['65536', '09000', '-1', '+80', '', '80a', ' 80']) t.is(parsePort(bad), undefined, bad);
});

const parsesHostPort = test.macro({
  exec(t, text: string, defaultHost: string | undefined, expected: HostPort | undefined) {
    t.deepEqual(parseHostPort(text, defaultHost), expected);
  },
  title: (_, text: string, defaultHost: string | undefined, expected: HostPort | undefined) => {
    const withDefault = defaultHost === undefined ? '' : ` with the default host ${defaultHost}`;
    return expected === undefined
      ? `parseHostPort refuses ${JSON.stringify(text)}${withDefault}`
      : `parseHostPort reads ${JSON.stringify(text)}${withDefault}`;
  },
});

test(parsesHostPort, '10.0.0.1:9000', undefined, { host: '10.0.0.1', port: 9000 });
test(parsesHostPort, 'vpn.example.com:443', undefined, { host: 'vpn.example.com', port: 443 });
test(parsesHostPort, 'localhost:0', undefined, { host: 'localhost', port: 0 });
test(parsesHostPort, '[::1]:9000', undefined, { host: '::1', port: 9000 });
test(parsesHostPort, '[2001:db8::7]:80', undefined, { host: '2001:db8::7', port: 80 });
test(parsesHostPort, ':9000', '0.0.0.0', { host: '0.0.0.0', port: 9000 });
test(parsesHostPort, ':9000', undefined, undefined);
test(parsesHostPort, '10.0.0.1', undefined, undefined);
test(parsesHostPort, '10.0.0.1:', undefined, undefined);
test(parsesHostPort, '10.0.0.1:65536', undefined, undefined);
test(parsesHostPort, '10.0.0.1:09000', undefined, undefined);
test(parsesHostPort, '256.0.0.1:9000', undefined, undefined);
test(parsesHostPort, '010.0.0.1:9000', undefined, undefined);
test(parsesHostPort, '::1:9000', undefined, undefined);
test(parsesHostPort, '[::1]', undefined, undefined);
test(parsesHostPort, '[::1]9000', undefined, undefined);
test(parsesHostPort, '[10.0.0.1]:9000', undefined, undefined);
test(parsesHostPort, '[nonsense]:9000', undefined, undefined);
test(parsesHostPort, 'bad_host:9000', undefined, undefined);
test(parsesHostPort, '-bad.example:9000', undefined, undefined);
test(parsesHostPort, 'a..b:9000', undefined, undefined);

test('parseHost takes names, dotted quads and bracketed IPv6, and unwraps the brackets', (t) => {
  t.is(parseHost('vpn.example.com'), 'vpn.example.com');
  t.is(parseHost('example.com.'), 'example.com.');
  t.is(parseHost('10.0.0.1'), '10.0.0.1');
  t.is(parseHost('[fe80::1]'), 'fe80::1');
  t.is(parseHost('fe80::1'), undefined);
  t.is(parseHost('1.2.3.999'), undefined);
  t.is(parseHost(`${'a'.repeat(64)}.example`), undefined);
  t.is(parseHost(''), undefined);
});

test('formatHostPort brackets IPv6 hosts and round-trips with parseHostPort', (t) => {
  t.is(formatHostPort({ host: '::1', port: 9000 }), '[::1]:9000');
  t.is(formatHostPort({ host: '10.0.0.1', port: 80 }), '10.0.0.1:80');
  for (const text of ['[2001:db8::1]:9000', 'vpn.example.com:1', '1.2.3.4:65535']) {
    const hp = parseHostPort(text);
    t.not(hp, undefined);
    if (hp !== undefined) t.is(formatHostPort(hp), text);
  }
});
