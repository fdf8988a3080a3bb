// The output ring of a connection's writes (operators/core/slab.ts): never hands out bytes the
// connection may still hold, and reuses its memory while a bulk transfer keeps the connection busy.
import test from 'ava';
import { Slab } from '../operators/core/slab.js';
import { xorshift32 } from './helpers/random.js';

/** A connection that sends its bytes in order: what was written and not yet sent, oldest first. */
class FakeConnection {
  readonly held: Buffer[] = [];
  pendingBytes = 0;
  write(b: Buffer): void {
    this.held.push(b);
    this.pendingBytes += b.length;
  }
  /** Sends `n` bytes from the front (a write may go out in part). */
  send(n: number): void {
    while (n > 0 && this.held.length > 0) {
      const first = this.held[0]!;
      const k = Math.min(n, first.length);
      this.held[0] = first.subarray(k);
      this.pendingBytes -= k;
      n -= k;
      if (this.held[0]!.length === 0) this.held.shift();
    }
  }
}

const overlaps = (a: Buffer, b: Buffer): boolean =>
  a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length;

/** A deterministic pseudo-random sequence in [0, 1). */
function random(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 0x100000000;
}

test('never hands out bytes the connection still holds, over 20 000 writes of random sizes and random partial sends', (t) => {
  for (const seed of [1, 7, 42, 1234]) {
    const rnd = random(seed);
    const conn = new FakeConnection();
    let allocations = 0;
    const slab = new Slab(() => conn.pendingBytes, (n) => {
      allocations++;
      return Buffer.allocUnsafe(n);
    });
    for (let i = 0; i < 5000; i++) {
      const size = rnd() < 0.1 ? 100 + Math.floor(rnd() * 3000) : 4096 + Math.floor(rnd() * 300_000);
      const out = slab.take(size);
      t.is(out.length, size);
      for (const h of conn.held) if (overlaps(out, h)) t.fail(`seed ${seed}, write ${i}: handed out ${size} bytes the connection still holds`);
      out.fill(i & 0xff);
      conn.write(out);
      const r = rnd();
      conn.send(r < 0.05 ? conn.pendingBytes : Math.floor(r * 400_000));
    }
    // What the connection holds was never overwritten by a later output.
    t.true(allocations < 5000 / 2, `seed ${seed}: ${allocations} allocations for 5000 writes`);
  }
});

test('a connection that stays busy reuses one ring: no new slab per batch', (t) => {
  const conn = new FakeConnection();
  const buffers = new Set<ArrayBufferLike>();
  const slab = new Slab(() => conn.pendingBytes);
  const batch = 1 << 20;
  for (let i = 0; i < 200; i++) {
    const out = slab.take(batch);
    buffers.add(out.buffer);
    conn.write(out);
    // The connection is never empty: it sends a batch's worth but always keeps some.
    conn.send(i === 0 ? batch / 2 : batch);
  }
  t.true(conn.pendingBytes > 0);
  t.true(buffers.size <= 2, `${buffers.size} slabs for 200 batches`);
});

test('a write the connection still holds all of forces a new slab; an empty connection starts the ring over', (t) => {
  const conn = new FakeConnection();
  const slab = new Slab(() => conn.pendingBytes);
  const a = slab.take(600 * 1024); // slab of 1200 KiB
  conn.write(a);
  const b = slab.take(600 * 1024);
  t.is(b.buffer, a.buffer, 'fits after the first');
  conn.write(b);
  const c = slab.take(600 * 1024);
  t.not(c.buffer, a.buffer, 'nothing sent yet: a new slab');
  conn.write(c);
  conn.send(conn.pendingBytes);
  const d = slab.take(600 * 1024);
  t.is(d.buffer, c.buffer, 'all sent: the current slab from its start');
  t.is(d.byteOffset, c.byteOffset);
});

test('with the held bytes unknown (Infinity) nothing is ever reused; small outputs bypass the slab', (t) => {
  const slab = new Slab(() => Number.POSITIVE_INFINITY);
  const seen: Buffer[] = [];
  for (let i = 0; i < 50; i++) {
    const out = slab.take(100_000);
    for (const s of seen) t.false(overlaps(out, s));
    seen.push(out);
  }
  const small = slab.take(100);
  t.false(seen.some((s) => s.buffer === small.buffer && small.byteOffset >= s.byteOffset && small.byteOffset < s.byteOffset + s.length));
});
