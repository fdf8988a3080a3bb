// Reused output memory for a connection's writes: a ring that never hands out bytes the
// connection may still hold (operators/writeSession.ts encodes every large write into it).

/** Bytes of a slab at least (a slab is at least twice the largest output carved from it). */
const SLAB_BYTES = 512 * 1024;
/** Outputs smaller than this bypass the slab (Node pools allocations below 4 KiB). */
const SLAB_MIN_REQUEST = 4096;

/**
 * Output buffers carved one after another out of a slab used as a ring. The connection sends bytes
 * in the order they were written, so of everything carved only the last `pending()` bytes can still
 * be held by it (fewer when small outputs from elsewhere were written in between: the estimate errs
 * on the safe side); the space before them is free again. A request that fits neither after the
 * newest output nor, wrapping, before the oldest one still pending gets a new slab (at least twice
 * the request), leaving the old one to whatever still references it. Under a steady bulk transfer,
 * where the connection is never quite empty, the ring is reused instead of a fresh slab per batch.
 */
export class Slab {
  private buf: Buffer | undefined;
  /** Where the next output is carved (offset in `buf`). */
  private head = 0;
  /** Bytes handed out from this connection's slabs so far. */
  private carved = 0;
  /** The value of `carved` at offset 0 of the current lap of `buf`. */
  private lapStart = 0;
  /** The value of `carved` at offset 0 of the lap before, when that lap was in this `buf` (undefined: `buf` is new, the lap before was in an older slab). */
  private prevLapStart: number | undefined;

  constructor(
    /** Bytes the connection still holds (of everything written to it, the newest); Infinity when unknown. */
    private readonly pending: () => number,
    private readonly allocate: (bytes: number) => Buffer = (bytes) => Buffer.allocUnsafe(bytes),
  ) {}

  /** A buffer of `bytes` that stays untouched until the connection no longer holds it. */
  readonly take = (bytes: number): Buffer => {
    if (bytes < SLAB_MIN_REQUEST) return this.allocate(bytes);
    const at = this.place(bytes);
    if (at === undefined) {
      this.buf = this.allocate(Math.max(SLAB_BYTES, 2 * bytes));
      this.lapStart = this.carved;
      this.prevLapStart = undefined;
      this.head = 0;
    } else if (at === 0 && this.head !== 0) {
      // Wrap: the tail of this lap stays unused (`carved` counts only bytes handed out, so that
      // the connection's last `pending()` bytes are the last `pending()` of `carved`).
      this.prevLapStart = this.lapStart;
      this.lapStart = this.carved;
      this.head = 0;
    }
    const out = this.buf!.subarray(this.head, this.head + bytes);
    this.head += bytes;
    this.carved += bytes;
    return out;
  };

  /** Where in `buf` `bytes` can be carved without touching what the connection may hold: head, 0 (wrapping), or undefined. */
  private place(bytes: number): number | undefined {
    const buf = this.buf;
    if (buf === undefined || bytes > buf.length) return undefined;
    const pending = this.pending();
    if (pending === 0) {
      // Nothing is held: start the ring over.
      this.lapStart = this.carved;
      this.prevLapStart = undefined;
      this.head = 0;
      return 0;
    }
    const oldest = this.carved - pending;
    if (oldest >= this.lapStart) {
      // Everything held is in this lap, from `oldest - lapStart` to `head`.
      if (this.head + bytes <= buf.length) return this.head;
      return bytes <= oldest - this.lapStart ? 0 : undefined;
    }
    // Some of what is held comes before this lap: in the lap before, from `oldest - prevLapStart`
    // to that lap's end; or in an older slab (this one is new), leaving all of this one free.
    const end = this.prevLapStart === undefined ? buf.length : oldest >= this.prevLapStart ? oldest - this.prevLapStart : -1;
    return this.head + bytes <= end ? this.head : undefined;
  }
}
