// Typed settings the pipelines run on. The CLI decodes user input (flags, JSON) into these.

/** An IPv4 address as an unsigned 32-bit integer plus a prefix length. */
export interface Ipv4Cidr {
  readonly address: number;
  readonly prefix: number;
}

/** Settings both sides share. Times are in milliseconds. */
export interface CommonSettings {
  /** The tunnel address of this side and the virtual LAN's prefix. */
  readonly tunnel: Ipv4Cidr;
  /** TUN MTU; at most 1495 so that every DATA body fits the 2.x frame limit of 1496 bytes. */
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
}

export interface ServerSettings extends CommonSettings {
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
  /** The hub to dial; the name is resolved again on every attempt. */
  readonly remote: { readonly host: string; readonly port: number };
  /** Reconnect backoff bounds. */
  readonly backoff: { readonly initialMs: number; readonly maxMs: number };
  /** Token presented in the HELLO, for hubs that require one. */
  readonly token?: string;
}
