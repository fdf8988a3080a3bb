// A seeded PRNG and generators of hostile wire input: random and mutated frames, byte streams,
// control payloads and HELLOs with wrong types. Written for the fuzz and flood tests; everything is
// reproducible from one 32-bit seed (print it in failure messages).

/** Hard-coded seed every run uses, so a plain run always covers the same cases first. */
export const FIXED_SEED = 0x5eed_1e55;

/**
 * Seeds for a fuzz run: the fixed seed and one derived from the clock and pid, or only the value of
 * the environment variable FUZZ_SEED (decimal or 0x-hex) when it is set, to replay a failure.
 */
export function fuzzSeeds(): number[] {
  const env = process.env['FUZZ_SEED'];
  if (env !== undefined && env.trim() !== '') {
    const n = Number(env.trim());
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`FUZZ_SEED must be a 32-bit unsigned integer, not ${env}`);
    return [n >>> 0];
  }
  return [FIXED_SEED, timeSeed()];
}

/** A seed from the clock, the pid and the high-resolution timer. */
export function timeSeed(): number {
  const hr = process.hrtime.bigint();
  return (Number(hr & 0xffffffffn) ^ Math.imul(Date.now() & 0xffffffff, 0x9e3779b1) ^ Math.imul(process.pid, 0x85ebca6b)) >>> 0;
}

/** `0x1234abcd`: how seeds are printed. */
export function hexSeed(seed: number): string {
  return `0x${(seed >>> 0).toString(16).padStart(8, '0')}`;
}

/** sfc32 (Chris Doty-Humphrey's small fast counting generator), seeded through splitmix32. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    let s = seed >>> 0;
    const splitmix = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = splitmix();
    this.b = splitmix();
    this.c = splitmix();
    this.d = 1;
    for (let i = 0; i < 16; i++) this.u32();
  }

  /** A uniform unsigned 32-bit integer. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [0, n) for 1 ≤ n ≤ 2^32. */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** One value by weight: `[[3, 'a'], [1, 'b']]` gives 'a' three times as often as 'b'. */
  weighted<T>(entries: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of entries) total += w;
    let x = this.float() * total;
    for (const [w, v] of entries) {
      x -= w;
      if (x < 0) return v;
    }
    return entries[entries.length - 1]![1];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    this.fill(out);
    return out;
  }

  /** Fills `out` with random bytes. */
  fill(out: Uint8Array, from = 0, to = out.length): void {
    let i = from;
    for (; i + 4 <= to; i += 4) {
      const v = this.u32();
      out[i] = v;
      out[i + 1] = v >>> 8;
      out[i + 2] = v >>> 16;
      out[i + 3] = v >>> 24;
    }
    for (; i < to; i++) out[i] = this.u32();
  }

  /** An independent generator seeded from this one (for per-session streams). */
  fork(): Prng {
    return new Prng(this.u32());
  }
}

// ---------------------------------------------------------------------------------------------
// Frames

/** Frame type bytes this project knows (docs/protocol.md). */
export const TYPE = { data: 0x01, keepalive: 0x02, hello: 0x10, welcome: 0x11, reject: 0x12, ping: 0x13, pong: 0x14 } as const;
const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(TYPE));

/** True when `type` is none of DATA, KEEPALIVE, HELLO, WELCOME, REJECT. */
export function isUnknownType(type: number): boolean {
  return !KNOWN_TYPES.has(type);
}

/** A frame as a generator describes it: a type byte and payload, or an empty body (`type` undefined). */
export interface FrameSpec {
  readonly type: number | undefined;
  readonly payload: Uint8Array;
}

/** Bytes a frame occupies on the wire. */
export function wireSize(f: FrameSpec): number {
  return 4 + (f.type === undefined ? 0 : 1 + f.payload.length);
}

/** Writes a big-endian u32 at `at`. */
export function writeU32(out: Uint8Array, at: number, v: number): void {
  out[at] = (v >>> 24) & 255;
  out[at + 1] = (v >>> 16) & 255;
  out[at + 2] = (v >>> 8) & 255;
  out[at + 3] = v & 255;
}

/** Reads a big-endian u32 at `at`. */
export function readU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

/** Encodes frames by hand (independent of the project's encoder); returns the bytes and each frame's offset. */
export function encodeSpecs(frames: readonly FrameSpec[]): { readonly bytes: Uint8Array; readonly offsets: number[] } {
  let total = 0;
  for (const f of frames) total += wireSize(f);
  const bytes = new Uint8Array(total);
  const offsets: number[] = [];
  let at = 0;
  for (const f of frames) {
    offsets.push(at);
    const len = f.type === undefined ? 0 : 1 + f.payload.length;
    writeU32(bytes, at, len);
    at += 4;
    if (f.type === undefined) continue;
    bytes[at++] = f.type;
    bytes.set(f.payload, at);
    at += f.payload.length;
  }
  return { bytes, offsets };
}

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A type byte that is not one of the known ones (including the reserved 0x15..0x1f range). */
export function unknownType(rng: Prng): number {
  for (;;) {
    const x = rng.int(7);
    const t = x < 4 ? rng.int(256) : x < 6 ? rng.range(0x13, 0x1f) : rng.pick(ODD_TYPES);
    if (isUnknownType(t)) return t;
  }
}

const ODD_TYPES = [0x00, 0x03, 0x0f, 0x20, 0x7f, 0x80, 0xfe, 0xff];

/** A payload length from a distribution that favours small frames but covers every boundary. */
export function payloadLength(rng: Prng, maxPayload: number): number {
  if (maxPayload <= 0) return 0;
  const x = rng.int(100);
  let n: number;
  if (x < 60) n = rng.int(33); // 60 %: tiny
  else if (x < 85) n = rng.range(33, 256); // 25 %: small
  else if (x < 95) n = rng.range(0, maxPayload); // 10 %: anything
  else n = rng.pick([maxPayload, maxPayload - 1, 19, 20, 21, 0, 1]); // 5 %: boundaries
  return Math.max(0, Math.min(maxPayload, n));
}

/** A minimal IPv4 header (20 bytes) plus `payloadBytes` random bytes, from `src` to `dst` (u32). */
export function ipv4(rng: Prng, src: number, dst: number, payloadBytes: number): Uint8Array {
  const p = new Uint8Array(20 + payloadBytes);
  p[0] = 0x45;
  p[2] = (p.length >> 8) & 255;
  p[3] = p.length & 255;
  p[8] = 64;
  p[9] = rng.pick([1, 6, 17]);
  writeU32(p, 12, src);
  writeU32(p, 16, dst);
  rng.fill(p, 20);
  return p;
}

/** A DATA payload that is not an IPv4 packet in the hub's eyes: too short, or version nibble ≠ 4. */
export function notIpv4(rng: Prng, maxPayload: number): Uint8Array {
  if (rng.chance(0.4) || maxPayload < 20) return rng.bytes(rng.int(Math.min(20, maxPayload + 1)));
  const p = rng.bytes(rng.range(20, Math.min(maxPayload, 600)));
  let v = rng.int(16);
  if (v === 4) v = 6;
  p[0] = (v << 4) | (p[0]! & 15);
  return p;
}

/** Dotted-quad text of a u32. */
export function dotted(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

/** A u32 address from dotted-quad text (trusted input). */
export function addr(text: string): number {
  return text.split('.').reduce((a, o) => a * 256 + Number(o), 0) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// JSON and control payloads

const utf8 = new TextEncoder();

const KEYS = ['version', 'address', 'prefix', 'mtu', 'caps', 'hub', 'reason', 'message', 'keepalive', 'timeout', '__proto__', 'constructor', 'toString', '', 'a', 'Version', 'ADDRESS'];

/** A random string: ASCII, control characters, astral and lone-surrogate code units, dotted quads. */
export function randomString(rng: Prng, maxLen = 24): string {
  return rng.weighted<() => string>([
    [3, () => String.fromCharCode(...Array.from({ length: rng.int(maxLen + 1) }, () => rng.range(0x20, 0x7e)))],
    [2, () => String.fromCharCode(...Array.from({ length: rng.int(maxLen + 1) }, () => rng.int(0x10000)))],
    [1, () => String.fromCodePoint(...Array.from({ length: rng.int(4) }, () => rng.range(0x10000, 0x10ffff)))],
    [2, () => rng.pick(['10.0.0.2', '10.0.0.3', '10.0.0.1', '10.0.0.0', '10.0.0.255', '10.0.0.256', '010.0.0.2', '10.0.0.2 ', ' 10.0.0.2', '10.0.0', '10.0.0.2.5', '::1', '', '1e3.0.0.1', '999.999.999.999', '0.0.0.0', '255.255.255.255', '10.0.0.2\u0000'])],
    [1, () => `${rng.int(1000)}.${rng.int(1000)}.${rng.int(1000)}.${rng.int(1000)}`],
    [1, () => rng.pick(['max-clients', 'ip-conflict', 'bad-hello', 'shutting-down', 'frame-error', 'null', 'undefined', 'NaN'])],
  ])();
}

/** A random number, including the awkward ones JSON can carry. */
export function randomNumber(rng: Prng): number {
  return rng.weighted<() => number>([
    [3, () => rng.range(-3, 40)],
    [1, () => rng.float() * 100 - 50],
    [1, () => rng.pick([0, -0, 1, 1.5, -1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e308, -1e308, 5e-324, 33, 1495, 1496, 65536])],
    [1, () => (rng.u32() | 0) * (rng.chance(0.5) ? 1 : 1e-3)],
  ])();
}

/** A random JSON value of bounded depth (objects favour this protocol's keys). */
export function randomJsonValue(rng: Prng, depth = 3): unknown {
  const leaf: Array<readonly [number, () => unknown]> = [
    [2, () => null],
    [2, () => rng.chance(0.5)],
    [4, () => randomNumber(rng)],
    [4, () => randomString(rng)],
  ];
  if (depth <= 0) return rng.weighted(leaf)();
  return rng.weighted<() => unknown>([
    ...leaf,
    [3, () => Array.from({ length: rng.int(5) }, () => randomJsonValue(rng, depth - 1))],
    [
      5,
      () => {
        const o: Record<string, unknown> = {};
        const n = rng.int(6);
        for (let i = 0; i < n; i++) {
          const k = rng.chance(0.8) ? rng.pick(KEYS) : randomString(rng, 8);
          // defineProperty so that "__proto__" becomes an own key, exactly as JSON.parse makes it.
          Object.defineProperty(o, k, { value: randomJsonValue(rng, depth - 1), enumerable: true, writable: true, configurable: true });
        }
        return o;
      },
    ],
  ])();
}

/** Mutates JSON text: truncation, stray characters, bad escapes, duplicated keys, deep nesting, BOM. */
export function mutateJsonText(rng: Prng, text: string): string {
  return rng.weighted<() => string>([
    [3, () => text.slice(0, rng.int(text.length + 1))],
    [2, () => insertAt(text, rng.int(text.length + 1), rng.pick(['"', '\\', '{', '}', '[', ']', ',', ':', '\u0000', '\\u12', '\\x41', 'NaN', 'Infinity', 'undefined', "'", '/*', '\n']))],
    [1, () => `\ufeff${text}`],
    [1, () => `${text}${rng.pick(['', ' ', 'x', '}', '{}', '\u0000', '\n{"version":1}'])}`],
    [1, () => `${'['.repeat(rng.range(1, 700))}${text}${']'.repeat(rng.range(0, 700))}`],
    [1, () => text.replace(/"version"/, '"version":1,"version"')],
    [1, () => text.replace(/:/g, () => (rng.chance(0.2) ? '=' : ':'))],
  ])();
}

function insertAt(s: string, at: number, what: string): string {
  return s.slice(0, at) + what + s.slice(at);
}

/** Bytes that are not valid UTF-8 (overlongs, lone continuation bytes, surrogates, truncated sequences). */
export function invalidUtf8(rng: Prng): Uint8Array {
  const bad = rng.pick<number[]>([[0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0x80], [0xbf], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0xff], [0xfe]]);
  const before = utf8.encode(JSON.stringify({ version: 1, address: '10.0.0.9' }));
  const at = rng.int(before.length + 1);
  return concat([before.subarray(0, at), Uint8Array.from(bad), before.subarray(at)]);
}

/** A control payload of at most `maxLen` bytes: random JSON, mutated JSON, broken UTF-8 or random bytes. */
export function randomControlPayload(rng: Prng, maxLen = 1495): Uint8Array {
  const p = rng.weighted<() => Uint8Array>([
    [4, () => utf8.encode(JSON.stringify(randomJsonValue(rng)) ?? 'null')],
    [3, () => utf8.encode(mutateJsonText(rng, JSON.stringify(randomJsonValue(rng)) ?? ''))],
    [4, () => utf8.encode(JSON.stringify(hostileHelloObject(rng)))],
    [2, () => utf8.encode(mutateJsonText(rng, JSON.stringify(hostileHelloObject(rng))))],
    [1, () => invalidUtf8(rng)],
    [2, () => rng.bytes(payloadLength(rng, maxLen))],
    [1, () => new Uint8Array(0)],
  ])();
  return p.length > maxLen ? p.subarray(0, maxLen) : p;
}

/** What a hostile HELLO is meant to provoke at the hub (for the live test's expectations). */
export type HelloIntent =
  | 'wrong-types' // some field has the wrong type: bad-hello
  | 'no-address' // no address: bad-hello
  | 'old-version' // version < 1: unsupported-version
  | 'outside' // address outside 10.0.0.0/24, or its network/broadcast address: outside-subnet
  | 'hub' // the hub's own address: hub-address
  | 'spoof' // a good client's address: ip-conflict
  | 'free'; // a plausible free address: may join

/** HELLO-shaped objects built to be refused, with the refusal they aim at. */
export function hostileHello(rng: Prng, goodAddresses: readonly string[] = ['10.0.0.2', '10.0.0.3']): { readonly intent: HelloIntent; readonly hello: Record<string, unknown> } {
  const base = (): Record<string, unknown> => ({ version: 1, prefix: 24, mtu: 1400, caps: [] });
  const wrong: Array<readonly [number, () => Record<string, unknown>]> = [
    [1, () => ({ ...base(), version: rng.pick<unknown>(['1', 1.5, null, [], {}, true, '', 'v1', -0.5]), address: '10.0.0.9' })],
    [1, () => ({ ...base(), address: rng.pick<unknown>([167772169, ['10.0.0.9'], { a: 1 }, null, true, '10.0.0.9/24', '10.0.0', '::ffff:10.0.0.9', '10.0.0.9 ']) })],
    [1, () => ({ ...base(), address: '10.0.0.9', prefix: rng.pick<unknown>([33, -1, 24.5, '24', null, 2 ** 40]) })],
    [1, () => ({ ...base(), address: '10.0.0.9', mtu: rng.pick<unknown>([1400.5, '1400', null, [], {}]) })],
    [1, () => ({ ...base(), address: '10.0.0.9', caps: rng.pick<unknown>(['x', [1], [null], [[]], { 0: 'x' }, null, [{}]]) })],
  ];
  const intent = rng.weighted<HelloIntent>([
    [5, 'wrong-types'],
    [1, 'no-address'],
    [1, 'old-version'],
    [2, 'outside'],
    [1, 'hub'],
    [3, 'spoof'],
    [1, 'free'],
  ]);
  switch (intent) {
    case 'wrong-types':
      return { intent, hello: rng.weighted(wrong)() };
    case 'no-address':
      return { intent, hello: base() };
    case 'old-version':
      return { intent, hello: { ...base(), version: rng.pick([0, -1, -(2 ** 31)]), address: '10.0.0.9' } };
    case 'outside':
      return { intent, hello: { ...base(), address: rng.pick(['10.0.1.2', '192.168.0.2', '0.0.0.0', '255.255.255.255', '10.0.0.0', '10.0.0.255', '127.0.0.1', '9.255.255.255']) } };
    case 'hub':
      return { intent, hello: { ...base(), address: '10.0.0.1' } };
    case 'spoof':
      return { intent, hello: { ...base(), version: rng.pick([1, 2, 99]), address: rng.pick(goodAddresses), extra: randomJsonValue(rng, 1) } };
    case 'free':
      return { intent, hello: { ...base(), address: `10.0.0.${rng.range(10, 250)}` } };
  }
}

function hostileHelloObject(rng: Prng): Record<string, unknown> {
  return hostileHello(rng).hello;
}

// ---------------------------------------------------------------------------------------------
// Random frames and streams

/** Options of randomFrame. */
export interface RandomFrameOptions {
  /** Largest body (type byte + payload) to generate. */
  readonly maxBody: number;
  /** Control frames carry random JSON-ish payloads ('json', the default) or plain random bytes (cheaper). */
  readonly controlPayload?: 'json' | 'bytes';
  /** Relative weights of the frame kinds. */
  readonly weights?: Partial<Record<FrameKind, number>>;
}

/** Kinds of frames the generator produces. */
export type FrameKind = 'empty' | 'unknown' | 'keepalive' | 'data-garbage' | 'data-ipv4' | 'hello' | 'welcome' | 'reject';

const DEFAULT_WEIGHTS: Record<FrameKind, number> = {
  empty: 3,
  unknown: 30,
  keepalive: 8,
  'data-garbage': 25,
  'data-ipv4': 10,
  hello: 8,
  welcome: 8,
  reject: 8,
};

const DEFAULT_TABLE = kindEntries(DEFAULT_WEIGHTS);
const tables = new WeakMap<object, ReadonlyArray<readonly [number, FrameKind]>>();

function kindEntries(weights: Record<FrameKind, number>): ReadonlyArray<readonly [number, FrameKind]> {
  return Object.entries(weights).map(([k, w]) => [w, k as FrameKind] as const);
}

/** The weighted kind table for `weights` (cached per weights object: randomFrame runs millions of times). */
function kindTable(weights: Partial<Record<FrameKind, number>> | undefined): ReadonlyArray<readonly [number, FrameKind]> {
  if (weights === undefined) return DEFAULT_TABLE;
  let table = tables.get(weights);
  if (table === undefined) tables.set(weights, (table = kindEntries({ ...DEFAULT_WEIGHTS, ...weights })));
  return table;
}

/** One random frame (its body never exceeds `maxBody`), with its kind. */
export function randomFrame(rng: Prng, options: RandomFrameOptions): FrameSpec & { readonly kind: FrameKind } {
  const maxPayload = options.maxBody - 1;
  const kind = rng.weighted(kindTable(options.weights));
  if (maxPayload < 0) return { kind: 'empty', type: undefined, payload: new Uint8Array(0) };
  switch (kind) {
    case 'empty':
      return { kind, type: undefined, payload: new Uint8Array(0) };
    case 'unknown':
      return { kind, type: unknownType(rng), payload: rng.bytes(payloadLength(rng, maxPayload)) };
    case 'keepalive':
      return { kind, type: TYPE.keepalive, payload: rng.chance(0.8) ? new Uint8Array(0) : rng.bytes(payloadLength(rng, maxPayload)) };
    case 'data-garbage':
      return { kind, type: TYPE.data, payload: notIpv4(rng, maxPayload) };
    case 'data-ipv4': {
      if (maxPayload < 20) return { kind: 'data-garbage', type: TYPE.data, payload: notIpv4(rng, maxPayload) };
      const src = rng.chance(0.5) ? addr('10.0.0.0') + rng.int(256) : rng.u32();
      const dst = rng.chance(0.5) ? addr('10.0.0.0') + rng.int(256) : rng.u32();
      return { kind, type: TYPE.data, payload: ipv4(rng, src, dst, Math.max(0, payloadLength(rng, maxPayload) - 20)) };
    }
    case 'hello':
    case 'welcome':
    case 'reject':
      return { kind, type: TYPE[kind], payload: options.controlPayload === 'bytes' ? rng.bytes(payloadLength(rng, maxPayload)) : randomControlPayload(rng, maxPayload) };
  }
}

/** An oversize length: above `maxBody`, from just above it to the largest u32. */
export function oversizeLength(rng: Prng, maxBody: number): number {
  return rng.weighted<() => number>([
    [3, () => maxBody + 1],
    [1, () => maxBody + 2],
    [2, () => 0xffffffff],
    [1, () => 0x80000000],
    [1, () => 0x7fffffff],
    [1, () => Math.max(maxBody + 1, 65535)],
    [1, () => Math.max(maxBody + 1, 0x01000000)],
    [4, () => maxBody + 1 + rng.int(0xffffffff - maxBody)],
  ])();
}

/** The mutations mutateStream applies. */
export type Mutation = 'bit-flip' | 'truncate' | 'length' | 'type' | 'splice' | 'insert' | 'delete' | 'duplicate' | 'oversize' | 'zero-length' | 'giant';

/**
 * Applies 1..`max` random mutations to an encoded stream (a copy). `offsets` are the frame starts,
 * used to aim length-field and type-byte corruptions at real headers. `other` is spliced in.
 */
export function mutateStream(rng: Prng, stream: Uint8Array, offsets: readonly number[], maxBody: number, other?: Uint8Array, max = 3): { readonly bytes: Uint8Array; readonly applied: Mutation[] } {
  let out: Uint8Array = Uint8Array.from(stream);
  const applied: Mutation[] = [];
  const n = rng.range(1, max);
  const header = (): number | undefined => {
    const valid = offsets.filter((o) => o + 4 <= out.length);
    return valid.length === 0 ? undefined : rng.pick(valid);
  };
  for (let i = 0; i < n; i++) {
    const m = rng.weighted<Mutation>([
      [4, 'bit-flip'],
      [2, 'truncate'],
      [3, 'length'],
      [2, 'type'],
      [1, 'splice'],
      [1, 'insert'],
      [1, 'delete'],
      [1, 'duplicate'],
      [2, 'oversize'],
      [1, 'zero-length'],
      [1, 'giant'],
    ]);
    applied.push(m);
    switch (m) {
      case 'bit-flip': {
        const flips = rng.range(1, 8);
        for (let k = 0; k < flips && out.length > 0; k++) {
          const at = rng.int(out.length);
          out[at]! ^= 1 << rng.int(8);
        }
        break;
      }
      case 'truncate':
        out = out.slice(0, rng.int(out.length + 1));
        break;
      case 'length': {
        const h = header();
        if (h !== undefined) writeU32(out, h, rng.chance(0.5) ? rng.int(maxBody + 1) : (readU32(out, h) + rng.range(-8, 8)) >>> 0);
        break;
      }
      case 'type': {
        const h = header();
        if (h !== undefined && h + 4 < out.length) out[h + 4] = rng.chance(0.5) ? rng.int(256) : rng.pick([0x01, 0x02, 0x10, 0x11, 0x12]);
        break;
      }
      case 'splice': {
        const src = other ?? rng.bytes(rng.int(64));
        const a = rng.int(out.length + 1);
        const b = rng.int(src.length + 1);
        out = concat([out.subarray(0, a), src.subarray(b)]);
        break;
      }
      case 'insert': {
        const at = rng.int(out.length + 1);
        out = concat([out.subarray(0, at), rng.bytes(rng.range(1, 16)), out.subarray(at)]);
        break;
      }
      case 'delete': {
        const at = rng.int(out.length + 1);
        out = concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + rng.range(1, 16)))]);
        break;
      }
      case 'duplicate': {
        const at = rng.int(out.length + 1);
        const len = rng.range(1, 64);
        out = concat([out.subarray(0, at + len), out.subarray(at, at + len), out.subarray(at + len)]);
        break;
      }
      case 'oversize':
      case 'zero-length':
      case 'giant': {
        const h = header();
        if (h === undefined) break;
        writeU32(out, h, m === 'zero-length' ? 0 : m === 'giant' ? rng.pick([0xffffffff, 0xfffffff0, 0x80000001]) : oversizeLength(rng, maxBody));
        break;
      }
    }
  }
  return { bytes: out, applied };
}

/** Splits `bytes` into consecutive chunks of random sizes (views, no copies). */
export function randomChunks(rng: Prng, bytes: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  const style = rng.weighted<'tiny' | 'small' | 'mixed' | 'large' | 'whole'>([
    [1, 'tiny'],
    [3, 'small'],
    [4, 'mixed'],
    [2, 'large'],
    [1, 'whole'],
  ]);
  let at = 0;
  while (at < bytes.length) {
    let n: number;
    switch (style) {
      case 'tiny':
        n = rng.range(1, 7);
        break;
      case 'small':
        n = rng.range(1, 64);
        break;
      case 'mixed':
        n = rng.chance(0.3) ? rng.range(1, 5) : rng.range(1, 3000);
        break;
      case 'large':
        n = rng.range(1000, 70_000);
        break;
      case 'whole':
        n = bytes.length;
        break;
    }
    chunks.push(bytes.subarray(at, Math.min(bytes.length, at + n)));
    at += n;
  }
  if (rng.chance(0.05)) chunks.splice(rng.int(chunks.length + 1), 0, new Uint8Array(0));
  return chunks;
}
