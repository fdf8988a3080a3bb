// Control messages (operators/core/wire/control.ts): HELLO, WELCOME, REJECT through the real frame codec.
import test from 'ava';
import { parseIpv4 } from '../operators/core/address.js';
import type * as t from 'io-ts';
import {
  ControlDecodeError,
  FATAL_REJECT_REASONS,
  HelloCodec,
  PROTOCOL_VERSION,
  REJECT_REASONS,
  RejectCodec,
  WelcomeCodec,
  decodeControl,
  encodeControl,
  type Hello,
  type Reject,
  type Welcome,
} from '../operators/core/wire/control.js';
import { FrameDecoder } from '../operators/core/wire/decoder.js';
import { FrameType, HEADER_BYTES, MAX_BODY_COMPAT } from '../operators/core/wire/frames.js';

type ControlType = (typeof FrameType)['Hello' | 'Welcome' | 'Reject'];

const CODECS: Record<ControlType, t.Decoder<unknown, unknown>> = {
  [FrameType.Hello]: HelloCodec,
  [FrameType.Welcome]: WelcomeCodec,
  [FrameType.Reject]: RejectCodec,
};

function encode(type: ControlType, msg: Hello | Welcome | Reject): Buffer {
  // The overloads pair each type with its message; the table below keeps them paired too.
  return (encodeControl as (type: number, msg: unknown) => Buffer)(type, msg);
}

const roundTrips = test.macro({
  exec(t, type: ControlType, msg: Hello | Welcome | Reject) {
    const wire = encode(type, msg);
    // On the wire, addresses and prefixes are text: the codec's JSON form.
    const json = Buffer.from(JSON.stringify((CODECS[type] as unknown as { encode(m: unknown): unknown }).encode(msg)), 'utf8');
    t.is(wire.readUInt32BE(0), json.length + 1, 'the length counts the type byte and the UTF-8 JSON');
    t.is(wire[HEADER_BYTES], type);
    const decoder = new FrameDecoder(MAX_BODY_COMPAT);
    const frames = decoder.push(wire);
    t.is(frames.length, 1);
    const [f] = frames;
    t.is(f?.type, type);
    t.deepEqual(decodeControl(type, CODECS[type], f!.payload), msg);
  },
  title: (provided = '') => provided,
});

test('a minimal HELLO round-trips', roundTrips, FrameType.Hello, { version: PROTOCOL_VERSION });
test('a full HELLO round-trips', roundTrips, FrameType.Hello, { version: 1, address: parseIpv4('10.0.0.7')!, prefix: 24, mtu: 1400, caps: ['batch', 'x'], routes: [{ address: parseIpv4('192.168.7.0')!, prefix: 24 }] });
test('a WELCOME round-trips', roundTrips, FrameType.Welcome, { version: 1, address: parseIpv4('10.0.0.2')!, prefix: 24, hub: parseIpv4('10.0.0.1')!, mtu: 1400, keepalive: 10, timeout: 30, routes: [{ cidr: { address: parseIpv4('192.168.7.0')!, prefix: 24 }, via: parseIpv4('10.0.0.3')! }] });
test('a REJECT round-trips', roundTrips, FrameType.Reject, { version: 1, reason: 'ip-conflict', message: 'address 10.0.0.2 is taken' });
test('a REJECT with non-ASCII text round-trips', roundTrips, FrameType.Reject, { version: 1, reason: 'shutting-down', message: 'au revoir — 再见 ✓' });
for (const reason of REJECT_REASONS) {
  test(`a REJECT for ${reason} round-trips`, roundTrips, FrameType.Reject, { version: 1, reason });
}

test('unknown keys are not an error (forward compatibility)', (t) => {
  const payload = Buffer.from(JSON.stringify({ version: 2, future: true }));
  t.like(decodeControl(FrameType.Hello, HelloCodec, payload) as object, { version: 2 });
});

// ---------------------------------------------------------------------------------------------
// Malformed bodies

const refuses = test.macro({
  exec(t, type: ControlType, payload: Uint8Array | string, detail: string | RegExp) {
    const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    let result: unknown;
    t.notThrows(() => {
      result = decodeControl(type, CODECS[type], bytes);
    });
    t.true(result instanceof ControlDecodeError, `decoded to ${JSON.stringify(result)}`);
    const err = result as ControlDecodeError;
    t.is(err.name, 'ControlDecodeError');
    t.is(err.frameType, type);
    if (typeof detail === 'string') t.is(err.detail, detail);
    else t.regex(err.detail, detail);
    t.is(err.message, `bad control message 0x${type.toString(16)}: ${err.detail}`);
  },
  title: (provided = '') => provided,
});

test('truncated JSON is refused', refuses, FrameType.Hello, '{"version":1', 'not UTF-8 JSON');
test('an empty body is refused', refuses, FrameType.Hello, '', 'not UTF-8 JSON');
test('bytes that are not UTF-8 are refused', refuses, FrameType.Hello, Uint8Array.of(0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d), 'not UTF-8 JSON');
test('a lone UTF-8 continuation byte inside a string is refused', refuses, FrameType.Reject, Uint8Array.of(...Buffer.from('{"version":1,"reason":"max-clients","message":"'), 0x80, 0x22, 0x7d), 'not UTF-8 JSON');
test('a version given as a string is refused', refuses, FrameType.Hello, '{"version":"1"}', 'version: expected integer, got "1"');
test('a fractional version is refused', refuses, FrameType.Hello, '{"version":1.5}', 'version: expected integer, got 1.5');
test('a missing version is refused', refuses, FrameType.Hello, '{"address":"10.0.0.2"}', 'version: expected integer, got nothing');
test('a malformed address is refused', refuses, FrameType.Hello, '{"version":1,"address":"10.0.0"}', 'address: expected an IPv4 address like 10.0.0.2, got "10.0.0"');
test('a prefix above 32 is refused', refuses, FrameType.Hello, '{"version":1,"prefix":33}', 'prefix: expected prefix length, got 33');
test('caps that are not strings are refused', refuses, FrameType.Hello, '{"version":1,"caps":["a",2]}', 'caps: expected string, got 2');
test('a WELCOME without the hub address is refused', refuses, FrameType.Welcome, '{"version":1,"address":"10.0.0.2","prefix":24}', 'hub: expected an IPv4 address like 10.0.0.2, got nothing');
test('a WELCOME with a string keepalive is refused', refuses, FrameType.Welcome, '{"version":1,"address":"10.0.0.2","prefix":24,"hub":"10.0.0.1","keepalive":"10"}', 'keepalive: expected integer, got "10"');
test('an unknown REJECT reason is refused', refuses, FrameType.Reject, '{"version":1,"reason":"bored"}', /^reason: expected .*"max-clients"/);
test('a JSON value that is not an object is refused', refuses, FrameType.Hello, '42', /^message: expected /);
test('JSON null is refused', refuses, FrameType.Welcome, 'null', /^message: expected /);

// ---------------------------------------------------------------------------------------------
// Size

/** A REJECT whose JSON body is exactly `size` bytes. */
function rejectOfSize(size: number): Reject {
  const base = JSON.stringify({ version: 1, reason: 'max-clients', message: '' }).length;
  return { version: 1, reason: 'max-clients', message: 'm'.repeat(size - base) };
}

test('a control message that fills a 0.0.1-era body exactly is accepted', (t) => {
  const msg = rejectOfSize(MAX_BODY_COMPAT - 1);
  const wire = encodeControl(FrameType.Reject, msg);
  t.is(wire.length, HEADER_BYTES + MAX_BODY_COMPAT);
  const [f] = new FrameDecoder(MAX_BODY_COMPAT).push(wire);
  t.deepEqual(decodeControl(FrameType.Reject, RejectCodec, f!.payload), msg);
});

test('a control message one byte too long throws RangeError', (t) => {
  const err = t.throws(() => encodeControl(FrameType.Reject, rejectOfSize(MAX_BODY_COMPAT)), { instanceOf: RangeError });
  t.regex(err?.message ?? '', /1496 bytes/);
});

test('a far too long control message throws RangeError', (t) => {
  t.throws(() => encodeControl(FrameType.Reject, { version: 1, reason: 'bad-hello', message: 'x'.repeat(5000) }), { instanceOf: RangeError });
});

test('the size limit counts UTF-8 bytes, not characters', (t) => {
  const base = JSON.stringify({ version: 1, reason: 'max-clients', message: '' }).length;
  // 'é' is two bytes in UTF-8: this message has few enough characters but too many bytes.
  const chars = Math.ceil((MAX_BODY_COMPAT - base) / 2);
  t.true(base + chars < MAX_BODY_COMPAT);
  t.throws(() => encodeControl(FrameType.Reject, { version: 1, reason: 'max-clients', message: 'é'.repeat(chars) }), { instanceOf: RangeError });
});

test('fatal reject reasons are reject reasons', (t) => {
  const all: readonly string[] = REJECT_REASONS;
  t.true(FATAL_REJECT_REASONS.size > 0);
  for (const r of FATAL_REJECT_REASONS) t.true(all.includes(r), r);
  t.false(FATAL_REJECT_REASONS.has('max-clients'));
  t.false(FATAL_REJECT_REASONS.has('ip-conflict'));
});
