// Hostile input, part 1 (issue 3): over a million random and mutated frames and byte streams through
// the frame decoder (checked against a reference model), random payloads through decodeControl, and
// the same kind of garbage thrown at a live hub over loopback while two well-behaved clients keep
// talking through it. Every run uses a fixed seed and one derived from the clock; set FUZZ_SEED to
// replay one seed (it is printed in every failure message).
import test from 'ava';
import { ControlDecodeError, HelloCodec, REJECT_REASONS, RejectCodec, WelcomeCodec, decodeControl } from '../operators/core/wire/control.js';
import { FrameDecoder, FrameError } from '../operators/core/wire/decoder.js';
import type { SessionEndReason } from '../pipelines/events.js';
import type { Frame } from '../operators/core/wire/frames.js';
import { DOCUMENTED_END_REASONS, GoodClient, WireClient, startLiveHub, type SessionRecord } from './helpers/live-hub.js';
import { SLACK_MS, waitUntil } from './helpers/wait.js';
import {
  FIXED_SEED,
  Prng,
  TYPE,
  addr,
  concat,
  encodeSpecs,
  fuzzSeeds,
  hexSeed,
  hostileHello,
  ipv4,
  mutateStream,
  isUnknownType,
  oversizeLength,
  randomChunks,
  randomControlPayload,
  randomFrame,
  randomJsonValue,
  readU32,
  writeU32,
  type FrameSpec,
} from './helpers/prng.js';

const SEEDS = fuzzSeeds();
const MAX_BODY = 1496;

// ---------------------------------------------------------------------------------------------
// Reference model of the framing (docs/protocol.md), written independently of the decoder: where
// every frame and empty body ends in the stream, and where an oversize length is complete.

interface RefElement {
  /** Stream offset just past this element. */
  readonly end: number;
  /** Type byte, or undefined for a zero-length body. */
  readonly type: number | undefined;
  /** Offset of the payload (after the type byte). */
  readonly payloadStart: number;
}

interface Reference {
  readonly elements: RefElement[];
  /** Set when a header announces more than maxBody: the offset at which its 4th byte has arrived. */
  readonly oversize: { readonly at: number; readonly length: number } | undefined;
}

function reference(bytes: Uint8Array, maxBody: number): Reference {
  const elements: RefElement[] = [];
  let at = 0;
  while (at + 4 <= bytes.length) {
    const len = readU32(bytes, at);
    if (len > maxBody) return { elements, oversize: { at: at + 4, length: len } };
    if (at + 4 + len > bytes.length) break;
    elements.push({ end: at + 4 + len, type: len === 0 ? undefined : bytes[at + 4]!, payloadStart: at + 5 });
    at += 4 + len;
  }
  return { elements, oversize: undefined };
}

/** Outcome of one stream through a fresh decoder. */
interface StreamResult {
  readonly frames: number;
  readonly threw: boolean;
  readonly maxPending: number;
}

/** Thrown by checkStream on a mismatch; the message carries the seed and the case number. */
class FuzzMismatch extends Error {
  override readonly name = 'FuzzMismatch';
}

/**
 * Feeds `bytes` to a fresh FrameDecoder in `chunks` and checks after every push: the frames
 * completed by the push are exactly the model's (type and payload bytes), the empty-body count, the
 * `pending` bytes (exactly what lies after the last complete frame, never above 4 + maxBody), and
 * that a FrameError('oversize', length, maxBody) is thrown exactly by the push that completes an
 * oversize header, and that nothing else is ever thrown.
 */
function checkStream(bytes: Uint8Array, chunks: readonly Uint8Array[], maxBody: number, where: () => string): StreamResult {
  const ref = reference(bytes, maxBody);
  const decoder = new FrameDecoder(maxBody);
  const fail = (what: string): never => {
    throw new FuzzMismatch(`${where()}: ${what}`);
  };
  const emitted: Array<{ frame: Frame; el: RefElement }> = [];
  let fed = 0;
  let next = 0; // index of the first model element not yet completed
  let empties = 0;
  let lastEnd = 0;
  let maxPending = 0;
  for (const chunk of chunks) {
    fed += chunk.length;
    let frames: Frame[];
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      if (!(err instanceof FrameError)) fail(`push threw ${String(err)} (${(err as Error)?.name}), not a FrameError`);
      const fe = err as FrameError;
      if (fe.reason !== 'oversize') fail(`FrameError with reason ${String(fe.reason)}`);
      if (ref.oversize === undefined) fail(`FrameError(${fe.length}) on a stream without an oversize length`);
      if (ref.oversize!.at > fed || ref.oversize!.at <= fed - chunk.length) fail(`FrameError thrown by the push covering ${fed - chunk.length}..${fed}, but the oversize header completes at ${ref.oversize!.at}`);
      if (fe.length !== ref.oversize!.length || fe.limit !== maxBody) fail(`FrameError(length ${fe.length}, limit ${fe.limit}), expected (${ref.oversize!.length}, ${maxBody})`);
      return { frames: emitted.length, threw: true, maxPending };
    }
    if (ref.oversize !== undefined && ref.oversize.at <= fed) fail(`no FrameError although the oversize length ${ref.oversize.length} completed at ${ref.oversize.at} (fed ${fed})`);
    let k = 0;
    while (next < ref.elements.length && ref.elements[next]!.end <= fed) {
      const el = ref.elements[next++]!;
      lastEnd = el.end;
      if (el.type === undefined) {
        empties++;
        continue;
      }
      const f = frames[k++];
      if (f === undefined) fail(`frame ending at ${el.end} missing (push ended at ${fed})`);
      checkFrame(f!, el, bytes, fail);
      emitted.push({ frame: f!, el });
    }
    if (k !== frames.length) fail(`push returned ${frames.length} frames, the model completes ${k}`);
    if (decoder.emptyFrames !== empties) fail(`emptyFrames ${decoder.emptyFrames}, expected ${empties}`);
    const pending = decoder.pending;
    if (pending > 4 + maxBody) fail(`pending ${pending} exceeds 4 + maxBody (${4 + maxBody})`);
    if (pending !== fed - lastEnd) fail(`pending ${pending}, expected ${fed - lastEnd} (fed ${fed}, last complete frame ends at ${lastEnd})`);
    if (pending > maxPending) maxPending = pending;
  }
  // Frames handed out earlier must not have been overwritten by later pushes.
  for (const { frame, el } of emitted) checkFrame(frame, el, bytes, fail);
  return { frames: emitted.length, threw: false, maxPending };
}

function checkFrame(f: Frame, el: RefElement, bytes: Uint8Array, fail: (what: string) => never): void {
  if (f.type !== el.type) fail(`frame ending at ${el.end}: type ${f.type}, expected ${el.type}`);
  const want = bytes.subarray(el.payloadStart, el.end);
  if (f.payload.length !== want.length) fail(`frame ending at ${el.end}: payload of ${f.payload.length} bytes, expected ${want.length}`);
  if (Buffer.compare(Buffer.from(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength), Buffer.from(want.buffer, want.byteOffset, want.byteLength)) !== 0) {
    fail(`frame ending at ${el.end}: payload bytes differ`);
  }
}

// ---------------------------------------------------------------------------------------------
// Workload of one seed: a fixed number of frames, so a seed always replays the same cases.

/** Frames generated per seed (a run uses at least two seeds). */
const FRAMES_PER_SEED = 600_000;

type StreamKind = 'valid' | 'mutated' | 'random-bytes' | 'plausible-random' | 'boundary';

interface Tally {
  frames: number;
  streams: number;
  decoded: number;
  frameErrors: number;
  maxPending: number;
  byKind: Record<StreamKind, number>;
}

function maxBodyFor(rng: Prng): number {
  return rng.weighted<number>([
    [90, MAX_BODY],
    [2, 0],
    [2, 1],
    [2, 5],
    [2, 64],
    [2, 65535],
  ]);
}

function randomSpecs(rng: Prng, n: number, maxBody: number, json: boolean): FrameSpec[] {
  const specs: FrameSpec[] = [];
  for (let i = 0; i < n; i++) specs.push(randomFrame(rng, { maxBody, controlPayload: json && rng.chance(0.1) ? 'json' : 'bytes' }));
  return specs;
}

/** Random bytes whose 4-byte "headers" mostly announce plausible lengths. */
function plausibleRandom(rng: Prng, maxBody: number): { bytes: Uint8Array; frames: number } {
  const parts: Uint8Array[] = [];
  let frames = 0;
  const n = rng.range(1, 60);
  for (let i = 0; i < n; i++) {
    const len = rng.chance(0.95) ? rng.int(Math.min(maxBody, 300) + 1) : oversizeLength(rng, maxBody);
    const h = new Uint8Array(4);
    writeU32(h, 0, len);
    parts.push(h, rng.bytes(rng.chance(0.9) ? Math.min(len, 300) : rng.int(400)));
    frames++;
  }
  return { bytes: concat(parts), frames };
}

/** Boundary streams: lengths at and around the limit, runs of empty bodies, a header split anywhere. */
function boundary(rng: Prng, maxBody: number): { bytes: Uint8Array; frames: number } {
  const specs: FrameSpec[] = [];
  const n = rng.range(1, 8);
  for (let i = 0; i < n; i++) {
    const len = rng.pick([0, 0, 1, 2, maxBody - 1, maxBody]);
    specs.push(len <= 0 ? { type: undefined, payload: new Uint8Array(0) } : { type: rng.int(256), payload: rng.bytes(len - 1) });
  }
  const { bytes } = encodeSpecs(specs);
  const tail = new Uint8Array(4);
  writeU32(tail, 0, rng.chance(0.5) ? maxBody + 1 : oversizeLength(rng, maxBody));
  return { bytes: rng.chance(0.5) ? concat([bytes, tail, rng.bytes(rng.int(8))]) : bytes, frames: n + 1 };
}

function runSeed(seed: number): Tally {
  const rng = new Prng(seed);
  const tally: Tally = { frames: 0, streams: 0, decoded: 0, frameErrors: 0, maxPending: 0, byKind: { valid: 0, mutated: 0, 'random-bytes': 0, 'plausible-random': 0, boundary: 0 } };
  let previous: Uint8Array | undefined;
  while (tally.frames < FRAMES_PER_SEED) {
    const caseNo = tally.streams;
    const maxBody = maxBodyFor(rng);
    const kind = rng.weighted<StreamKind>([
      [35, 'valid'],
      [40, 'mutated'],
      [8, 'random-bytes'],
      [12, 'plausible-random'],
      [5, 'boundary'],
    ]);
    let bytes: Uint8Array;
    let frames: number;
    let detail = '';
    switch (kind) {
      case 'valid':
      case 'mutated': {
        const specs = randomSpecs(rng, rng.weighted<number>([[6, rng.range(1, 40)], [3, rng.range(40, 400)], [1, rng.range(400, 3000)]]), maxBody, true);
        const enc = encodeSpecs(specs);
        frames = specs.length;
        if (kind === 'valid') bytes = enc.bytes;
        else {
          const m = mutateStream(rng, enc.bytes, enc.offsets, maxBody, previous, 4);
          bytes = m.bytes;
          detail = ` mutations ${m.applied.join(',')}`;
        }
        break;
      }
      case 'random-bytes':
        bytes = rng.bytes(rng.int(4000));
        frames = 1;
        break;
      case 'plausible-random':
        ({ bytes, frames } = plausibleRandom(rng, maxBody));
        break;
      case 'boundary':
        ({ bytes, frames } = boundary(rng, maxBody));
        break;
    }
    previous = bytes;
    const chunks = randomChunks(rng, bytes);
    const r = checkStream(bytes, chunks, maxBody, () => `seed ${hexSeed(seed)} case ${caseNo} (${kind}, maxBody ${maxBody}, ${bytes.length} bytes in ${chunks.length} chunks${detail}); replay with FUZZ_SEED=${hexSeed(seed)}`);
    tally.frames += frames;
    tally.streams++;
    tally.decoded += r.frames;
    if (r.threw) tally.frameErrors++;
    tally.maxPending = Math.max(tally.maxPending, r.maxPending);
    tally.byKind[kind]++;
  }
  return tally;
}

test.serial('decoder fuzz: over 10^6 random and mutated frames and byte streams, randomly chunked, match the reference model', (t) => {
  t.timeout(120_000);
  let frames = 0;
  let streams = 0;
  for (const seed of SEEDS) {
    const started = Date.now();
    let tally: Tally;
    try {
      tally = runSeed(seed);
    } catch (err) {
      // Any exception here is a finding: a mismatch with the model or a crash that is not a FrameError.
      t.fail(err instanceof FuzzMismatch ? err.message : `seed ${hexSeed(seed)}: ${String((err as Error)?.stack ?? err)}; replay with FUZZ_SEED=${hexSeed(seed)}`);
      return;
    }
    frames += tally.frames;
    streams += tally.streams;
    t.log(
      `seed ${hexSeed(seed)}${seed === FIXED_SEED ? ' (fixed)' : ''}: ${tally.frames} frames in ${tally.streams} streams (${JSON.stringify(tally.byKind)}), ` +
        `${tally.decoded} decoded, ${tally.frameErrors} FrameErrors, max pending ${tally.maxPending} B, ${Date.now() - started} ms`,
    );
    t.true(tally.maxPending <= 4 + 65535, `seed ${hexSeed(seed)}`);
  }
  if (SEEDS.length > 1) t.true(frames + streams >= 1_000_000, `only ${frames} frames and ${streams} streams`);
});

test.serial('decoder fuzz: an oversize length is refused from its 4th byte, before any body byte arrives', (t) => {
  // The pending bound above proves nothing is held; this checks the refusal needs no body at all.
  for (const seed of SEEDS) {
    const rng = new Prng(seed ^ 0xa5a5a5a5);
    for (let i = 0; i < 20_000; i++) {
      const maxBody = maxBodyFor(rng);
      const len = oversizeLength(rng, maxBody);
      const h = new Uint8Array(4);
      writeU32(h, 0, len);
      const decoder = new FrameDecoder(maxBody);
      const split = rng.int(4);
      if (split > 0) t.deepEqual(decoder.push(h.subarray(0, split)), [], `seed ${hexSeed(seed)} case ${i}`);
      const err = t.throws(() => decoder.push(h.subarray(split)), { instanceOf: FrameError }, `seed ${hexSeed(seed)} case ${i}: length ${len} > ${maxBody}`);
      if (err === undefined) return;
      t.is(err.length, len);
      t.true(decoder.pending <= 4, `seed ${hexSeed(seed)} case ${i}: pending ${decoder.pending}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// decodeControl never throws

const CODECS = [
  { name: 'HELLO', type: TYPE.hello, codec: HelloCodec },
  { name: 'WELCOME', type: TYPE.welcome, codec: WelcomeCodec },
  { name: 'REJECT', type: TYPE.reject, codec: RejectCodec },
] as const;


/** What a successfully decoded control message must look like, whatever the input was. */
const isU32 = (a: unknown): boolean => Number.isInteger(a) && (a as number) >= 0 && (a as number) <= 0xffffffff;

function conforms(name: string, v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not an object';
  const o = v as Record<string, unknown>;
  if (!Number.isInteger(o['version'])) return `version ${String(o['version'])}`;
  const optionalInt = (k: string): boolean => !(k in o) || o[k] === undefined || Number.isInteger(o[k]);
  const capsOk = !('caps' in o) || o['caps'] === undefined || (Array.isArray(o['caps']) && o['caps'].every((c) => typeof c === 'string'));
  if (name !== 'REJECT' && (!optionalInt('mtu') || !capsOk)) return 'mtu or caps';
  if (name === 'WELCOME' && (!optionalInt('keepalive') || !optionalInt('timeout'))) return 'keepalive or timeout';
  const prefixOk = (p: unknown): boolean => Number.isInteger(p) && (p as number) >= 0 && (p as number) <= 32;
  switch (name) {
    case 'HELLO':
      // Decoded addresses are unsigned 32-bit integers (the codec parsed the dotted quad).
      if ('address' in o && o['address'] !== undefined && !isU32(o['address'])) return 'address';
      if ('prefix' in o && o['prefix'] !== undefined && !prefixOk(o['prefix'])) return 'prefix';
      return undefined;
    case 'WELCOME':
      if (!isU32(o['address']) || !isU32(o['hub'])) return 'address/hub';
      return prefixOk(o['prefix']) ? undefined : 'prefix';
    default:
      if (!(REJECT_REASONS as readonly unknown[]).includes(o['reason'])) return `reason ${String(o['reason'])}`;
      return 'message' in o && o['message'] !== undefined && typeof o['message'] !== 'string' ? 'message' : undefined;
  }
}

test.serial('decodeControl fuzz: random, mutated and wrong-typed payloads give a conforming value or a ControlDecodeError, never a throw', (t) => {
  const utf8 = new TextEncoder();
  let total = 0;
  let accepted = 0;
  for (const seed of SEEDS) {
    const rng = new Prng(seed ^ 0x3c3c3c3c);
    for (let i = 0; i < 60_000; i++) {
      const c = rng.pick(CODECS);
      const payload = rng.weighted<() => Uint8Array>([
        [6, () => randomControlPayload(rng)],
        [2, () => utf8.encode(JSON.stringify(hostileHello(rng).hello))],
        [1, () => utf8.encode(JSON.stringify({ version: 1, reason: rng.pick([...REJECT_REASONS, 'nope']), message: randomJsonValue(rng, 1), address: '10.0.0.2', hub: '10.0.0.1', prefix: rng.int(40) }))],
        [1, () => rng.bytes(rng.int(4000))],
      ])();
      const where = `seed ${hexSeed(seed)} case ${i} (${c.name}, ${payload.length} bytes: ${Buffer.from(payload.subarray(0, 80)).toString('hex')}); replay with FUZZ_SEED=${hexSeed(seed)}`;
      let out: unknown;
      try {
        out = decodeControl(c.type, c.codec as never, payload);
      } catch (err) {
        t.fail(`decodeControl threw ${String(err)}: ${where}`);
        return;
      }
      total++;
      if (out instanceof ControlDecodeError) {
        if (out.frameType !== c.type || typeof out.detail !== 'string') t.fail(`malformed ControlDecodeError: ${where}`);
        continue;
      }
      accepted++;
      const bad = conforms(c.name, out);
      if (bad !== undefined) {
        t.fail(`decodeControl accepted a non-conforming ${c.name} (${bad}): ${JSON.stringify(out)}: ${where}`);
        return;
      }
    }
  }
  t.log(`${total} payloads, ${accepted} decoded to a value, ${total - accepted} ControlDecodeErrors (seeds ${SEEDS.map(hexSeed).join(', ')})`);
  t.true(accepted > 0 && accepted < total);
});


// ---------------------------------------------------------------------------------------------
// Live hub fuzz: hostile sessions over loopback while two members exchange DATA through the hub.

const GOOD = ['10.0.0.2', '10.0.0.3'] as const;

/** Drop reasons a benign-garbage stream provokes, counted exactly by the hub. */
interface Model {
  'unknown-type': number;
  'unexpected-control': number;
  'empty-frame': number;
  'not-ipv4': number;
}

const zeroModel = (): Model => ({ 'unknown-type': 0, 'unexpected-control': 0, 'empty-frame': 0, 'not-ipv4': 0 });

/** A payload length for the bulk of the live traffic: mostly small frames, every size possible. */
function liveLength(rng: Prng, maxPayload = MAX_BODY - 1): number {
  const x = rng.int(100);
  if (x < 70) return rng.int(17);
  if (x < 90) return rng.range(17, 200);
  if (x < 98) return rng.range(201, maxPayload);
  return rng.pick([maxPayload, maxPayload - 1]);
}

/**
 * Frames that end no session and join nobody, with the drops the hub must count for them: unknown
 * types, KEEPALIVEs with junk payloads, empty bodies, DATA that is not IPv4, WELCOME/REJECT from a
 * client (unexpected-control).
 */
function benignFrames(rng: Prng, n: number, model: Model): FrameSpec[] {
  const specs: FrameSpec[] = [];
  for (let i = 0; i < n; i++) {
    const x = rng.int(100);
    if (x < 50) {
      specs.push({ type: unknownTypeLive(rng), payload: rng.bytes(liveLength(rng)) });
      model['unknown-type']++;
    } else if (x < 60) {
      specs.push({ type: TYPE.keepalive, payload: rng.chance(0.7) ? new Uint8Array(0) : rng.bytes(liveLength(rng)) });
    } else if (x < 65) {
      specs.push({ type: undefined, payload: new Uint8Array(0) });
      model['empty-frame']++;
    } else if (x < 88) {
      const p = rng.chance(0.5) ? rng.bytes(rng.int(20)) : rng.bytes(rng.range(20, 200));
      if (p.length >= 20 && p[0]! >> 4 === 4) p[0] = 0x65;
      specs.push({ type: TYPE.data, payload: p });
      model['not-ipv4']++;
    } else {
      specs.push({ type: rng.chance(0.5) ? TYPE.welcome : TYPE.reject, payload: rng.chance(0.3) ? randomControlPayload(rng) : rng.bytes(liveLength(rng)) });
      model['unexpected-control']++;
    }
  }
  return specs;
}

function unknownTypeLive(rng: Prng): number {
  for (;;) {
    const t = rng.chance(0.3) ? rng.range(0x15, 0x1f) : rng.int(256);
    if (isUnknownType(t)) return t;
  }
}

/** Frames of a hostile member: garbage plus IPv4 DATA to anyone, including forged good-client sources. */
function memberFrames(rng: Prng, n: number, self: number): FrameSpec[] {
  const specs: FrameSpec[] = [];
  const good = GOOD.map(addr);
  for (let i = 0; i < n; i++) {
    const x = rng.int(100);
    if (x < 55) specs.push(...benignFrames(rng, 1, zeroModel()));
    else if (x < 75) {
      // Packets to the good clients, half of them forged as coming from the other good client.
      const to = rng.int(2);
      const src = rng.chance(0.5) ? good[1 - to]! : self;
      specs.push({ type: TYPE.data, payload: ipv4(rng, src, good[to]!, rng.int(60)) });
    } else if (x < 90) specs.push({ type: TYPE.data, payload: ipv4(rng, rng.chance(0.7) ? addr('10.0.0.0') + rng.int(256) : rng.u32(), rng.chance(0.7) ? addr('10.0.0.0') + rng.int(256) : rng.u32(), rng.int(100)) });
    else specs.push({ type: TYPE.hello, payload: rng.chance(0.5) ? randomControlPayload(rng) : jsonBytes(hostileHello(rng).hello) });
  }
  return specs;
}

const jsonEncoder = new TextEncoder();
function jsonBytes(v: unknown): Uint8Array {
  return jsonEncoder.encode(JSON.stringify(v));
}

function frameOf(type: number, payload: Uint8Array): Uint8Array {
  return encodeSpecs([{ type, payload }]).bytes;
}

type HostileKind = 'benign' | 'partial' | 'silent' | 'rst-mid' | 'oversize' | 'bad-hello' | 'random-hello' | 'spoof-data' | 'member-2x' | 'member-hello' | 'mutated' | 'random-bytes';
type EndMode = 'fin' | 'rst' | 'hold';

/** One hostile session: what it sends, how it ends, and what the hub must make of it. */
interface Plan {
  readonly index: number;
  readonly kind: HostileKind;
  readonly bytes: Uint8Array;
  /** Frames generated (a pure byte stream counts as one). */
  readonly frames: number;
  readonly end: EndMode;
  /** For rst-mid: RST after this many bytes. */
  readonly cutAt?: number;
  /** Drops the hub must count exactly (the whole stream is benign and processed). */
  readonly exact?: Model;
  /** Drops the hub may count at most (a benign prefix before the end of the session). */
  readonly atMost?: Model;
  /** Acceptable `left` reasons ('any' documented one). */
  readonly left: ReadonlySet<SessionEndReason> | 'any';
  /** When the session is refused, the acceptable REJECT reasons (undefined: any). */
  readonly rejects?: ReadonlySet<string>;
  /** The session may become a member (never as a good client's address). */
  readonly mayJoin: boolean;
  readonly note: string;
}


function planSession(rng: Prng, index: number): Plan {
  const kind = rng.weighted<HostileKind>([
    [58, 'benign'],
    [4, 'partial'],
    [2, 'silent'],
    [3, 'rst-mid'],
    [7, 'oversize'],
    [7, 'bad-hello'],
    [3, 'random-hello'],
    [3, 'spoof-data'],
    [4, 'member-2x'],
    [2, 'member-hello'],
    [5, 'mutated'],
    [2, 'random-bytes'],
  ]);
  const any = 'any' as const;
  const prefixLen = (): number => (rng.chance(0.2) ? 0 : rng.range(1, 2000));
  // A held session that never joins (no HELLO, no IPv4 packet) ends by its idle timeout after its
  // last frame, or by the admission deadline (keepalive + 5 s after the accept), whichever comes
  // first: on a loaded machine its frames take longer to get through, and the deadline may win.
  const heldUnjoined = new Set<SessionEndReason>(['idle', 'handshake-timeout']);
  switch (kind) {
    case 'benign': {
      const model = zeroModel();
      const specs = benignFrames(rng, rng.range(3000, 9000), model);
      const end: EndMode = rng.chance(0.85) ? 'fin' : 'hold';
      return { index, kind, bytes: encodeSpecs(specs).bytes, frames: specs.length, end, exact: model, left: end === 'fin' ? new Set(['closed']) : heldUnjoined, mayJoin: false, note: '' };
    }
    case 'partial': {
      const model = zeroModel();
      const specs = benignFrames(rng, prefixLen(), model);
      const whole = frameOf(unknownTypeLive(rng), rng.bytes(rng.range(1, 1495)));
      const cut = rng.range(1, whole.length - 1);
      const end: EndMode = rng.chance(0.5) ? 'fin' : 'hold';
      return { index, kind, bytes: concat([encodeSpecs(specs).bytes, whole.subarray(0, cut)]), frames: specs.length + 1, end, exact: model, left: end === 'fin' ? new Set(['closed']) : heldUnjoined, mayJoin: false, note: `cut at ${cut}/${whole.length}` };
    }
    case 'silent':
      return { index, kind, bytes: new Uint8Array(0), frames: 0, end: 'hold', exact: zeroModel(), left: new Set(['idle']), mayJoin: false, note: '' };
    case 'rst-mid': {
      const model = zeroModel();
      const specs = benignFrames(rng, rng.range(500, 4000), model);
      const bytes = encodeSpecs(specs).bytes;
      // An RST after data is often reported by the socket layer as a plain end of stream (libuv
      // reports EOF on POLLHUP after a partial read), so 'closed' is as good as 'reset' here.
      return { index, kind, bytes, frames: specs.length, end: 'rst', cutAt: rng.int(bytes.length), atMost: model, left: new Set(['reset', 'closed']), mayJoin: false, note: '' };
    }
    case 'oversize': {
      const model = zeroModel();
      const specs = benignFrames(rng, prefixLen(), model);
      const h = new Uint8Array(4);
      const len = oversizeLength(rng, MAX_BODY);
      writeU32(h, 0, len);
      return { index, kind, bytes: concat([encodeSpecs(specs).bytes, h, rng.bytes(rng.int(3000))]), frames: specs.length + 1, end: rng.chance(0.5) ? 'fin' : 'hold', atMost: model, left: new Set(['frame-error']), mayJoin: false, note: `length ${len}` };
    }
    case 'bad-hello': {
      const model = zeroModel();
      const specs = benignFrames(rng, prefixLen(), model);
      const { intent, hello } = hostileHello(rng, GOOD);
      const expected: Record<string, string[]> = {
        'wrong-types': ['bad-hello'],
        'no-address': ['bad-hello'],
        'old-version': ['unsupported-version'],
        outside: ['outside-subnet'],
        hub: ['hub-address'],
        spoof: ['ip-conflict'],
        free: ['ip-conflict', 'max-clients'],
      };
      // The hub decodes a whole read before it acts on the HELLO in it, so empty frames after the
      // HELLO may still be counted: the tail belongs to the upper bound.
      const tail = encodeSpecs(benignFrames(rng, rng.int(500), model)).bytes;
      return {
        index,
        kind,
        bytes: concat([encodeSpecs(specs).bytes, frameOf(TYPE.hello, jsonBytes(hello)), tail]),
        frames: specs.length + 1 + 1,
        end: rng.chance(0.5) ? 'fin' : 'hold',
        atMost: model,
        left: intent === 'free' ? any : new Set(['rejected']),
        rejects: new Set(expected[intent]),
        mayJoin: intent === 'free',
        note: `${intent}: ${JSON.stringify(hello)}`,
      };
    }
    case 'random-hello': {
      const model = zeroModel();
      const specs = benignFrames(rng, prefixLen(), model);
      const payload = randomControlPayload(rng);
      return {
        index,
        kind,
        bytes: concat([encodeSpecs(specs).bytes, frameOf(TYPE.hello, payload), encodeSpecs(benignFrames(rng, rng.int(500), model)).bytes]),
        frames: specs.length + 2,
        end: rng.chance(0.5) ? 'fin' : 'hold',
        atMost: model,
        left: any,
        mayJoin: true,
        note: `HELLO ${Buffer.from(payload.subarray(0, 60)).toString('hex')}`,
      };
    }
    case 'spoof-data': {
      const model = zeroModel();
      const specs = benignFrames(rng, prefixLen(), model);
      const victim = addr(rng.pick(GOOD));
      const batch: FrameSpec[] = [];
      for (let i = rng.int(3); i > 0; i--) {
        batch.push({ type: TYPE.data, payload: rng.bytes(rng.int(20)) });
        model['not-ipv4']++;
      }
      batch.push({ type: TYPE.data, payload: ipv4(rng, victim, rng.chance(0.5) ? addr(rng.pick(GOOD)) : rng.u32(), rng.int(40)) });
      for (let i = rng.int(20); i > 0; i--) batch.push({ type: TYPE.data, payload: ipv4(rng, victim, addr('10.0.0.0') + rng.int(256), rng.int(40)) });
      return {
        index,
        kind,
        bytes: concat([encodeSpecs(specs).bytes, encodeSpecs(batch).bytes]),
        frames: specs.length + batch.length,
        end: rng.chance(0.5) ? 'fin' : 'hold',
        atMost: model,
        left: new Set(['rejected']),
        rejects: new Set(['ip-conflict']),
        mayJoin: false,
        note: `as ${dottedOf(victim)}`,
      };
    }
    case 'member-2x':
    case 'member-hello': {
      const self = addr('10.0.0.0') + rng.range(10, 250);
      const first = kind === 'member-2x' ? frameOf(TYPE.data, ipv4(rng, self, rng.u32(), rng.int(40))) : frameOf(TYPE.hello, jsonBytes({ version: 1, address: dottedOf(self), prefix: 24, mtu: 1400, caps: [] }));
      const specs = memberFrames(rng, rng.range(200, 3000), self);
      const tail = rng.chance(0.2) ? Uint8Array.of(0xff, 0xff, 0xff, 0xff) : new Uint8Array(0);
      return { index, kind, bytes: concat([first, encodeSpecs(specs).bytes, tail]), frames: specs.length + 2, end: rng.pick<EndMode>(['fin', 'rst', 'hold']), left: any, mayJoin: true, note: `as ${dottedOf(self)}` };
    }
    case 'mutated': {
      const specs: FrameSpec[] = [];
      for (let i = rng.range(1, 2000); i > 0; i--) specs.push(randomFrame(rng, { maxBody: MAX_BODY, controlPayload: rng.chance(0.2) ? 'json' : 'bytes' }));
      const enc = encodeSpecs(specs);
      const m = mutateStream(rng, enc.bytes, enc.offsets, MAX_BODY, undefined, 6);
      return { index, kind, bytes: m.bytes, frames: specs.length, end: rng.pick<EndMode>(['fin', 'rst', 'hold']), left: any, mayJoin: true, note: m.applied.join(',') };
    }
    case 'random-bytes':
      return { index, kind, bytes: rng.bytes(rng.range(1, 20_000)), frames: 1, end: rng.pick<EndMode>(['fin', 'rst', 'hold']), left: any, mayJoin: true, note: '' };
  }
}

function dottedOf(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

/** Splits a session's bytes into writes: mostly large, sometimes a run of tiny ones. */
function writes(rng: Prng, bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const n = rng.chance(0.05) ? rng.range(1, 16) : rng.range(4096, 65536);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** Runs `fn` over `items` with at most `concurrency` at once. */
async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

interface Outcome {
  readonly plan: Plan;
  readonly client: WireClient;
  readonly session: SessionRecord | undefined;
  readonly failure?: string;
}

const LIVE_SESSIONS = 300;
const LIVE_CONCURRENCY = 24;

test.serial('live hub fuzz: hundreds of hostile sessions, over 10^6 frames, while two members keep talking', async (t) => {
  t.timeout(150_000);
  const seed = SEEDS[SEEDS.length - 1]!;
  const rng = new Prng(seed ^ 0x1dea1dea);
  const replay = `seed ${hexSeed(seed)}; replay with FUZZ_SEED=${hexSeed(seed)}`;
  const hub = await startLiveHub();
  const good: GoodClient[] = [];
  try {
    const nonce = rng.bytes(8);
    good.push(await GoodClient.join(hub.port, GOOD[0], nonce), await GoodClient.join(hub.port, GOOD[1], nonce));
    const goodSessions = good.map((g) => hub.log.claim(g.client.remote));
    t.truthy(goodSessions[0] && goodSessions[1], 'the good clients have sessions');
    const goodIds = new Set(goodSessions.map((s) => s!.id));
    GoodClient.pair(good[0]!, good[1]!, 10, 2);
    await waitUntil(() => good.every((g) => g.received > 20), 'traffic between the good clients');
    for (const g of good) g.watchGaps();
    const receivedBefore = good.map((g) => g.received);
    const started = Date.now();

    // The hostile sessions, generated lazily from per-session seeds.
    const seeds = Array.from({ length: LIVE_SESSIONS }, () => rng.u32());
    const outcomes: Outcome[] = [];
    let framesSent = 0;
    let bytesSent = 0;
    const kinds: Record<string, number> = {};
    await pool(seeds.map((s, i) => [s, i] as const), LIVE_CONCURRENCY, async ([s, i]) => {
      const prng = new Prng(s);
      const plan = planSession(prng, i);
      kinds[plan.kind] = (kinds[plan.kind] ?? 0) + 1;
      framesSent += plan.frames;
      bytesSent += plan.bytes.length;
      const client = await WireClient.connect(hub.port);
      let session: SessionRecord | undefined;
      try {
        await waitUntil(() => (session = hub.log.claim(client.remote)) !== undefined, `the hub to report the connection of ${client.remote}`);
      } catch (err) {
        outcomes.push({ plan, client, session, failure: String(err) });
        client.destroy();
        return;
      }
      const limit = plan.cutAt ?? plan.bytes.length;
      for (const w of writes(prng, plan.bytes.subarray(0, limit))) {
        if (!client.writable) break;
        await client.write(w);
      }
      if (plan.end === 'fin') client.end();
      else if (plan.end === 'rst') client.reset();
      outcomes.push({ plan, client, session });
      // Wait for a FIN'd or reset session to end so the pool's concurrency bounds open sessions; held
      // sessions are left to the hub's idle timeout and checked at the end.
      if (plan.end !== 'hold') await waitUntil(() => session!.left !== undefined, 'left').catch(() => undefined);
    });
    const fuzzMs = Date.now() - started;
    const receivedDuring = good.map((g, i) => g.received - receivedBefore[i]!);
    const maxGapDuring = Math.max(...good.map((g) => g.maxGap()));

    // Held sessions end by the idle timeout; give them that plus the scheduler's slack, then close what is left.
    await waitUntil(() => outcomes.every((o) => o.session === undefined || o.session.left !== undefined), 'every hostile session to end', hub.settings.timeoutMs + SLACK_MS).catch(() => undefined);
    const stillOpen = outcomes.filter((o) => o.session !== undefined && o.session.left === undefined);
    for (const o of stillOpen) o.client.destroy();
    await waitUntil(() => stillOpen.every((o) => o.session!.left !== undefined), 'closed sessions to end').catch(() => undefined);

    // After the fuzz: the members still talk; then everything they sent arrives.
    const receivedAfterFuzz = good.map((g) => g.received);
    await waitUntil(() => good.every((g, i) => g.received > receivedAfterFuzz[i]!), 'the members to talk after the fuzz').catch(() => undefined);
    const receivedAfter = good.map((g, i) => g.received - receivedAfterFuzz[i]!);
    for (const g of good) g.stopSending();
    await waitUntil(() => good[0]!.received + good[0]!.lost >= good[1]!.sent && good[1]!.received + good[1]!.lost >= good[0]!.sent, 'the last packets').catch(() => undefined);

    // ---- verdicts ----
    const failures: string[] = [];
    const where = (p: Plan): string => `session ${p.index} (${p.kind}, end ${p.end}${p.note ? `, ${p.note}` : ''})`;
    let unknownExpected = 0;
    for (const o of outcomes) {
      const { plan, session } = o;
      if (o.failure !== undefined || session === undefined) {
        failures.push(`${where(plan)}: ${o.failure ?? 'no session'}`);
        continue;
      }
      if (session.left === undefined) {
        failures.push(`${where(plan)}: never ended, even after its client closed (hub session ${session.id} ${session.remote})`);
        continue;
      }
      const reason = session.left.reason;
      if (!DOCUMENTED_END_REASONS.has(reason)) failures.push(`${where(plan)}: ended with undocumented reason ${reason} (${session.left.detail})`);
      else if (plan.left !== 'any' && !plan.left.has(reason) && !(stillOpen.includes(o) && reason === 'closed')) {
        failures.push(`${where(plan)}: ended with ${reason} (${session.left.detail}), expected ${[...plan.left].join('/')}`);
      }
      if (session.rejected !== undefined && plan.rejects !== undefined && !plan.rejects.has(session.rejected.reason)) {
        failures.push(`${where(plan)}: REJECT ${session.rejected.reason} (${session.rejected.message}), expected ${[...plan.rejects].join('/')}`);
      }
      if (session.joined !== undefined && !plan.mayJoin) failures.push(`${where(plan)}: joined as ${session.joined.address} via ${session.joined.via}`);
      const counted = (r: keyof Model): number => session.drops[r] ?? 0;
      if (plan.exact !== undefined) {
        unknownExpected += plan.exact['unknown-type'];
        for (const r of Object.keys(plan.exact) as Array<keyof Model>) {
          if (counted(r) !== plan.exact[r]) failures.push(`${where(plan)}: hub counted ${counted(r)} ${r}, the stream has ${plan.exact[r]}`);
        }
      }
      if (plan.atMost !== undefined) {
        for (const r of Object.keys(plan.atMost) as Array<keyof Model>) {
          if (counted(r) > plan.atMost[r]) failures.push(`${where(plan)}: hub counted ${counted(r)} ${r}, the stream has only ${plan.atMost[r]}`);
        }
      }
      if (o.client.protocolError !== undefined) failures.push(`${where(plan)}: ${o.client.protocolError}`);
    }
    const takeovers = hub.log.joins.filter((j) => (GOOD as readonly string[]).includes(j.address) && !goodIds.has(j.id));
    const goodLeft = goodSessions.filter((s) => s!.left !== undefined).map((s) => `${s!.joined?.address} left: ${s!.left!.reason} ${s!.left!.detail}`);
    const summary =
      `${outcomes.length} hostile sessions (${JSON.stringify(kinds)}), ${framesSent} frames / ${(bytesSent / 1048576).toFixed(1)} MiB in ${fuzzMs} ms; ` +
      `left ${JSON.stringify(hub.log.leftReasons)}, rejects ${JSON.stringify(hub.log.rejectReasons)}, drops ${JSON.stringify(hub.log.dropTotals)}; ` +
      `good clients: received ${good.map((g) => g.received).join('/')} of sent ${good[1]!.sent}/${good[0]!.sent}, during fuzz ${receivedDuring.join('/')}, after ${receivedAfter.join('/')}, ` +
      `max gap ${maxGapDuring} ms, lost ${good.map((g) => g.lost).join('/')}, foreign ${good.map((g) => g.foreign).join('/')}, spoofed ${good.map((g) => g.spoofed).join('/')}; ` +
      `${stillOpen.length} sessions still open after the idle timeout; TUN got ${hub.tun.written} packets; ${replay}`;
    t.log(summary);

    t.is(hub.error, undefined, `the hub pipeline errored: ${String(hub.error)}; ${replay}`);
    t.false(hub.completed, 'the hub pipeline completed');
    t.deepEqual(failures.slice(0, 40), [], `${failures.length} hostile sessions misbehaved; ${replay}`);
    t.true(framesSent >= 1_000_000, `only ${framesSent} frames were sent`);
    t.true((hub.log.dropTotals['unknown-type'] ?? 0) >= unknownExpected && unknownExpected > 0, `unknown-type drops ${hub.log.dropTotals['unknown-type']}, at least ${unknownExpected} expected`);
    t.deepEqual(takeovers, [], `a hostile connection took over a good client's address; ${replay}`);
    t.deepEqual(goodLeft, [], 'the good clients stayed members');
    t.deepEqual(good.map((g) => g.client.protocolError), [undefined, undefined]);
    t.deepEqual(good.map((g) => g.spoofed), [0, 0], 'no packet forged with the source of a good client reached the other one');
    t.true(receivedDuring.every((n) => n > 0), `the good clients received ${receivedDuring.join('/')} packets during the fuzz`);
    t.true(receivedAfter.every((n) => n > 0), `the good clients received ${receivedAfter.join('/')} packets after the fuzz`);
    t.true(maxGapDuring < hub.settings.timeoutMs / 2 + SLACK_MS, `a good client heard nothing from its peer for ${maxGapDuring} ms during the fuzz`);
    t.deepEqual(
      good.map((g) => ({ lost: g.lost, misordered: g.misordered })),
      [
        { lost: 0, misordered: 0 },
        { lost: 0, misordered: 0 },
      ],
      'no packet between the good clients was lost or reordered',
    );
    t.is(good[0]!.received, good[1]!.sent, `10.0.0.2 received ${good[0]!.received} of the ${good[1]!.sent} packets 10.0.0.3 sent`);
    t.is(good[1]!.received, good[0]!.sent, `10.0.0.3 received ${good[1]!.received} of the ${good[0]!.sent} packets 10.0.0.2 sent`);
    t.is(hub.log.open.size, 2, `sessions left at the hub: ${[...hub.log.open.values()].map((s) => `${s.id} ${s.remote} ${s.joined?.address ?? ''}`).join(', ')}`);
    t.is(hub.log.members, 2, 'only the good clients are members at the end');
  } finally {
    for (const g of good) {
      g.stopSending();
      g.client.destroy();
    }
    hub.stop();
  }
});
