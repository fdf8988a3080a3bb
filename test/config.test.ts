import test from 'ava';
import { isLeft, right, type Either } from 'fp-ts/lib/Either.js';
import {
  decodeConfig,
  describeKeys,
  encodeConfig,
  exampleConfigs,
  helpText,
  parseCommandLine,
  renderConfigErrors,
  toClientSettings,
  toClusterSettings,
  toPendingLimits,
  toServerSettings,
  ConfigError,
  DEFAULT_JSON,
  type CliCommand,
  type Config,
  type EncodedConfig,
  type ConfigKey,
  type ReadFile,
  type ResolvedConfig,
} from '../src/config/index.js';

// ---------------------------------------------------------------------------------------------
// Helpers

const enoent = (path: string): never => {
  throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' });
};

/** A file system holding exactly `files`. */
const filesystem =
  (files: Readonly<Record<string, string>> = {}): ReadFile =>
  (path) =>
    Object.prototype.hasOwnProperty.call(files, path) ? (files[path] ?? '') : enoent(path);

const lines = <A>(result: Either<ConfigError[], A>): string[] => (isLeft(result) ? renderConfigErrors(result.left) : []);

const command = (argv: readonly string[], readFile: ReadFile = filesystem()): CliCommand => {
  const result = parseCommandLine(argv, readFile);
  if (isLeft(result)) throw new Error(`unexpected errors:\n${renderConfigErrors(result.left).join('\n')}`);
  return result.right;
};

const run = (argv: readonly string[], readFile?: ReadFile): { config: Config; warnings: readonly string[] } => {
  const cmd = command(argv, readFile);
  if (cmd.kind !== 'run') throw new Error(`expected a run command, got ${cmd.kind}`);
  return cmd;
};

const json = (argv: readonly string[], readFile?: ReadFile): EncodedConfig => encodeConfig(run(argv, readFile).config);

const resolved = (input: unknown): ResolvedConfig => {
  const result = decodeConfig(input);
  if (isLeft(result)) throw new Error(`unexpected errors:\n${renderConfigErrors(result.left).join('\n')}`);
  return result.right;
};

const MTU_MESSAGE =
  'expected an integer from 576 to 1495 (a DATA frame carries at most 1496 bytes: 1 type byte + the packet)';

// ---------------------------------------------------------------------------------------------
// Every flag, with one and two dashes

interface FlagCase {
  /** The flag name without dashes. */
  readonly name: string;
  /** Its value, or undefined for a switch. */
  readonly value: string | undefined;
  /** Arguments the case needs besides the flag (before it). */
  readonly context: readonly string[];
  readonly key: ConfigKey;
  readonly expected: unknown;
}

// A file that turns every switch off, so that naming a switch visibly turns it on.
const SWITCHES_OFF = filesystem({ '/off.json': '{"multi_client": false, "offload": false, "direct": false}' });
const CLIENT = ['-m', 'client', '-r', '192.0.2.1:9000'];

const FLAG_CASES: readonly FlagCase[] = [
  { name: 'm', value: 'client', context: ['-r', '192.0.2.1'], key: 'mode', expected: 'client' },
  { name: 'mode', value: 'client', context: ['-r', '192.0.2.1'], key: 'mode', expected: 'client' },
  { name: 'l', value: '127.0.0.1:9100', context: [], key: 'local_addr', expected: '127.0.0.1:9100' },
  { name: 'listen', value: ':9200', context: [], key: 'local_addr', expected: '0.0.0.0:9200' },
  { name: 'r', value: 'vpn.example.com:9001', context: ['-m', 'client'], key: 'remote_addr', expected: 'vpn.example.com:9001' },
  { name: 'remote', value: '[2001:db8::1]:9002', context: ['-m', 'client'], key: 'remote_addr', expected: '[2001:db8::1]:9002' },
  { name: 't', value: '10.0.0.2/24', context: [], key: 'tunnel_addr', expected: '10.0.0.2/24' },
  { name: 'tunnel', value: '172.16.5.1/16', context: [], key: 'tunnel_addr', expected: '172.16.5.1/16' },
  { name: 'mtu', value: '1300', context: [], key: 'mtu', expected: 1300 },
  { name: 'send-queue', value: '64', context: [], key: 'send_queue_size', expected: 64 },
  { name: 'recv-queue', value: '128', context: [], key: 'recv_queue_size', expected: 128 },
  { name: 'max-clients', value: '7', context: [], key: 'max_clients', expected: 7 },
  { name: 'max-pending-per-source', value: '8', context: [], key: 'max_pending_per_source', expected: 8 },
  { name: 'max-pending', value: '4096', context: [], key: 'max_pending', expected: 4096 },
  { name: 'timeout', value: '60', context: [], key: 'timeout', expected: 60 },
  { name: 'keepalive', value: '5', context: [], key: 'keepalive', expected: 5 },
  { name: 'tls-cert', value: '/etc/tunnel/cert.pem', context: [], key: 'tls_cert_file', expected: '/etc/tunnel/cert.pem' },
  { name: 'tls-key', value: '/etc/tunnel/key.pem', context: [], key: 'tls_key_file', expected: '/etc/tunnel/key.pem' },
  { name: 'multi-client', value: undefined, context: ['-c', '/off.json'], key: 'multi_client', expected: true },
  { name: 'offload', value: undefined, context: ['-c', '/off.json'], key: 'offload', expected: true },
  { name: 'direct', value: undefined, context: ['-c', '/off.json'], key: 'direct', expected: true },
  { name: 'client-isolation', value: undefined, context: [], key: 'client_isolation', expected: true },
  { name: 'tls', value: undefined, context: ['-tls-cert', 'c.pem', '-tls-key', 'k.pem'], key: 'tls_enabled', expected: true },
  { name: 'tls-workers', value: '1', context: ['-tls', '-tls-cert', 'c.pem', '-tls-key', 'k.pem'], key: 'tls_workers', expected: 1 },
  { name: 'tls-skip-verify', value: undefined, context: [...CLIENT, '-tls'], key: 'tls_skip_verify', expected: true },
  { name: 'tls-ca', value: '/etc/tunnel/ca.pem', context: [...CLIENT, '-tls'], key: 'tls_ca_file', expected: '/etc/tunnel/ca.pem' },
  { name: 'tls-server-name', value: 'hub.example.com', context: [...CLIENT, '-tls'], key: 'tls_server_name', expected: 'hub.example.com' },
  { name: 'tls-client-ca', value: '/etc/tunnel/clients.pem', context: ['-tls', '-tls-cert', 'c.pem', '-tls-key', 'k.pem'], key: 'tls_client_ca_file', expected: '/etc/tunnel/clients.pem' },
  { name: 'tls-client-cert', value: '/etc/tunnel/me.pem', context: [...CLIENT, '-tls', '-tls-client-key', 'me.key'], key: 'tls_client_cert_file', expected: '/etc/tunnel/me.pem' },
  { name: 'tls-client-key', value: '/etc/tunnel/me.key', context: [...CLIENT, '-tls', '-tls-client-cert', 'me.pem'], key: 'tls_client_key_file', expected: '/etc/tunnel/me.key' },
  { name: 'token', value: 's3cret', context: ['-tls', '-tls-cert', 'c.pem', '-tls-key', 'k.pem'], key: 'token', expected: 's3cret' },
  { name: 'token-file', value: '/etc/tunnel/token', context: ['-tls', '-tls-cert', 'c.pem', '-tls-key', 'k.pem'], key: 'token_file', expected: '/etc/tunnel/token' },
  { name: 'tokens-file', value: '/etc/tunnel/tokens.json', context: ['-tls', '-tls-cert', 'c.pem', '-tls-key', 'k.pem'], key: 'tokens_file', expected: '/etc/tunnel/tokens.json' },
  { name: 'status', value: '127.0.0.1:9100', context: [], key: 'status_addr', expected: '127.0.0.1:9100' },
  { name: 'log-level', value: 'debug', context: [], key: 'log_level', expected: 'debug' },
  { name: 'log-format', value: 'json', context: [], key: 'log_format', expected: 'json' },
  { name: 'transport', value: 'udp', context: [], key: 'transport', expected: 'udp' },
  { name: 'state-dir', value: '/srv/lwt', context: [], key: 'state_dir', expected: '/srv/lwt' },
  { name: 'pool', value: '10.0.0.100-10.0.0.199', context: [], key: 'pool', expected: '10.0.0.100-10.0.0.199' },
  { name: 'routes', value: '192.168.10.0/24, 192.168.20.0/24', context: CLIENT, key: 'routes', expected: ['192.168.10.0/24', '192.168.20.0/24'] },
  { name: 'allow-routes', value: '192.168.0.0/16', context: [], key: 'allow_routes', expected: ['192.168.0.0/16'] },
  { name: 'broadcast', value: undefined, context: [], key: 'broadcast', expected: true },
  { name: 'broadcast-groups', value: '224.0.0.251,239.1.2.3', context: [], key: 'broadcast_groups', expected: ['224.0.0.251', '239.1.2.3'] },
  { name: 'broadcast-pps', value: '50', context: [], key: 'broadcast_pps', expected: 50 },
  { name: 'etcd', value: 'http://10.1.0.1:2379, https://etcd.example.com:2379/', context: ['-advertise', '10.1.0.5:9000', '-cluster-token', 'a-cluster-secret-1'], key: 'etcd_endpoints', expected: ['http://10.1.0.1:2379', 'https://etcd.example.com:2379'] },
  { name: 'cluster', value: 'lan-2', context: [], key: 'cluster', expected: 'lan-2' },
  { name: 'hub-name', value: 'hub.b', context: [], key: 'hub_name', expected: 'hub.b' },
  { name: 'advertise', value: '10.1.0.5:9000', context: [], key: 'advertise', expected: '10.1.0.5:9000' },
  { name: 'cluster-token', value: 'a-cluster-secret-1', context: [], key: 'cluster_token', expected: 'a-cluster-secret-1' },
];

const setsKey = test.macro({
  exec(t, argv: readonly string[], key: ConfigKey, expected: unknown) {
    t.deepEqual(json(argv, SWITCHES_OFF)[key], expected);
  },
  title: (_, argv: readonly string[], key: ConfigKey) => `${argv.join(' ')} sets ${key}`,
});

for (const c of FLAG_CASES) {
  for (const dashes of ['-', '--']) {
    const flag = `${dashes}${c.name}`;
    if (c.value === undefined) {
      test(setsKey, [...c.context, flag], c.key, c.expected);
    } else {
      test(setsKey, [...c.context, flag, c.value], c.key, c.expected);
      test(setsKey, [...c.context, `${flag}=${c.value}`], c.key, c.expected);
    }
  }
}

test('the flag table covers every flag that the help text lists for a key', (t) => {
  const covered = new Set(FLAG_CASES.map((c) => c.name));
  for (const row of describeKeys()) {
    for (const flag of row.flag.match(/(?<![\w])-{1,2}[a-z-]+/g) ?? []) {
      t.true(covered.has(flag.replace(/^-+/, '')), `${flag} of ${row.key} is not tested`);
    }
  }
});

const switchValue = test.macro({
  exec(t, argv: readonly string[], key: ConfigKey, expected: boolean) {
    t.is(json(argv)[key], expected);
  },
  title: (_, argv: readonly string[], key: ConfigKey, expected: boolean) => `${argv.join(' ')} sets ${key} to ${expected}`,
});

test(switchValue, ['-multi-client=false'], 'multi_client', false);
test(switchValue, ['--multi-client=false'], 'multi_client', false);
test(switchValue, ['-offload=false'], 'offload', false);
test(switchValue, ['-direct=false'], 'direct', false);
test(switchValue, ['--direct=false', '-m', 'client', '-r', '192.0.2.1:9000'], 'direct', false);
test(switchValue, ['-multi-client=true'], 'multi_client', true);
test(switchValue, ['-multi-client=0'], 'multi_client', false);
test(switchValue, ['-multi-client=F'], 'multi_client', false);
test(switchValue, ['-multi-client=false', '-multi-client'], 'multi_client', true);
test(switchValue, ['-client-isolation=true'], 'client_isolation', true);
test(switchValue, ['-client-isolation=false'], 'client_isolation', false);
test(switchValue, ['--client-isolation=TRUE'], 'client_isolation', true);
test(switchValue, ['-tls=false', '-tls-cert', 'c.pem', '-tls-key', 'k.pem'], 'tls_enabled', false);

test('no flags at all give the documented defaults', (t) => {
  const { config, warnings } = run([]);
  t.deepEqual(encodeConfig(config), DEFAULT_JSON);
  t.deepEqual(warnings, []);
});

test('the seed commands of the design notes parse', (t) => {
  const server = run(['-m', 'server', '-l', '0.0.0.0:9000', '-t', '10.0.0.1/24']).config;
  t.is(server.mode, 'server');
  t.deepEqual(server.local_addr, { host: '0.0.0.0', port: 9000 });
  const client = run(['-m', 'client', '-r', '203.0.113.5:9000', '-t', '10.0.0.2/24']).config;
  t.is(client.mode, 'client');
  t.deepEqual(client.remote_addr, [{ host: '203.0.113.5', port: 9000 }]);
  t.deepEqual(client.tunnel_addr, { address: 0x0a000002, prefix: 24 });
});

test('remote_addr lists several hubs: "a,b" or a JSON array, in order, written back as one string', (t) => {
  const { config } = run(['-m', 'client', '-r', 'hub-a.example:9000, 192.0.2.7,[2001:db8::3]:9010']);
  t.deepEqual(config.remote_addr, [
    { host: 'hub-a.example', port: 9000 },
    { host: '192.0.2.7', port: 9000 },
    { host: '2001:db8::3', port: 9010 },
  ]);
  t.is(json(['-m', 'client', '-r', 'hub-a.example:9000,192.0.2.7']).remote_addr, 'hub-a.example:9000,192.0.2.7:9000');
  const fromJson = resolved({ mode: 'client', remote_addr: ['a.example:1', 'b.example:2'] }).config;
  t.deepEqual(fromJson.remote_addr, [
    { host: 'a.example', port: 1 },
    { host: 'b.example', port: 2 },
  ]);
  if (fromJson.mode !== 'client') return t.fail('expected a client config');
  t.deepEqual(toClientSettings(fromJson).remotes, [
    { host: 'a.example', port: 1 },
    { host: 'b.example', port: 2 },
  ]);
});

test('a malformed hub list is refused with the item named: a bad address, a hub listed twice, more than 16, an empty list', (t) => {
  const refusal = (r: string): string[] => lines(parseCommandLine(['-m', 'client', '-r', r], filesystem()));
  t.deepEqual(refusal('a.example:9000,,b.example'), ['-r: expected hub addresses like "hubA:9000,hubB:9000", separated by commas ("" is not one), got "a.example:9000,,b.example"']);
  t.deepEqual(refusal('a.example:9000,b.example:0'), ['-r: expected hub addresses like "hubA:9000,hubB:9000", separated by commas ("b.example:0" is not one), got "a.example:9000,b.example:0"']);
  t.deepEqual(refusal('a.example,a.example:9000'), ['-r: expected each hub once (a.example:9000 is listed twice), got "a.example,a.example:9000"']);
  const many = Array.from({ length: 17 }, (_, i) => `192.0.2.${i + 1}`).join(',');
  t.true(refusal(many)[0]?.startsWith('-r: expected at most 16 hubs (17 listed), got "192.0.2.1,'));
  t.deepEqual(lines(decodeConfig({ mode: 'client', remote_addr: [] })), [`remote_addr: required in client mode (give the server's address with -r HOST:PORT)`]);
});

test('a remote address without a port dials port 9000', (t) => {
  t.is(json(['-m', 'client', '-r', 'vpn.example.com']).remote_addr, 'vpn.example.com:9000');
  t.is(json(['-m', 'client', '-r', '[2001:db8::2]']).remote_addr, '[2001:db8::2]:9000');
});

test('a listen address may ask for any free port', (t) => {
  t.is(json(['-l', '127.0.0.1:0']).local_addr, '127.0.0.1:0');
});

// ---------------------------------------------------------------------------------------------
// Actions

test('-h, --help and -help print the help text without reading any file', (t) => {
  const untouchable: ReadFile = () => t.fail('readFile was called') as never;
  for (const flag of ['-h', '--help', '-help']) {
    const cmd = command(['-c', '/etc/tunnel.json', flag], untouchable);
    t.deepEqual(cmd, { kind: 'help', text: helpText() });
  }
});

test('help wins over other mistakes on the same line', (t) => {
  t.is(command(['-frobnicate', '-mtu', '9', '--help']).kind, 'help');
});

test('-v and --version ask for the version without reading any file', (t) => {
  const untouchable: ReadFile = () => t.fail('readFile was called') as never;
  t.deepEqual(command(['-v'], untouchable), { kind: 'version' });
  t.deepEqual(command(['--version', '-c', '/x.json'], untouchable), { kind: 'version' });
});

test('-g, -g= and --generate-config name the file to write', (t) => {
  t.deepEqual(command(['-g', 'tunnel.json']), { kind: 'generate', file: 'tunnel.json' });
  t.deepEqual(command(['-g=out/t.json']), { kind: 'generate', file: 'out/t.json' });
  t.deepEqual(command(['--generate-config', 't.json']), { kind: 'generate', file: 't.json' });
});

test('a switch like -v refuses a value', (t) => {
  t.deepEqual(lines(parseCommandLine(['-v=1'], filesystem())), ['-v: takes no value, got "1"']);
});

// ---------------------------------------------------------------------------------------------
// Bad flags and values: the exact lines

const refusesFlags = test.macro({
  exec(t, argv: readonly string[], expected: readonly string[]) {
    t.deepEqual(lines(parseCommandLine(argv, filesystem())), expected);
  },
  title: (_, argv: readonly string[]) => `${JSON.stringify(argv.join(' '))} is refused with one line per problem`,
});

test(refusesFlags, ['-max-clients', 'ten'], ['-max-clients: expected a positive integer, got "ten"']);
test(refusesFlags, ['-pool', '10.0.0.9-10.0.0.8'], ['-pool: expected a range whose first address is not above its last, like "10.0.0.100-10.0.0.199", got "10.0.0.9-10.0.0.8"']);
test(refusesFlags, ['-pool', '10.0.0.9'], ['-pool: expected an address range inside the tunnel network like "10.0.0.100-10.0.0.199", got "10.0.0.9"']);
test(refusesFlags, ['-pool', '10.0.1.1-10.0.1.9'], ['pool: expected a range inside the tunnel network 10.0.0.0/24: the pool 10.0.1.1-10.0.1.9 is not inside 10.0.0.0/24']);
test(refusesFlags, [...CLIENT, '-routes', '192.168.10.1/24'], ['-routes: expected network prefixes without host bits (192.168.10.1/24 is 192.168.10.0/24), got "192.168.10.1/24"']);
test(refusesFlags, [...CLIENT, '-routes', '192.168.10.0/24,lan'], ['-routes: expected CIDRs like "192.168.10.0/24", separated by commas ("lan" is not one), got "192.168.10.0/24,lan"']);
test(refusesFlags, [...CLIENT, '-t', '10.0.0.2/24', '-routes', '10.0.0.0/16'], ['routes: 10.0.0.0/16 overlaps the tunnel network 10.0.0.0/24']);
test(refusesFlags, ['-allow-routes', '0.0.0.0/0'], ['allow_routes: 0.0.0.0/0 overlaps the tunnel network 10.0.0.0/24']);
test(refusesFlags, ['-broadcast-groups', '10.0.0.255'], ['-broadcast-groups: expected IPv4 multicast addresses (224.0.0.0 to 239.255.255.255) separated by commas ("10.0.0.255" is not one), got "10.0.0.255"']);
test(refusesFlags, ['-tls', '-tls-cert', 'c.pem', '-tls-key', 'k.pem', '-tls-workers', '9'], ['-tls-workers: expected an integer from 0 to 8, got 9']);
test(refusesFlags, ['-tls', '-tls-cert', 'c.pem', '-tls-key', 'k.pem', '--tls-workers=-1'], ['--tls-workers: expected an integer from 0 to 8, got -1']);
test(refusesFlags, ['-tls-workers', '1'], ['tls_workers: TLS worker threads need TLS: add -tls with -tls-cert and -tls-key']);
test(refusesFlags, ['-broadcast-pps', '0'], ['-broadcast-pps: expected a positive integer, got 0']);
test(refusesFlags, ['-etcd', 'http://10.1.0.1:2379', '-cluster-token', 'a-cluster-secret-1'], ['advertise: required with -etcd when -l listens on a wildcard address (0.0.0.0:9000): give the address the other hubs reach this one at (-advertise HOST:PORT)']);
test(refusesFlags, ['-l', '[::]:9000', '-etcd', 'http://10.1.0.1:2379', '-cluster-token', 'a-cluster-secret-1'], ['advertise: required with -etcd when -l listens on a wildcard address ([::]:9000): give the address the other hubs reach this one at (-advertise HOST:PORT)']);
test(refusesFlags, ['-etcd', 'http://10.1.0.1:2379', '-advertise', '10.1.0.5:9000'], ['cluster_token: required with -etcd: give the secret every hub of the cluster shares (-cluster-token SECRET)']);
test(refusesFlags, ['-etcd', 'http://10.1.0.1:2379', '-advertise', '10.1.0.5:9000', '-tls', '-tls-cert', 'c.pem', '-tls-key', 'k.pem', '-tls-client-ca', 'ca.pem'], ['cluster_token: required with -etcd: give the secret every hub of the cluster shares (-cluster-token SECRET)']);
test(refusesFlags, ['-etcd', 'http://10.1.0.1:2379', '-advertise', '10.1.0.5:9000', '-cluster-token', 'short'], ['cluster_token: at least 16 characters (a shared secret the hubs present on their trunks)']);
test(refusesFlags, ['-etcd', '10.1.0.1:2379', '-advertise', '10.1.0.5:9000'], ['-etcd: expected etcd client URLs like "http://10.1.0.1:2379", separated by commas ("10.1.0.1:2379" is not one), got "10.1.0.1:2379"']);
test(refusesFlags, ['-etcd', 'http://10.1.0.1:2379/v3', '-advertise', '10.1.0.5:9000'], ['-etcd: expected etcd client URLs like "http://10.1.0.1:2379", separated by commas ("http://10.1.0.1:2379/v3" is not one), got "http://10.1.0.1:2379/v3"']);
test(refusesFlags, ['-cluster', 'a/b'], ['-cluster: expected a name of letters, digits, ".", "_" and "-" (at most 63), got "a/b"']);
test(refusesFlags, ['--hub-name=-x'], ['--hub-name: expected a name of letters, digits, ".", "_" and "-" (at most 63), got "-x"']);
test(refusesFlags, ['-advertise', ':9000'], ['-advertise: expected the host name or address the other hubs dial, before the port, got ":9000"']);
test(refusesFlags, ['-state-dir', ''], ['state_dir: expected a directory path, got ""']);
test(refusesFlags, ['--max-clients=0'], ['--max-clients: expected a positive integer, got 0']);
test(refusesFlags, ['-max-pending-per-source', '0'], ['-max-pending-per-source: expected a positive integer, got 0']);
test(refusesFlags, ['-max-pending-per-source', 'many'], ['-max-pending-per-source: expected a positive integer, got "many"']);
test(refusesFlags, ['--max-pending=-1'], ['--max-pending: expected a positive integer, got -1']);
test(refusesFlags, ['-max-pending', '10.5'], ['-max-pending: expected a positive integer, got 10.5']);
test(refusesFlags, ['-send-queue', '-5'], ['-send-queue: expected a positive integer, got -5']);
test(refusesFlags, ['-send-queue=-5'], ['-send-queue: expected a positive integer, got -5']);
test(refusesFlags, ['-mtu', '1500'], [`-mtu: ${MTU_MESSAGE}, got 1500`]);
test(refusesFlags, ['--mtu=575'], [`--mtu: ${MTU_MESSAGE}, got 575`]);
test(refusesFlags, ['-mtu', '1400.5'], [`-mtu: ${MTU_MESSAGE}, got 1400.5`]);
test(refusesFlags, ['-mtu', 'big'], [`-mtu: ${MTU_MESSAGE}, got "big"`]);
test(refusesFlags, ['-m', 'hub'], ['-m: expected "server" or "client", got "hub"']);
test(refusesFlags, ['-l', '1.2.3.4:99999'], [
  '-l: expected an address to listen on like "0.0.0.0:9000", ":9000" or "[::]:9000", got "1.2.3.4:99999"',
]);
test(refusesFlags, ['-m', 'client', '-r', '10.0.0.1:0'], ['-r: expected a port from 1 to 65535, got "10.0.0.1:0"']);
test(refusesFlags, ['-m', 'client', '-r', ':9000'], [
  `-r: expected the server's host name or address before the port, got ":9000"`,
]);
test(refusesFlags, ['-m', 'client', '-r', '::1:9000'], [
  `-r: expected the server's address like "203.0.113.1:9000", "vpn.example.com:9000" or "[2001:db8::1]:9000", got "::1:9000"`,
]);
test(setsKey, ['-status', 'localhost:9100'], 'status_addr', 'localhost:9100');
test(setsKey, ['-status', '[::1]:9100'], 'status_addr', '[::1]:9100');
test(setsKey, ['-status', '/run/lwt.sock'], 'status_addr', '/run/lwt.sock');
test(setsKey, ['-status', 'unix:/run/lwt.sock'], 'status_addr', '/run/lwt.sock');
test(setsKey, ['-m', 'client', '-r', '192.0.2.1', '-status', '127.0.0.1:9101'], 'status_addr', '127.0.0.1:9101');
test(refusesFlags, ['-status', '0.0.0.0:9100'], ['-status: expected a loopback address or a unix socket path, got "0.0.0.0:9100"']);
test(refusesFlags, ['-status', '192.0.2.1:9100'], ['-status: expected a loopback address or a unix socket path, got "192.0.2.1:9100"']);
test(refusesFlags, ['-status', '127.0.0.1'], ['-status: expected a loopback address or a unix socket path, got "127.0.0.1"']);
test(refusesFlags, ['-status', '127.0.0.1:0'], ['-status: expected a loopback address or a unix socket path, got "127.0.0.1:0"']);
test(refusesFlags, ['-status', 'relative.sock'], ['-status: expected a loopback address or a unix socket path, got "relative.sock"']);
test(refusesFlags, ['-t', '10.0.0.1'], ['-t: expected an IPv4 address with a prefix length like "10.0.0.2/24", got "10.0.0.1"']);
test(refusesFlags, ['-t', '10.0.0.1/31'], ['-t: expected a prefix length from /8 to /30, got "10.0.0.1/31"']);
test(refusesFlags, ['-t', '10.0.0.1/7'], ['-t: expected a prefix length from /8 to /30, got "10.0.0.1/7"']);
test(refusesFlags, ['-t', '10.0.0.0/24'], [
  '-t: expected a host address inside 10.0.0.0/24 (10.0.0.0 is its network address), got "10.0.0.0/24"',
]);
test(refusesFlags, ['--tunnel', '10.0.3.255/22'], [
  '--tunnel: expected a host address inside 10.0.0.0/22 (10.0.3.255 is its broadcast address), got "10.0.3.255/22"',
]);
test(refusesFlags, ['-tls=maybe'], ['-tls: expected true or false, got "maybe"']);
test(refusesFlags, ['-timeout', '3000000'], ['-timeout: expected a whole number of seconds from 1 to 2147483, got 3000000']);
test(refusesFlags, ['-keepalive', '30'], ['keepalive: expected fewer seconds than timeout (30), got 30']);
test(refusesFlags, ['-timeout', '5', '-keepalive', '9'], ['keepalive: expected fewer seconds than timeout (5), got 9']);
test(refusesFlags, ['-tls'], [
  'tls_cert_file: required when TLS is on in server mode (-tls-cert FILE)',
  'tls_key_file: required when TLS is on in server mode (-tls-key FILE)',
]);
test(refusesFlags, ['-m', 'client'], [`remote_addr: required in client mode (give the server's address with -r HOST:PORT)`]);
test(refusesFlags, ['-frobnicate'], ['-frobnicate: unknown flag (see lightweight-tunnel --help)']);
test(refusesFlags, ['--mut', '1400'], ['--mut: unknown flag (did you mean --mtu? see lightweight-tunnel --help)']);
test(refusesFlags, ['-remote-addr=x'], ['-remote-addr: unknown flag (did you mean -remote? see lightweight-tunnel --help)']);
test(refusesFlags, ['-m'], ['-m: missing value']);
test(refusesFlags, ['-r', '-t', '10.0.0.2/24', '-m', 'client'], [
  '-r: missing value (the next argument "-t" is a flag; write -r=VALUE for a value starting with "-")',
]);
test(refusesFlags, ['-tls', 'false'], ['false: unexpected argument (-tls is a switch: write -tls=false)']);
test(refusesFlags, ['status'], ['status: unexpected argument']);
test(refusesFlags, ['--', '-mtu'], ['-mtu: unexpected argument (this program takes only flags)']);
test(refusesFlags, ['---mtu', '1400'], ['---mtu: unknown flag (did you mean --mtu? see lightweight-tunnel --help)']);
test(refusesFlags, ['-mtu', '1500', '-max-clients', 'ten', '-bogus'], [
  `-mtu: ${MTU_MESSAGE}, got 1500`,
  '-max-clients: expected a positive integer, got "ten"',
  '-bogus: unknown flag (see lightweight-tunnel --help)',
]);

test('client without -r is refused even when other flags are fine', (t) => {
  t.deepEqual(lines(parseCommandLine(['-m', 'client', '-t', '10.0.0.2/24', '-mtu', '1300'], filesystem())), [
    `remote_addr: required in client mode (give the server's address with -r HOST:PORT)`,
  ]);
});

test('errors are ConfigError instances with a path and a message', (t) => {
  const result = parseCommandLine(['-mtu', '1500'], filesystem());
  if (!isLeft(result)) return t.fail('expected errors');
  const [error] = result.left;
  t.true(error instanceof ConfigError);
  t.true(error instanceof Error);
  t.is(error?.name, 'ConfigError');
  t.is(error?.path, '-mtu');
  t.is(error?.message, `${MTU_MESSAGE}, got 1500`);
});

// ---------------------------------------------------------------------------------------------
// Config files and precedence

test('a flag beats the config file, which beats the defaults', (t) => {
  const fs = filesystem({ '/f.json': '{"mtu": 1300, "keepalive": 5}' });
  const config = json(['-c', '/f.json', '-mtu', '1200'], fs);
  t.is(config.mtu, 1200);
  t.is(config.keepalive, 5);
  t.is(config.timeout, 30);
});

test('a flag beats the config file even when written before -c', (t) => {
  const fs = filesystem({ '/f.json': '{"mtu": 1300}' });
  t.is(json(['-mtu', '1200', '--config', '/f.json'], fs).mtu, 1200);
});

test('the last of a repeated flag wins', (t) => {
  t.is(json(['-mtu', '1300', '-mtu=1250']).mtu, 1250);
});

test('a client configured by file alone runs', (t) => {
  const fs = filesystem({ '/c.json': '{"mode": "client", "remote_addr": "vpn.example.com:7000"}' });
  const { config } = run(['-c', '/c.json'], fs);
  t.is(config.mode, 'client');
  t.deepEqual(config.remote_addr, [{ host: 'vpn.example.com', port: 7000 }]);
});

test('flags can complete what the file lacks for a cross-field rule', (t) => {
  const fs = filesystem({ '/s.json': '{"tls_enabled": true, "tls_cert_file": "/c.pem"}' });
  t.deepEqual(lines(parseCommandLine(['-c', '/s.json'], fs)), [
    'tls_key_file: required when TLS is on in server mode (-tls-key FILE)',
  ]);
  t.is(json(['-c', '/s.json', '-tls-key', '/k.pem'], fs).tls_key_file, '/k.pem');
});

test('a missing config file is named with the flag and the errno code', (t) => {
  t.deepEqual(lines(parseCommandLine(['-c', '/x.json'], filesystem())), ['-c /x.json: cannot read file (ENOENT)']);
  t.deepEqual(lines(parseCommandLine(['--config=/x.json'], filesystem())), ['--config /x.json: cannot read file (ENOENT)']);
});

test('a reader that throws without a code is reported with its message', (t) => {
  const broken: ReadFile = () => {
    throw new Error('disk on fire');
  };
  t.deepEqual(lines(parseCommandLine(['-c', '/x.json'], broken)), ['-c /x.json: cannot read file (disk on fire)']);
});

const refusesFile = test.macro({
  exec(t, text: string, expected: readonly string[]) {
    t.deepEqual(lines(parseCommandLine(['-c', '/x.json'], filesystem({ '/x.json': text }))), expected);
  },
  title: (_, text: string) => `the config file ${JSON.stringify(text)} is refused`,
});

test(refusesFile, '{\n  "mtu": }', ['-c /x.json: invalid JSON at position 11 (line 2, column 10): unexpected "}"']);
test(refusesFile, '{"mtu": 1400,}', ['-c /x.json: invalid JSON at position 13 (line 1, column 14): trailing comma before "}"']);
test(refusesFile, '{\n  // the MTU\n  "mtu": 1400\n}', [
  '-c /x.json: invalid JSON at position 4 (line 2, column 3): unexpected "/" (JSON has no comments)',
]);
test(refusesFile, "{'mtu': 1400}", [`-c /x.json: invalid JSON at position 1 (line 1, column 2): unexpected "'" (JSON strings use double quotes)`]);
test(refusesFile, '', ['-c /x.json: invalid JSON at position 0 (line 1, column 1): unexpected end of input']);
test(refusesFile, '{\n  "mtu": 1400,\n  "mtu": 1300\n}', [
  '-c /x.json: duplicate key mtu at position 19 (line 3, column 3): already given at line 2, column 3 (only one can count: remove or rename one)',
]);
test(refusesFile, '[1, 2]', ['-c /x.json: expected a JSON object of settings, got [1,2]']);
test(refusesFile, '{"max_clients": "ten"}', ['max_clients: expected a positive integer, got "ten"']);
test(refusesFile, '{"frobnicate": 1}', ['frobnicate: unknown key']);

test('file errors and flag errors are reported together, flags first', (t) => {
  const fs = filesystem({ '/x.json': '{"mtu": 9000, "colour": "blue"}' });
  t.deepEqual(lines(parseCommandLine(['-c', '/x.json', '-max-clients', '0'], fs)), [
    '-max-clients: expected a positive integer, got 0',
    `mtu: ${MTU_MESSAGE}, got 9000`,
    'colour: unknown key',
  ]);
});

test('a config file may start with a byte order mark', (t) => {
  t.is(json(['-c', '/bom.json'], filesystem({ '/bom.json': '\uFEFF{"mtu": 1280}' })).mtu, 1280);
});

// ---------------------------------------------------------------------------------------------
// Decoding JSON values

test('a config file with a non-loopback status_addr is refused', (t) => {
  t.deepEqual(lines(decodeConfig({ status_addr: '0.0.0.0:9100' })), [
    'status_addr: expected a loopback address or a unix socket path, got "0.0.0.0:9100"',
  ]);
});

const refusesJson = test.macro({
  exec(t, input: unknown, expected: readonly string[]) {
    t.deepEqual(lines(decodeConfig(input)), expected);
  },
  title: (_, input: unknown) => `the JSON ${JSON.stringify(input)} is refused with one line per bad field`,
});

test(refusesJson, { max_clients: 'ten' }, ['max_clients: expected a positive integer, got "ten"']);
test(refusesJson, { max_pending_per_source: 0, max_pending: '1024' }, [
  'max_pending_per_source: expected a positive integer, got 0',
  'max_pending: expected a positive integer, got "1024"',
]);
test(refusesJson, { mtu: 1500 }, [`mtu: ${MTU_MESSAGE}, got 1500`]);
test(refusesJson, { mtu: '1400' }, [`mtu: ${MTU_MESSAGE}, got "1400"`]);
test(refusesJson, { mode: null }, ['mode: expected "server" or "client", got null']);
test(refusesJson, { multi_client: 'false' }, ['multi_client: expected true or false, got "false"']);
test(refusesJson, { tls_cert_file: 5 }, ['tls_cert_file: expected a file path, got 5']);
test(refusesJson, { local_addr: { host: 'x', port: 1 } }, [
  'local_addr: expected an address to listen on like "0.0.0.0:9000", ":9000" or "[::]:9000", got {"host":"x","port":1}',
]);
test(refusesJson, { tunnel_addr: '10.0.0.0/24' }, [
  'tunnel_addr: expected a host address inside 10.0.0.0/24 (10.0.0.0 is its network address), got "10.0.0.0/24"',
]);
test(refusesJson, { frobnicate: true }, ['frobnicate: unknown key']);
test(refusesJson, { locall_addr: ':9000' }, ['locall_addr: unknown key (did you mean "local_addr"?)']);
test(refusesJson, { MTU: 1400 }, ['MTU: unknown key (did you mean "mtu"?)']);
test(refusesJson, { mtu: 1, frob: 2, mode: 'x' }, [
  `mtu: ${MTU_MESSAGE}, got 1`,
  'frob: unknown key',
  'mode: expected "server" or "client", got "x"',
]);
test(refusesJson, [1, 2], ['config: expected a JSON object of settings, got [1,2]']);
test(refusesJson, null, ['config: expected a JSON object of settings, got null']);
test(refusesJson, { mode: 'client' }, [`remote_addr: required in client mode (give the server's address with -r HOST:PORT)`]);
test(refusesJson, { tunnel_addr: 'x'.repeat(200) }, [
  `tunnel_addr: expected an IPv4 address with a prefix length like "10.0.0.2/24", got "${'x'.repeat(78)}…`,
]);

test('fec_data and fec_parity are accepted with a warning each', (t) => {
  t.deepEqual(resolved({ fec_data: 10, fec_parity: 3 }).warnings, [
    'fec_data: ignored (forward error correction was never used by the Go program and is not implemented)',
    'fec_parity: ignored (forward error correction was never used by the Go program and is not implemented)',
  ]);
});

test('keys that the chosen mode ignores are accepted with a warning when changed', (t) => {
  t.deepEqual(resolved({ mode: 'client', remote_addr: 'h:1', max_clients: 5, client_isolation: true }).warnings, [
    'max_clients: ignored in client mode',
    'client_isolation: ignored in client mode',
  ]);
  t.deepEqual(resolved({ mode: 'client', remote_addr: 'h:1', max_clients: 100 }).warnings, []);
  t.deepEqual(resolved({ mode: 'server', remote_addr: 'h:1' }).warnings, ['remote_addr: ignored in server mode']);
});

test('TLS files without TLS, and skipping verification, are warned about', (t) => {
  t.deepEqual(resolved({ tls_cert_file: '/c.pem' }).warnings, [
    'tls_cert_file: ignored because TLS is off (turn it on with -tls or "tls_enabled": true)',
  ]);
  t.deepEqual(resolved({ mode: 'client', remote_addr: 'h:1', tls_enabled: true, tls_skip_verify: true }).warnings, [
    "tls_skip_verify: the server's certificate is not checked, so anyone on the path could pose as the server",
  ]);
});

test('a client without tunnel_addr asks the hub for its address; with -t it does not', (t) => {
  const assigned = run([...CLIENT]).config;
  t.true(assigned.mode === 'client' && assigned.assign_address);
  if (assigned.mode === 'client') t.is(toClientSettings(assigned).tunnel, undefined);
  t.false('tunnel_addr' in encodeConfig(assigned), 'the JSON form leaves the address out, so it decodes the same');
  t.deepEqual(resolved(encodeConfig(assigned)).config, assigned);
  const fixed = run([...CLIENT, '-t', '10.0.0.7/24']).config;
  t.true(fixed.mode === 'client' && !fixed.assign_address);
  if (fixed.mode === 'client') t.deepEqual(toClientSettings(fixed).tunnel, { address: 0x0a000007, prefix: 24 });
  const fromFile = run(['-c', '/c.json'], filesystem({ '/c.json': '{"mode": "client", "remote_addr": "192.0.2.1", "tunnel_addr": "10.0.0.8/24"}' })).config;
  t.true(fromFile.mode === 'client' && !fromFile.assign_address, 'tunnel_addr in the -c file counts as given');
});

test('routes, allow_routes and broadcast_groups take a JSON array or a comma-separated string', (t) => {
  t.deepEqual(encodeConfig(resolved({ allow_routes: ['192.168.0.0/16', '172.16.0.0/12'] }).config).allow_routes, ['192.168.0.0/16', '172.16.0.0/12']);
  t.deepEqual(encodeConfig(resolved({ allow_routes: '192.168.0.0/16,172.16.0.0/12' }).config).allow_routes, ['192.168.0.0/16', '172.16.0.0/12']);
  t.deepEqual(encodeConfig(resolved({ broadcast_groups: [] }).config).broadcast_groups, []);
  t.deepEqual(lines(decodeConfig({ allow_routes: [5] })), ['allow_routes: expected CIDRs like "192.168.0.0/16", separated by commas, got [5]']);
});

test('toServerSettings carries the pool, the allowed routes and broadcast only when they are set', (t) => {
  const plain = toServerSettings(run([]).config);
  t.false('pool' in plain || 'allowRoutes' in plain || 'broadcast' in plain);
  const full = toServerSettings(run(['-pool', '10.0.0.100-10.0.0.110', '-allow-routes', '192.168.0.0/16', '-broadcast', '-broadcast-pps', '20']).config);
  t.deepEqual(full.pool, { first: 0x0a000064, last: 0x0a00006e });
  t.deepEqual(full.allowRoutes, [{ address: 0xc0a80000, prefix: 16 }]);
  t.deepEqual(full.broadcast, { groups: [0xe00000fb, 0xeffffffa], pps: 20 });
});

test('encodeConfig gives back JSON that decodes to the same config', (t) => {
  const { config } = resolved({ mode: 'client', remote_addr: '[::1]:7', tunnel_addr: '192.168.7.9/20', mtu: 1280 });
  t.deepEqual(resolved(encodeConfig(config)).config, config);
});

// ---------------------------------------------------------------------------------------------
// Example configs

test('the example server config decodes as a server with no warnings', (t) => {
  const { config, warnings } = resolved(JSON.parse(exampleConfigs().server));
  t.is(config.mode, 'server');
  t.deepEqual(warnings, []);
  t.deepEqual(encodeConfig(config), DEFAULT_JSON);
});

test('the example client config decodes as a client with no warnings', (t) => {
  const { config, warnings } = resolved(JSON.parse(exampleConfigs().client));
  t.is(config.mode, 'client');
  t.deepEqual(warnings, []);
  t.deepEqual(config.remote_addr, [{ host: 'vpn.example.com', port: 9000 }]);
  t.deepEqual(config.tunnel_addr, { address: 0x0a000002, prefix: 24 });
});

test('each key of an example follows a "// key" comment with its meaning and default', (t) => {
  const entries = Object.entries(JSON.parse(exampleConfigs().server) as Record<string, unknown>);
  const keys = entries.filter(([k]) => !k.startsWith('//'));
  t.true(keys.length > 0);
  for (const [key] of keys) {
    const i = entries.findIndex(([k]) => k === key);
    t.is(entries[i - 1]?.[0], `// ${key}`, `the comment before ${key}`);
    t.regex(String(entries[i - 1]?.[1]), /Default: .+\.$/, `the comment of ${key}`);
  }
  t.true(exampleConfigs().client.includes('"// remote_addr": '));
});

test('keys starting with // are comments: ignored, without a warning', (t) => {
  const { config, warnings } = resolved({ '//': 'a note', '// mtu': 'smaller for PPPoE', mtu: 1300, '//x': 42 });
  t.is(config.mtu as number, 1300);
  t.deepEqual(warnings, []);
  t.deepEqual(lines(decodeConfig({ '/ mtu': 1 })), ['/ mtu: unknown key']);
});

test('direct defaults to true on both sides, is turned off by -direct=false or the file, and reaches both sides’ settings', (t) => {
  t.true(json([]).direct as boolean);
  t.false(resolved({ direct: false }).config.direct);
  t.false(toServerSettings(run(['-direct=false']).config).direct);
  const { config } = run(['-m', 'client', '-r', '192.0.2.1:9000', '-direct=false']);
  if (config.mode !== 'client') return t.fail('expected a client config');
  t.false(toClientSettings(config).direct);
  t.deepEqual(lines(decodeConfig({ direct: 'yes' })), ['direct: expected true or false, got "yes"']);
});

test('transport defaults to auto, takes tcp and udp from a flag or the file, and refuses anything else', (t) => {
  t.is(json([]).transport, 'auto');
  t.is(json(['-transport', 'tcp']).transport, 'tcp');
  t.is(resolved({ transport: 'udp' }).config.transport, 'udp');
  t.deepEqual(lines(decodeConfig({ transport: 'quic' })), ['transport: expected "auto", "tcp" or "udp", got "quic"']);
});

test('log_level and log_format default to info and auto and refuse other values', (t) => {
  t.like(json([]), { log_level: 'info', log_format: 'auto' });
  t.like(resolved({ log_level: 'error', log_format: 'text' }).config, { log_level: 'error', log_format: 'text' });
  t.deepEqual(lines(decodeConfig({ log_level: 'verbose', log_format: 'xml' })), [
    'log_level: expected "debug", "info", "warn" or "error", got "verbose"',
    'log_format: expected "auto", "text" or "json", got "xml"',
  ]);
  t.deepEqual(lines(parseCommandLine(['-log-level', 'trace'], filesystem())), ['-log-level: expected "debug", "info", "warn" or "error", got "trace"']);
});

test('the example files work through -c as well', (t) => {
  const { server, client } = exampleConfigs();
  const fs = filesystem({ '/t.json': server, '/t.json.client': client });
  t.is(run(['-c', '/t.json'], fs).config.mode, 'server');
  t.is(run(['-c', '/t.json.client'], fs).config.mode, 'client');
});

test('each example lists exactly the keys its mode reads', (t) => {
  const serverKeys = Object.keys(JSON.parse(exampleConfigs().server) as object);
  const clientKeys = Object.keys(JSON.parse(exampleConfigs().client) as object);
  for (const row of describeKeys()) {
    t.is(serverKeys.includes(row.key), row.appliesTo !== 'client', `server example and ${row.key}`);
    t.is(clientKeys.includes(row.key), row.appliesTo !== 'server', `client example and ${row.key}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Help and the key table

test('the help text names every flag, JSON key and default, and the seed commands', (t) => {
  const text = helpText();
  for (const row of describeKeys()) {
    t.true(text.includes(row.flag), row.flag);
    t.true(text.includes(row.key), row.key);
    t.true(text.includes(row.default), row.default);
  }
  for (const flag of ['-c, --config FILE', '-g, --generate-config FILE', '-v, --version', '-h, --help']) {
    t.true(text.includes(flag), flag);
  }
  t.true(text.includes('sudo lightweight-tunnel -m server -l 0.0.0.0:9000 -t 10.0.0.1/24'));
  t.true(text.includes('sudo lightweight-tunnel -m client -r SERVER_IP:9000 -t 10.0.0.2/24'));
  t.true(text.includes('sudo lightweight-tunnel -m client -r SERVER_IP:9000 -t 10.0.0.3/24'));
  t.true(text.split('\n').every((line) => line.length <= 100));
});

test('describeKeys lists every JSON key once with a default in JSON syntax', (t) => {
  const rows = describeKeys();
  t.deepEqual(rows.map((r) => r.key).sort(), Object.keys(DEFAULT_JSON).sort());
  const mtu = rows.find((r) => r.key === 'mtu');
  t.is(mtu?.flag, '-mtu N');
  t.is(mtu?.default, '1400');
  t.is(rows.find((r) => r.key === 'local_addr')?.flag, '-l, --listen ADDR');
  t.is(rows.find((r) => r.key === 'multi_client')?.default, 'true');
});

// ---------------------------------------------------------------------------------------------
// To settings

test('toServerSettings converts seconds to milliseconds and carries the hub limits', (t) => {
  const { config } = run(['-timeout', '45', '-keepalive', '15', '-max-clients', '3', '-client-isolation', '-send-queue', '50']);
  t.deepEqual(toServerSettings(config), {
    tunnel: { address: 0x0a000001, prefix: 24 },
    mtu: 1400,
    keepaliveMs: 15_000,
    timeoutMs: 45_000,
    sendQueueSize: 50,
    recvQueueSize: 1000,
    transport: 'auto',
    direct: true,
    clientIsolation: true,
    maxClients: 3,
    multiClient: true,
    helloTimeoutMs: 5000,
  });
});

test('the caps on pending connections default to 64 per source and 1024 in all, and reach the listener options', (t) => {
  t.deepEqual(toPendingLimits(run([]).config), { perSource: 64, total: 1024 });
  t.deepEqual(toPendingLimits(run(['-max-pending-per-source', '3', '-max-pending', '5']).config), { perSource: 3, total: 5 });
  t.deepEqual(toPendingLimits(resolved({ max_pending_per_source: 16, max_pending: 256 }).config), { perSource: 16, total: 256 });
  t.deepEqual(resolved({ mode: 'client', remote_addr: 'h:1', max_pending: 5 }).warnings, ['max_pending: ignored in client mode']);
});

test('toClientSettings splits the remote address and sets the reconnect backoff', (t) => {
  const { config } = run(['-m', 'client', '-r', 'vpn.example.com:7001', '-t', '10.0.0.2/24', '-mtu', '1300']);
  if (config.mode !== 'client') return t.fail('expected a client config');
  t.deepEqual(toClientSettings(config), {
    tunnel: { address: 0x0a000002, prefix: 24 },
    mtu: 1300,
    keepaliveMs: 10_000,
    timeoutMs: 30_000,
    sendQueueSize: 1000,
    recvQueueSize: 1000,
    transport: 'auto',
    direct: true,
    remotes: [{ host: 'vpn.example.com', port: 7001 }],
    backoff: { initialMs: 1000, maxMs: 30_000, settleMs: 60_000 },
  });
});

test('authentication settings that would be ignored are errors, not warnings', (t) => {
  t.deepEqual(lines(parseCommandLine(['-tls-client-ca', 'ca.pem'], filesystem())), [
    'tls_client_ca_file: client certificates need TLS: add -tls with -tls-cert and -tls-key',
  ]);
  t.deepEqual(lines(parseCommandLine([...CLIENT, '-tls', '-tls-client-cert', 'me.pem'], filesystem())), [
    'tls_client_key_file: required together with tls_client_cert_file (-tls-client-key FILE)',
  ]);
  t.deepEqual(lines(parseCommandLine([...CLIENT, '-tls-client-cert', 'me.pem', '-tls-client-key', 'me.key'], filesystem())), [
    'tls_client_cert_file: a client certificate needs TLS: add -tls',
  ]);
  t.deepEqual(lines(parseCommandLine([...CLIENT, '-token', 'a', '-token-file', '/t'], filesystem())), [
    'token_file: give the token either with -token or with -token-file, not both',
  ]);
});

test('a token without TLS is accepted with a warning that it travels in plaintext', (t) => {
  t.deepEqual(run([...CLIENT, '-token', 's3cret']).warnings, [
    'token: without -tls tokens travel in plaintext, so anyone on the path can read and reuse them',
  ]);
  t.deepEqual(run([...CLIENT, '-tls', '-token', 's3cret']).warnings, []);
});

test('the cluster settings: none without -etcd; the hub name from the host name up to its first dot, or -hub-name; the advertised address, else the listen address', (t) => {
  const settings = (argv: readonly string[], host = 'hub-a.example.com') => {
    const c = command(argv);
    if (c.kind !== 'run') throw new Error('not a run');
    return toClusterSettings(c.config, host);
  };
  t.deepEqual(settings([]), right(undefined));
  const s = settings(['-etcd', 'http://10.1.0.1:2379,http://10.1.0.2:2379', '-cluster-token', 'a-cluster-secret-1', '-l', '10.1.0.5:9000', '-t', '10.0.0.2/24', '-timeout', '6', '-keepalive', '2']);
  if (isLeft(s) || s.right === undefined) return t.fail('no settings');
  t.deepEqual(s.right.endpoints, ['http://10.1.0.1:2379', 'http://10.1.0.2:2379']);
  t.is(s.right.hub.me, 'hub-a');
  t.is(s.right.hub.keys.prefix, '/lwt/default/');
  t.is(s.right.hub.ttlSeconds, 6);
  t.deepEqual(s.right.hub.advertise, { host: '10.1.0.5', port: 9000 });
  t.deepEqual(s.right.hub.tunnel, { address: 0x0a000002, prefix: 24 });
  const named = settings(['-etcd', 'http://10.1.0.1:2379', '-cluster-token', 'a-cluster-secret-1', '-advertise', 'hub-b.example.com:9001', '-hub-name', 'b', '-cluster', 'lab']);
  t.like(isLeft(named) ? undefined : named.right?.hub, { me: 'b', advertise: { host: 'hub-b.example.com', port: 9001 } });
  t.is(isLeft(named) ? undefined : named.right?.hub.keys.prefix, '/lwt/lab/');
  const bad = settings(['-etcd', 'http://10.1.0.1:2379', '-cluster-token', 'a-cluster-secret-1', '-advertise', '10.1.0.5:9000'], 'höst');
  t.deepEqual(isLeft(bad) ? bad.left.line : undefined, 'hub_name: the host name "höst" cannot name a hub (letters, digits, ".", "_" and "-"): give one with -hub-name NAME');
  // A client ignores them (with a warning).
  t.deepEqual(settings([...CLIENT, '-etcd', 'http://10.1.0.1:2379']), right(undefined));
});
