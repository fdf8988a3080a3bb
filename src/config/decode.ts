// From JSON text or values to a resolved Config, and from a Config to the pipelines' settings.
//
// A configuration is built from layers, later ones winning: defaults < config file < flags. Each
// layer is decoded on its own (so an error names the key or the flag the user wrote), then the
// layers are merged and the cross-field rules are checked once on the result.

import * as t from 'io-ts';
import { isLeft, left, right, type Either } from 'fp-ts/lib/Either.js';
import type { ClientSettings, CommonSettings, ServerSettings } from '../../pipelines/settings.js';
import { allocatorOptionsProblem } from '../../pipelines/allocator.js';
import { parseJson } from './json.js';
import {
  ConfigError,
  ConfigFields,
  MAX_ROUTES,
  ConfigFile,
  CONFIG_KEYS,
  DEFAULT_VALUES,
  IGNORED_KEYS,
  isConfigKey,
  KEY_INFO,
  type ClientConfig,
  type Config,
  type ConfigKey,
  type ConfigValues,
} from './schema.js';
import type { PendingLimits } from '../drivers/pending.js';
import { formatHostPort, formatPrefix, normalizePrefix, prefixesOverlap, type Ipv4Prefix } from '../../operators/core/address.js';
import type { ClusterHubSettings } from '../../pipelines/clusterHub.js';
import { clusterKeys } from '../../pipelines/clusterKeys.js';
import { decodeErrorLine, isClusterName, renderValue } from '../../operators/core/codecs.js';

export { renderValue };

/** One decoded source of settings: only the keys it sets, plus what it warns about. */
export interface ConfigLayer {
  readonly values: Partial<ConfigValues>;
  readonly warnings: readonly string[];
}

/** A resolved configuration and the warnings gathered on the way (to print, not to fail on). */
export interface ResolvedConfig {
  readonly config: Config;
  readonly warnings: readonly string[];
}

/** How long a hub that requires authentication waits for a connection's HELLO. */
export const HELLO_TIMEOUT_MS = 5000;

/** Reconnect backoff of a client: 1 s doubling up to 30 s. */
export const CLIENT_BACKOFF = { initialMs: 1000, maxMs: 30_000 } as const;

// ---------------------------------------------------------------------------------------------
// Rendering

/** Edit distance counting a swap of neighbours as one edit ("mut" is 1 from "mtu"). */
const editDistance = (a: string, b: string): number => {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number): number => d[i]?.[j] ?? 0;
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] ?? [];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1);
      row[j] = best;
    }
  }
  return at(a.length, b.length);
};

/**
 * The candidate `word` most likely misspells: the nearest within about one edit per three letters,
 * else one that starts the word or is started by it ("remote-addr" for "remote").
 */
export const closestMatch = (word: string, candidates: readonly string[]): string | undefined => {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(w, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  if (best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3))) return best;
  const prefixed = candidates.filter((c) => {
    const lc = c.toLowerCase();
    return Math.min(lc.length, w.length) >= 4 && (w.startsWith(lc) || lc.startsWith(w));
  });
  return prefixed.sort((a, b) => b.length - a.length)[0];
};

// ---------------------------------------------------------------------------------------------
// Layers

/**
 * Decodes the keys of `raw` that are config keys (the caller has dealt with the rest). Errors carry
 * `pathOf(key)` as their path, one line per bad key: `path: expected X, got Y`.
 */
export const decodeLayer = (
  raw: Readonly<Record<string, unknown>>,
  pathOf: (key: ConfigKey) => string,
): Either<ConfigError[], Partial<ConfigValues>> => {
  const known: Record<string, unknown> = {};
  for (const key of Object.keys(raw)) if (isConfigKey(key)) known[key] = raw[key];
  const decoded = ConfigFile.decode(known);
  if (!isLeft(decoded)) return right(decoded.right);
  const byKey = new Map<ConfigKey, ConfigError>();
  for (const error of decoded.left) {
    const entry = error.context[1];
    if (entry === undefined || !isConfigKey(entry.key) || byKey.has(entry.key)) continue;
    const expected = error.message ?? KEY_INFO[entry.key].expected;
    byKey.set(entry.key, new ConfigError(pathOf(entry.key), decodeErrorLine('', expected, entry.actual)));
  }
  // Report in the order the user wrote the keys.
  return left(Object.keys(raw).flatMap((key) => (isConfigKey(key) ? (byKey.get(key) ?? []) : [])));
};

/** JSON has no comments: a key starting with "//" is one (its value is ignored, without a warning). */
export const isCommentKey = (key: string): boolean => key.startsWith('//');

/**
 * Decodes a parsed config file. `source` names the file in errors about the whole document.
 * Unknown keys are errors (with a suggestion when one is close); `fec_data`/`fec_parity` warn;
 * keys starting with "//" are comments.
 */
export const decodeConfigJson = (json: unknown, source = 'config'): Either<ConfigError[], ConfigLayer> => {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return left([new ConfigError(source, `expected a JSON object of settings, got ${renderValue(json)}`)]);
  }
  const raw = json as Record<string, unknown>;
  const errors: ConfigError[] = [];
  const warnings: string[] = [];
  for (const key of Object.keys(raw)) {
    if (isConfigKey(key) || isCommentKey(key)) continue;
    if (IGNORED_KEYS.includes(key)) {
      warnings.push(`${key}: ignored (forward error correction was never used by the Go program and is not implemented)`);
      continue;
    }
    const near = closestMatch(key, CONFIG_KEYS);
    errors.push(new ConfigError(key, near === undefined ? 'unknown key' : `unknown key (did you mean "${near}"?)`));
  }
  const decoded = decodeLayer(raw, (key) => key);
  if (isLeft(decoded)) errors.push(...decoded.left);
  if (errors.length > 0) {
    const order = Object.keys(raw);
    return left(errors.sort((a, b) => order.indexOf(a.path) - order.indexOf(b.path)));
  }
  return right({ values: isLeft(decoded) ? {} : decoded.right, warnings });
};

// ---------------------------------------------------------------------------------------------
// JSON text

/**
 * Parses the text of a config file (strictly: a key given twice is an error) and decodes it.
 * `source` prefixes errors about the text as a whole, e.g.
 * `-c /etc/tunnel.json: invalid JSON at position 12 (line 2, column 9): unexpected "}"`.
 */
export const parseConfigText = (text: string, source: string): Either<ConfigError[], ConfigLayer> => {
  const json = parseJson(text);
  return isLeft(json) ? left([new ConfigError(source, json.left.message)]) : decodeConfigJson(json.right, source);
};

// ---------------------------------------------------------------------------------------------
// Resolving

const jsonOf = (key: ConfigKey, value: unknown): string =>
  JSON.stringify((ConfigFields.props[key] as t.Mixed).encode(value));

const flagHint = (key: ConfigKey): string => `-${KEY_INFO[key].flags[0] ?? key}`;

/**
 * Merges layers over the defaults (later layers win) and checks the rules that span keys:
 * a client needs `remote_addr`; `keepalive` < `timeout`; TLS on a server needs a certificate and a
 * key file. Warns about keys set to a non-default value that the chosen mode ignores.
 */
export const resolveConfig = (layers: readonly ConfigLayer[]): Either<ConfigError[], ResolvedConfig> => {
  const merged: ConfigValues = Object.assign({}, DEFAULT_VALUES, ...layers.map((l) => l.values));
  const warnings = layers.flatMap((l) => l.warnings);
  const errors: ConfigError[] = [];

  if (merged.mode === 'client' && merged.remote_addr.length === 0) {
    errors.push(new ConfigError('remote_addr', `required in client mode (give the server's address with -r HOST:PORT)`));
  }
  if (merged.keepalive >= merged.timeout) {
    errors.push(
      new ConfigError('keepalive', `expected fewer seconds than timeout (${merged.timeout}), got ${merged.keepalive}`),
    );
  }
  if (merged.mode === 'server' && merged.tls_enabled) {
    for (const key of ['tls_cert_file', 'tls_key_file'] as const) {
      if (merged[key] === '') {
        errors.push(new ConfigError(key, `required when TLS is on in server mode (${flagHint(key)} FILE)`));
      }
    }
  }
  // Authentication settings that would be silently ignored are errors: running less protected than
  // asked is the one surprise a VPN must never spring.
  if (merged.mode === 'server' && merged.tls_client_ca_file !== '' && !merged.tls_enabled) {
    errors.push(new ConfigError('tls_client_ca_file', 'client certificates need TLS: add -tls with -tls-cert and -tls-key'));
  }
  if (merged.mode === 'server' && merged.tls_workers > 0 && !merged.tls_enabled) {
    errors.push(new ConfigError('tls_workers', 'TLS worker threads need TLS: add -tls with -tls-cert and -tls-key'));
  }
  if (merged.mode === 'client' && (merged.tls_client_cert_file === '') !== (merged.tls_client_key_file === '')) {
    const missing = merged.tls_client_cert_file === '' ? 'tls_client_cert_file' : 'tls_client_key_file';
    errors.push(new ConfigError(missing, `required together with ${missing === 'tls_client_cert_file' ? 'tls_client_key_file' : 'tls_client_cert_file'} (${flagHint(missing)} FILE)`));
  }
  if (merged.mode === 'client' && merged.tls_client_cert_file !== '' && !merged.tls_enabled) {
    errors.push(new ConfigError('tls_client_cert_file', 'a client certificate needs TLS: add -tls'));
  }
  if (merged.token !== '' && merged.token_file !== '') {
    errors.push(new ConfigError('token_file', 'give the token either with -token or with -token-file, not both'));
  }
  const setByUser = new Set<ConfigKey>(layers.flatMap((l) => Object.keys(l.values).filter(isConfigKey)));
  const tunnelNet = normalizePrefix(merged.tunnel_addr);
  const overlapsTunnel = (c: Ipv4Prefix): boolean => prefixesOverlap(c, tunnelNet);
  const assign = merged.mode === 'client' && !setByUser.has('tunnel_addr');
  if (merged.mode === 'server' && merged.pool !== undefined) {
    const problem = allocatorOptionsProblem({ network: merged.tunnel_addr.address, prefix: merged.tunnel_addr.prefix, hub: merged.tunnel_addr.address, pool: merged.pool });
    if (problem !== undefined) errors.push(new ConfigError('pool', `expected a range inside the tunnel network ${formatPrefix(tunnelNet)}: ${problem}`));
  }
  if (merged.mode === 'server') {
    for (const c of merged.allow_routes) {
      if (overlapsTunnel(c)) errors.push(new ConfigError('allow_routes', `${formatPrefix(c)} overlaps the tunnel network ${formatPrefix(tunnelNet)}`));
    }
  }
  if (merged.mode === 'client') {
    if (merged.routes.length > MAX_ROUTES) errors.push(new ConfigError('routes', `expected at most ${MAX_ROUTES} routes, got ${merged.routes.length}`));
    if (!assign) {
      for (const c of merged.routes) {
        if (overlapsTunnel(c)) errors.push(new ConfigError('routes', `${formatPrefix(c)} overlaps the tunnel network ${formatPrefix(tunnelNet)}`));
      }
    }
  }
  if (merged.state_dir === '') errors.push(new ConfigError('state_dir', 'expected a directory path, got ""'));
  if (merged.mode === 'server' && merged.etcd_endpoints.length > 0 && merged.advertise === undefined && isWildcard(merged.local_addr.host)) {
    errors.push(
      new ConfigError('advertise', `required with -etcd when -l listens on a wildcard address (${formatHostPort(merged.local_addr)}): give the address the other hubs reach this one at (-advertise HOST:PORT)`),
    );
  }
  if (merged.mode === 'server' && merged.etcd_endpoints.length > 0) {
    if (merged.cluster_token === '') {
      errors.push(new ConfigError('cluster_token', 'required with -etcd: give the secret every hub of the cluster shares (-cluster-token SECRET)'));
    } else if (merged.cluster_token.length < MIN_CLUSTER_TOKEN_LENGTH) {
      errors.push(new ConfigError('cluster_token', `at least ${MIN_CLUSTER_TOKEN_LENGTH} characters (a shared secret the hubs present on their trunks)`));
    }
  }
  if (errors.length > 0) return left(errors);

  for (const key of CONFIG_KEYS) {
    if (!setByUser.has(key) || jsonOf(key, merged[key]) === jsonOf(key, DEFAULT_VALUES[key])) continue;
    const appliesTo = KEY_INFO[key].appliesTo;
    if (appliesTo !== 'both' && appliesTo !== merged.mode) {
      warnings.push(`${key}: ignored in ${merged.mode} mode`);
    } else if (key.startsWith('tls_') && key !== 'tls_enabled' && !merged.tls_enabled) {
      warnings.push(`${key}: ignored because TLS is off (turn it on with -tls or "tls_enabled": true)`);
    }
  }
  if (!merged.tls_enabled && (merged.token !== '' || merged.token_file !== '' || (merged.mode === 'server' && merged.tokens_file !== ''))) {
    warnings.push('token: without -tls tokens travel in plaintext, so anyone on the path can read and reuse them');
  }
  if (merged.mode === 'client' && merged.tls_enabled && merged.tls_skip_verify) {
    warnings.push(
      "tls_skip_verify: the server's certificate is not checked, so anyone on the path could pose as the server",
    );
  }

  const { remote_addr, ...rest } = merged;
  const config: Config =
    merged.mode === 'client' && remote_addr.length > 0
      ? { ...rest, mode: 'client', remote_addr, assign_address: assign }
      : { ...rest, mode: 'server', remote_addr };
  return right({ config, warnings });
};

/** Decodes a parsed config file over the defaults (no flags): the whole path for a JSON document. */
export const decodeConfig = (json: unknown, source = 'config'): Either<ConfigError[], ResolvedConfig> => {
  const layer = decodeConfigJson(json, source);
  return isLeft(layer) ? layer : resolveConfig([layer.right]);
};

// ---------------------------------------------------------------------------------------------
// To the pipelines' settings

const toCommonSettings = (config: Config): CommonSettings => ({
  mtu: config.mtu,
  keepaliveMs: config.keepalive * 1000,
  timeoutMs: config.timeout * 1000,
  sendQueueSize: config.send_queue_size,
  recvQueueSize: config.recv_queue_size,
  transport: config.transport,
  direct: config.direct,
});

/** The hub's settings. Seconds become milliseconds. */
export const toServerSettings = (config: Config): ServerSettings => ({
  ...toCommonSettings(config),
  tunnel: config.tunnel_addr,
  ...(config.pool === undefined ? {} : { pool: config.pool }),
  ...(config.allow_routes.length === 0 ? {} : { allowRoutes: config.allow_routes }),
  ...(config.broadcast ? { broadcast: { groups: config.broadcast_groups, pps: config.broadcast_pps } } : {}),
  clientIsolation: config.client_isolation,
  maxClients: config.max_clients,
  multiClient: config.multi_client,
  helloTimeoutMs: HELLO_TIMEOUT_MS,
});

/** The shortest cluster token (docs/cluster.md, "Trunks"). */
export const MIN_CLUSTER_TOKEN_LENGTH = 16;

/** Whether a listen host is every address of the machine (no address another hub could dial). */
const isWildcard = (host: string): boolean => host === '' || host === '0.0.0.0' || host === '::' || host === '[::]';

/** A hub's cluster settings (docs/cluster.md): the etcd endpoints and what its life in the cluster needs. */
export interface ClusterConfig {
  readonly endpoints: readonly string[];
  readonly hub: ClusterHubSettings;
}

/**
 * The hub's cluster settings, or undefined without -etcd. `hostName` is the default hub name
 * (the machine's host name); one that cannot name a hub is an error that says to give -hub-name.
 */
export const toClusterSettings = (config: Config, hostName: string): Either<ConfigError, ClusterConfig | undefined> => {
  if (config.mode !== 'server' || config.etcd_endpoints.length === 0) return right(undefined);
  const me = config.hub_name !== '' ? config.hub_name : hostName.split('.')[0] ?? '';
  if (!isClusterName(me)) return left(new ConfigError('hub_name', `the host name ${JSON.stringify(hostName)} cannot name a hub (letters, digits, ".", "_" and "-"): give one with -hub-name NAME`));
  return right({
    endpoints: config.etcd_endpoints.map((e) => e.url),
    hub: { me, keys: clusterKeys(config.cluster), ttlSeconds: config.timeout, advertise: config.advertise ?? config.local_addr, tunnel: config.tunnel_addr },
  });
};

/** The hub listener's caps on connections that have not joined yet. */
export const toPendingLimits = (config: Config): PendingLimits => ({ perSource: config.max_pending_per_source, total: config.max_pending });

/** A client's settings: the hubs to dial (host and port apart) and the reconnect backoff. */
export const toClientSettings = (config: ClientConfig): ClientSettings => ({
  ...toCommonSettings(config),
  tunnel: config.assign_address ? undefined : config.tunnel_addr,
  ...(config.routes.length === 0 ? {} : { routes: config.routes }),
  remotes: config.remote_addr.map((r) => ({ host: r.host, port: r.port })),
  // An old claim lasts at most the hub's timeout (its lease, or its idle check): retry soon for twice that.
  backoff: { ...CLIENT_BACKOFF, settleMs: 2 * config.timeout * 1000 },
});
