// What a SIGHUP re-reads and what it applies: the config file again, the original flags on top.
import test from 'ava';
import { isLeft } from 'fp-ts/lib/Either.js';
import { planReload } from '../src/cli.js';
import { parseCommandLine, type Config } from '../src/config/index.js';

const files = (content: Record<string, unknown>) => (path: string): string => {
  if (path !== '/etc/lwt.json') throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
  return JSON.stringify(content);
};

const configOf = (argv: readonly string[], readFile: (p: string) => string): Config => {
  const parsed = parseCommandLine(argv, readFile);
  if (isLeft(parsed) || parsed.right.kind !== 'run') throw new Error('expected a run command');
  return parsed.right.config;
};

const ARGV = ['-c', '/etc/lwt.json', '-mtu', '1300'];

test('isolation, max_clients and log_level apply live on a hub; other keys wait for a restart', (t) => {
  const running = configOf(ARGV, files({ mode: 'server' }));
  const plan = planReload(ARGV, running, files({ mode: 'server', client_isolation: true, max_clients: 5, log_level: 'debug', keepalive: 5 }));
  if (plan.kind !== 'ok') return t.fail(plan.lines.join('\n'));
  t.deepEqual(plan.live, ['max_clients', 'client_isolation', 'log_level']);
  t.deepEqual(plan.restart, ['keepalive']);
  t.like(plan.config, { client_isolation: true, max_clients: 5, log_level: 'debug', keepalive: 10, mtu: 1300 });
});

test('the original flags still override the file', (t) => {
  const running = configOf(ARGV, files({ mode: 'server' }));
  const plan = planReload(ARGV, running, files({ mode: 'server', mtu: 1400 }));
  if (plan.kind !== 'ok') return t.fail();
  t.deepEqual([...plan.live, ...plan.restart], []);
});

test('a broken file is reported and nothing changes', (t) => {
  const running = configOf(ARGV, files({ mode: 'server' }));
  const plan = planReload(ARGV, running, files({ mode: 'server', max_clients: 'many' }));
  t.is(plan.kind, 'error');
  if (plan.kind === 'error') t.regex(plan.lines[0]!, /^max_clients: expected a positive integer, got "many"$/);
});

test('a client applies only log_level; server-only keys it ignores are not reported', (t) => {
  const client = { mode: 'client', remote_addr: '192.0.2.1:9000', tunnel_addr: '10.0.0.2/24' };
  const running = configOf(ARGV, files(client));
  const plan = planReload(ARGV, running, files({ ...client, log_level: 'warn', client_isolation: true, remote_addr: '192.0.2.2' }));
  if (plan.kind !== 'ok') return t.fail();
  t.deepEqual(plan.live, ['log_level']);
  t.deepEqual(plan.restart, ['remote_addr']);
});
