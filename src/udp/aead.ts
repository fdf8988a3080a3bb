// Batched AEAD for the UDP data path: DatagramBatch (a reused arena of datagrams and their
// per-datagram tables) and AeadKey (AES-256-GCM or ChaCha20-Poly1305 through OpenSSL's EVP
// interface in the lwt_udp addon). One call seals or opens a whole batch; nothing is allocated per
// datagram.
//
// Sealed datagram: type (1) | epoch (1) | reserved (2, zero) | receiver id (4, BE) | counter (8, BE)
// | ciphertext | tag (16). The 16-byte header is the AAD; the nonce is 4 zero bytes + the counter.
import { AeadError, toAeadError } from './errors.js';
import { udpBinding, type NativeAeadKey, type NativeDatagramBatch } from './native.js';

/** Bytes in front of the ciphertext. */
export const HEADER_BYTES = 16;
/** Bytes of the authentication tag behind the ciphertext. */
export const TAG_BYTES = 16;
/** What sealing adds to a payload (header + tag). */
export const SEAL_OVERHEAD = HEADER_BYTES + TAG_BYTES;
/** What a sealed payload costs on an IPv4 path: seal overhead + UDP 8 + IPv4 20 = 60 bytes. */
export const IPV4_DATAGRAM_OVERHEAD = SEAL_OVERHEAD + 8 + 20;
/** The largest payload one datagram can carry (65507 - 32). */
export const MAX_SEALED_PAYLOAD = 65507 - SEAL_OVERHEAD;
/** Counters are exact JS Numbers: seal uses only counters below this; open calls larger ones malformed. */
export const COUNTER_LIMIT = 2 ** 53;

/** The AEAD ciphers: 32-byte keys, 12-byte nonces, 16-byte tags. */
export type AeadCipher = 'aes-256-gcm' | 'chacha20-poly1305';

/** Values of DatagramBatch.status. */
export const DatagramStatus = {
  /** Not opened: as received, or not selected by any open() yet. */
  Pending: 0,
  /** Authenticated and decrypted in place: offsets/lengths now describe the plaintext, counters[i] its counter. */
  Opened: 1,
  /** Failed authentication; its bytes are unchanged. */
  BadTag: 2,
  /** Cannot be a sealed datagram (shorter than 32 bytes, reserved bytes set, counter >= 2^53); bytes unchanged. */
  Malformed: 3,
} as const;
/** One of DatagramStatus. */
export type DatagramStatus = (typeof DatagramStatus)[keyof typeof DatagramStatus];

/** The header fields a batch is sealed with. */
export interface SealHeader {
  /** Message type byte, 0..255 (the protocol's). */
  readonly type: number;
  /** Key epoch byte, 0..255. */
  readonly epoch: number;
  /** The receiver's id for this session, u32. */
  readonly receiverId: number;
}

/** Which datagrams open() takes: those whose header carries this receiver id, and this type and
 * epoch when given (absent: any). */
export interface OpenSelector {
  readonly receiverId: number;
  readonly type?: number;
  readonly epoch?: number;
}

/** The arena and per-row columns of a DatagramBatch (typed arrays over memory the addon owns). */
export interface DatagramColumns {
  /** The arena the offsets point into. */
  readonly buffer: ArrayBuffer;
  /** Most rows. */
  readonly capacity: number;
  /** Start of row i's datagram in `buffer` (after open: of its plaintext). */
  readonly offsets: Uint32Array;
  /** Length of row i's datagram (after open: of its plaintext). */
  readonly lengths: Uint32Array;
  /** IPv4 source (received) or destination (to send) of row i, u32 host order. */
  readonly addrs: Uint32Array;
  /** UDP source (received) or destination (to send) port of row i. */
  readonly ports: Uint16Array;
  /** GRO segment size of the coalesced message row i came from; 0 when it arrived alone. */
  readonly segments: Uint16Array;
  /** Header type byte of row i (0 when empty). */
  readonly types: Uint8Array;
  /** Header receiver id of row i (0 when shorter than a header): pick the key with it. */
  readonly receivers: Uint32Array;
  /** DatagramStatus of row i. */
  readonly status: Uint8Array;
  /** Counter of row i once opened (of a sealed row: the counter it was sealed with). */
  readonly counters: Float64Array;
}

/**
 * A reused arena of datagrams with one row per datagram in typed-array columns (DatagramColumns).
 * A UdpSocket reads into one (rows = received datagrams, GRO already split), AeadKey.seal writes
 * one (rows = sealed datagrams, packed from byte 0), AeadKey.open opens rows in place,
 * UdpSocket.sendBatch sends rows. Per-datagram work in JS is array reads:
 * `new Uint8Array(batch.buffer, batch.offsets[i], batch.lengths[i])`.
 */
// The columns are the native object's own properties, copied onto the instance (declaration merging).
export interface DatagramBatch extends DatagramColumns {}
export class DatagramBatch {
  /** @internal */
  readonly native: NativeDatagramBatch;

  /** @internal Wraps a native batch (UdpSocket's receive batch). */
  constructor(native: NativeDatagramBatch) {
    this.native = native;
    Object.assign(this, native);
  }

  /** A batch of at most `capacity` rows (1..65536) over an arena of `bytes` (1..256 MiB). */
  static create(capacity: number, bytes: number): DatagramBatch {
    try {
      return new DatagramBatch(new (udpBinding().DatagramBatch)(capacity, bytes));
    } catch (err) {
      throw toAeadError(err);
    }
  }

  /** A view of row i's bytes (allocates a view: for tests and slow paths). */
  datagram(i: number): Uint8Array {
    return new Uint8Array(this.buffer, this.offsets[i], this.lengths[i]);
  }
}

function nativeKey(cipher: AeadCipher, key: Uint8Array, rawOnly: boolean): NativeAeadKey {
  if (cipher !== 'aes-256-gcm' && cipher !== 'chacha20-poly1305') {
    throw new AeadError(`unknown cipher ${String(cipher)}`, 'EINVAL', 'AeadKey');
  }
  try {
    return new (udpBinding().AeadKey)(cipher, key, rawOnly);
  } catch (err) {
    throw toAeadError(err);
  }
}

/** What both kinds of key share: the cipher and the native key, destroyed once. */
abstract class NativeKeyHolder {
  /** The cipher. */
  readonly cipher: AeadCipher;
  /** @internal */
  protected readonly handle: NativeAeadKey;

  protected constructor(cipher: AeadCipher, rawOnly: boolean, key: Uint8Array) {
    this.cipher = cipher;
    this.handle = nativeKey(cipher, key, rawOnly);
  }

  /** True once destroy() was called. */
  get destroyed(): boolean {
    return this.handle.destroyed;
  }

  /** Frees the OpenSSL contexts (wiping the key schedule); later calls throw EDESTROYED. Idempotent. */
  destroy(): void {
    this.handle.destroy();
  }
}

/**
 * One AEAD key with a reusable OpenSSL context per direction. A key must seal in one direction
 * only (the protocol derives one key per direction): seal refuses any counter it already used,
 * but cannot know what the peer sealed with the same key.
 */
export class AeadKey extends NativeKeyHolder {
  private constructor(cipher: AeadCipher, key: Uint8Array) {
    super(cipher, false, key);
  }

  /** A key from 32 bytes (the caller should wipe its copy afterwards); throws AeadError EINVAL. */
  static create(cipher: AeadCipher, key: Uint8Array): AeadKey {
    return new AeadKey(cipher, key);
  }

  /** @internal */
  static native(key: AeadKey): NativeAeadKey {
    return key.handle;
  }

  /** The lowest counter seal() still accepts (every lower one was used). */
  get nextCounter(): number {
    return this.handle.nextCounter;
  }

  /**
   * Seals payloads[from..] into `out`, packed from byte 0 (as many as fit its arena and rows), and
   * returns how many; row k is payload from+k sealed with counter + k (default: nextCounter).
   * Throws AeadError ECOUNTER for a counter below nextCounter (never a nonce twice), EMSGSIZE for
   * a payload over MAX_SEALED_PAYLOAD, EINVAL for a payload inside out's arena. Counters of
   * datagrams sealed before a throw are spent.
   */
  seal(payloads: readonly Uint8Array[], header: SealHeader, out: DatagramBatch, from = 0, counter = -1): number {
    try {
      return this.handle.seal(payloads, from, header.type, header.epoch, header.receiverId, counter, out.native);
    } catch (err) {
      throw toAeadError(err);
    }
  }

  /**
   * Opens in place every Pending row of batch[from..to) that `selector` picks, and returns how many
   * authenticated. Each picked row becomes Opened (offsets/lengths now the plaintext's, counters[i]
   * set), BadTag or Malformed (bytes unchanged, nothing allocated). Rows too short to carry a
   * header become Malformed whatever the selector. Replay checks on counters are the caller's.
   */
  open(batch: DatagramBatch, selector: OpenSelector, from = 0, to = batch.capacity): number {
    try {
      return this.handle.open(batch.native, from, to, selector.type ?? -1, selector.epoch ?? -1, selector.receiverId);
    } catch (err) {
      throw toAeadError(err);
    }
  }

}

/**
 * A key for published test vectors (RFC 8439, NIST/McGrew-Viega): single messages under
 * caller-chosen nonces and AAD, through the same OpenSSL calls the batches use. Its native key
 * refuses the batch calls, and AeadKey's refuses these: a data-path key never takes a nonce from outside.
 */
export class AeadVectorKey extends NativeKeyHolder {
  private constructor(cipher: AeadCipher, key: Uint8Array) {
    super(cipher, true, key);
  }

  /** A vector key from 32 bytes; throws AeadError EINVAL. */
  static create(cipher: AeadCipher, key: Uint8Array): AeadVectorKey {
    return new AeadVectorKey(cipher, key);
  }

  /** Ciphertext followed by the 16-byte tag of `plaintext` under a 12-byte nonce, authenticating `aad`. */
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    try {
      return this.handle.sealRaw(nonce, aad, plaintext);
    } catch (err) {
      throw toAeadError(err);
    }
  }

  /** The plaintext of `sealed` (ciphertext + tag), or null when it does not authenticate. */
  open(nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array | null {
    try {
      return this.handle.openRaw(nonce, aad, sealed);
    } catch (err) {
      throw toAeadError(err);
    }
  }

}
