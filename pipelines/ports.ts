// The ports a pipeline is built from. Drivers in src/ implement them over Node objects; tests implement
// them with Subjects. Nothing here performs I/O.
import type { Observable } from 'rxjs';
import type { ByteSink, DropCounts, PacketBatch, PacketSink } from '../operators/core/packet.js';

export type { ByteSink, PacketBatch, PacketSink };
import type { LeaseTable } from './allocator.js';
import type { GuardedPrefix } from './routeGuard.js';
import { type Ipv4Prefix } from '../operators/core/address.js';

/** The local TUN device, seen as a stream of read batches plus a packet sink. */
export interface TunPort {
  /** The kernel's name of the device (for log lines). */
  readonly name: string;
  /** The device MTU in bytes. */
  readonly mtu: number;
  /** The device does TCP segmentation offload: `packets$` may carry SuperPackets (operators/wire/gso.ts)
   * and `sink` takes them; the pipelines then offer the `gso` capability. Absent means false. */
  readonly offload?: boolean;
  /** Batches read from the device. Subscribing starts reading; unsubscribing stops. Never completes
   * on its own; errors when the device fails. */
  readonly packets$: Observable<PacketBatch>;
  /** Writes packets to the device (EAGAIN is a short write). */
  readonly sink: PacketSink;
  /** Sets (replaces) the device's IPv4 address and prefix, synchronously; throws when the kernel
   * refuses. Absent on devices whose address cannot change (then a client cannot be assigned one). */
  setIpv4?(address: number, prefix: number): void;
}

/** The outcome of saving the lease table. */
export type LeaseSaveResult = { readonly ok: true } | { readonly ok: false; readonly detail: string };

/** Where the hub keeps its leases across restarts (a file written atomically, in the CLI). */
export interface LeaseStore {
  /** The table as it was when the hub started. */
  readonly initial: LeaseTable;
  /** Replaces the stored table with `leases`, synchronously (called once per new lease); never throws. */
  save(leases: LeaseTable): LeaseSaveResult;
}

/** What happened to one kernel route through this side's TUN device. */
export interface KernelRouteEvent {
  readonly type: 'kernel-route';
  readonly action: 'add' | 'remove';
  /** The route, `a.b.c.d/n`. */
  readonly cidr: string;
  readonly ok: boolean;
  /** Why it failed (the command's error), when it did. */
  readonly detail?: string;
}

/**
 * The kernel routes through this side's TUN device (the LANs behind other members). `set` says
 * which prefixes should be routed from now on and returns at once; the driver adds and removes
 * routes in the background, one bounded command at a time, always towards the latest set (older
 * sets are never replayed), and reports each change on `events$` (hot; failures are events, never
 * errors). Routes through the device also disappear with the device itself.
 */
export interface RoutesPort {
  set(prefixes: readonly Ipv4Prefix[]): void;
  readonly events$: Observable<KernelRouteEvent>;
}

/**
 * The host's underlay as its kernel sees it, read afresh on every call (it changes when the host
 * roams): what no LAN route through the TUN device may cover (see routeGuard.ts).
 */
export interface HostNetworkPort {
  /** The host's addresses and connected networks on every interface but the TUN device, and the gateways its routes use. Never throws (an unreadable source gives fewer entries). */
  guarded(): readonly GuardedPrefix[];
  /** The host's IPv4 addresses on every interface but the TUN device (loopback included: the caller filters), now; never throws. Absent: none known (a client then tells the hub no local endpoints). */
  addresses?(): readonly number[];
}

/** The AEAD of the UDP data path (see docs/protocol.md, "UDP data path"). */
export type UdpCipher = 'aes-256-gcm' | 'chacha20-poly1305';

/** A UDP endpoint: an IPv4 address as an unsigned 32-bit integer (10.0.0.1 is 0x0a000001) and a port. */
export interface UdpEndpoint {
  readonly address: number;
  readonly port: number;
}

/** What arrived on a datagram channel in one read: the peer's packets (the receiver's to keep; none for a keepalive), and whether the peer says it hears us. */
export interface Arrival {
  readonly packets: PacketBatch;
  readonly hearsUs: boolean;
}

/** What arrived on a pair channel from one source: an Arrival per run of datagrams of one read from `from` (a read whose datagrams came from two sources emits two). */
export interface PairArrival extends Arrival {
  readonly from: UdpEndpoint;
  /** The token of the run's newest PING (to be answered with a PONG at `from`); earlier PINGs of the run served as keepalives only. */
  readonly ping?: number;
  /** The token of the run's newest PONG (the answer to one of our PINGs); earlier PONGs of the run likewise. */
  readonly pong?: number;
}

/**
 * One session's sealed-datagram channel (the UDP data path): authenticated, replay-checked arrivals
 * in, sealed datagrams out. The driver keeps the keys (one per direction, a new epoch derived before
 * any counter limit), the replay windows and the peer's endpoint (the hub's channel follows the
 * source of a member's latest authenticated datagram, so a member that changes address keeps its
 * session; see endpoint()).
 */
export interface DatagramChannel {
  /** Arrivals, one emission per read that had any for this channel (hot, never errors; completes on close). */
  readonly arrivals$: Observable<Arrival>;
  /** Drops of this channel by reason (replay, bad-tag, malformed, too-big, send errors); hot. */
  readonly drops$: Observable<DropCounts>;
  /** Seals packets (each at most maxPacket(), or a SuperPacket: one datagram per segment of at most maxPacket()) and sends them to the peer; returns how many went (fewer: the socket is full). Nothing is sent before the peer's endpoint is known. */
  send(packets: PacketBatch, hearsUs: boolean): number;
  /** Sends an empty keepalive datagram (when the endpoint is known). */
  keepalive(hearsUs: boolean): void;
  /** The largest packet a datagram to the peer carries (the path MTU less the 60 bytes of overhead). */
  maxPacket(): number;
  /**
   * Where datagrams to the peer go now: a client's hub channel, the hub's endpoint; the hub's
   * channel, the member's as it observed it (the source of its newest authenticated datagram;
   * undefined before the first); a pair channel, the one its owner chose (undefined: none).
   */
  endpoint(): UdpEndpoint | undefined;
  /** Data packets and their bytes, received (authenticated) and sent (keepalives not counted). */
  stats(): { readonly rx: { readonly packets: number; readonly bytes: number }; readonly tx: { readonly packets: number; readonly bytes: number } };
  /** Stops the channel and forgets its keys. Idempotent. */
  close(): void;
}

/** What keys a pair channel: the fields of the pair's INTRODUCTION (an Introduction is one). */
export interface PairKeys {
  /** The receiver id this side takes the pair's datagrams under. */
  readonly id: number;
  /** The receiver id the peer takes them under (what this side's datagrams carry). */
  readonly peerId: number;
  /** The 32-byte pair key. */
  readonly key: Uint8Array;
  readonly cipher: UdpCipher;
}

/**
 * One direct path's channel to a peer (docs/direct.md), on the client's socket beside its hub
 * channel: datagrams to receiver id r are sealed with the client→hub key a session of id r would
 * use, derived from the pair key; counters, replay window and rekeying are a DatagramChannel's.
 * Whatever authenticates under `id` is the peer, from whatever source; the channel never follows a
 * source on its own: data goes where its owner says (use), probes where it says (keepaliveTo).
 */
export interface PairChannel extends DatagramChannel {
  /** The receiver id this side takes the pair's datagrams under. */
  readonly id: number;
  /** The receiver id its datagrams carry. */
  readonly peerId: number;
  /** Arrivals, one emission per run of one read's datagrams from one source, with that source (hot, never errors; completes on close). */
  readonly arrivals$: Observable<PairArrival>;
  /** Sends an empty keepalive datagram to `to`, whatever endpoint is in use: a probe to a candidate, an answer at an arrival's source. Throws RangeError for an endpoint that is not one. */
  keepaliveTo(to: UdpEndpoint, hearsUs: boolean): void;
  /** Sends a PING datagram carrying `token` (u32) to the endpoint in use (nothing without one). */
  ping(token: number, hearsUs: boolean): void;
  /** Sends a PONG datagram echoing `token` (u32) to `to`: the answer to a PING, at its source. Throws RangeError for an endpoint that is not one. */
  pong(token: number, to: UdpEndpoint, hearsUs: boolean): void;
  /** From now on send() and keepalive() go to `to` (and maxPacket() follows the kernel's path MTU toward it); undefined: nowhere (send() sends nothing). Throws RangeError for an endpoint that is not one. */
  use(to: UdpEndpoint | undefined): void;
}

/** A pair channel, or why the socket refused to open one. */
export type PairOpening =
  | { readonly ok: true; readonly channel: PairChannel }
  /** `pair-limit`: the socket holds its most pair channels already; `id-in-use`: a channel of the socket takes datagrams under that receiver id already. */
  | { readonly ok: false; readonly reason: 'pair-limit' | 'id-in-use'; readonly detail: string };

/** A client's UDP socket of one session: the hub channel and, beside it, one pair channel per introduced peer. */
export interface UdpClientSocket {
  /** The socket's local port: where peers probe it, and what DIRECT-REQUEST's local endpoints carry. */
  readonly localPort: number;
  /** The channel to the hub. */
  readonly hub: DatagramChannel;
  /** Opens a pair channel on this socket (closing it frees its id); refuses beyond the pair limit or for an id in use; throws RangeError for keys an INTRODUCTION cannot carry (ids not two different 1..2^32-1, a key not 32 bytes). */
  pair(keys: PairKeys): PairOpening;
  /** Datagrams of the socket no channel could take (unknown-session, malformed-datagram), hot. */
  readonly drops$: Observable<DropCounts>;
}

/** The hub's UDP socket, bound beside its TCP listener. */
export interface UdpHub {
  /** The bound UDP port (the listener's). */
  readonly port: number;
  readonly cipher: UdpCipher;
  /** 32 random bytes: the session secret of a member without TLS (sent to it in WELCOME). */
  randomSecret(): Uint8Array;
  /** The channel of member session `id`, keyed from `secret` (the TLS exporter's, or randomSecret()'s). */
  channel(id: number, secret: Uint8Array): DatagramChannel;
  /** Datagrams no channel could take (unknown-session, malformed), hot. */
  readonly drops$: Observable<DropCounts>;
}

/** Opens the hub's UDP socket. */
export interface UdpHubPort {
  /** Binds UDP to `port` on the listener's host: emits the socket once it is bound; errors when binding fails; unsubscribing closes it. */
  bind(port: number): Observable<UdpHub>;
}

/** Opens a client's UDP socket to its hub. */
export interface UdpClientPort {
  /** A socket of its own with a channel to the hub at `host:port` (an IPv4 address), for session `id` keyed from `secret`; emits once bound; errors when the socket fails; unsubscribing closes the socket and every channel on it. */
  open(host: string, port: number, id: number, secret: Uint8Array, cipher: UdpCipher): Observable<UdpClientSocket>;
}

/**
 * One byte-stream connection (TCP or TLS), already established: the transport behind a session.
 * A session needs only this: chunks in (`data$`), bytes out with backpressure (ByteSink), close.
 * The UDP data path runs beside it (DatagramChannel): the connection keeps the control messages.
 */
export interface ConnectionPort extends ByteSink {
  /** Unique per driver instance, for log lines and maps. */
  readonly id: number;
  /** The peer's endpoint as `ip:port`. */
  readonly remote: string;
  /** Chunks as they arrive, valid only during the emission that carries them (a driver may read
   * every connection into one reused buffer): a consumer that keeps bytes copies them. Subscribe once. Completes when the peer ends the stream, errors on a
   * socket error. Unsubscribing destroys the connection. */
  readonly data$: Observable<Uint8Array>;
  /** Flushes what is queued, then ends the stream; destroys it if that takes longer than a bound. */
  close(): void;
  /** The identity the transport verified (a client certificate's common name under mutual TLS). */
  readonly peerIdentity?: string;
  /** 32 bytes both ends of a TLS session derive alike (RFC 5705 exporter, label EXPORTER-lightweight-tunnel-udp); absent without TLS. */
  readonly tlsSecret?: Uint8Array;
  /** The hub calls it once, when the connection became a member; until then the listener counts it as pending. */
  admitted?(): void;
}

/** Why a connection failed before it became a session. */
export type HandshakeFailure =
  | 'not-tls' // a plaintext client on a TLS listener
  | 'tls-error' // the TLS handshake failed (bad or missing client certificate, protocol mismatch, ...)
  | 'handshake-timeout'; // the TLS handshake took too long

/** Why a listener closed a connection at once, before any handshake. */
export type PendingRefusal =
  | 'pending-limit' // `max_pending` connections are waiting to be admitted
  | 'pending-source-limit'; // `max_pending_per_source` connections from the same source are waiting

/** What a listener reports. */
export type ListenerEvent =
  | { readonly type: 'listening'; readonly address: string }
  | { readonly type: 'connection'; readonly connection: ConnectionPort }
  | { readonly type: 'handshake-failed'; readonly remote: string; readonly reason: HandshakeFailure; readonly detail: string }
  | { readonly type: 'refused'; readonly remote: string; readonly reason: PendingRefusal; readonly detail: string };

/** What the hub asks an authenticator. */
export interface AuthRequest {
  /** The token of the HELLO, if any. */
  readonly token: string | undefined;
  /** What the transport verified (ConnectionPort.peerIdentity). */
  readonly peerIdentity: string | undefined;
  /** The address the client asks for, or undefined when it asks the hub to assign one (pins are
   * then not checked here: the hub gives a pinned client its pinned address). */
  readonly address: number | undefined;
}

/** An authenticator's answer. */
export type AuthDecision =
  | {
      readonly ok: true;
      /** Who this is, for logs; undefined for a shared network token. */
      readonly identity: string | undefined;
      /** True when the identity belongs to one client only: it may then replace its own earlier session at once. */
      readonly exclusive: boolean;
      /** What named the identity: a per-client token or a verified client certificate. */
      readonly source?: 'token' | 'certificate';
      /** The address this client is pinned to, if any (what it gets when it asks to be assigned one). */
      readonly pinned?: number;
      /** The LANs this client may announce (each route must lie inside one); undefined: no limit beyond the hub's allow_routes. */
      readonly routes?: readonly Ipv4Prefix[];
    }
  | { readonly ok: false; readonly reason: 'auth-failed' | 'address-not-allowed'; readonly detail: string };

/** Decides whether a client may join. Present only on hubs that require authentication. Must be synchronous and cheap. */
export interface Authenticator {
  authenticate(request: AuthRequest): AuthDecision;
  /** Addresses pinned to named clients: the hub never assigns them to anyone else. */
  readonly reserved?: ReadonlyMap<number, string>;
}

/** A listening socket. Subscribing binds and listens; unsubscribing closes it and every connection
 * it produced that is still open. Errors when binding fails (for example EADDRINUSE). */
export interface ListenerPort {
  readonly events$: Observable<ListenerEvent>;
  /** Connections accepted and neither admitted nor closed yet, now; absent when the listener does not count them. */
  pending?(): number;
}

/** Opens client connections. */
export interface DialerPort {
  /** Resolves `host` afresh and connects. Emits one connection, then completes; errors on failure
   * (including a bounded connect timeout). Unsubscribing before it emits aborts the attempt. `name`:
   * the host name `host` (an address) was resolved from, which TLS checks the hub's certificate against. */
  dial(host: string, port: number, name?: string): Observable<ConnectionPort>;
}

/** The most addresses a client takes from one name's answer (docs/cluster.md, "Failover"). */
export const MAX_RESOLVED_ADDRESSES = 8;

/** Resolves host names (the client's hub list). */
export interface ResolverPort {
  /** The addresses of `name` in the resolver's order, at most MAX_RESOLVED_ADDRESSES; emits once and completes, or errors (no answer, a bounded timeout). */
  resolve(name: string): Observable<readonly string[]>;
}
