// IPv4 helpers (operators/core/wire/ipv4.ts): parsing, formatting, subnets, header fields.
import test from 'ava';
import { ipv4Destination, ipv4Problem, ipv4Source, isIpv4 } from '../operators/core/wire/ipv4.js';
import { ipv4Packet } from './helpers/marbles.js';
import { broadcastAddress, formatIpv4, parseIpv4, prefixHas, prefixMask } from '../operators/core/address.js';

const parses = test.macro({
  exec(t, text: string, expected: number | undefined) {
    t.is(parseIpv4(text), expected);
  },
  title: (provided, text: string, expected: number | undefined) => provided ?? (expected === undefined ? `${JSON.stringify(text)} is refused` : `${JSON.stringify(text)} parses to 0x${expected.toString(16).padStart(8, '0')}`),
});

test(parses, '10.0.0.1', 0x0a000001);
test(parses, '0.0.0.0', 0);
test(parses, '255.255.255.255', 0xffffffff);
test(parses, '192.168.1.200', 0xc0a801c8);
test(parses, '128.0.0.0', 0x80000000);
test(parses, '1.2.3.4', 0x01020304);
test(parses, '256.0.0.1', undefined);
test(parses, '1.2.3.999', undefined);
test(parses, '1.2.3', undefined);
test(parses, '1.2.3.4.5', undefined);
test(parses, '01.2.3.4', undefined);
test(parses, '1.2.3.00', undefined);
test(parses, '1.2.3.4 ', undefined);
test(parses, ' 1.2.3.4', undefined);
test(parses, '1.2.3.4\n', undefined);
test(parses, '1.2.3.-4', undefined);
test(parses, '1.2.3.+4', undefined);
test(parses, '1.2.3.0x4', undefined);
test(parses, '1..3.4', undefined);
test(parses, '', undefined);
test(parses, '１.2.3.4', undefined); // a fullwidth digit is not a decimal digit here

const formats = test.macro({
  exec(t, address: number, expected: string) {
    t.is(formatIpv4(address), expected);
  },
  title: (provided, address: number, expected: string) => provided ?? `0x${(address >>> 0).toString(16)} formats as ${expected}`,
});

test(formats, 0, '0.0.0.0');
test(formats, 0xffffffff, '255.255.255.255');
test(formats, 0x0a000001, '10.0.0.1');
test(formats, 0xc0a801c8, '192.168.1.200');
test('a signed 32-bit value formats like its unsigned twin', formats, -1, '255.255.255.255');
test('a signed value with the top bit set formats correctly', formats, 0xc0a80101 | 0, '192.168.1.1');

test('parse and format are inverse over a spread of addresses', (t) => {
  const bad: string[] = [];
  for (let a = 0; a <= 0xffffffff; a += 0x01010101 * 7 + 13) {
    const text = formatIpv4(a);
    if (parseIpv4(text) !== a) bad.push(text);
  }
  t.deepEqual(bad, []);
});

const masks = test.macro({
  exec(t, prefix: number, expected: number) {
    t.is(prefixMask(prefix), expected);
    t.true(prefixMask(prefix) >= 0, 'unsigned');
  },
  title: (provided, prefix: number) => provided ?? `the /${prefix} mask`,
});

test(masks, 0, 0);
test(masks, 1, 0x80000000);
test(masks, 8, 0xff000000);
test(masks, 24, 0xffffff00);
test(masks, 31, 0xfffffffe);
test(masks, 32, 0xffffffff);

const within = test.macro({
  exec(t, address: string, network: string, prefix: number, expected: boolean) {
    t.is(prefixHas({ address: parseIpv4(network)!, prefix }, parseIpv4(address)!), expected);
  },
  title: (provided, address: string, network: string, prefix: number, expected: boolean) => provided ?? `${address} is ${expected ? '' : 'not '}in ${network}/${prefix}`,
});

test(within, '10.0.0.7', '10.0.0.0', 24, true);
test(within, '10.0.0.255', '10.0.0.0', 24, true);
test(within, '10.0.1.0', '10.0.0.0', 24, false);
test(within, '9.255.255.255', '10.0.0.0', 8, false);
test(within, '10.0.0.7', '10.0.0.1', 24, true); // the network may be given as a host address
test(within, '10.0.0.7', '10.0.0.7', 32, true);
test(within, '10.0.0.8', '10.0.0.7', 32, false);
test(within, '200.1.2.3', '10.0.0.0', 0, true);
test(within, '0.0.0.0', '255.255.255.255', 0, true);
test(within, '192.168.1.129', '192.168.1.128', 25, true);
test(within, '192.168.1.127', '192.168.1.128', 25, false);
test(within, '200.0.0.1', '200.0.0.0', 1, true);
test(within, '100.0.0.1', '200.0.0.0', 1, false);

const broadcasts = test.macro({
  exec(t, address: string, prefix: number, expected: string) {
    const b = broadcastAddress({ address: parseIpv4(address)!, prefix: prefix });
    t.true(b >= 0, 'unsigned');
    t.is(formatIpv4(b), expected);
  },
  title: (provided, address: string, prefix: number, expected: string) => provided ?? `the broadcast of ${address}/${prefix} is ${expected}`,
});

test(broadcasts, '10.0.0.1', 24, '10.0.0.255');
test(broadcasts, '10.1.2.3', 16, '10.1.255.255');
test(broadcasts, '192.168.1.130', 25, '192.168.1.255');
test(broadcasts, '192.168.1.2', 31, '192.168.1.3');
test(broadcasts, '10.0.0.7', 32, '10.0.0.7');
test(broadcasts, '10.0.0.7', 0, '255.255.255.255');
test(broadcasts, '200.0.0.1', 8, '200.255.255.255');

test('isIpv4 wants version 4 and at least 20 bytes', (t) => {
  const p = ipv4Packet('10.0.0.1', '10.0.0.2');
  t.true(isIpv4(p));
  t.false(isIpv4(p.subarray(0, 19)));
  t.false(isIpv4(new Uint8Array(0)));
  const v6 = new Uint8Array(40);
  v6[0] = 0x60;
  t.false(isIpv4(v6));
  const v4WithOptions = new Uint8Array(24);
  v4WithOptions[0] = 0x46;
  t.true(isIpv4(v4WithOptions));
  const other = Uint8Array.from(p);
  other[0] = 0x54; // the IHL nibble is 4 but the version is 5
  t.false(isIpv4(other));
});

test('source and destination are read as unsigned numbers from bytes 12..19', (t) => {
  const p = ipv4Packet('192.168.7.200', '255.1.2.3');
  t.is(ipv4Source(p), 0xc0a807c8);
  t.is(ipv4Destination(p), 0xff010203);
  const q = ipv4Packet('10.0.0.2', '10.0.0.1');
  t.is(ipv4Source(q), 0x0a000002);
  t.is(ipv4Destination(q), 0x0a000001);
});

test('header fields are read relative to the view, not its buffer', (t) => {
  const big = new Uint8Array(100);
  big.set(ipv4Packet('10.9.8.7', '1.2.3.4'), 30);
  const view = big.subarray(30, 50);
  t.true(isIpv4(view));
  t.is(formatIpv4(ipv4Source(view)), '10.9.8.7');
  t.is(formatIpv4(ipv4Destination(view)), '1.2.3.4');
});

/** A 28-byte IPv4 packet with the given first byte and total length field. */
function withHeader(first: number, total: number, length = 28): Uint8Array {
  const p = new Uint8Array(length);
  p[0] = first;
  p[2] = total >>> 8;
  p[3] = total & 0xff;
  return p;
}

const problem = test.macro({
  exec(t, p: Uint8Array, want: ReturnType<typeof ipv4Problem>) {
    t.is(ipv4Problem(p), want);
  },
  title: (provided = '') => `ipv4Problem: ${provided}`,
});

test('a well-formed packet has none', problem, withHeader(0x45, 28), undefined);
test('trailing bytes beyond the total length are allowed (the kernel trims them)', problem, withHeader(0x45, 24), undefined);
test('a header with options inside the packet has none', problem, withHeader(0x46, 28), undefined);
test('a total length past the bytes is malformed', problem, withHeader(0x45, 29), 'malformed-ipv4');
test('a total length of 65535 on 28 bytes is malformed', problem, withHeader(0x45, 65535), 'malformed-ipv4');
test('a header length below 20 is malformed', problem, withHeader(0x44, 28), 'malformed-ipv4');
test('a header length past the total length is malformed', problem, withHeader(0x4f, 28, 60), 'malformed-ipv4');
test('a header length past the bytes is malformed', problem, withHeader(0x4f, 28), 'malformed-ipv4');
test('a total length below the header is malformed', problem, withHeader(0x45, 19), 'malformed-ipv4');
test('IPv6 is not IPv4', problem, withHeader(0x60, 28), 'not-ipv4');
test('a runt is not IPv4', problem, withHeader(0x45, 19, 19), 'not-ipv4');
