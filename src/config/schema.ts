// The configuration's vocabulary: io-ts codecs for each JSON key, the defaults, the per-key table
// the flag parser and the help text are built from, the resolved Config type and ConfigError.
//
// Decisions (documented in the help text too):
// - `local_addr` and `remote_addr` take "host:port"; a missing port means 9000 (the default listen
//   port, so `-r vpn.example.com` works); IPv6 hosts go in brackets. `local_addr` may leave the
//   host empty (":9000" is 0.0.0.0:9000) and may use port 0 (any free port, handy in tests).
// - `tunnel_addr` is "address/prefix" with a prefix from /8 to /30: /31 and /32 leave no room for a
//   hub plus a client, and anything wider than /8 would pull foreign networks into the tunnel. The
//   address must be a host address of its block (not the network or broadcast address).
// - Times are whole seconds up to 2147483, the most a JavaScript timer can wait (2^31-1 ms).

import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either.js';
import { DEFAULT_PENDING_LIMITS } from '../drivers/pending.js';
import { broadcastAddress, formatHostPort, formatIpv4, formatPrefix, networkAddress, parseHost, parseHostPort, parsePrefix, type HostPort, type Ipv4Prefix } from '../../operators/core/address.js';
import { MAX_CANDIDATES } from '../../pipelines/hubList.js';
import { PrefixCodec, networkPrefix } from '../../operators/core/codecs.js';
import { isClusterName } from '../../operators/core/codecs.js';

export type { HostPort, Ipv4Prefix };

/** The port used when an address leaves it out. */
export const DEFAULT_PORT = 9000;
/** The Go reader refuses frame bodies longer than this. */
export const MAX_FRAME_BODY = 1496;
/** The largest MTU whose packets fit a DATA frame body (1 type byte + the packet). */
export const MAX_MTU = MAX_FRAME_BODY - 1;
/** The minimum IPv4 MTU every host must accept (RFC 791). */
export const MIN_MTU = 576;
/** The most seconds a JavaScript timer can wait (2^31-1 ms). */
export const MAX_SECONDS = 2_147_483;
/** Shortest and longest prefix allowed for `tunnel_addr`. */
export const MIN_TUNNEL_PREFIX = 8;
export const MAX_TUNNEL_PREFIX = 30;

/** One problem with user input: `path` names where (a JSON key or a flag as typed), `message` what. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError' as const;
  readonly path: string;

  constructor(path: string, message: string) {
    super(message);
    this.path = path;
  }

  /** The line shown to the user: `path: message`. */
  get line(): string {
    return `${this.path}: ${this.message}`;
  }
}

/** Renders errors as lines for stderr, one per error, in order. */
export const renderConfigErrors = (errors: readonly ConfigError[]): string[] => errors.map((e) => e.line);

// ---------------------------------------------------------------------------------------------
// Codecs

const isIntIn = (n: number, min: number, max: number): boolean => Number.isSafeInteger(n) && n >= min && n <= max;

export interface PositiveIntBrand {
  readonly PositiveInt: unique symbol;
}
/** A safe integer ≥ 1. */
export const PositiveInt = t.brand(
  t.number,
  (n): n is t.Branded<number, PositiveIntBrand> => isIntIn(n, 1, Number.MAX_SAFE_INTEGER),
  'PositiveInt',
);
export type PositiveInt = t.TypeOf<typeof PositiveInt>;

export interface PortBrand {
  readonly Port: unique symbol;
}
export interface TlsWorkersBrand {
  readonly TlsWorkers: unique symbol;
}
/** TLS worker threads of a hub: an integer from 0 (TLS on the main thread) to MAX_TLS_WORKERS. */
export const TlsWorkers = t.brand(t.number, (n): n is t.Branded<number, TlsWorkersBrand> => isIntIn(n, 0, MAX_TLS_WORKERS), 'TlsWorkers');
export type TlsWorkers = t.TypeOf<typeof TlsWorkers>;
/** The most TLS worker threads `tls_workers` accepts. */
export const MAX_TLS_WORKERS = 8;

/** A TCP port a client can dial: an integer from 1 to 65535. */
export const Port = t.brand(t.number, (n): n is t.Branded<number, PortBrand> => isIntIn(n, 1, 65535), 'Port');
export type Port = t.TypeOf<typeof Port>;

export interface MtuBrand {
  readonly Mtu: unique symbol;
}
/** A TUN MTU whose packets fit one DATA frame: an integer from 576 to 1495. */
export const Mtu = t.brand(t.number, (n): n is t.Branded<number, MtuBrand> => isIntIn(n, MIN_MTU, MAX_MTU), 'Mtu');
export type Mtu = t.TypeOf<typeof Mtu>;

export interface SecondsBrand {
  readonly Seconds: unique symbol;
}
/** A duration in whole seconds from 1 to 2147483. */
export const Seconds = t.brand(
  t.number,
  (n): n is t.Branded<number, SecondsBrand> => isIntIn(n, 1, MAX_SECONDS),
  'Seconds',
);
export type Seconds = t.TypeOf<typeof Seconds>;

/** "server" or "client". */
export const Mode = t.keyof({ server: null, client: null }, 'Mode');
export type Mode = t.TypeOf<typeof Mode>;

const isCidrValue = (u: unknown): u is Ipv4Prefix =>
  typeof u === 'object' &&
  u !== null &&
  isIntIn((u as Ipv4Prefix).address, 0, 0xffffffff) &&
  isIntIn((u as Ipv4Prefix).prefix, 0, 32);

const isHostPortValue = (u: unknown): u is HostPort =>
  typeof u === 'object' &&
  u !== null &&
  typeof (u as HostPort).host === 'string' &&
  isIntIn((u as HostPort).port, 0, 65535);

/** "a.b.c.d/p" (strict dotted quad, prefix 0..32) ⇄ {address, prefix}: the shared PrefixCodec. */
export const Cidr = PrefixCodec;

/** Why a valid CIDR cannot be a tunnel address, or undefined when it can. */
const tunnelAddrProblem = (cidr: Ipv4Prefix): string | undefined => {
  if (cidr.prefix < MIN_TUNNEL_PREFIX || cidr.prefix > MAX_TUNNEL_PREFIX) {
    return `a prefix length from /${MIN_TUNNEL_PREFIX} to /${MAX_TUNNEL_PREFIX}`;
  }
  const block = formatPrefix({ address: networkAddress(cidr), prefix: cidr.prefix });
  if (cidr.address === networkAddress(cidr)) {
    return `a host address inside ${block} (${formatIpv4(cidr.address)} is its network address)`;
  }
  if (cidr.address === broadcastAddress(cidr)) {
    return `a host address inside ${block} (${formatIpv4(cidr.address)} is its broadcast address)`;
  }
  return undefined;
};

/** A Cidr that is a host address of a /8../30 block: this side's address on the virtual LAN. */
export const TunnelAddr = new t.Type<Ipv4Prefix, string, unknown>(
  'TunnelAddr',
  (u): u is Ipv4Prefix => isCidrValue(u) && tunnelAddrProblem(u) === undefined,
  (u, c) => {
    const cidr = typeof u === 'string' ? parsePrefix(u) : undefined;
    if (cidr === undefined) return t.failure(u, c);
    const problem = tunnelAddrProblem(cidr);
    return problem === undefined ? t.success(cidr) : t.failure(u, c, problem);
  },
  formatPrefix,
);

/** "host:port", "[v6]:port", "host" or "[v6]" (port 9000) into {host, port}; undefined if none fits. */
const hostPortOrHost = (s: string, defaultHost?: string): HostPort | undefined => {
  const hp = parseHostPort(s, defaultHost);
  if (hp !== undefined) return hp;
  const host = parseHost(s);
  return host === undefined ? undefined : { host, port: DEFAULT_PORT };
};

/** Where a server listens: "host:port", ":port" (all IPv4 interfaces), "[v6]:port" or a bare host (port 9000); port 0 is allowed. */
export const ListenAddr = new t.Type<HostPort, string, unknown>(
  'ListenAddr',
  isHostPortValue,
  (u, c) => {
    const hp = typeof u === 'string' ? hostPortOrHost(u, '0.0.0.0') : undefined;
    return hp === undefined ? t.failure(u, c) : t.success(hp);
  },
  formatHostPort,
);

/** A server to dial: "host:port", "[v6]:port" or a bare host (port 9000); port 1..65535. */
export const HostPortFromString = new t.Type<HostPort, string, unknown>(
  'HostPort',
  (u): u is HostPort => isHostPortValue(u) && u.host !== '' && u.port !== 0,
  (u, c) => {
    if (typeof u !== 'string') return t.failure(u, c);
    if (/^:[0-9]*$/.test(u)) return t.failure(u, c, `the server's host name or address before the port`);
    const hp = hostPortOrHost(u);
    if (hp === undefined) return t.failure(u, c);
    return hp.port === 0 ? t.failure(u, c, 'a port from 1 to 65535') : t.success(hp);
  },
  formatHostPort,
);

/** The most hubs `remote_addr` may list (a client tries each once per round: docs/cluster.md, "Failover"). */
export const MAX_HUBS = MAX_CANDIDATES;

/**
 * `remote_addr`: the hubs a client dials, in order: "hubA:9000,hubB:9000" or ["hubA:9000", ...]
 * (one string, as before, is a list of one); at most MAX_HUBS, none twice; "" or [] for "not set".
 * Written back as one comma-separated string.
 */
export const RemoteAddr = new t.Type<readonly HostPort[], string, unknown>(
  'RemoteAddr',
  (u): u is readonly HostPort[] => Array.isArray(u) && u.every((x) => HostPortFromString.is(x)),
  (u, c) => {
    const parts = typeof u === 'string' ? (u.trim() === '' ? [] : u.split(',').map((p) => p.trim())) : Array.isArray(u) && u.every((x) => typeof x === 'string') ? (u as string[]).map((p) => p.trim()) : undefined;
    if (parts === undefined) return t.failure(u, c);
    if (parts.length > MAX_HUBS) return t.failure(u, c, `at most ${MAX_HUBS} hubs (${parts.length} listed)`);
    const out: HostPort[] = [];
    for (const p of parts) {
      const hp = HostPortFromString.validate(p, c);
      // One address (the usual case) is refused as before; in a list, the bad item is named.
      if (isLeft(hp)) return parts.length === 1 ? hp : t.failure(u, c, `hub addresses like "hubA:9000,hubB:9000", separated by commas (${JSON.stringify(p)} is not one)`);
      if (out.some((o) => o.host === hp.right.host && o.port === hp.right.port)) return t.failure(u, c, `each hub once (${formatHostPort(hp.right)} is listed twice)`);
      out.push(hp.right);
    }
    return t.success(out);
  },
  (list) => list.map(formatHostPort).join(','),
);

/** Where the status server listens: a loopback TCP address or a unix socket path. */
export type StatusAddr =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

const LOOPBACK_HOSTS: readonly string[] = ['127.0.0.1', 'localhost', '::1'];

/**
 * "127.0.0.1:PORT", "localhost:PORT", "[::1]:PORT", "/path/to.sock" or "unix:/path/to.sock";
 * undefined for anything else (the status server never listens beyond this machine).
 */
export const parseStatusAddr = (s: string): StatusAddr | undefined => {
  if (s.startsWith('unix:')) s = s.slice('unix:'.length);
  if (s.startsWith('/')) return s.length > 1 && !s.endsWith('/') && !s.includes('\0') ? { kind: 'unix', path: s } : undefined;
  const m = /^(?:\[(::1)\]|(127\.0\.0\.1|localhost)):([0-9]{1,5})$/.exec(s);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (!isIntIn(port, 1, 65535)) return undefined;
  const host = m[1] ?? m[2] ?? '';
  return LOOPBACK_HOSTS.includes(host) ? { kind: 'tcp', host, port } : undefined;
};

/** A StatusAddr in its text form: "127.0.0.1:9100", "[::1]:9100" or a socket path. */
export const formatStatusAddr = (a: StatusAddr): string =>
  a.kind === 'unix' ? a.path : a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;

/** `status_addr`: a StatusAddr, or "" for off. */
export const StatusAddrFromString = new t.Type<StatusAddr | undefined, string, unknown>(
  'StatusAddr',
  (u): u is StatusAddr | undefined =>
    u === undefined ||
    (typeof u === 'object' && u !== null && ((u as StatusAddr).kind === 'tcp' || (u as StatusAddr).kind === 'unix')),
  (u, c) => {
    if (u === '') return t.success(undefined);
    const a = typeof u === 'string' ? parseStatusAddr(u) : undefined;
    return a === undefined ? t.failure(u, c) : t.success(a);
  },
  (a) => (a === undefined ? '' : formatStatusAddr(a)),
);

/** A list given as a JSON array of strings or as one comma-separated string (the flag form); "" is empty. */
const listOf = <A>(name: string, item: (s: string) => A | string, is: (u: unknown) => u is A, format: (a: A) => string) =>
  new t.Type<readonly A[], string[], unknown>(
    name,
    (u): u is readonly A[] => Array.isArray(u) && u.every(is),
    (u, c) => {
      const parts = typeof u === 'string' ? (u.trim() === '' ? [] : u.split(',').map((p) => p.trim())) : Array.isArray(u) && u.every((x) => typeof x === 'string') ? (u as string[]) : undefined;
      if (parts === undefined) return t.failure(u, c);
      const out: A[] = [];
      for (const p of parts) {
        const v = item(p);
        if (typeof v === 'string') return t.failure(u, c, v);
        out.push(v);
      }
      return t.success(out);
    },
    (list) => list.map(format),
  );

/** One etcd client URL, "http://HOST:PORT" or "https://HOST:PORT" (no path), normalized; or why it is none. */
const etcdUrl = (s: string): { readonly url: string } | string => {
  const bad = `etcd client URLs like "http://10.1.0.1:2379", separated by commas (${JSON.stringify(s)} is not one)`;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return bad;
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.hostname === '' || (u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') return bad;
  return { url: `${u.protocol}//${u.host}` };
};

/** `etcd_endpoints`: the etcd members' client URLs, "a,b" or ["a", "b"]; empty: no cluster. */
export const EtcdEndpoints = listOf<{ readonly url: string }>(
  'EtcdEndpoints',
  etcdUrl,
  (u): u is { url: string } => typeof u === 'object' && u !== null && typeof (u as { url: unknown }).url === 'string',
  (e) => e.url,
);

/** `cluster`, `hub_name`: a name that becomes part of the cluster's keys (operators/core/codecs.ts isClusterName); `hub_name` may be "" (the host name). */
export const ClusterName = t.refinement(t.string, isClusterName, 'ClusterName');
export const HubName = t.refinement(t.string, (s) => s === '' || isClusterName(s), 'HubName');

/** `advertise`: where other hubs reach this one, "host:port"; "" for the listen address. */
export const AdvertiseAddr = new t.Type<HostPort | undefined, string, unknown>(
  'AdvertiseAddr',
  (u): u is HostPort | undefined => u === undefined || HostPortFromString.is(u),
  (u, c) => (u === '' ? t.success(undefined) : typeof u === 'string' && u.startsWith(':') ? t.failure(u, c, 'the host name or address the other hubs dial, before the port') : HostPortFromString.validate(u, c)),
  (hp) => (hp === undefined ? '' : formatHostPort(hp)),
);

/** The most LAN routes a client may announce (the hub refuses more in one HELLO). */
export const MAX_ROUTES = 16;

/** `routes`, `allow_routes`: network prefixes, "a,b" or ["a", "b"]. */
export const CidrList = listOf<Ipv4Prefix>(
  'CidrList',
  (s) => {
    const p = networkPrefix(s);
    // A list is written "a,b": say so when the item is not a CIDR at all.
    return typeof p === 'string' && p.startsWith('CIDRs like') ? p.replace('/24" (', '/24", separated by commas (') : p;
  },
  isCidrValue,
  formatPrefix,
);

const MULTICAST_FIRST = 0xe0000000;
const MULTICAST_LAST = 0xefffffff;

/** `broadcast_groups`: IPv4 multicast addresses (224.0.0.0/4). */
export const MulticastList = listOf<number>(
  'MulticastList',
  (s) => {
    const cidr = parsePrefix(`${s}/32`);
    if (cidr === undefined || cidr.address < MULTICAST_FIRST || cidr.address > MULTICAST_LAST) {
      return `IPv4 multicast addresses (224.0.0.0 to 239.255.255.255) separated by commas (${JSON.stringify(s)} is not one)`;
    }
    return cidr.address;
  },
  (u): u is number => isIntIn(u as number, MULTICAST_FIRST, MULTICAST_LAST),
  formatIpv4,
);

/** An inclusive address range of the pool. */
export interface AddressPool {
  readonly first: number;
  readonly last: number;
}

/** `pool`: "FIRST-LAST" (dotted quads, first ≤ last), or "" for the whole tunnel subnet. */
export const PoolFromString = new t.Type<AddressPool | undefined, string, unknown>(
  'Pool',
  (u): u is AddressPool | undefined => u === undefined || (typeof u === 'object' && u !== null && isIntIn((u as AddressPool).first, 0, 0xffffffff)),
  (u, c) => {
    if (u === '') return t.success(undefined);
    if (typeof u !== 'string') return t.failure(u, c);
    const [a, b, ...rest] = u.split('-').map((p) => p.trim());
    const first = a === undefined ? undefined : parsePrefix(`${a}/32`)?.address;
    const last = b === undefined ? undefined : parsePrefix(`${b}/32`)?.address;
    if (first === undefined || last === undefined || rest.length > 0) return t.failure(u, c);
    return first <= last ? t.success({ first, last }) : t.failure(u, c, `a range whose first address is not above its last, like "10.0.0.100-10.0.0.199"`);
  },
  (p) => (p === undefined ? '' : `${formatIpv4(p.first)}-${formatIpv4(p.last)}`),
);

// ---------------------------------------------------------------------------------------------
// The configuration

/** `log_level`: the least severe level logged. */
export const LogLevel = t.keyof({ debug: null, info: null, warn: null, error: null }, 'LogLevel');
export type LogLevel = t.TypeOf<typeof LogLevel>;

/** `transport`: how data travels (pipelines/settings.ts TransportMode). */
export const TransportMode = t.keyof({ auto: null, tcp: null, udp: null }, 'TransportMode');

/** `log_format`: text on a terminal and JSON lines otherwise (auto), or either always. */
export const LogFormat = t.keyof({ auto: null, text: null, json: null }, 'LogFormat');
export type LogFormat = t.TypeOf<typeof LogFormat>;

/** Every JSON key with its codec. The decoded form is typed; `encode` gives back the JSON form. */
export const ConfigFields = t.type(
  {
    mode: Mode,
    local_addr: ListenAddr,
    remote_addr: RemoteAddr,
    tunnel_addr: TunnelAddr,
    mtu: Mtu,
    timeout: Seconds,
    keepalive: Seconds,
    send_queue_size: PositiveInt,
    recv_queue_size: PositiveInt,
    offload: t.boolean,
    transport: TransportMode,
    direct: t.boolean,
    multi_client: t.boolean,
    max_clients: PositiveInt,
    max_pending_per_source: PositiveInt,
    max_pending: PositiveInt,
    client_isolation: t.boolean,
    tls_enabled: t.boolean,
    tls_cert_file: t.string,
    tls_key_file: t.string,
    tls_workers: TlsWorkers,
    tls_skip_verify: t.boolean,
    tls_ca_file: t.string,
    tls_server_name: t.string,
    tls_client_ca_file: t.string,
    tls_client_cert_file: t.string,
    tls_client_key_file: t.string,
    token: t.string,
    token_file: t.string,
    tokens_file: t.string,
    log_level: LogLevel,
    log_format: LogFormat,
    status_addr: StatusAddrFromString,
    state_dir: t.string,
    pool: PoolFromString,
    routes: CidrList,
    allow_routes: CidrList,
    broadcast: t.boolean,
    broadcast_groups: MulticastList,
    broadcast_pps: PositiveInt,
    etcd_endpoints: EtcdEndpoints,
    cluster: ClusterName,
    hub_name: HubName,
    advertise: AdvertiseAddr,
    cluster_token: t.string,
  },
  'ConfigFields',
);

/** A config file or a set of flags: any subset of the keys. */
export const ConfigFile = t.partial(ConfigFields.props, 'ConfigFile');

/** Every setting, decoded. */
export type ConfigValues = t.TypeOf<typeof ConfigFields>;
/** Every setting in its JSON form. */
export type ConfigJson = t.OutputOf<typeof ConfigFields>;
export type ConfigKey = keyof ConfigValues;

/** The keys in table order (the order of the help text and the example files). */
export const CONFIG_KEYS: readonly ConfigKey[] = Object.keys(ConfigFields.props) as ConfigKey[];

/** Keys the Go program accepted but never used; they are accepted with a warning. */
export const IGNORED_KEYS: readonly string[] = ['fec_data', 'fec_parity'];

/** Where the hub keeps `leases.json` and a client its `client-id` unless `state_dir` says otherwise. */
export const DEFAULT_STATE_DIR = '/var/lib/lightweight-tunnel';

/** The defaults in JSON form, as the docs show them. */
export const DEFAULT_JSON: Readonly<ConfigJson> = {
  mode: 'server',
  local_addr: `0.0.0.0:${DEFAULT_PORT}`,
  remote_addr: '',
  tunnel_addr: '10.0.0.1/24',
  mtu: 1400,
  timeout: 30,
  keepalive: 10,
  send_queue_size: 1000,
  recv_queue_size: 1000,
  offload: true,
  transport: 'auto',
  direct: true,
  multi_client: true,
  max_clients: 100,
  max_pending_per_source: DEFAULT_PENDING_LIMITS.perSource,
  max_pending: DEFAULT_PENDING_LIMITS.total,
  client_isolation: false,
  tls_enabled: false,
  tls_cert_file: '',
  tls_key_file: '',
  tls_workers: 0,
  tls_skip_verify: false,
  tls_ca_file: '',
  tls_server_name: '',
  tls_client_ca_file: '',
  tls_client_cert_file: '',
  tls_client_key_file: '',
  token: '',
  token_file: '',
  tokens_file: '',
  log_level: 'info',
  log_format: 'auto',
  status_addr: '',
  state_dir: DEFAULT_STATE_DIR,
  pool: '',
  routes: [],
  allow_routes: [],
  broadcast: false,
  broadcast_groups: ['224.0.0.251', '239.255.255.250'],
  broadcast_pps: 200,
  etcd_endpoints: [],
  cluster: 'default',
  hub_name: '',
  advertise: '',
  cluster_token: '',
};

const decodeDefaults = (): ConfigValues => {
  const decoded = ConfigFields.decode(DEFAULT_JSON);
  if (isLeft(decoded)) throw new Error('lightweight-tunnel: the built-in defaults do not decode');
  return decoded.right;
};

/** The defaults, decoded. */
export const DEFAULT_VALUES: Readonly<ConfigValues> = decodeDefaults();

interface CommonConfig extends Readonly<Omit<ConfigValues, 'mode' | 'remote_addr'>> {}

/** A resolved server configuration. `remote_addr` is carried along but unused. */
export interface ServerConfig extends CommonConfig {
  readonly mode: 'server';
  readonly remote_addr: readonly HostPort[];
}

/** A resolved client configuration; it always has a server to dial. */
export interface ClientConfig extends CommonConfig {
  readonly mode: 'client';
  /** The hubs to dial, in order: never empty. */
  readonly remote_addr: readonly HostPort[];
  /** tunnel_addr was not given (no -t, no JSON key): the hub assigns the address, `tunnel_addr` is unused. */
  readonly assign_address: boolean;
}

/** The resolved, validated configuration: every key present, every cross-field rule checked. */
export type Config = ServerConfig | ClientConfig;

// ---------------------------------------------------------------------------------------------
// The per-key table: flags, help and error wording. The CLI parser and help text derive from it.

export type KeyGroup = 'Mode and addresses' | 'Tunnel' | 'Timing' | 'Clients (server only)' | 'Assigned addresses, LANs and broadcast' | 'TLS' | 'Authentication' | 'Cluster (server only)' | 'Operations';

export interface KeyInfo {
  /** Flag names without dashes; the first is the Go program's, the rest are long aliases. */
  readonly flags: readonly string[];
  /** The value placeholder in help, or undefined for a boolean switch (`-tls`, `-tls=false`). */
  readonly metavar: string | undefined;
  /** How a flag's text becomes a JSON value before decoding. */
  readonly valueType: 'int' | 'bool' | 'text';
  /** The "expected X" of an error line. */
  readonly expected: string;
  /** One sentence for help and docs. */
  readonly meaning: string;
  /** Which mode reads the key; the other mode ignores it (with a warning when set). */
  readonly appliesTo: 'both' | 'server' | 'client';
  readonly group: KeyGroup;
  /** Shown instead of the JSON default where that would mislead. */
  readonly defaultText?: string;
}

export const KEY_INFO: { readonly [K in ConfigKey]: KeyInfo } = {
  mode: {
    flags: ['m', 'mode'],
    metavar: 'server|client',
    valueType: 'text',
    expected: '"server" or "client"',
    meaning: 'Run as the hub that clients dial (server) or as a member that dials it (client).',
    appliesTo: 'both',
    group: 'Mode and addresses',
  },
  local_addr: {
    flags: ['l', 'listen'],
    metavar: 'ADDR',
    valueType: 'text',
    expected: 'an address to listen on like "0.0.0.0:9000", ":9000" or "[::]:9000"',
    meaning: 'Address and TCP port the server listens on; an empty host means 0.0.0.0, a missing port 9000.',
    appliesTo: 'server',
    group: 'Mode and addresses',
  },
  remote_addr: {
    flags: ['r', 'remote'],
    metavar: 'HOST:PORT[,...]',
    valueType: 'text',
    expected: `the server's address like "203.0.113.1:9000", "vpn.example.com:9000" or "[2001:db8::1]:9000"`,
    meaning: `The hub a client dials, or several (up to ${MAX_HUBS}, comma-separated, or a name with several addresses): tried in order, one attempt each, then the backoff; a missing port means 9000. Names are resolved on every round.`,
    appliesTo: 'client',
    group: 'Mode and addresses',
    defaultText: 'none, required in client mode',
  },
  tunnel_addr: {
    flags: ['t', 'tunnel'],
    metavar: 'CIDR',
    valueType: 'text',
    expected: 'an IPv4 address with a prefix length like "10.0.0.2/24"',
    meaning:
      "This side's address on the virtual LAN and the LAN's prefix (/8 to /30). Every member needs its own address in the same prefix. A client without it asks the hub to assign one.",
    appliesTo: 'both',
    group: 'Tunnel',
    defaultText: 'server "10.0.0.1/24"; client: assigned by the hub',
  },
  mtu: {
    flags: ['mtu'],
    metavar: 'N',
    valueType: 'int',
    expected: `an integer from ${MIN_MTU} to ${MAX_MTU} (a DATA frame carries at most ${MAX_FRAME_BODY} bytes: 1 type byte + the packet)`,
    meaning: `MTU of the TUN device, ${MIN_MTU} to ${MAX_MTU}: a frame body is at most ${MAX_FRAME_BODY} bytes, 1 type byte + the packet.`,
    appliesTo: 'both',
    group: 'Tunnel',
  },
  timeout: {
    flags: ['timeout'],
    metavar: 'SECONDS',
    valueType: 'int',
    expected: `a whole number of seconds from 1 to ${MAX_SECONDS}`,
    meaning: 'A peer silent for this long is disconnected. Must be more than keepalive.',
    appliesTo: 'both',
    group: 'Timing',
  },
  keepalive: {
    flags: ['keepalive'],
    metavar: 'SECONDS',
    valueType: 'int',
    expected: `a whole number of seconds from 1 to ${MAX_SECONDS}`,
    meaning: 'Seconds between KEEPALIVE frames, sent both ways. Must be less than timeout.',
    appliesTo: 'both',
    group: 'Timing',
  },
  send_queue_size: {
    flags: ['send-queue'],
    metavar: 'N',
    valueType: 'int',
    expected: 'a positive integer',
    meaning: 'Packets that may wait for a slow connection, per session; beyond that they are dropped.',
    appliesTo: 'both',
    group: 'Tunnel',
  },
  recv_queue_size: {
    flags: ['recv-queue'],
    metavar: 'N',
    valueType: 'int',
    expected: 'a positive integer',
    meaning: 'Packets that may wait for a busy TUN device; beyond that they are dropped.',
    appliesTo: 'both',
    group: 'Tunnel',
  },
  offload: {
    flags: ['offload'],
    metavar: undefined,
    valueType: 'bool',
    expected: 'true or false',
    meaning: 'TCP segmentation offload on the TUN device: 64 KiB super-packets travel whole between sides that both offload (0.0.1-era peers get normal packets). -offload=false turns it off.',
    appliesTo: 'both',
    group: 'Tunnel',
  },
  transport: {
    flags: ['transport'],
    metavar: 'auto|tcp|udp',
    valueType: 'text',
    expected: '"auto", "tcp" or "udp"',
    meaning:
      'How data travels. auto: over sealed UDP datagrams (the hub listens on UDP at its TCP port) when both sides offer it and a probe gets through, back to the TCP connection within 2 s when UDP goes silent; tcp: never UDP; udp: a failed UDP path is a failed connection. Control messages always use the TCP/TLS connection.',
    appliesTo: 'both',
    group: 'Tunnel',
  },
  direct: {
    flags: ['direct'],
    metavar: undefined,
    valueType: 'bool',
    expected: 'true or false',
    meaning:
      'Direct paths between members where UDP is in use: the hub introduces two members that talk to each other and their packets then go straight between them over sealed UDP (through the hub while none gets through). Both sides must have it on. -direct=false turns it off.',
    appliesTo: 'both',
    group: 'Tunnel',
  },
  multi_client: {
    flags: ['multi-client'],
    metavar: undefined,
    valueType: 'bool',
    expected: 'true or false',
    meaning: 'Accept many clients at once; with =false only one client at a time.',
    appliesTo: 'server',
    group: 'Clients (server only)',
  },
  max_clients: {
    flags: ['max-clients'],
    metavar: 'N',
    valueType: 'int',
    expected: 'a positive integer',
    meaning: 'At most this many clients at once; further connections are closed.',
    appliesTo: 'server',
    group: 'Clients (server only)',
  },
  max_pending_per_source: {
    flags: ['max-pending-per-source'],
    metavar: 'N',
    valueType: 'int',
    expected: 'a positive integer',
    meaning:
      'At most this many connections from one source address that have not joined yet (TLS handshake or HELLO unfinished); further ones are closed at once, before any TLS, and counted as refused (pending-source-limit).',
    appliesTo: 'server',
    group: 'Clients (server only)',
  },
  max_pending: {
    flags: ['max-pending'],
    metavar: 'N',
    valueType: 'int',
    expected: 'a positive integer',
    meaning: 'At most this many connections in all that have not joined yet; further ones are closed at once and counted as refused (pending-limit).',
    appliesTo: 'server',
    group: 'Clients (server only)',
  },
  client_isolation: {
    flags: ['client-isolation'],
    metavar: undefined,
    valueType: 'bool',
    expected: 'true or false',
    meaning: 'Clients reach only the server, never each other.',
    appliesTo: 'server',
    group: 'Clients (server only)',
  },
  tls_enabled: {
    flags: ['tls'],
    metavar: undefined,
    valueType: 'bool',
    expected: 'true or false',
    meaning: 'Run the connection over TLS 1.2 or later; both sides must agree.',
    appliesTo: 'both',
    group: 'TLS',
  },
  tls_cert_file: {
    flags: ['tls-cert'],
    metavar: 'FILE',
    valueType: 'text',
    expected: 'a file path',
    meaning: 'PEM certificate the server presents; required with TLS on the server.',
    appliesTo: 'server',
    group: 'TLS',
  },
  tls_key_file: {
    flags: ['tls-key'],
    metavar: 'FILE',
    valueType: 'text',
    expected: 'a file path',
    meaning: "PEM private key of the server's certificate; required with TLS on the server.",
    appliesTo: 'server',
    group: 'TLS',
  },
  tls_workers: {
    flags: ['tls-workers'],
    metavar: 'N',
    valueType: 'int',
    expected: `an integer from 0 to ${MAX_TLS_WORKERS}`,
    meaning:
      'Run the TLS listener in a worker thread (any N ≥ 1: one thread for now, as Node 20 cannot share a listening port between threads); 0 keeps TLS on the main thread. See docs/performance.md for what it buys.',
    appliesTo: 'server',
    group: 'TLS',
  },
  tls_skip_verify: {
    flags: ['tls-skip-verify'],
    metavar: undefined,
    valueType: 'bool',
    expected: 'true or false',
    meaning: "Do not check the server's certificate. For tests only: anyone on the path could pose as the server.",
    appliesTo: 'client',
    group: 'TLS',
  },
  tls_ca_file: {
    flags: ['tls-ca'],
    metavar: 'FILE',
    valueType: 'text',
    expected: 'a file path',
    meaning: "PEM CA certificate(s) a client checks the server's certificate against, for a private CA (a hub of a cluster: the other hubs' certificates, on its trunks); default: the system's CAs.",
    appliesTo: 'both',
    group: 'TLS',
  },
  tls_server_name: {
    flags: ['tls-server-name'],
    metavar: 'NAME',
    valueType: 'text',
    expected: 'a host name',
    meaning: "The name the server's certificate must carry; default: the host of -r.",
    appliesTo: 'client',
    group: 'TLS',
  },
  tls_client_ca_file: {
    flags: ['tls-client-ca'],
    metavar: 'FILE',
    valueType: 'text',
    expected: 'a file path',
    meaning: 'Require every client to present a certificate signed by this PEM CA (mutual TLS); its common name is the member identity.',
    appliesTo: 'server',
    group: 'Authentication',
  },
  tls_client_cert_file: {
    flags: ['tls-client-cert'],
    metavar: 'FILE',
    valueType: 'text',
    expected: 'a file path',
    meaning: 'PEM certificate a client presents to a server that requires client certificates.',
    appliesTo: 'client',
    group: 'Authentication',
  },
  tls_client_key_file: {
    flags: ['tls-client-key'],
    metavar: 'FILE',
    valueType: 'text',
    expected: 'a file path',
    meaning: "PEM private key of the client's certificate.",
    appliesTo: 'client',
    group: 'Authentication',
  },
  token: {
    flags: ['token'],
    metavar: 'SECRET',
    valueType: 'text',
    expected: 'a string',
    meaning: 'The network token: a server with one admits only clients that present it; a client presents it in its HELLO.',
    appliesTo: 'both',
    group: 'Authentication',
  },
  token_file: {
    flags: ['token-file'],
    metavar: 'FILE',
    valueType: 'text',
    expected: 'a file path',
    meaning: 'Read the network token from this file (first line), which keeps it out of the process list.',
    appliesTo: 'both',
    group: 'Authentication',
  },
  tokens_file: {
    flags: ['tokens-file'],
    metavar: 'FILE',
    valueType: 'text',
    expected: 'a file path',
    meaning: 'Per-client tokens, JSON {"NAME": {"token": "...", "address": "10.0.0.2"}}: each client is a named identity (address optional, pinned when given).',
    appliesTo: 'server',
    group: 'Authentication',
  },
  status_addr: {
    flags: ['status'],
    metavar: 'ADDR',
    valueType: 'text',
    expected: 'a loopback address or a unix socket path',
    meaning:
      'Serve /status (JSON), /metrics (Prometheus), /healthz and /readyz on this loopback address ("127.0.0.1:9100", "[::1]:9100") or unix socket ("/run/lightweight-tunnel.sock"); off when empty.',
    appliesTo: 'both',
    group: 'Operations',
    defaultText: 'off',
  },
  state_dir: {
    flags: ['state-dir'],
    metavar: 'DIR',
    valueType: 'text',
    expected: 'a directory path',
    meaning:
      'Where state lives: the hub\'s leases.json, a client\'s client-id (its identity when the hub assigns its address). Created (mode 0700) when needed. Two clients on one machine need two directories.',
    appliesTo: 'both',
    group: 'Assigned addresses, LANs and broadcast',
  },
  pool: {
    flags: ['pool'],
    metavar: 'FIRST-LAST',
    valueType: 'text',
    expected: 'an address range inside the tunnel network like "10.0.0.100-10.0.0.199"',
    meaning: 'Addresses the hub assigns to clients started without -t; default: the whole tunnel network. Static addresses may lie outside it.',
    appliesTo: 'server',
    group: 'Assigned addresses, LANs and broadcast',
    defaultText: 'the whole tunnel network',
  },
  routes: {
    flags: ['routes'],
    metavar: 'CIDR,...',
    valueType: 'text',
    expected: 'CIDRs like "192.168.10.0/24", separated by commas',
    meaning: `LANs behind this client (at most ${MAX_ROUTES}) that it announces to the hub; the other members route them through the tunnel. Enable ip_forward on this machine.`,
    appliesTo: 'client',
    group: 'Assigned addresses, LANs and broadcast',
  },
  allow_routes: {
    flags: ['allow-routes'],
    metavar: 'CIDR,...',
    valueType: 'text',
    expected: 'CIDRs like "192.168.0.0/16", separated by commas',
    meaning: 'LANs members may announce: each announced route must lie inside one of these (a tokens file may narrow it per client); none by default.',
    appliesTo: 'server',
    group: 'Assigned addresses, LANs and broadcast',
  },
  broadcast: {
    flags: ['broadcast'],
    metavar: undefined,
    valueType: 'bool',
    expected: 'true or false',
    meaning: 'Replicate packets to the subnet broadcast address, 255.255.255.255 and the broadcast groups to every other member and the hub (isolation still applies).',
    appliesTo: 'server',
    group: 'Assigned addresses, LANs and broadcast',
  },
  broadcast_groups: {
    flags: ['broadcast-groups'],
    metavar: 'ADDR,...',
    valueType: 'text',
    expected: 'IPv4 multicast addresses separated by commas',
    meaning: 'Multicast groups replicated with -broadcast (default: mDNS and SSDP); other multicast goes to the hub only.',
    appliesTo: 'server',
    group: 'Assigned addresses, LANs and broadcast',
  },
  broadcast_pps: {
    flags: ['broadcast-pps'],
    metavar: 'N',
    valueType: 'int',
    expected: 'a positive integer',
    meaning: 'Broadcast and multicast packets per second each member (and the hub) may send with -broadcast; beyond that they are dropped as broadcast-limit.',
    appliesTo: 'server',
    group: 'Assigned addresses, LANs and broadcast',
  },
  etcd_endpoints: {
    flags: ['etcd'],
    metavar: 'URL,...',
    valueType: 'text',
    expected: 'etcd client URLs like "http://10.1.0.1:2379", separated by commas',
    meaning: 'Serve one virtual LAN together with the other hubs of a cluster whose shared state lives in this etcd (docs/cluster.md); off when empty.',
    appliesTo: 'server',
    group: 'Cluster (server only)',
    defaultText: 'none (no cluster)',
  },
  cluster: {
    flags: ['cluster'],
    metavar: 'NAME',
    valueType: 'text',
    expected: 'a name of letters, digits, ".", "_" and "-" (at most 63)',
    meaning: "The cluster's name in etcd (its key prefix), so several clusters can share one etcd.",
    appliesTo: 'server',
    group: 'Cluster (server only)',
  },
  hub_name: {
    flags: ['hub-name'],
    metavar: 'NAME',
    valueType: 'text',
    expected: 'a name of letters, digits, ".", "_" and "-" (at most 63)',
    meaning: "This hub's name in its cluster, unique among the live hubs.",
    appliesTo: 'server',
    group: 'Cluster (server only)',
    defaultText: 'the host name (up to its first dot)',
  },
  advertise: {
    flags: ['advertise'],
    metavar: 'HOST:PORT',
    valueType: 'text',
    expected: 'a host and port like "10.1.0.5:9000"',
    meaning: 'Where the other hubs of the cluster reach this one; required with -etcd when -l listens on a wildcard address.',
    appliesTo: 'server',
    group: 'Cluster (server only)',
    defaultText: 'the listen address',
  },
  cluster_token: {
    flags: ['cluster-token'],
    metavar: 'SECRET',
    valueType: 'text',
    expected: 'a secret of at least 16 characters',
    meaning: 'The secret the hubs of a cluster present to each other on their trunks; required with -etcd (with mutual TLS too: a certificate never stands in for it).',
    appliesTo: 'server',
    group: 'Cluster (server only)',
    defaultText: 'none',
  },
  log_level: {
    flags: ['log-level'],
    metavar: 'debug|info|warn|error',
    valueType: 'text',
    expected: '"debug", "info", "warn" or "error"',
    meaning: 'The least severe log lines written (to stderr). A SIGHUP applies a changed level at once.',
    appliesTo: 'both',
    group: 'Operations',
  },
  log_format: {
    flags: ['log-format'],
    metavar: 'auto|text|json',
    valueType: 'text',
    expected: '"auto", "text" or "json"',
    meaning: 'Log lines as "TIME LEVEL message" text or as JSON objects (level, time, msg, member, remote, reason, ...); auto is text on a terminal, JSON otherwise.',
    appliesTo: 'both',
    group: 'Operations',
  },
};

/** True when `key` is one of the configuration keys. */
export const isConfigKey = (key: string): key is ConfigKey => Object.prototype.hasOwnProperty.call(KEY_INFO, key);
