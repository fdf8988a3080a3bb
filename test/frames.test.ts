// The frame byte layout (operators/core/wire/frames.ts): encodeFrames, encodeFrame, KEEPALIVE_FRAME.
import test from 'ava';
import { FrameType, HEADER_BYTES, KEEPALIVE_FRAME, MAX_BODY_COMPAT, MAX_PACKET_COMPAT, encodeFrame, encodeFrames } from '../operators/core/wire/frames.js';
import { bytes } from './helpers/marbles.js';

/** Bytes from hex text (spaces ignored), as the Buffer the encoder returns. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

// ---------------------------------------------------------------------------------------------
// Byte layout

const layout = test.macro({
  exec(t, type: number, payloads: Uint8Array[], from: number | undefined, expected: string) {
    t.deepEqual(encodeFrames(type, payloads, from), hex(expected));
  },
  title: (provided = '') => provided,
});

test('one payload: a big-endian length that counts the type byte, the type, the payload', layout, 0x01, [bytes(0xaa, 0xbb, 0xcc)], undefined, '00000004 01 aabbcc');
test('an empty payload is a body of one byte (the type)', layout, 0x02, [bytes()], undefined, '00000001 02');
test('several payloads are consecutive frames of the same type', layout, 0x01, [bytes(1), bytes(2, 3), bytes()], undefined, '00000002 01 01  00000003 01 0203  00000001 01');
test('`from` skips the payloads before it', layout, 0x01, [bytes(1), bytes(2), bytes(3)], 1, '00000002 01 02  00000002 01 03');
test('`from` at the end encodes nothing', layout, 0x01, [bytes(1)], 1, '');
test('no payloads encode to an empty buffer', layout, 0x01, [], undefined, '');
test('the type byte is written as given', layout, 0x7f, [bytes(9)], undefined, '00000002 7f 09');
test('a length above 255 uses the second byte', layout, 0x01, [new Uint8Array(300)], undefined, '0000012d 01' + '00'.repeat(300));
test('a length above 65535 uses the third byte', layout, 0x01, [new Uint8Array(70000)], undefined, '00011171 01' + '00'.repeat(70000));

test('the largest 0.0.1-era body carries a 1495-byte packet', (t) => {
  const out = encodeFrames(FrameType.Data, [new Uint8Array(MAX_PACKET_COMPAT).fill(7)]);
  t.is(out.length, HEADER_BYTES + MAX_BODY_COMPAT);
  t.deepEqual(out.subarray(0, 5), hex('000005d8 01'));
  t.true(out.subarray(5).every((b) => b === 7));
});

test('encodeFrame encodes one frame, with an empty payload by default', (t) => {
  t.deepEqual(encodeFrame(0x10, bytes(0x7b, 0x7d)), hex('00000003 10 7b7d'));
  t.deepEqual(encodeFrame(0x12), hex('00000001 12'));
});

test('KEEPALIVE_FRAME is the five bytes of an empty type-2 frame', (t) => {
  t.deepEqual(Array.from(KEEPALIVE_FRAME), [0, 0, 0, 1, 2]);
  t.deepEqual(Buffer.from(KEEPALIVE_FRAME), encodeFrame(FrameType.Keepalive));
});

test('the frame types and limits are those of the 0.0.1-era wire format', (t) => {
  t.is(FrameType.Data, 0x01);
  t.is(FrameType.Keepalive, 0x02);
  t.is(HEADER_BYTES, 4);
  t.is(MAX_BODY_COMPAT, 1496);
  t.is(MAX_PACKET_COMPAT, 1495);
  // Control frames must be of types a 0.0.1-era peer ignores.
  const twoX: number[] = [0x01, 0x02];
  for (const type of [FrameType.Hello, FrameType.Welcome, FrameType.Reject]) t.false(twoX.includes(type), `0x${type.toString(16)}`);
});

test('the encoder copies: the output does not change when an input payload does', (t) => {
  const p = bytes(1, 2, 3);
  const out = encodeFrames(FrameType.Data, [p]);
  p.fill(0);
  t.deepEqual(out, hex('00000004 01 010203'));
});
