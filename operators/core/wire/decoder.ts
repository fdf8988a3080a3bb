// A bounded, synchronous frame decoder: push(chunk) returns the frames completed by that chunk.
import { HEADER_BYTES, type Frame } from './frames.js';

/** Why a byte stream was refused. Thrown by FrameDecoder.push; the session ends with this reason. */
export class FrameError extends Error {
  override readonly name = 'FrameError';
  constructor(
    /** Machine-readable reason. */
    readonly reason: 'oversize',
    /** The length the peer claimed. */
    readonly length: number,
    /** The limit in force. */
    readonly limit: number,
    /** The four length bytes look like the start of a TLS record: the peer speaks TLS. */
    readonly looksLikeTls = false,
  ) {
    super(
      looksLikeTls
        ? `the peer speaks TLS but this side runs without it (add -tls on both sides, or remove it on both)`
        : `frame body of ${length} bytes exceeds the limit of ${limit}`,
    );
  }
}

/** True when the length bytes b0..b2 are a TLS record header (content type 20..24, version 3.x). */
function tlsRecordHeader(b0: number, b1: number, b2: number): boolean {
  return b0 >= 0x14 && b0 <= 0x18 && b1 === 0x03 && b2 <= 0x04;
}

/** Spanning bodies at least this long go into the decoder's two reused buffers (with `reuse`). */
const REUSE_MIN = 4096;

/**
 * Turns a byte stream into frames. Payloads are views into the pushed chunks when a frame lies
 * within one chunk, and into a buffer of exactly the announced size (never more than `maxBody`)
 * when it spans chunks. A length above `maxBody` throws FrameError before anything is allocated.
 * Zero-length bodies (which the Go program ignores) are skipped and counted in `emptyFrames`.
 * With `reuse`, spanning bodies of REUSE_MIN bytes or more are assembled in two buffers that the
 * decoder keeps and alternates between: a payload is then valid only until the next push (the
 * frames of one push are consumed before the next), and a stream of 64 KiB SUPER frames allocates
 * nothing per frame.
 */
export class FrameDecoder {
  /** Zero-length bodies seen so far. */
  emptyFrames = 0;
  private readonly header = new Uint8Array(HEADER_BYTES);
  private headerHave = 0;
  private body: Uint8Array | undefined;
  private bodyHave = 0;

  private readonly spare: (Uint8Array | undefined)[] = [undefined, undefined];
  private nextSpare = 0;

  /** `maxBody` may be changed between pushes (raised once a peer negotiated larger frames). */
  constructor(
    public maxBody: number,
    private readonly reuse = false,
  ) {}

  // A buffer for a body of `len` bytes that will span chunks.
  private bodyBuffer(len: number): Uint8Array {
    if (!this.reuse || len < REUSE_MIN) return new Uint8Array(len);
    const i = this.nextSpare;
    this.nextSpare ^= 1;
    let buf = this.spare[i];
    if (buf === undefined || buf.length < len) {
      buf = new Uint8Array(Math.min(Math.max(len, 2 * (buf?.length ?? 0)), Math.max(len, this.maxBody)));
      this.spare[i] = buf;
    }
    return buf.subarray(0, len);
  }

  /** Bytes of an unfinished frame held between chunks (at most HEADER_BYTES + maxBody). */
  get pending(): number {
    return this.body ? this.bodyHave + HEADER_BYTES : this.headerHave;
  }

  /** Decodes `chunk`; returns the frames it completes, in order. Throws FrameError on an oversize length. */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    let at = 0;
    const end = chunk.length;
    if (this.body !== undefined || this.headerHave > 0) at = this.resume(chunk, frames);
    while (at < end) {
      if (end - at < HEADER_BYTES) {
        this.header.set(chunk.subarray(at, end), 0);
        this.headerHave = end - at;
        return frames;
      }
      const len = ((chunk[at]! << 24) | (chunk[at + 1]! << 16) | (chunk[at + 2]! << 8) | chunk[at + 3]!) >>> 0;
      if (len > this.maxBody) throw new FrameError('oversize', len, this.maxBody, tlsRecordHeader(chunk[at]!, chunk[at + 1]!, chunk[at + 2]!));
      at += HEADER_BYTES;
      if (len === 0) {
        this.emptyFrames++;
        continue;
      }
      if (end - at >= len) {
        frames.push({ type: chunk[at]!, payload: chunk.subarray(at + 1, at + len) });
        at += len;
      } else {
        this.body = this.bodyBuffer(len);
        this.body.set(chunk.subarray(at, end), 0);
        this.bodyHave = end - at;
        return frames;
      }
    }
    return frames;
  }

  // Completes a header and/or body carried over from earlier chunks; returns where parsing goes on.
  private resume(chunk: Uint8Array, frames: Frame[]): number {
    let at = 0;
    if (this.body === undefined) {
      const need = HEADER_BYTES - this.headerHave;
      const take = Math.min(need, chunk.length);
      this.header.set(chunk.subarray(0, take), this.headerHave);
      this.headerHave += take;
      at = take;
      if (this.headerHave < HEADER_BYTES) return at;
      const h = this.header;
      const len = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
      this.headerHave = 0;
      if (len > this.maxBody) throw new FrameError('oversize', len, this.maxBody, tlsRecordHeader(h[0]!, h[1]!, h[2]!));
      if (len === 0) {
        this.emptyFrames++;
        return at;
      }
      const rest = chunk.length - at;
      if (rest >= len) {
        frames.push({ type: chunk[at]!, payload: chunk.subarray(at + 1, at + len) });
        return at + len;
      }
      this.body = this.bodyBuffer(len);
      this.bodyHave = 0;
    }
    const body = this.body;
    const take = Math.min(body.length - this.bodyHave, chunk.length - at);
    body.set(chunk.subarray(at, at + take), this.bodyHave);
    this.bodyHave += take;
    at += take;
    if (this.bodyHave === body.length) {
      frames.push({ type: body[0]!, payload: body.subarray(1) });
      this.body = undefined;
      this.bodyHave = 0;
    }
    return at;
  }
}
