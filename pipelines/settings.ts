// Typed settings the pipelines run on. The CLI decodes user input (flags, JSON) into these.
import type { Ipv4Prefix } from '../operators/core/address.js';

/** Settings both sides share. Times are in milliseconds. */
export interface CommonSettings {
  /** TUN MTU; at most 1495 so that every DATA body fits the 0.0.1-era frame limit of 1496 bytes. */
  readonly mtu: number;
  /** Period of KEEPALIVE frames. */
  readonly keepaliveMs: number;
  /** A peer silent this long is gone (session ends with reason `idle`). */
  readonly timeoutMs: number;
  /** Packets that may wait for a slow socket, per session. */
  readonly sendQueueSize: number;
  /** Packets that may wait for a busy TUN device. */
  readonly recvQueueSize: number;
  /** When set, a `stats` event is emitted this often. */
  readonly statsIntervalMs?: number;
  /** How data travels (default `auto`): see TransportMode. */
  readonly transport?: TransportMode;
  /** Direct paths between members (docs/direct.md; default true): a client offers `direct` and asks for introductions, a hub makes them. Only where UDP is in use. */
  readonly direct?: boolean;
}

/**
 * How a side carries data: `auto` moves it to sealed UDP datagrams when both sides offer `udp` and a
 * probe succeeds, and falls back to the TCP connection when the UDP path goes silent; `udp` treats a
 * failed UDP path as a failed connection; `tcp` never uses UDP. Control always stays on TCP.
 */
export type TransportMode = 'auto' | 'tcp' | 'udp';

export interface ServerSettings extends CommonSettings {
  /** The hub's tunnel address and the virtual LAN's prefix. */
  readonly tunnel: Ipv4Prefix;
  /** Addresses handed to clients that ask for one (inclusive); the whole subnet when absent. */
  readonly pool?: { readonly first: number; readonly last: number };
  /** LANs members may announce: each announced route must lie inside one of these; none when absent or empty. */
  readonly allowRoutes?: readonly Ipv4Prefix[];
  /** Broadcast and multicast replication; off (directed broadcasts dropped as `broadcast`) when absent. */
  readonly broadcast?: {
    /** Multicast groups replicated besides the subnet broadcast and 255.255.255.255. */
    readonly groups: readonly number[];
    /** Replicated packets per second per sender (the hub's TUN device is one sender). */
    readonly pps: number;
  };
  /** Clients may talk to each other unless this is set (then only to the hub). */
  readonly clientIsolation: boolean;
  /** At most this many members at once. */
  readonly maxClients: number;
  /** false: one member at a time. */
  readonly multiClient: boolean;
  /** With an authenticator: a connection that has not sent its HELLO after this long is closed. */
  readonly helloTimeoutMs: number;
}

export interface ClientSettings extends CommonSettings {
  /** This client's tunnel address and prefix (its `-t`), or undefined: the hub assigns one. */
  readonly tunnel: Ipv4Prefix | undefined;
  /** The client-generated identity sent in HELLO `id` (32 hex digits); required when `tunnel` is undefined. */
  readonly clientId?: string;
  /** LANs behind this client, announced in HELLO `routes`. */
  readonly routes?: readonly Ipv4Prefix[];
  /** With an assigned address: how long a session waits for WELCOME (a 0.0.1-era hub never sends one). */
  readonly welcomeTimeoutMs?: number;
  /** The hubs to dial, in order (at least one; names are resolved again on every round: docs/cluster.md, "Failover"). */
  readonly remotes: readonly { readonly host: string; readonly port: number }[];
  /**
   * Reconnect backoff bounds; for `settleMs` after a session that had joined ended, the waits stay
   * at `initialMs` (its old claim is expiring: the next round may well be admitted).
   */
  readonly backoff: { readonly initialMs: number; readonly maxMs: number; readonly settleMs?: number };
  /** Token presented in the HELLO, for hubs that require one. */
  readonly token?: string;
}
