// Control messages of this project (HELLO, WELCOME, REJECT): UTF-8 JSON bodies in frame types that a
// 0.0.1-era peer ignores. Decoded once with io-ts into typed values.
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either.js';
import { FrameType, MAX_BODY_COMPAT, encodeFrame } from './frames.js';
import { AddressCodec, NetworkPrefixCodec, firstErrorLine } from '../codecs.js';

/** The protocol version this implementation speaks. */
export const PROTOCOL_VERSION = 1;

/**
 * Capabilities this implementation always offers in HELLO/WELCOME `caps`. `rtt`: answers PING with PONG.
 * `routes`: takes ROUTES frames (the hub pushes the LAN routes of the other members when they change).
 */
export const CAPABILITIES: readonly string[] = ['rtt', 'routes'];
/** The capability a side offers when its TUN device does segmentation offload: it sends and takes
 * SUPER frames (bodies up to MAX_BODY_SUPER) with a peer that offered it too. */
export const GSO_CAPABILITY = 'gso';
/** The capability a side offers when it can carry data over sealed UDP datagrams (the UDP data path). */
export const UDP_CAPABILITY = 'udp';

/** Every reason a hub gives for refusing a client. */
export const REJECT_REASONS = [
  'max-clients',
  'single-client',
  'ip-conflict',
  'outside-subnet',
  'hub-address',
  'bad-hello',
  'unsupported-version',
  'shutting-down',
  'auth-required',
  'auth-failed',
  'address-not-allowed',
  'rate-limited',
  'pool-exhausted',
  'leased-to-other',
  'route-not-allowed',
  'route-overlap',
  /** Sent to a session just before it is closed because a newer session took over its address or identity. */
  'replaced',
  /** Two live clients share one identity (a copied client-id file, one token on two machines): the newcomer is refused. */
  'duplicate-identity',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** Reasons a client cannot fix by waiting: retrying with the same settings cannot succeed. */
export const FATAL_REJECT_REASONS: ReadonlySet<RejectReason> = new Set<RejectReason>([
  'outside-subnet',
  'hub-address',
  'bad-hello',
  'unsupported-version',
  'auth-required',
  'auth-failed',
  'address-not-allowed',
  'leased-to-other',
  'route-not-allowed',
]);

const Int = t.refinement(t.number, (n) => Number.isInteger(n), 'integer');
const Prefix = t.refinement(Int, (n) => n >= 0 && n <= 32, 'prefix length');
const Reason = t.keyof(Object.fromEntries(REJECT_REASONS.map((r) => [r, null])) as Record<RejectReason, null>);

/** A client-generated identity: 32 lowercase hex digits (128 random bits). */
const ClientId = t.refinement(t.string, (s) => /^[0-9a-f]{32}$/.test(s), 'client id');

/** The most LAN routes one HELLO may announce. */
export const MAX_ANNOUNCED_ROUTES = 16;

/** A client's HELLO: sent first on every connection. */
export const HelloCodec = t.intersection([
  t.type({ version: Int }),
  t.partial({
    address: AddressCodec,
    prefix: Prefix,
    mtu: Int,
    caps: t.array(t.string),
    token: t.string,
    /** true: the hub picks the address (then `address` is absent). */
    assign: t.boolean,
    id: ClientId,
    routes: t.array(NetworkPrefixCodec),
  }),
]);
/** A HELLO as the pipelines see it (addresses as u32, routes as prefixes). */
export type Hello = t.TypeOf<typeof HelloCodec>;
/** A HELLO as JSON on the wire (addresses and prefixes as text). */
export type HelloJson = t.OutputOf<typeof HelloCodec>;

/** A LAN behind a member, as the hub announces it: `cidr` is reached through the member `via`. */
export const LanRouteCodec = t.type({ cidr: NetworkPrefixCodec, via: AddressCodec });
export type AnnouncedRoute = t.TypeOf<typeof LanRouteCodec>;

/** 32 bytes in base64: a UDP session secret sent in WELCOME when there is no TLS to derive one. */
const Secret = new t.Type<Uint8Array, string, unknown>(
  '32 bytes in base64',
  (u): u is Uint8Array => u instanceof Uint8Array && u.length === 32,
  (u, c) => {
    if (typeof u !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(u)) return t.failure(u, c);
    return t.success(new Uint8Array(Buffer.from(u, 'base64')));
  },
  (b) => Buffer.from(b).toString('base64'),
);

/** The UDP data path the hub offers a member: its session id, the hub's UDP port, the cipher, and (without TLS) the session secret. */
export const UdpOfferCodec = t.intersection([
  t.type({ id: t.refinement(Int, (n) => n > 0 && n <= 0xffffffff, 'session id'), port: t.refinement(Int, (n) => n > 0 && n <= 65535, 'port'), cipher: t.keyof({ 'aes-256-gcm': null, 'chacha20-poly1305': null }) }),
  t.partial({ secret: Secret }),
]);
export type UdpOffer = t.TypeOf<typeof UdpOfferCodec>;

/** The hub's WELCOME: the client is a member with this address. */
export const WelcomeCodec = t.intersection([
  t.type({ version: Int, address: AddressCodec, prefix: Prefix, hub: AddressCodec }),
  t.partial({ mtu: Int, keepalive: Int, timeout: Int, caps: t.array(t.string), routes: t.array(LanRouteCodec), udp: UdpOfferCodec }),
]);
export type Welcome = t.TypeOf<typeof WelcomeCodec>;
/** A WELCOME as JSON on the wire. */
export type WelcomeJson = t.OutputOf<typeof WelcomeCodec>;

/** The hub's ROUTES: the complete current set of the other members' LAN routes (replaces the last one). */
export const RoutesCodec = t.type({ version: Int, routes: t.array(LanRouteCodec) });
export type Routes = t.TypeOf<typeof RoutesCodec>;
/** A ROUTES as JSON on the wire. */
export type RoutesJson = t.OutputOf<typeof RoutesCodec>;

/** The hub's REJECT: the connection closes after it. */
export const RejectCodec = t.intersection([
  t.type({ version: Int, reason: Reason }),
  t.partial({ message: t.string }),
]);
export type Reject = t.TypeOf<typeof RejectCodec>;

/** A control body that could not be decoded. */
export class ControlDecodeError extends Error {
  override readonly name = 'ControlDecodeError';
  constructor(
    readonly frameType: number,
    readonly detail: string,
  ) {
    super(`bad control message 0x${frameType.toString(16)}: ${detail}`);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** Decodes a control payload with `codec`; returns the value or a ControlDecodeError (never throws). */
export function decodeControl<A>(frameType: number, codec: t.Decoder<unknown, A>, payload: Uint8Array): A | ControlDecodeError {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(payload));
  } catch {
    return new ControlDecodeError(frameType, 'not UTF-8 JSON');
  }
  const result = codec.decode(json);
  return isLeft(result) ? new ControlDecodeError(frameType, firstErrorLine(result.left, 'message')) : result.right;
}

const CODECS = {
  [FrameType.Hello]: HelloCodec,
  [FrameType.Welcome]: WelcomeCodec,
  [FrameType.Reject]: RejectCodec,
  [FrameType.Routes]: RoutesCodec,
} as const;

/** Encodes a control message as one frame (its codec turns addresses and prefixes into text). Throws RangeError if it would not fit a 0.0.1-era body. */
export function encodeControl(type: typeof FrameType.Hello, msg: Hello): Buffer;
export function encodeControl(type: typeof FrameType.Welcome, msg: Welcome): Buffer;
export function encodeControl(type: typeof FrameType.Reject, msg: Reject): Buffer;
export function encodeControl(type: typeof FrameType.Routes, msg: Routes): Buffer;
export function encodeControl(type: keyof typeof CODECS, msg: Hello | Welcome | Reject | Routes): Buffer {
  const json = (CODECS[type] as t.Encoder<Hello | Welcome | Reject | Routes, unknown>).encode(msg);
  const body = encoder.encode(JSON.stringify(json));
  if (body.length + 1 > MAX_BODY_COMPAT) throw new RangeError(`control message of ${body.length} bytes is too long`);
  return encodeFrame(type, body);
}
