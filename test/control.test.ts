// Control messages (operators/core/wire/control.ts): HELLO, WELCOME, REJECT, and the direct-path
// messages (DIRECT-REQUEST, INTRODUCTION, WITHDRAWAL) through the real frame codec, good and hostile.
import test from 'ava';
import { parseIpv4 } from '../operators/core/address.js';
import type * as t from 'io-ts';
import {
  ControlDecodeError,
  DirectPathCodec,
  DirectRequestCodec,
  FATAL_REJECT_REASONS,
  HelloCodec,
  IntroductionCodec,
  MAX_ENDPOINTS,
  MAX_LOCAL_ENDPOINTS,
  WITHDRAW_REASONS,
  WithdrawalCodec,
  PROTOCOL_VERSION,
  REJECT_REASONS,
  RejectCodec,
  WelcomeCodec,
  decodeControl,
  encodeControl,
  type DirectPath,
  type DirectRequest,
  type Hello,
  type Introduction,
  type Reject,
  type Welcome,
  type Withdrawal,
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

// ---------------------------------------------------------------------------------------------
// Direct paths: DIRECT-REQUEST (member → hub), INTRODUCTION and WITHDRAWAL (hub → member)

type DirectType = (typeof FrameType)['DirectRequest' | 'Introduction' | 'Withdrawal' | 'DirectPath'];
type DirectMessage = DirectRequest | Introduction | Withdrawal | DirectPath;

const DIRECT_CODECS: Record<DirectType, t.Type<DirectMessage, unknown, unknown>> = {
  [FrameType.DirectRequest]: DirectRequestCodec as unknown as t.Type<DirectMessage, unknown, unknown>,
  [FrameType.Introduction]: IntroductionCodec as unknown as t.Type<DirectMessage, unknown, unknown>,
  [FrameType.Withdrawal]: WithdrawalCodec as unknown as t.Type<DirectMessage, unknown, unknown>,
  [FrameType.DirectPath]: DirectPathCodec as unknown as t.Type<DirectMessage, unknown, unknown>,
};

/** 32 bytes 0, 1, ... 31: a pair key that is easy to recognise. */
const KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
const KEY_TEXT = Buffer.from(KEY).toString('base64');
const ep = (host: string, port: number) => ({ host, port });

const INTRODUCTION: Introduction = {
  version: 1,
  peer: parseIpv4('10.0.0.3')!,
  routes: [{ address: parseIpv4('192.168.77.0')!, prefix: 24 }],
  endpoints: [ep('203.0.113.9', 51820), ep('192.168.1.30', 41641)],
  key: KEY,
  cipher: 'aes-256-gcm',
  id: 17,
  peerId: 18,
  self: ep('198.51.100.2', 40001),
};

const directRoundTrips = test.macro({
  exec(t, type: DirectType, msg: DirectMessage, json: unknown) {
    const wire = (encodeControl as (type: number, msg: unknown) => Buffer)(type, msg);
    t.is(wire[HEADER_BYTES], type);
    t.deepEqual(JSON.parse(wire.subarray(HEADER_BYTES + 1).toString('utf8')), json, 'the JSON on the wire');
    const frames = new FrameDecoder(MAX_BODY_COMPAT).push(wire);
    t.is(frames.length, 1);
    t.deepEqual(decodeControl(type, DIRECT_CODECS[type], frames[0]!.payload), msg);
  },
  title: (provided = '') => provided,
});

test('the direct-path frame types lie in the later control range, apart from every other type', (t) => {
  const types = Object.values(FrameType);
  t.is(new Set(types).size, types.length);
  t.deepEqual([FrameType.DirectRequest, FrameType.Introduction, FrameType.Withdrawal, FrameType.DirectPath], [0x20, 0x21, 0x22, 0x23]);
});

test('a DIRECT-PATH round-trips, direct or not', (t) => {
  for (const direct of [true, false]) {
    const msg: DirectPath = { version: 1, peer: parseIpv4('10.0.0.3')!, id: 0xffffffff, direct };
    const wire = encodeControl(FrameType.DirectPath, msg);
    t.deepEqual(JSON.parse(wire.subarray(HEADER_BYTES + 1).toString('utf8')), { version: 1, peer: '10.0.0.3', id: 0xffffffff, direct });
    t.deepEqual(decodeControl(FrameType.DirectPath, DirectPathCodec, new FrameDecoder(MAX_BODY_COMPAT).push(wire)[0]!.payload), msg);
  }
});


test('a DIRECT-REQUEST with a peer round-trips', directRoundTrips, FrameType.DirectRequest, { version: 1, local: [ep('192.168.1.20', 41641), ep('10.8.0.5', 41641)], peer: parseIpv4('10.0.0.3')! }, { version: 1, local: ['192.168.1.20:41641', '10.8.0.5:41641'], peer: '10.0.0.3' });
test('a DIRECT-REQUEST that only says the local endpoints round-trips', directRoundTrips, FrameType.DirectRequest, { version: 1, local: [] }, { version: 1, local: [] });
test('an INTRODUCTION round-trips', directRoundTrips, FrameType.Introduction, INTRODUCTION, {
  version: 1,
  peer: '10.0.0.3',
  routes: ['192.168.77.0/24'],
  endpoints: ['203.0.113.9:51820', '192.168.1.30:41641'],
  key: KEY_TEXT,
  cipher: 'aes-256-gcm',
  id: 17,
  peerId: 18,
  self: '198.51.100.2:40001',
});
for (const reason of WITHDRAW_REASONS) {
  test(`a WITHDRAWAL for ${reason} round-trips`, directRoundTrips, FrameType.Withdrawal, { version: 1, peer: parseIpv4('10.0.0.3')!, reason, id: 17 }, { version: 1, peer: '10.0.0.3', reason, id: 17 });
}
test('a WITHDRAWAL that answers a request carries no id', directRoundTrips, FrameType.Withdrawal, { version: 1, peer: parseIpv4('10.0.0.9')!, reason: 'unknown-peer' }, { version: 1, peer: '10.0.0.9', reason: 'unknown-peer' });

test('the fullest INTRODUCTION fits a 0.0.1-era body', (t) => {
  const widest: Introduction = {
    ...INTRODUCTION,
    peer: parseIpv4('255.255.255.254')!,
    routes: Array.from({ length: 16 }, (_, i) => ({ address: parseIpv4(`192.168.${100 + i}.128`)!, prefix: 25 })),
    endpoints: Array.from({ length: MAX_ENDPOINTS }, (_, i) => ep(`203.113.${200 + i}.255`, 65535)),
    id: 0xffffffff,
    peerId: 0xfffffffe,
    self: ep('255.255.255.255', 65535),
  };
  const wire = encodeControl(FrameType.Introduction, widest);
  t.true(wire.length <= HEADER_BYTES + MAX_BODY_COMPAT, `${wire.length} bytes`);
});

const directRefuses = test.macro({
  exec(t, type: DirectType, json: unknown, detail: string | RegExp) {
    const result = decodeControl(type, DIRECT_CODECS[type], Buffer.from(typeof json === 'string' ? json : JSON.stringify(json), 'utf8'));
    t.true(result instanceof ControlDecodeError, `decoded to ${JSON.stringify(result)}`);
    const err = result as ControlDecodeError;
    t.is(err.frameType, type);
    if (typeof detail === 'string') t.is(err.detail, detail);
    else t.regex(err.detail, detail);
  },
  title: (provided = '') => provided,
});

const GOOD_INTRODUCTION = (DIRECT_CODECS[FrameType.Introduction] as unknown as t.Encoder<Introduction, Record<string, unknown>>).encode(INTRODUCTION);
const introductionWith = (changes: Record<string, unknown>): Record<string, unknown> => ({ ...GOOD_INTRODUCTION, ...changes });
const ENDPOINT = 'expected an IPv4 endpoint like 192.0.2.7:41641';

test('a DIRECT-REQUEST without local endpoints is refused', directRefuses, FrameType.DirectRequest, { version: 1, peer: '10.0.0.3' }, 'local: expected at most 7 local endpoints, got nothing');
test('a DIRECT-REQUEST with too many local endpoints is refused', directRefuses, FrameType.DirectRequest, { version: 1, local: Array.from({ length: MAX_LOCAL_ENDPOINTS + 1 }, (_, i) => `192.168.1.${i + 1}:41641`) }, /^local: expected at most 7 local endpoints, got \[/);
test('a DIRECT-REQUEST with a host name for an endpoint is refused', directRefuses, FrameType.DirectRequest, { version: 1, local: ['example.com:41641'] }, `local: ${ENDPOINT}, got "example.com:41641"`);
test('a DIRECT-REQUEST with an IPv6 endpoint is refused', directRefuses, FrameType.DirectRequest, { version: 1, local: ['[2001:db8::1]:41641'] }, `local: ${ENDPOINT}, got "[2001:db8::1]:41641"`);
test('a DIRECT-REQUEST with port 0 is refused', directRefuses, FrameType.DirectRequest, { version: 1, local: ['192.168.1.20:0'] }, `local: ${ENDPOINT}, got "192.168.1.20:0"`);
test('a DIRECT-REQUEST with a port above 65535 is refused', directRefuses, FrameType.DirectRequest, { version: 1, local: ['192.168.1.20:65536'] }, `local: ${ENDPOINT}, got "192.168.1.20:65536"`);
test('a DIRECT-REQUEST with an octal-looking address is refused', directRefuses, FrameType.DirectRequest, { version: 1, local: ['010.0.0.1:41641'] }, `local: ${ENDPOINT}, got "010.0.0.1:41641"`);
test('a DIRECT-REQUEST with an endpoint that is not a string is refused', directRefuses, FrameType.DirectRequest, { version: 1, local: [{ host: '192.168.1.20', port: 41641 }] }, /^local: expected an IPv4 endpoint/);
test('a DIRECT-REQUEST for a peer that is not an address is refused', directRefuses, FrameType.DirectRequest, { version: 1, local: [], peer: '10.0.0' }, 'peer: expected an IPv4 address like 10.0.0.2, got "10.0.0"');
test('a DIRECT-REQUEST that is not an object is refused', directRefuses, FrameType.DirectRequest, '[]', /^message: expected /);
test('a DIRECT-PATH without an id is refused', directRefuses, FrameType.DirectPath, { version: 1, peer: '10.0.0.3', direct: true }, /^id: expected receiver id/);
test('a DIRECT-PATH with id 0 is refused', directRefuses, FrameType.DirectPath, { version: 1, peer: '10.0.0.3', id: 0, direct: true }, /^id: expected receiver id/);
test('a DIRECT-PATH whose direct is not a boolean is refused', directRefuses, FrameType.DirectPath, { version: 1, peer: '10.0.0.3', id: 17, direct: 'yes' }, /^direct: expected boolean/);
test('a DIRECT-PATH for a peer that is not an address is refused', directRefuses, FrameType.DirectPath, { version: 1, peer: '10.0.0', id: 17, direct: true }, /^peer: expected an IPv4 address/);

test('an INTRODUCTION without endpoints is refused', directRefuses, FrameType.Introduction, introductionWith({ endpoints: [] }), 'endpoints: expected 1 to 8 endpoints, got []');
test('an INTRODUCTION with too many endpoints is refused', directRefuses, FrameType.Introduction, introductionWith({ endpoints: Array.from({ length: MAX_ENDPOINTS + 1 }, (_, i) => `203.0.113.${i + 1}:41641`) }), /^endpoints: expected 1 to 8 endpoints, got \[/);
test('an INTRODUCTION with too many LAN routes is refused', directRefuses, FrameType.Introduction, introductionWith({ routes: Array.from({ length: 17 }, (_, i) => `192.168.${i}.0/24`) }), /^routes: expected at most 16 LAN routes, got \[/);
test('an INTRODUCTION with a route that has host bits is refused', directRefuses, FrameType.Introduction, introductionWith({ routes: ['192.168.77.1/24'] }), /^routes: expected network prefixes without host bits/);
test('an INTRODUCTION with a 31-byte key is refused', directRefuses, FrameType.Introduction, introductionWith({ key: Buffer.alloc(31).toString('base64') }), /^key: expected 32 bytes in base64, got "/);
test('an INTRODUCTION with a 33-byte key is refused', directRefuses, FrameType.Introduction, introductionWith({ key: Buffer.alloc(33).toString('base64') }), /^key: expected 32 bytes in base64, got "/);
test('an INTRODUCTION with a key that is not base64 is refused', directRefuses, FrameType.Introduction, introductionWith({ key: `${'!'.repeat(43)}=` }), /^key: expected 32 bytes in base64/);
test('an INTRODUCTION without a key is refused', directRefuses, FrameType.Introduction, introductionWith({ key: undefined }), 'key: expected 32 bytes in base64, got nothing');
test('an INTRODUCTION with an unknown cipher is refused', directRefuses, FrameType.Introduction, introductionWith({ cipher: 'rot13' }), /^cipher: expected /);
test('an INTRODUCTION with receiver id 0 is refused', directRefuses, FrameType.Introduction, introductionWith({ id: 0 }), 'id: expected receiver id, got 0');
test('an INTRODUCTION with a receiver id past 32 bits is refused', directRefuses, FrameType.Introduction, introductionWith({ peerId: 2 ** 32 }), 'peerId: expected receiver id, got 4294967296');
test('an INTRODUCTION with a fractional receiver id is refused', directRefuses, FrameType.Introduction, introductionWith({ id: 1.5 }), 'id: expected receiver id, got 1.5');
test('an INTRODUCTION whose two receiver ids are one is refused', directRefuses, FrameType.Introduction, introductionWith({ id: 7, peerId: 7 }), /^message: expected an introduction with two different receiver ids, got /);
test('an INTRODUCTION with a bad self endpoint is refused', directRefuses, FrameType.Introduction, introductionWith({ self: 'localhost:1' }), `self: ${ENDPOINT}, got "localhost:1"`);
test('an INTRODUCTION without a peer is refused', directRefuses, FrameType.Introduction, introductionWith({ peer: undefined }), 'peer: expected an IPv4 address like 10.0.0.2, got nothing');

test('a WITHDRAWAL with an unknown reason is refused', directRefuses, FrameType.Withdrawal, { version: 1, peer: '10.0.0.3', reason: 'bored' }, /^reason: expected .*"left"/);
test('a WITHDRAWAL without a peer is refused', directRefuses, FrameType.Withdrawal, { version: 1, reason: 'left' }, 'peer: expected an IPv4 address like 10.0.0.2, got nothing');
test('a WITHDRAWAL with a negative id is refused', directRefuses, FrameType.Withdrawal, { version: 1, peer: '10.0.0.3', reason: 'left', id: -1 }, 'id: expected receiver id, got -1');

test('unknown keys in the direct-path messages are not an error (forward compatibility)', (t) => {
  const decoded = decodeControl(FrameType.Introduction, IntroductionCodec, Buffer.from(JSON.stringify(introductionWith({ future: true }))));
  t.false(decoded instanceof ControlDecodeError);
  t.deepEqual((decoded as Introduction).endpoints, INTRODUCTION.endpoints);
});
