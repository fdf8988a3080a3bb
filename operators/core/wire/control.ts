// Control messages of this project (HELLO, WELCOME, REJECT, ROUTES; DIRECT-REQUEST, INTRODUCTION,
// WITHDRAWAL of direct paths): UTF-8 JSON bodies in frame types that a 0.0.1-era peer ignores.
// Decoded once with io-ts into typed values. The frame's 1496 bytes bound every message; the
// direct-path messages also bound each list in their codecs.
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either.js';
import { FrameType, MAX_BODY_COMPAT, encodeFrame } from './frames.js';
import { AddressCodec, Ipv4EndpointCodec, NetworkPrefixCodec, firstErrorLine, isClusterName } from '../codecs.js';

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
/** The capability a side offers when it takes part in direct paths between members (docs/direct.md): a
 * client asks for and takes introductions, a hub makes them. Offered only beside `udp`. */
export const DIRECT_CAPABILITY = 'direct';

/** The capability of a trunk between two hubs of a cluster (docs/cluster.md, "Trunks"): offered in a
 * trunk's HELLO (beside `hub`) and answered in its WELCOME; never offered by or to a client. */
export const TRUNK_CAPABILITY = 'trunk';

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
  /** A hub of a cluster cannot prove new claims (its store is unreachable, or it is fenced): retry later, maybe at another hub (docs/cluster.md). */
  'cluster-unavailable',
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
    /** A trunk's HELLO: the dialing hub's name in the cluster (it claims no address). */
    hub: t.refinement(t.string, isClusterName, 'hub name'),
  }),
]);
/** A HELLO as the pipelines see it (addresses as u32, routes as prefixes). */
export type Hello = t.TypeOf<typeof HelloCodec>;
/** A HELLO as JSON on the wire (addresses and prefixes as text). */
export type HelloJson = t.OutputOf<typeof HelloCodec>;

/** A LAN behind a member, as the hub announces it: `cidr` is reached through the member `via`. */
export const LanRouteCodec = t.type({ cidr: NetworkPrefixCodec, via: AddressCodec });
export type AnnouncedRoute = t.TypeOf<typeof LanRouteCodec>;

/** 32 bytes in base64: a UDP session secret sent in WELCOME when there is no TLS to derive one, or a direct pair's key. */
const Secret = new t.Type<Uint8Array, string, unknown>(
  '32 bytes in base64',
  (u): u is Uint8Array => u instanceof Uint8Array && u.length === 32,
  (u, c) => {
    if (typeof u !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(u)) return t.failure(u, c);
    return t.success(new Uint8Array(Buffer.from(u, 'base64')));
  },
  (b) => Buffer.from(b).toString('base64'),
);

/** A receiver id of the UDP data path (a session's, or one side's of a direct pair): 1 to 2^32-1. */
const ReceiverId = t.refinement(Int, (n) => n > 0 && n <= 0xffffffff, 'receiver id');
/** The AEAD of the UDP data path. */
const Cipher = t.keyof({ 'aes-256-gcm': null, 'chacha20-poly1305': null });

/** The UDP data path the hub offers a member: its session id, the hub's UDP port, the cipher, and (without TLS) the session secret. */
export const UdpOfferCodec = t.intersection([
  t.type({ id: ReceiverId, port: t.refinement(Int, (n) => n > 0 && n <= 65535, 'port'), cipher: Cipher }),
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

/** A list of at most `max` items of `codec` (`min` or more). */
function bounded<C extends t.Mixed>(codec: C, min: number, max: number, what: string) {
  return t.refinement(t.array(codec), (a) => a.length >= min && a.length <= max, `${min === 0 ? 'at most' : `${min} to`} ${max} ${what}`);
}

/** The most local endpoints a member says in one DIRECT-REQUEST (its addresses on its own networks, at its UDP socket's port). */
export const MAX_LOCAL_ENDPOINTS = 7;
/** The most candidate endpoints of a peer in one INTRODUCTION: the one the hub observed and the peer's local ones. */
export const MAX_ENDPOINTS = 1 + MAX_LOCAL_ENDPOINTS;

/**
 * A member's DIRECT-REQUEST (member → hub): its local endpoints now (replacing those it said
 * before), and, with `peer`, the tunnel address of a member it wants a direct path to.
 */
export const DirectRequestCodec = t.intersection([
  t.type({ version: Int, local: bounded(Ipv4EndpointCodec, 0, MAX_LOCAL_ENDPOINTS, 'local endpoints') }),
  t.partial({ peer: AddressCodec }),
]);
export type DirectRequest = t.TypeOf<typeof DirectRequestCodec>;
/** A DIRECT-REQUEST as JSON on the wire. */
export type DirectRequestJson = t.OutputOf<typeof DirectRequestCodec>;

/**
 * The hub's INTRODUCTION (hub → member) to the member at `peer`: where to probe it (`endpoints`),
 * what it may send from (its address and `routes`), the pair key and cipher, the receiver id this
 * member takes the pair's datagrams under (`id`) and the one the peer does (`peerId`), and where
 * the hub saw this member's own datagrams come from (`self`). A new one for the same peer replaces the old.
 */
export const IntroductionCodec = t.refinement(
  t.intersection([
    t.type({
      version: Int,
      peer: AddressCodec,
      routes: bounded(NetworkPrefixCodec, 0, MAX_ANNOUNCED_ROUTES, 'LAN routes'),
      endpoints: bounded(Ipv4EndpointCodec, 1, MAX_ENDPOINTS, 'endpoints'),
      key: Secret,
      cipher: Cipher,
      id: ReceiverId,
      peerId: ReceiverId,
    }),
    t.partial({ self: Ipv4EndpointCodec }),
  ]),
  (m) => m.id !== m.peerId,
  'an introduction with two different receiver ids',
);
export type Introduction = t.TypeOf<typeof IntroductionCodec>;
/** An INTRODUCTION as JSON on the wire. */
export type IntroductionJson = t.OutputOf<typeof IntroductionCodec>;

/**
 * Why a direct path ends or is refused. Ended: `left` (the peer left), `replaced` (the peer's
 * session was replaced), `isolation` (client isolation separates the two). Refused (the answer to a
 * DIRECT-REQUEST): `same-member`, `unknown-peer` (no member has that address), `no-direct` (a side
 * does not offer `direct`), `no-udp` (a side's UDP path to the hub is not up), `rate-limited`,
 * `too-many-pairs`; and `isolation`.
 */
export const WITHDRAW_REASONS = ['left', 'replaced', 'isolation', 'same-member', 'unknown-peer', 'no-direct', 'no-udp', 'rate-limited', 'too-many-pairs'] as const;
export type WithdrawReason = (typeof WITHDRAW_REASONS)[number];

/**
 * The hub's WITHDRAWAL (hub → member): no direct path to `peer`, and why. With `id` it ends the
 * pair whose datagrams this member takes under that receiver id (a later introduction is left alone);
 * without, it answers a DIRECT-REQUEST that was refused.
 */
export const WithdrawalCodec = t.intersection([
  t.type({ version: Int, peer: AddressCodec, reason: t.keyof(Object.fromEntries(WITHDRAW_REASONS.map((r) => [r, null])) as Record<WithdrawReason, null>) }),
  t.partial({ id: ReceiverId }),
]);
export type Withdrawal = t.TypeOf<typeof WithdrawalCodec>;
/** A WITHDRAWAL as JSON on the wire. */
export type WithdrawalJson = t.OutputOf<typeof WithdrawalCodec>;

/**
 * A member's DIRECT-PATH (member → hub): whether its path to `peer`, of the pair it takes datagrams
 * of under receiver id `id` (its INTRODUCTION's `id`), is direct now. Sent when that changes.
 */
export const DirectPathCodec = t.type({ version: Int, peer: AddressCodec, id: ReceiverId, direct: t.boolean });
export type DirectPath = t.TypeOf<typeof DirectPathCodec>;
/** A DIRECT-PATH as JSON on the wire. */
export type DirectPathJson = t.OutputOf<typeof DirectPathCodec>;

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
  [FrameType.DirectRequest]: DirectRequestCodec,
  [FrameType.Introduction]: IntroductionCodec,
  [FrameType.Withdrawal]: WithdrawalCodec,
  [FrameType.DirectPath]: DirectPathCodec,
} as const;

/** Every message encodeControl takes. */
type ControlMessage = Hello | Welcome | Reject | Routes | DirectRequest | Introduction | Withdrawal | DirectPath;

/** Encodes a control message as one frame (its codec turns addresses and prefixes into text). Throws RangeError if it would not fit a 0.0.1-era body. */
export function encodeControl(type: typeof FrameType.Hello, msg: Hello): Buffer;
export function encodeControl(type: typeof FrameType.Welcome, msg: Welcome): Buffer;
export function encodeControl(type: typeof FrameType.Reject, msg: Reject): Buffer;
export function encodeControl(type: typeof FrameType.Routes, msg: Routes): Buffer;
export function encodeControl(type: typeof FrameType.DirectRequest, msg: DirectRequest): Buffer;
export function encodeControl(type: typeof FrameType.Introduction, msg: Introduction): Buffer;
export function encodeControl(type: typeof FrameType.Withdrawal, msg: Withdrawal): Buffer;
export function encodeControl(type: typeof FrameType.DirectPath, msg: DirectPath): Buffer;
export function encodeControl(type: keyof typeof CODECS, msg: ControlMessage): Buffer {
  const json = (CODECS[type] as t.Encoder<ControlMessage, unknown>).encode(msg);
  const body = encoder.encode(JSON.stringify(json));
  if (body.length + 1 > MAX_BODY_COMPAT) throw new RangeError(`control message of ${body.length} bytes is too long`);
  return encodeFrame(type, body);
}
