// Batched AEAD of the UDP data path (src/udp/aead.ts over native/aead.cc): published vectors,
// round trips, a cross-check against Node's own crypto (createCipheriv) for random keys, payloads,
// counters and headers, and hostile input: tampered, truncated, wrongly keyed and out-of-arena
// datagrams fail without changing a byte.
import test from 'ava';
import { createCipheriv, createDecipheriv, randomBytes, type CipherGCM, type CipherGCMTypes, type DecipherGCM } from 'node:crypto';
import {
  AeadError,
  AeadKey,
  AeadVectorKey,
  COUNTER_LIMIT,
  DatagramBatch,
  DatagramStatus,
  HEADER_BYTES,
  MAX_SEALED_PAYLOAD,
  SEAL_OVERHEAD,
  TAG_BYTES,
  type AeadCipher,
  type SealHeader,
} from '../src/udp/index.js';
import { udpBinding } from '../src/udp/native.js';
import { Prng, fuzzSeeds, hexSeed } from './helpers/prng.js';

const CIPHERS: readonly AeadCipher[] = ['aes-256-gcm', 'chacha20-poly1305'];
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/[\s:]/g, ''), 'hex'));
// Node's typings overload createCipheriv per literal cipher name; both AEADs share the GCM surface.
const nodeCipher = (cipher: AeadCipher, key: Uint8Array, nonce: Uint8Array): CipherGCM =>
  createCipheriv(cipher as CipherGCMTypes, key, nonce, { authTagLength: TAG_BYTES });
const nodeDecipher = (cipher: AeadCipher, key: Uint8Array, nonce: Uint8Array): DecipherGCM =>
  createDecipheriv(cipher as CipherGCMTypes, key, nonce, { authTagLength: TAG_BYTES });
const snapshot = (batch: DatagramBatch): Uint8Array => new Uint8Array(batch.buffer).slice();

// RFC 8439 section 2.8.2: AEAD_CHACHA20_POLY1305.
const RFC8439 = {
  key: unhex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f'),
  nonce: unhex('070000004041424344454647'),
  aad: unhex('50515253c0c1c2c3c4c5c6c7'),
  plaintext: new TextEncoder().encode(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  ),
  ciphertext: unhex(`
    d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b
    1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
    3ff4def08e4b7a9de576d26586cec64b6116`),
  tag: unhex('1ae10b594f09e26a7e902ecbd0600691'),
};

// The GCM specification (McGrew & Viega), test case 16: AES-256, 96-bit IV, with AAD.
const GCM_CASE_16 = {
  key: unhex('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308'),
  nonce: unhex('cafebabefacedbaddecaf888'),
  aad: unhex('feedfacedeadbeeffeedfacedeadbeefabaddad2'),
  plaintext: unhex(`
    d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525
    b16aedf5aa0de657ba637b39`),
  ciphertext: unhex(`
    522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838
    c5f61e6393ba7a0abcc9f662`),
  tag: unhex('76fc6ece0f4e1768cddf8853bb2d551b'),
};

for (const [name, cipher, v] of [
  ['RFC 8439 2.8.2', 'chacha20-poly1305', RFC8439],
  ['GCM test case 16', 'aes-256-gcm', GCM_CASE_16],
] as const) {
  test(`${name}: ${cipher} seals and opens the published vector`, (t) => {
    const key = AeadVectorKey.create(cipher, v.key);
    const sealed = key.seal(v.nonce, v.aad, v.plaintext);
    t.is(hex(sealed), hex(v.ciphertext) + hex(v.tag));
    t.is(hex(key.open(v.nonce, v.aad, sealed)!), hex(v.plaintext));
    // Node's own crypto agrees with the vector (guards the vector's transcription).
    const node = nodeCipher(cipher, v.key, v.nonce);
    node.setAAD(v.aad);
    t.is(hex(Buffer.concat([node.update(v.plaintext), node.final(), node.getAuthTag()])), hex(sealed));
    for (const at of [0, v.ciphertext.length - 1, sealed.length - 1]) {
      const bad = sealed.slice();
      bad[at]! ^= 0x01;
      t.is(key.open(v.nonce, v.aad, bad), null, `flipped byte ${at}`);
    }
    const badAad = v.aad.slice();
    badAad[0]! ^= 0x80;
    t.is(key.open(v.nonce, badAad, sealed), null, 'changed AAD');
    key.destroy();
  });
}

test('a vector key refuses batches and a data-path key refuses caller-chosen nonces', (t) => {
  const out = DatagramBatch.create(4, 4096);
  const binding = udpBinding();
  const vectorKey = new binding.AeadKey('aes-256-gcm', new Uint8Array(32), true);
  t.throws(() => vectorKey.seal([new Uint8Array(3)], 0, 1, 0, 1, -1, out.native), { message: /single messages only/ });
  t.throws(() => vectorKey.open(out.native, 0, 1, -1, -1, 1), { message: /single messages only/ });
  const key = AeadKey.create('aes-256-gcm', new Uint8Array(32));
  const native = AeadKey.native(key);
  t.throws(() => native.sealRaw(new Uint8Array(12), new Uint8Array(0), new Uint8Array(1)), { message: /vector key/ });
  t.is(key.seal([new Uint8Array(3)], { type: 1, epoch: 0, receiverId: 1 }, out), 1);
});

test('wrong arguments: unknown cipher, short key', (t) => {
  t.throws(() => AeadKey.create('aes-128-gcm' as AeadCipher, new Uint8Array(32)), { instanceOf: AeadError, code: 'EINVAL' });
  t.throws(() => AeadKey.create('aes-256-gcm', new Uint8Array(16)), { instanceOf: AeadError, code: 'EINVAL' });
});

/** The expected header bytes of a datagram. */
function headerBytes(h: SealHeader, counter: number): string {
  const b = Buffer.alloc(HEADER_BYTES);
  b[0] = h.type;
  b[1] = h.epoch;
  b.writeUInt32BE(h.receiverId >>> 0, 4);
  b.writeBigUInt64BE(BigInt(counter), 8);
  return b.toString('hex');
}

for (const cipher of CIPHERS) {
  test(`${cipher}: seal packs datagrams in the fixed format and open restores every payload in place`, (t) => {
    const key = AeadKey.create(cipher, randomBytes(32));
    const header = { type: 4, epoch: 7, receiverId: 0xfeedf00d };
    const sizes = [0, 1, 15, 16, 17, 1400, 1, 9000, MAX_SEALED_PAYLOAD];
    const payloads = sizes.map((n) => new Uint8Array(randomBytes(n)));
    const out = DatagramBatch.create(16, 1 << 17);
    t.is(key.seal(payloads, header, out, 0, 1000), sizes.length);
    t.is(key.nextCounter, 1000 + sizes.length);
    let at = 0;
    for (let i = 0; i < sizes.length; i++) {
      t.is(out.offsets[i], at, `row ${i} packed`);
      t.is(out.lengths[i], sizes[i]! + SEAL_OVERHEAD);
      t.is(hex(out.datagram(i).subarray(0, HEADER_BYTES)), headerBytes(header, 1000 + i));
      t.is(out.status[i], DatagramStatus.Pending);
      t.is(out.counters[i], 1000 + i);
      at += out.lengths[i]!;
    }
    t.is(key.open(out, { receiverId: header.receiverId, type: 4, epoch: 7 }, 0, sizes.length), sizes.length);
    for (let i = 0; i < sizes.length; i++) {
      t.is(out.status[i], DatagramStatus.Opened);
      t.is(out.counters[i], 1000 + i);
      t.is(out.lengths[i], sizes[i]);
      t.is(hex(out.datagram(i)), hex(payloads[i]!), `payload ${i}`);
    }
    // Opened rows are never opened twice.
    t.is(key.open(out, { receiverId: header.receiverId }, 0, sizes.length), 0);
  });

  test(`${cipher}: cross-check with Node's createCipheriv for random keys, payloads, counters and headers`, (t) => {
    for (const seed of fuzzSeeds()) {
      const rng = new Prng(seed);
      for (let round = 0; round < 20; round++) {
        const secret = rng.bytes(32);
        const key = AeadKey.create(cipher, secret);
        const header = { type: rng.int(256), epoch: rng.int(256), receiverId: rng.u32() };
        const counter = rng.int(2) === 0 ? rng.int(1000) : COUNTER_LIMIT - 100 - rng.int(1000);
        const payloads = Array.from({ length: 1 + rng.int(24) }, () => rng.bytes(rng.pick([0, 1, 64, 1400, 1472, rng.int(3000)])));
        const out = DatagramBatch.create(64, 1 << 17);
        t.is(key.seal(payloads, header, out, 0, counter), payloads.length);
        for (let i = 0; i < payloads.length; i++) {
          const d = out.datagram(i);
          const nonce = new Uint8Array(12);
          nonce.set(d.subarray(8, 16), 4);
          const decipher = nodeDecipher(cipher, secret, nonce);
          decipher.setAAD(d.subarray(0, HEADER_BYTES));
          decipher.setAuthTag(d.subarray(d.length - TAG_BYTES));
          const plain = Buffer.concat([decipher.update(d.subarray(HEADER_BYTES, d.length - TAG_BYTES)), decipher.final()]);
          t.is(plain.toString('hex'), hex(payloads[i]!), `seed ${hexSeed(seed)} round ${round} payload ${i}`);
          t.is(hex(d.subarray(0, HEADER_BYTES)), headerBytes(header, counter + i));
        }
        // And the other way: Node seals, the batch opens.
        const foreign = DatagramBatch.create(payloads.length, 1 << 17);
        let offset = 0;
        const arena = new Uint8Array(foreign.buffer);
        for (let i = 0; i < payloads.length; i++) {
          const hdr = unhex(headerBytes(header, counter + i));
          const nonce = new Uint8Array(12);
          nonce.set(hdr.subarray(8, 16), 4);
          const c = nodeCipher(cipher, secret, nonce);
          c.setAAD(hdr);
          const sealed = Buffer.concat([hdr, c.update(payloads[i]!), c.final(), c.getAuthTag()]);
          arena.set(sealed, offset);
          foreign.offsets[i] = offset;
          foreign.lengths[i] = sealed.length;
          offset += sealed.length;
        }
        t.is(key.open(foreign, { receiverId: header.receiverId, type: header.type, epoch: header.epoch }, 0, payloads.length), payloads.length);
        for (let i = 0; i < payloads.length; i++) {
          t.is(hex(foreign.datagram(i)), hex(payloads[i]!));
          t.is(foreign.counters[i], counter + i);
        }
        key.destroy();
      }
    }
  });

  test(`${cipher}: tampering any byte of a datagram fails and leaves every byte as it was`, (t) => {
    const key = AeadKey.create(cipher, randomBytes(32));
    const header = { type: 4, epoch: 1, receiverId: 0x01020304 };
    const payload = new Uint8Array(randomBytes(40));
    const sealed = DatagramBatch.create(1, 4096);
    t.is(key.seal([payload], header, sealed), 1);
    const original = sealed.datagram(0).slice();
    const batch = DatagramBatch.create(original.length * 8, original.length * original.length * 8 + 64);
    const arena = new Uint8Array(batch.buffer);
    // Every byte, one bit flip each (rows at odd offsets, as slots of a socket never are).
    for (let i = 0; i < original.length * 8; i++) {
      const at = 3 + i * original.length;
      arena.set(original, at);
      arena[at + (i >> 3)]! ^= 1 << (i & 7);
      batch.offsets[i] = at;
      batch.lengths[i] = original.length;
      batch.receivers[i] = new DataView(batch.buffer).getUint32(at + 4);
    }
    const before = snapshot(batch);
    let opened = 0;
    for (let i = 0; i < original.length * 8; i++) opened += key.open(batch, { receiverId: batch.receivers[i]! }, i, i + 1);
    t.is(opened, 0);
    t.deepEqual(snapshot(batch), before, 'no byte changed');
    for (let i = 0; i < original.length * 8; i++) {
      const byte = i >> 3;
      // Reserved bytes, and counter bits 53..63 (all of byte 8, the top three of byte 9), are refused
      // before any cryptography.
      const malformed = byte === 2 || byte === 3 || byte === 8 || (byte === 9 && (i & 7) >= 5);
      const expected = malformed ? DatagramStatus.Malformed : DatagramStatus.BadTag;
      t.is(batch.status[i], expected, `bit ${i & 7} of byte ${byte}`);
      t.is(batch.lengths[i], original.length);
    }
    // The untouched datagram still opens with the same key afterwards.
    t.is(key.open(sealed, header), 1);
    t.is(hex(sealed.datagram(0)), hex(payload));
  });

  test(`${cipher}: a wrong key, a wrong selector, truncated and out-of-arena rows`, (t) => {
    const key = AeadKey.create(cipher, randomBytes(32));
    const other = AeadKey.create(cipher, randomBytes(32));
    const header = { type: 4, epoch: 2, receiverId: 77 };
    const batch = DatagramBatch.create(8, 1 << 14);
    t.is(key.seal([new Uint8Array(100), new Uint8Array(0)], header, batch), 2);
    const before = snapshot(batch);
    t.is(other.open(batch, header, 0, 2), 0);
    t.deepEqual([batch.status[0], batch.status[1]], [DatagramStatus.BadTag, DatagramStatus.BadTag]);
    t.deepEqual(snapshot(batch), before);

    t.is(key.seal([new Uint8Array(100)], header, batch), 1);
    const afterSeal = snapshot(batch);
    // Another receiver id, type or epoch: not selected, untouched.
    t.is(key.open(batch, { receiverId: 78 }, 0, 1), 0);
    t.is(key.open(batch, { receiverId: 77, type: 5 }, 0, 1), 0);
    t.is(key.open(batch, { receiverId: 77, epoch: 3 }, 0, 1), 0);
    t.is(batch.status[0], DatagramStatus.Pending);
    // Truncated copies of it: shorter than header + tag (or than a header) are malformed.
    for (const [row, length] of [
      [1, 0],
      [2, 15],
      [3, 16],
      [4, 31],
    ] as const) {
      batch.offsets[row] = batch.offsets[0]!;
      batch.lengths[row] = length;
      batch.status[row] = DatagramStatus.Pending;
    }
    // Rows JS pointed outside the arena are refused before any byte is read.
    batch.offsets[5] = (1 << 14) - 10;
    batch.lengths[5] = 100;
    batch.offsets[6] = 0xffffffff;
    batch.lengths[6] = 2;
    batch.status[5] = DatagramStatus.Pending;
    batch.status[6] = DatagramStatus.Pending;
    t.is(key.open(batch, header, 1, 7), 0);
    t.deepEqual([...batch.status.subarray(1, 7)], Array(6).fill(DatagramStatus.Malformed));
    t.deepEqual(snapshot(batch), afterSeal);
    t.is(key.open(batch, header, 0, 1), 1);
  });

  test(`${cipher}: counters are never reused under a key`, (t) => {
    const key = AeadKey.create(cipher, randomBytes(32));
    const header = { type: 4, epoch: 0, receiverId: 1 };
    const out = DatagramBatch.create(8, 1 << 14);
    t.is(key.nextCounter, 0);
    t.is(key.seal([new Uint8Array(1), new Uint8Array(2)], header, out), 2);
    t.is(key.nextCounter, 2);
    t.throws(() => key.seal([new Uint8Array(1)], header, out, 0, 1), { instanceOf: AeadError, code: 'ECOUNTER' });
    t.throws(() => key.seal([new Uint8Array(1)], header, out, 0, 0), { instanceOf: AeadError, code: 'ECOUNTER' });
    t.is(key.seal([new Uint8Array(1)], header, out, 0, 10), 1, 'skipping ahead is allowed');
    t.is(key.nextCounter, 11);
    t.throws(() => key.seal([new Uint8Array(1)], header, out, 0, 10), { instanceOf: AeadError, code: 'ECOUNTER' });
    // The last counters below 2^53, then exhaustion.
    t.is(key.seal([new Uint8Array(1)], header, out, 0, COUNTER_LIMIT - 2), 1);
    t.throws(() => key.seal([new Uint8Array(1), new Uint8Array(1)], header, out), { instanceOf: AeadError, code: 'ECOUNTER' });
    t.is(key.seal([new Uint8Array(1)], header, out), 1);
    t.is(key.nextCounter, COUNTER_LIMIT);
    t.throws(() => key.seal([new Uint8Array(1)], header, out), { instanceOf: AeadError, code: 'ECOUNTER' });
    t.throws(() => key.seal([new Uint8Array(1)], header, out, 0, COUNTER_LIMIT), { instanceOf: AeadError });
  });

  test(`${cipher}: a counter at or above 2^53 in a datagram is malformed; counters spent before a refusal stay spent`, (t) => {
    const key = AeadKey.create(cipher, randomBytes(32));
    const header = { type: 4, epoch: 0, receiverId: 9 };
    const out = DatagramBatch.create(8, 1 << 14);
    t.is(key.seal([new Uint8Array(10)], header, out), 1);
    const view = new DataView(out.buffer);
    view.setBigUint64(out.offsets[0]! + 8, 1n << 53n);
    t.is(key.open(out, header, 0, 1), 0);
    t.is(out.status[0], DatagramStatus.Malformed);
    // A refusal in the middle of a batch (an oversize payload) spends the counters sealed before it.
    t.throws(() => key.seal([new Uint8Array(1), new Uint8Array(MAX_SEALED_PAYLOAD + 1)], header, out), { instanceOf: AeadError, code: 'EMSGSIZE' });
    t.is(key.nextCounter, 2);
    t.throws(() => key.seal([new Uint8Array(1), 'x' as unknown as Uint8Array], header, out), { instanceOf: AeadError });
    t.is(key.nextCounter, 3);
  });

  test(`${cipher}: seal stops at a full arena or row table, and refuses a payload inside its own arena`, (t) => {
    const key = AeadKey.create(cipher, randomBytes(32));
    const header = { type: 4, epoch: 0, receiverId: 9 };
    const out = DatagramBatch.create(4, 1000);
    t.is(key.seal(Array.from({ length: 5 }, () => new Uint8Array(100)), header, out), 4, 'four rows');
    t.is(key.seal(Array.from({ length: 5 }, () => new Uint8Array(400)), header, out), 2, 'two fit 1000 bytes');
    t.is(key.seal([new Uint8Array(2000)], header, out), 0, 'none fits');
    t.throws(() => key.seal([new Uint8Array(out.buffer, 900, 50)], header, out), { instanceOf: AeadError, code: 'EINVAL' });
    key.destroy();
    t.true(key.destroyed);
    t.throws(() => key.seal([new Uint8Array(1)], header, out), { instanceOf: AeadError, code: 'EDESTROYED' });
    t.throws(() => key.open(out, header), { instanceOf: AeadError, code: 'EDESTROYED' });
    key.destroy();
  });
}

test('a transferred batch is refused, not written', (t) => {
  const key = AeadKey.create('chacha20-poly1305', randomBytes(32));
  const out = DatagramBatch.create(4, 4096);
  structuredClone(out.buffer, { transfer: [out.buffer] });
  t.throws(() => key.seal([new Uint8Array(1)], { type: 1, epoch: 0, receiverId: 0 }, out), { instanceOf: AeadError, code: 'EFAULT' });
});
