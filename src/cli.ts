// The command-line runner: decodes flags and config, opens the TUN device, builds the hub or client
// pipeline from drivers, logs its events, and maps shutdown and fatal errors to exit codes.
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Observable, Subscription } from 'rxjs';
import { Subject, tap } from 'rxjs';
import { isLeft } from 'fp-ts/lib/Either.js';
import { clientPipeline } from '../pipelines/client.js';
import type { ClientEvent, ServerEvent } from '../pipelines/events.js';
import { serverPipeline, type ReloadableSettings } from '../pipelines/server.js';
import { exampleConfigs, parseCommandLine, renderConfigErrors, toClientSettings, toClusterSettings, toPendingLimits, toServerSettings, type Config } from './config/index.js';
import { formatHostPort } from '../operators/core/address.js';
import type { ClusterHubSettings } from '../pipelines/clusterHub.js';
import type { TrunkAuthenticator } from '../pipelines/trunks.js';
import { makeEtcdStore, type EtcdStore } from './drivers/etcd.js';
import { describeClientEvent, describeServerEvent, logLines, type LogLine } from './describe.js';
import type { Authenticator, DialerPort, ListenerPort } from '../pipelines/ports.js';
import { makeAuthenticator, makeTrunkAuthenticator, parseTokensFile, type ClientToken } from './auth.js';
import { makeNetDialer, makeNetListener } from './drivers/net.js';
import { makeResolver } from './drivers/resolver.js';
import { LeaseFileError } from './drivers/leases.js';
import { addBroadcastRoute, makeRoutesDriver } from './drivers/routes.js';
import { makeHostNetwork } from './drivers/host-network.js';
import { StateError, clientId, makeLeaseStore } from './drivers/state.js';
import type { LeaseStore } from '../pipelines/ports.js';
import { TlsSetupError, hubSecureContext, makeTlsDialer, makeTlsListener, pemCertificates } from './drivers/tls.js';
import { makeTlsWorkerListener } from './drivers/tls-worker.js';
import { fineScheduler } from './drivers/clock.js';
import { tunPort } from './drivers/tun.js';
import { makeUdpClient, makeUdpHub } from './udp/channels.js';
import { CONFIG_KEYS, KEY_INFO, encodeConfig, type ConfigKey } from './config/index.js';
import { createLogger, type Logger } from './log.js';
import { makeSystemdNotifier } from './systemd.js';
import { TunDevice } from './tun/device.js';
import { statusCommand } from './status/command.js';
import { makeStatusServer, type StatusServer } from './status/server.js';
import { VERSION } from './version.js';

/** Exit codes. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** How long a shutdown may take before the process exits regardless. */
const SHUTDOWN_GRACE_MS = 1500;
/** A client's bound on one connect attempt. */
const CONNECT_TIMEOUT_MS = 10_000;
/** A client's bound on resolving one name of its hub list. */
const RESOLVE_TIMEOUT_MS = 5000;
/** With a status server, the pipelines report their counters this often. */
const STATUS_STATS_MS = 1000;

/** Runs the program with `argv` (without node and script); resolves with the exit code. */
export function run(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'status') return statusCommand(argv.slice(1));
  const parsed = parseCommandLine(argv, (path) => readFileSync(path, 'utf8'));
  if (isLeft(parsed)) {
    for (const line of renderConfigErrors(parsed.left)) process.stderr.write(`lightweight-tunnel: ${line}\n`);
    process.stderr.write(`run 'lightweight-tunnel --help' for the flags and config keys\n`);
    return Promise.resolve(EXIT.usage);
  }
  const cmd = parsed.right;
  switch (cmd.kind) {
    case 'version':
      process.stdout.write(`lightweight-tunnel ${VERSION}\n`);
      return Promise.resolve(EXIT.ok);
    case 'help':
      process.stdout.write(cmd.text.endsWith('\n') ? cmd.text : `${cmd.text}\n`);
      return Promise.resolve(EXIT.ok);
    case 'generate':
      return Promise.resolve(generate(cmd.file));
    case 'run': {
      const logger = createLogger({ level: cmd.config.log_level, format: cmd.config.log_format });
      for (const w of cmd.warnings) logger.log('warn', w);
      return start(cmd.config, logger, argv);
    }
  }
}

function generate(file: string): number {
  const { server, client } = exampleConfigs();
  try {
    writeFileSync(file, server);
    writeFileSync(`${file}.client`, client);
  } catch (err) {
    process.stderr.write(`lightweight-tunnel: cannot write ${file}: ${(err as Error).message}\n`);
    return EXIT.failure;
  }
  process.stdout.write(`wrote the example server config to ${file} and the client config to ${file}.client\n`);
  return EXIT.ok;
}

/** A start-up problem with a file or the TLS material: reported as one line, exit 1. */
class StartupError extends Error {
  override readonly name = 'StartupError';
}

function readBytes(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : (e.code ?? e.message);
    throw new StartupError(`${key}: cannot read ${path} (${why})`);
  }
}

function readSetting(key: string, path: string): string {
  return readBytes(key, path).toString('utf8');
}

/** A PEM certificate file (a CA, or a certificate and its chain), refused at start-up unless it holds certificates. */
function readCertificates(key: string, path: string): string {
  const bytes = readBytes(key, path);
  try {
    pemCertificates(bytes);
  } catch (err) {
    if (err instanceof TlsSetupError) throw new StartupError(`${key}: ${path}: ${err.message}`);
    throw err;
  }
  return bytes.toString('utf8');
}

/** Runs `build` (a TLS driver constructor), reporting bad TLS material as a start-up error. */
function withTlsMaterial<A>(build: () => A): A {
  try {
    return build();
  } catch (err) {
    if (err instanceof TlsSetupError) throw new StartupError(`TLS: ${err.message}`);
    throw err;
  }
}

/** The token a client presents, or the hub's network token. */
function tokenOf(config: Config): string | undefined {
  if (config.token !== '') return config.token;
  if (config.token_file === '') return undefined;
  const token = readSetting('token_file', config.token_file).split(/\r?\n/)[0]!.trim();
  if (token === '') throw new StartupError(`token_file: ${config.token_file} is empty`);
  return token;
}

/** The hub's lease file in its state directory. */
function leaseStore(config: Config): LeaseStore {
  try {
    return makeLeaseStore(config.state_dir);
  } catch (err) {
    if (err instanceof StateError || err instanceof LeaseFileError) throw new StartupError(err.message);
    throw err;
  }
}

/**
 * A client's identity. Without -t the hub assigns its address by it, so it is created when missing
 * and a file that cannot serve is a start-up error. With -t it is only read when there is one, and
 * a file that cannot serve is a warning: the client can work without it.
 */
function identityOf(config: Config & { mode: 'client' }, logger: Logger): string | undefined {
  try {
    return clientId(config.state_dir, config.assign_address);
  } catch (err) {
    if (!(err instanceof StateError)) throw err;
    if (config.assign_address) throw new StartupError(err.message);
    logger.log('warn', `${err.message}; going on without an identity (this client's address comes from -t)`);
    return undefined;
  }
}

/** The hub's cluster (docs/cluster.md): the etcd driver and the hub's settings in it, or undefined without -etcd. */
function clusterPorts(config: Config & { mode: 'server' }): { store: EtcdStore; settings: ClusterHubSettings; trunks: { auth: TrunkAuthenticator; dialer: DialerPort } } | undefined {
  const cluster = toClusterSettings(config, hostname());
  if (isLeft(cluster)) throw new StartupError(cluster.left.line);
  if (cluster.right === undefined) return undefined;
  const auth = makeTrunkAuthenticator({ token: config.cluster_token });
  return { store: makeEtcdStore({ endpoints: cluster.right.endpoints }), settings: cluster.right.hub, trunks: { auth, dialer: trunkDialer(config) } };
}

/**
 * How a hub dials the other hubs of its cluster (trunks): like its listener, plain TCP or TLS. Over
 * TLS it verifies the other hub against -tls-ca (else -tls-client-ca: one CA for the cluster's
 * hubs, else the system's) and presents its own certificate, which a hub with -tls-client-ca requires.
 */
function trunkDialer(config: Config & { mode: 'server' }): DialerPort {
  if (!config.tls_enabled) return makeNetDialer({ connectTimeoutMs: CONNECT_TIMEOUT_MS });
  const ca = config.tls_ca_file !== '' ? { ca: readCertificates('tls_ca_file', config.tls_ca_file) } : config.tls_client_ca_file !== '' ? { ca: readCertificates('tls_client_ca_file', config.tls_client_ca_file) } : {};
  const options = {
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    skipVerify: false,
    ...ca,
    cert: readCertificates('tls_cert_file', config.tls_cert_file),
    key: readSetting('tls_key_file', config.tls_key_file),
  };
  return withTlsMaterial(() => makeTlsDialer(options));
}

function serverPorts(config: Config & { mode: 'server' }): { listener: ListenerPort; authenticator: Authenticator | undefined; leases: LeaseStore; cluster: ReturnType<typeof clusterPorts> } {
  const cluster = clusterPorts(config);
  const { host, port } = config.local_addr;
  const pending = toPendingLimits(config);
  let listener: ListenerPort;
  if (config.tls_enabled) {
    const options = {
      host,
      port,
      cert: readCertificates('tls_cert_file', config.tls_cert_file),
      key: readSetting('tls_key_file', config.tls_key_file),
      ...(config.tls_client_ca_file === '' ? {} : { clientCa: readCertificates('tls_client_ca_file', config.tls_client_ca_file) }),
      pending,
    };
    withTlsMaterial(() => hubSecureContext(options));
    listener = config.tls_workers > 0 ? makeTlsWorkerListener(options) : makeTlsListener(options);
  } else {
    listener = makeNetListener({ host, port, pending });
  }
  const networkToken = tokenOf(config);
  let clients: readonly ClientToken[] | undefined;
  if (config.tokens_file !== '') {
    const parsed = parseTokensFile(readSetting('tokens_file', config.tokens_file), config.tokens_file, config.tunnel_addr);
    if (isLeft(parsed)) throw new StartupError(parsed.left.join('\n'));
    clients = parsed.right;
  }
  const requireClientCert = config.tls_client_ca_file !== '';
  const authenticator =
    networkToken !== undefined || clients !== undefined || requireClientCert
      ? makeAuthenticator({ requireClientCert, ...(networkToken === undefined ? {} : { networkToken }), ...(clients === undefined ? {} : { clients }) })
      : undefined;
  return { listener, authenticator, leases: leaseStore(config), cluster };
}

function clientDialer(config: Config & { mode: 'client' }): DialerPort {
  if (!config.tls_enabled) return makeNetDialer({ connectTimeoutMs: CONNECT_TIMEOUT_MS });
  const options = {
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    skipVerify: config.tls_skip_verify,
    ...(config.tls_ca_file === '' ? {} : { ca: readCertificates('tls_ca_file', config.tls_ca_file) }),
    ...(config.tls_server_name === '' ? {} : { serverName: config.tls_server_name }),
    ...(config.tls_client_cert_file === ''
      ? {}
      : { cert: readCertificates('tls_client_cert_file', config.tls_client_cert_file), key: readSetting('tls_client_key_file', config.tls_client_key_file) }),
  };
  return withTlsMaterial(() => makeTlsDialer(options));
}

/** Opens the TUN device and runs the pipeline of `config.mode` until a signal or a fatal error. */
function start(config: Config, logger: Logger, argv: readonly string[]): Promise<number> {
  // Everything that can fail on a file is checked before the TUN device exists.
  let server: ReturnType<typeof serverPorts> | undefined;
  let dialer: DialerPort | undefined;
  let token: string | undefined;
  let id: string | undefined;
  try {
    if (config.mode === 'server') server = serverPorts(config);
    else {
      dialer = clientDialer(config);
      token = tokenOf(config);
      id = identityOf(config, logger);
    }
  } catch (err) {
    if (!(err instanceof StartupError)) throw err;
    for (const line of err.message.split('\n')) logger.log('error', line);
    return Promise.resolve(EXIT.failure);
  }
  const assigned = config.mode === 'client' && config.assign_address;
  let device: TunDevice;
  try {
    device = TunDevice.open({ mtu: config.mtu, ...(assigned ? {} : { ipv4: config.tunnel_addr }), up: true, offload: config.offload });
  } catch (err) {
    logger.log('error', (err as Error).message);
    return Promise.resolve(EXIT.failure);
  }
  logger.log('info', `lightweight-tunnel ${VERSION} ${config.mode}: TUN device ${device.name} up with ${device.ipv4 ?? 'no address yet (the hub assigns one)'} mtu ${device.mtu}${device.offload ? ', segmentation offload on' : config.offload ? ', segmentation offload unavailable (kernel refused it)' : ''}`);
  // The TUN device behaves like a LAN interface: directed broadcasts to its subnet are delivered.
  const broadcastRoute = (address: number, prefix: number): void =>
    void addBroadcastRoute(device.name, address, prefix).then((err) => {
      if (err !== undefined) logger.log('warn', `cannot make the subnet broadcast address local on ${device.name}: ${err}`);
    });
  const port = tunPort(device);
  const tun = {
    ...port,
    setIpv4: (address: number, prefix: number): void => {
      port.setIpv4?.(address, prefix);
      broadcastRoute(address, prefix);
    },
  };
  if (!assigned) broadcastRoute(config.tunnel_addr.address, config.tunnel_addr.prefix);
  const routes = makeRoutesDriver({ device: device.name });
  const hostNetwork = makeHostNetwork({ device: device.name });

  // New values for isolation and max_clients on SIGHUP; systemd hears when we are up and going down.
  const reload$ = new Subject<ReloadableSettings>();
  const systemd = makeSystemdNotifier({ onError: (message) => logger.log('warn', message) });
  const stats = config.status_addr === undefined ? {} : { statsIntervalMs: STATUS_STATS_MS };
  let events$: Observable<ServerEvent | ClientEvent>;
  let describe: (e: ServerEvent | ClientEvent) => LogLine | undefined;
  if (config.mode === 'server' && server !== undefined) {
    events$ = serverPipeline({ ...toServerSettings(config), ...stats }, {
      tun,
      listener: server.listener,
      reload$,
      leases: server.leases,
      routes,
      hostNetwork,
      // An offloading device takes SuperPackets: arrivals over UDP are coalesced into them.
      udp: makeUdpHub({ host: config.local_addr.host, coalesce: device.offload }),
      ...(server.authenticator === undefined ? {} : { authenticator: server.authenticator }),
      ...(server.cluster === undefined ? {} : { cluster: server.cluster }),
    });
    if (server.cluster !== undefined) {
      const c = server.cluster.settings;
      logger.log('info', `cluster ${c.keys.prefix} as hub ${c.me} (advertised at ${formatHostPort(c.advertise)}), etcd ${config.etcd_endpoints.map((e) => e.url).join(', ')}`);
    }
    describe = (e) => describeServerEvent(e as ServerEvent);
    if (config.tls_enabled) {
      const where = config.tls_workers > 0 ? ', in a worker thread' : '';
      logger.log('info', `TLS on${config.tls_client_ca_file === '' ? '' : ', client certificates required'}${where}`);
      if (config.tls_workers > 1) logger.log('warn', `-tls-workers ${config.tls_workers}: one TLS worker thread runs (Node 20 cannot share a listening port between threads)`);
    }
    if (server.authenticator !== undefined) logger.log('info', 'clients must authenticate; 0.0.1-era clients cannot join');
  } else if (config.mode === 'client' && dialer !== undefined) {
    const settings = { ...toClientSettings(config), ...stats, ...(id === undefined ? {} : { clientId: id }) };
    // A clock finer than a millisecond: the round trips of direct paths (and to the hub) on a LAN are fractions of one.
    events$ = clientPipeline(token === undefined ? settings : { ...settings, token }, { tun, dialer, routes, hostNetwork, udp: makeUdpClient({ coalesce: device.offload }), resolver: makeResolver({ timeoutMs: RESOLVE_TIMEOUT_MS }), scheduler: fineScheduler() });
    describe = (e) => describeClientEvent(e as ClientEvent);
  } else {
    throw new Error('unreachable: ports were built for the configured mode');
  }

  // The hub's status shows how many connections its listener counts as not joined yet.
  const listener = server?.listener;
  const pending = listener?.pending === undefined ? {} : { pending: (): number => listener.pending?.() ?? 0 };
  const status: StatusServer | undefined =
    config.status_addr === undefined ? undefined : makeStatusServer({ addr: config.status_addr, version: VERSION, mode: config.mode, ...pending });

  return new Promise<number>((resolve) => {
    let subscription: Subscription | undefined;
    let finished = false;
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGHUP', onHangup);
      systemd.stopping();
      subscription?.unsubscribe();
      // A hub leaving its cluster revokes its lease: its members' claims go at once, not at the lease's end.
      void server?.cluster?.store.close();
      void status?.close();
      device.release();
      // Sockets were ended gracefully; do not let a stuck peer hold the process.
      setTimeout(() => resolve(code), 50);
      setTimeout(() => process.exit(code), SHUTDOWN_GRACE_MS).unref();
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      logger.log('info', `${signal} received: closing sessions and releasing ${device.name}`);
      finish(EXIT.ok);
    };
    let running = config;
    const onHangup = (): void => {
      running = reload(argv, running, logger, reload$);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onHangup);

    // Ready for systemd: the hub listens, or the client has joined.
    const ready = (e: ServerEvent | ClientEvent): void => {
      if (e.type === 'listening' || e.type === 'welcomed' || e.type === 'established') systemd.ready();
    };
    status?.listening.then(
      (at) => logger.log('info', `status on ${at.startsWith('/') ? `unix:${at}` : `http://${at}`} (/status, /metrics, /healthz, /readyz)`),
      (err: Error) => {
        logger.log('error', err.message);
        finish(EXIT.failure);
      },
    );
    // One subscription carries both the event lines and the drop summaries, so a fatal error
    // reaches the one error handler below (and is never an unhandled RxJS error).
    subscription = logLines(events$.pipe(tap(ready), tap((e) => status?.update(e))), describe).subscribe({
      next: (line) => logger.log(line.level, line.message, line.fields),
      error(err: unknown) {
        logger.log('error', fatalMessage(err, config));
        finish(EXIT.failure);
      },
    });
  });
}

/** Keys a running process takes on at a SIGHUP; any other change needs a restart. */
const LIVE_KEYS: { readonly [M in Config['mode']]: readonly ConfigKey[] } = {
  server: ['client_isolation', 'max_clients', 'log_level'],
  client: ['log_level'],
};

/** The outcome of re-reading the configuration: errors (keep running as is) or what changed. */
export type ReloadPlan =
  | { readonly kind: 'error'; readonly lines: readonly string[] }
  | {
      readonly kind: 'ok';
      /** The running config with the live keys taken from the new one. */
      readonly config: Config;
      readonly warnings: readonly string[];
      /** Changed keys that apply now. */
      readonly live: readonly ConfigKey[];
      /** Changed keys that wait for a restart. */
      readonly restart: readonly ConfigKey[];
    };

/** Re-reads the `-c` file and `argv`'s flags (flags still win) and compares them with `running`. */
export function planReload(argv: readonly string[], running: Config, readFile: (path: string) => string): ReloadPlan {
  const parsed = parseCommandLine(argv, readFile);
  if (isLeft(parsed)) return { kind: 'error', lines: renderConfigErrors(parsed.left) };
  if (parsed.right.kind !== 'run') return { kind: 'error', lines: [`the command line no longer runs the ${running.mode}`] };
  const next = parsed.right.config;
  const before = encodeConfig(running) as Record<ConfigKey, unknown>;
  const after = encodeConfig(next) as Record<ConfigKey, unknown>;
  // Keys the running mode ignores stay ignored, whatever their value.
  const changed = CONFIG_KEYS.filter(
    (k) => (KEY_INFO[k].appliesTo === 'both' || KEY_INFO[k].appliesTo === running.mode) && JSON.stringify(before[k]) !== JSON.stringify(after[k]),
  );
  const liveKeys = LIVE_KEYS[running.mode];
  const live = next.mode === running.mode ? changed.filter((k) => liveKeys.includes(k)) : [];
  const config = next.mode !== running.mode ? running : ({ ...running, client_isolation: next.client_isolation, max_clients: next.max_clients, log_level: next.log_level } as Config);
  return { kind: 'ok', config, warnings: parsed.right.warnings, live, restart: changed.filter((k) => !live.includes(k)) };
}

/** SIGHUP: applies what can change live, logs what cannot; returns the config now running. */
function reload(argv: readonly string[], running: Config, logger: Logger, reload$: Subject<ReloadableSettings>): Config {
  const source = argv.some((a) => /^--?(c|config)(=|$)/.test(a)) ? 'the config file and flags' : 'the flags (no -c file)';
  logger.log('info', `SIGHUP received: re-reading ${source}`, { event: 'reload' });
  const plan = planReload(argv, running, (path) => readFileSync(path, 'utf8'));
  if (plan.kind === 'error') {
    for (const line of plan.lines) logger.log('error', `reload failed, keeping the running settings: ${line}`, { event: 'reload-failed' });
    return running;
  }
  for (const w of plan.warnings) logger.log('warn', w);
  if (plan.live.includes('log_level')) {
    logger.level = plan.config.log_level;
    logger.log('info', `log_level changed: now ${plan.config.log_level}`, { event: 'reload', key: 'log_level' });
  }
  for (const key of plan.restart) logger.log('warn', `${key} changed: takes effect after a restart`, { event: 'reload', key });
  if (plan.config.mode === 'server') reload$.next({ clientIsolation: plan.config.client_isolation, maxClients: plan.config.max_clients });
  return plan.config;
}

function fatalMessage(err: unknown, config: Config): string {
  const e = err as { code?: string; message?: string };
  if (config.mode === 'server' && e.code === 'EADDRINUSE') {
    return `cannot listen on ${config.local_addr.host}:${config.local_addr.port}: the address is already in use (is another hub running?)`;
  }
  if (config.mode === 'server' && e.code === 'EACCES') {
    return `cannot listen on ${config.local_addr.host}:${config.local_addr.port}: permission denied`;
  }
  if (config.mode === 'server' && e.code === 'EADDRNOTAVAIL') {
    return `cannot listen on ${config.local_addr.host}:${config.local_addr.port}: no such local address`;
  }
  return `stopping: ${e.message ?? String(err)}`;
}
