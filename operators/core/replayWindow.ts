// The anti-replay window of a datagram receiver (RFC 6479): a bitmap of the last WINDOW counters
// seen, kept as a ring of 32-bit words, so a check and an update cost a few integer operations and
// allocate nothing. Counters are the 64-bit datagram counters of one key, below 2^53 here (at a
// million datagrams a second that is 285 years; rekeying comes long before).

/** Bits per block of the ring. */
const BLOCK_BITS = 32;
/** Blocks in the ring: a power of two. */
const BLOCKS = 128;
/** Counters behind the highest one that are still accepted once: 4096 − 32 = 4064 (RFC 6479: the ring minus one block). */
export const REPLAY_WINDOW = BLOCK_BITS * BLOCKS - BLOCK_BITS;

/** Why a counter is refused. */
export type ReplayVerdict = 'ok' | 'replay' | 'too-old';

/**
 * The counters one key has accepted. `check` says whether a counter may be accepted (never seen,
 * and not older than the window); `accept` records it. Call `accept` only after the datagram
 * authenticated (a forged datagram must change nothing).
 */
export class ReplayWindow {
  readonly #ring = new Uint32Array(BLOCKS);
  /** The highest counter accepted, or -1 before the first. */
  #top = -1;

  /** The highest counter accepted so far (-1 before any). */
  get highest(): number {
    return this.#top;
  }

  /** Whether `counter` may be accepted: 'ok', 'replay' (seen already) or 'too-old' (behind the window). */
  check(counter: number): ReplayVerdict {
    if (!Number.isSafeInteger(counter) || counter < 0) return 'too-old';
    if (counter > this.#top) return 'ok';
    if (this.#top - counter >= REPLAY_WINDOW) return 'too-old';
    const bit = counter % BLOCK_BITS;
    const block = Math.floor(counter / BLOCK_BITS) % BLOCKS;
    return (this.#ring[block]! & (1 << bit)) !== 0 ? 'replay' : 'ok';
  }

  /** Records `counter` as seen (it passed `check` and authenticated); returns `check`'s verdict for it. */
  accept(counter: number): ReplayVerdict {
    const verdict = this.check(counter);
    if (verdict !== 'ok') return verdict;
    const block = Math.floor(counter / BLOCK_BITS);
    if (counter > this.#top) {
      const topBlock = this.#top < 0 ? -1 : Math.floor(this.#top / BLOCK_BITS);
      // Clear the blocks the window slides over (at most the whole ring).
      const slide = Math.min(block - topBlock, BLOCKS);
      for (let i = 1; i <= slide; i++) this.#ring[(block - slide + i) % BLOCKS] = 0;
      this.#top = counter;
    }
    this.#ring[block % BLOCKS]! |= 1 << (counter % BLOCK_BITS);
    return 'ok';
  }
}
