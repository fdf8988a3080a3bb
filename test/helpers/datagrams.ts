// The UDP data path's datagrams by hand, for the channel tests: the key derivation and the format
// as docs/protocol.md writes them, computed with Node's own HMAC and cipher (never the addon), plain
// loopback sockets to play a peer or an attacker, the driver's sockets on loopback, and the small
// waits those tests share.
import { createCipheriv, createDecipheriv, createHmac, type CipherGCMTypes } from 'node:crypto';
import dgram from 'node:dgram';
import type { Observable, Subscription } from 'rxjs';
import type { DropCounts } from '../../operators/core/packet.js';
import type { Arrival, UdpCipher, UdpClientSocket, UdpHub } from '../../pipelines/ports.js';
import { makeUdpClient, makeUdpHub } from '../../src/udp/channels.js';

/** HKDF-SHA256 (RFC 5869) written out with HMAC, as the protocol document defines the epoch keys. */
export function hkdf(secret: Uint8Array, salt: Uint8Array, info: string, length: number): Buffer {
  const prk = createHmac('sha256', salt).update(secret).digest();
  const out: Buffer[] = [];
  let t = Buffer.alloc(0);
  for (let i = 1; out.length * 32 < length; i++) {
    t = createHmac('sha256', prk).update(Buffer.concat([t, Buffer.from(info), Buffer.from([i])])).digest();
    out.push(t);
  }
  return Buffer.concat(out).subarray(0, length);
}

/** The documented client→hub key of epoch `epoch` of receiver id `id` (a session's, or a pair's toward `id`). */
export function toHubKey(secret: Uint8Array, id: number, epoch: number): Buffer {
  const salt = Buffer.alloc(8);
  salt.writeUInt32BE(id, 0);
  salt.writeUInt32BE(epoch, 4);
  return hkdf(secret, salt, 'lightweight-tunnel udp keys v1', 64).subarray(0, 32);
}

/** The header fields of a datagram. */
export interface HeaderFields {
  readonly type: number;
  readonly epoch: number;
  readonly id: number;
  readonly counter: number;
}

/** A datagram as the protocol document describes it, sealed with Node's cipher: header ‖ ciphertext ‖ tag. */
export function sealByHand(cipher: UdpCipher, key: Uint8Array, h: HeaderFields, payload: Uint8Array): Buffer {
  const header = Buffer.alloc(16);
  header[0] = h.type;
  header[1] = h.epoch;
  header.writeUInt32BE(h.id, 4);
  header.writeBigUInt64BE(BigInt(h.counter), 8);
  const nonce = Buffer.alloc(12);
  header.copy(nonce, 4, 8, 16);
  const c = createCipheriv(cipher as CipherGCMTypes, key, nonce, { authTagLength: 16 });
  c.setAAD(header);
  const body = Buffer.concat([c.update(payload), c.final()]);
  return Buffer.concat([header, body, c.getAuthTag()]);
}

/** A datagram opened with Node's cipher and `key`: its header fields and payload, or undefined when it does not authenticate. */
export function openByHand(cipher: UdpCipher, key: Uint8Array, datagram: Uint8Array): (HeaderFields & { readonly payload: Buffer }) | undefined {
  const d = Buffer.from(datagram);
  if (d.length < 32) return undefined;
  const header = d.subarray(0, 16);
  const nonce = Buffer.alloc(12);
  header.copy(nonce, 4, 8, 16);
  const c = createDecipheriv(cipher as CipherGCMTypes, key, nonce, { authTagLength: 16 });
  c.setAAD(header);
  c.setAuthTag(d.subarray(d.length - 16));
  try {
    const payload = Buffer.concat([c.update(d.subarray(16, d.length - 16)), c.final()]);
    return { type: header[0]!, epoch: header[1]!, id: header.readUInt32BE(4), counter: Number(header.readBigUInt64BE(8)), payload };
  } catch {
    return undefined;
  }
}

/** An IPv4-looking payload of `n` bytes tagged with `tag`. */
export const packet = (tag: number, n = 60): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i === 0 ? 0x45 : (tag + i) & 0xff));

/** Collects a channel's arrivals (their packets copied) and drops. */
export function watch<A extends Arrival>(ch: { readonly arrivals$: Observable<A>; readonly drops$: Observable<DropCounts> }): { arrivals: A[]; drops: DropCounts[]; sub: Subscription } {
  const arrivals: A[] = [];
  const drops: DropCounts[] = [];
  const sub = ch.arrivals$.subscribe((a) => arrivals.push({ ...a, packets: a.packets.map((p) => Uint8Array.from(p)) }));
  sub.add(ch.drops$.subscribe((d) => drops.push(d)));
  return { arrivals, drops, sub };
}

/** Waits until `check` holds (polling every 5 ms), or fails after `ms`. */
export async function until(what: string | (() => string), check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The drops of `reason` in all of `ds`. */
export const total = (ds: readonly DropCounts[], reason: keyof DropCounts): number => ds.reduce((n, d) => n + (d[reason] ?? 0), 0);

/** A plain UDP socket on loopback that collects what it receives, closed by the test's teardown. */
export async function plainSocket(t: { teardown(fn: () => void): void }): Promise<{ socket: dgram.Socket; got: Buffer[]; port: number }> {
  const socket = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  socket.on('message', (m) => got.push(m));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  t.teardown(() => socket.close());
  return { socket, got, port: socket.address().port };
}

/** Sends `b` from `s` to 127.0.0.1:`port`. */
export const send = (s: dgram.Socket, b: Uint8Array, port: number): Promise<void> => new Promise((r, j) => s.send(b, port, '127.0.0.1', (e) => (e ? j(e) : r())));

/** A hub socket (src/udp/channels.ts) on an ephemeral loopback port, closed by the test's teardown. */
export async function hubSocket(t: { teardown(fn: () => void): void }, cipher: UdpCipher, rekeyAfter?: number, coalesce = false): Promise<UdpHub> {
  let sub: Subscription | undefined;
  const hub = await new Promise<UdpHub>((resolve, reject) => {
    sub = makeUdpHub({ host: '127.0.0.1', cipher, coalesce, ...(rekeyAfter === undefined ? {} : { rekeyAfter }) }).bind(0).subscribe({ next: resolve, error: reject });
  });
  t.teardown(() => sub?.unsubscribe());
  return hub;
}

/** A client's socket (src/udp/channels.ts) with its channel to the hub at `port` on loopback, session `id` keyed from `secret`, open until the test's teardown. */
export async function clientSocket(t: { teardown(fn: () => void): void }, port: number, id: number, cipher: UdpCipher, secret: Uint8Array, rekeyAfter?: number): Promise<UdpClientSocket> {
  let sub: Subscription | undefined;
  const socket = await new Promise<UdpClientSocket>((resolve, reject) => {
    sub = makeUdpClient({ host: '127.0.0.1', ...(rekeyAfter === undefined ? {} : { rekeyAfter }) }).open('127.0.0.1', port, id, secret, cipher).subscribe({ next: resolve, error: reject });
  });
  t.teardown(() => sub?.unsubscribe());
  return socket;
}
