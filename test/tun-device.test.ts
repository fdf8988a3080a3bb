// End-to-end tests of the TUN binding on real TUN devices. Every device lives in a network
// namespace the test creates (and deletes in its teardown); nothing is configured in the root
// namespace. The device-owning code runs in fixture processes under `ip netns exec`.
import test, { type ExecutionContext } from 'ava';
import { execFile, execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { TunDevice, TunError, slotSizeFor, formatIpv4Cidr } from '../src/tun/index.js';
import type { TunCtlCommand, TunCtlReply } from './fixtures/tun-ctl.js';
import type { TunEchoStats } from './fixtures/tun-echo.js';
import type { TunUdpClientResult } from './fixtures/tun-udp-client.js';
import { DEADLINE_MS, waitUntil } from './helpers/wait.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}.js`, import.meta.url));
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

/** Creates a namespace deleted (after killing every process the test started in it) on teardown. */
function netns(t: ExecutionContext): { ns: string; spawned: ChildProcessWithoutNullStreams[] } {
  const ns = `lwt-tun-${randomBytes(4).toString('hex')}`;
  ip('netns', 'add', ns);
  const spawned: ChildProcessWithoutNullStreams[] = [];
  t.teardown(async () => {
    for (const child of spawned) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((resolve) => child.once('exit', resolve));
      }
    }
    ip('netns', 'del', ns);
  });
  return { ns, spawned };
}

function exited(child: ChildProcessWithoutNullStreams, ms: number): Promise<number | 'timeout'> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  });
}

/** A tun-ctl process in `ns`: send() writes one command and resolves with its reply. */
function ctl(
  t: ExecutionContext,
  env: { ns: string; spawned: ChildProcessWithoutNullStreams[] },
  prefix: readonly string[] = [],
): { send: (cmd: TunCtlCommand) => Promise<TunCtlReply>; end: () => void; child: ChildProcessWithoutNullStreams } {
  const child = spawn('ip', ['netns', 'exec', env.ns, ...prefix, process.execPath, '--expose-gc', fixture('tun-ctl')]);
  env.spawned.push(child);
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const replies: ((r: TunCtlReply) => void)[] = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const next = replies.shift();
    if (next === undefined) t.log(`unexpected tun-ctl output: ${line}`);
    else next(JSON.parse(line) as TunCtlReply);
  });
  child.on('exit', (code) => {
    if (code !== 0 && code !== null && stderr !== '') t.log(`tun-ctl stderr: ${stderr}`);
  });
  return {
    child,
    send: (cmd) =>
      new Promise((resolve, reject) => {
        if (child.exitCode !== null) reject(new Error(`tun-ctl exited: ${stderr}`));
        replies.push(resolve);
        child.stdin.write(`${JSON.stringify(cmd)}\n`);
      }),
    end: () => child.stdin.end(),
  };
}

function linkExists(ns: string, name: string): boolean {
  return ip('-n', ns, '-o', 'link', 'show').includes(`: ${name}:`);
}

test('the slot size covers the MTU, at least 1500 bytes, in 64-byte steps', (t) => {
  t.is(slotSizeFor(1400), 1536);
  t.is(slotSizeFor(1500), 1536);
  t.is(slotSizeFor(9000), 9024);
  t.is(slotSizeFor(65535, 10), 65600);
  t.is(formatIpv4Cidr(0x0a4d0001, 24), '10.77.0.1/24');
});

test('invalid options are rejected before anything is opened', (t) => {
  const mtu = t.throws(() => TunDevice.open({ name: 'lwtx0', mtu: 70000 }), { instanceOf: TunError });
  t.is(mtu?.code, 'EINVAL');
  t.is(mtu?.syscall, 'options');
  t.regex(mtu?.message ?? '', /MTU/);
  const prefix = t.throws(() => TunDevice.open({ mtu: 1400, ipv4: { address: 1, prefix: 33 } }), { instanceOf: TunError });
  t.regex(prefix?.message ?? '', /prefix/);
  const long = t.throws(() => TunDevice.open({ name: 'a-name-longer-than-15', mtu: 1400 }), { instanceOf: TunError });
  t.is(long?.name, 'TunError');
  t.is(long?.code, 'EINVAL');
  t.regex(long?.message ?? '', /too long/);
});

test('a device opened in a namespace has its name, address, MTU and UP flag, and release deletes it', async (t) => {
  const env = netns(t);
  const c = ctl(t, env);
  const opened = await c.send({
    op: 'open',
    id: 'a',
    options: { name: 'lwtt0', mtu: 1400, ipv4: { address: 0x0a4d0101, prefix: 24 } },
  });
  t.deepEqual(opened, { ok: true, name: 'lwtt0', mtu: 1400, ipv4: '10.77.1.1/24', isUp: true });
  const addr = ip('-n', env.ns, '-o', '-4', 'addr', 'show', 'dev', 'lwtt0');
  t.regex(addr, /inet 10\.77\.1\.1\/24 /);
  const link = ip('-n', env.ns, '-o', 'link', 'show', 'dev', 'lwtt0');
  t.regex(link, /mtu 1400 /);
  t.regex(link, /<[^>]*\bUP\b[^>]*>/);
  t.regex(ip('-n', env.ns, '-o', '-d', 'link', 'show', 'dev', 'lwtt0'), /tun type tun/);

  // A kernel-chosen name.
  const auto = await c.send({ op: 'open', id: 'b', options: { mtu: 1500, up: false } });
  t.true(auto.ok && /^tun\d+$/.test(auto.name ?? ''), JSON.stringify(auto));
  t.true(auto.ok && auto.isUp === false);

  t.deepEqual(await c.send({ op: 'read', id: 'a' }), { ok: true });
  t.deepEqual(await c.send({ op: 'release', id: 'a' }), { ok: true, isUp: false });
  await waitUntil(() => !linkExists(env.ns, 'lwtt0'), 'lwtt0 to be gone after release()', undefined, 20);
  t.true(c.child.exitCode === null, 'the process is still running');

  // Once it no longer reads, dropping the last reference lets the collector close the device.
  t.deepEqual(await c.send({ op: 'read', id: 'b' }), { ok: true });
  t.deepEqual(await c.send({ op: 'stop', id: 'b' }), { ok: true });
  t.deepEqual(await c.send({ op: 'drop', id: 'b' }), { ok: true });
  await waitUntil(() => ip('-n', env.ns, '-o', 'link', 'show', 'type', 'tun').trim() === '', 'no TUN device to be left', undefined, 20);

  // Nothing holds the loop any more: the process exits by itself.
  c.end();
  t.is(await exited(c.child, DEADLINE_MS), 0);
});

test('a reading device keeps the process alive; a stopped one does not', async (t) => {
  const env = netns(t);
  const reading = ctl(t, env);
  t.true((await reading.send({ op: 'open', id: 'a', options: { name: 'lwtka0', mtu: 1400 } })).ok);
  t.true((await reading.send({ op: 'read', id: 'a' })).ok);
  reading.end();
  t.is(await exited(reading.child, 500), 'timeout');

  const idle = ctl(t, env);
  t.true((await idle.send({ op: 'open', id: 'a', options: { name: 'lwtka1', mtu: 1400 } })).ok);
  idle.end();
  t.is(await exited(idle.child, DEADLINE_MS), 0);
});

test('opening errors are TunErrors with the errno name, the call and a clear message', async (t) => {
  const env = netns(t);
  const c = ctl(t, env);
  t.true((await c.send({ op: 'open', id: 'a', options: { name: 'lwtbusy0', mtu: 1400 } })).ok);
  const busy = await c.send({ op: 'open', id: 'b', options: { name: 'lwtbusy0', mtu: 1400 } });
  t.like(busy, { ok: false, error: { name: 'TunError', code: 'EBUSY', syscall: 'ioctl(TUNSETIFF)' } });
  t.regex(busy.ok ? '' : busy.error.message, /TUN device name lwtbusy0 is busy/);

  const bad = await c.send({ op: 'open', id: 'c', options: { name: 'bad/name', mtu: 1400 } });
  t.like(bad, { ok: false, error: { name: 'TunError', code: 'EINVAL', syscall: 'ioctl(TUNSETIFF)' } });
  t.regex(bad.ok ? '' : bad.error.message, /cannot use "bad\/name" as a TUN device: the name is invalid/);

  ip('-n', env.ns, 'tuntap', 'add', 'mode', 'tap', 'name', 'lwttap0');
  const tap = await c.send({ op: 'open', id: 'c', options: { name: 'lwttap0', mtu: 1400 } });
  t.like(tap, { ok: false, error: { code: 'EINVAL', syscall: 'ioctl(TUNSETIFF)' } });
  t.regex(tap.ok ? '' : tap.error.message, /not a TUN device/);

  // A malformed packet (IP version 0) is consumed and counted, not thrown.
  const written = await c.send({ op: 'write', id: 'a', hex: ['00'.repeat(20), '6'.padEnd(80, '0')] });
  t.deepEqual(written, { ok: true, written: 2, rejected: 1 });

  if (SETPRIV === undefined) {
    t.log('setpriv not found: EPERM not checked');
  } else {
    const unprivileged = ctl(t, env, [SETPRIV, '--inh-caps=-all', '--bounding-set=-all', '--']);
    const eperm = await unprivileged.send({ op: 'open', id: 'a', options: { name: 'lwtperm0', mtu: 1400 } });
    t.like(eperm, { ok: false, error: { name: 'TunError', code: 'EPERM', syscall: 'ioctl(TUNSETIFF)' } });
    t.regex(eperm.ok ? '' : eperm.error.message, /creating a TUN device needs root or CAP_NET_ADMIN/);
    t.false(linkExists(env.ns, 'lwtperm0'));

    // A persistent device owned by uid 0 can be attached without CAP_NET_ADMIN, but not configured:
    // open() fails in configure and must close the descriptor it had opened.
    ip('-n', env.ns, 'tuntap', 'add', 'mode', 'tun', 'name', 'lwtown0', 'user', '0');
    const cfg = await unprivileged.send({
      op: 'open',
      id: 'b',
      options: { name: 'lwtown0', mtu: 1400, ipv4: { address: 0x0a4d0201, prefix: 24 } },
    });
    t.like(cfg, { ok: false, error: { name: 'TunError', code: 'EPERM', syscall: 'ioctl(SIOCSIFADDR)' } });
    t.regex(cfg.ok ? '' : cfg.error.message, /configuring TUN device lwtown0 needs root or CAP_NET_ADMIN/);
    // Had that descriptor leaked, attaching again would fail with EBUSY.
    t.like(await c.send({ op: 'open', id: 'own', options: { name: 'lwtown0', mtu: 1400 } }), { ok: true, name: 'lwtown0' });
    unprivileged.end();
  }
  c.end();
});

test('UDP datagrams routed into the device are read in batches and the written replies are delivered', async (t) => {
  const env = netns(t);
  const echo = spawn('ip', ['netns', 'exec', env.ns, process.execPath, fixture('tun-echo'), 'lwte0', '10.77.0.1/24', '10.77.0.2', '1400']);
  env.spawned.push(echo);
  let echoErr = '';
  echo.stderr.on('data', (chunk: Buffer) => {
    echoErr += chunk.toString();
  });
  const lines = readline.createInterface({ input: echo.stdout })[Symbol.asyncIterator]();
  const ready = await lines.next();
  t.false(ready.done === true, echoErr);
  t.like(JSON.parse(String(ready.value)), { ready: true, name: 'lwte0' });

  const client = await new Promise<{ code: number; out: string; err: string }>((resolve) => {
    execFile(
      'ip',
      ['netns', 'exec', env.ns, process.execPath, fixture('tun-udp-client'), '10.77.0.2', '7007', '1000', '100', String(DEADLINE_MS)],
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), out: stdout, err: stderr }),
    );
  });
  t.is(client.code, 0, client.err + client.out);
  const result = JSON.parse(client.out) as TunUdpClientResult;
  t.deepEqual(result, { sent: 1000, received: 1000, corrupt: 0 });

  echo.stdin.end();
  const statsLine = await lines.next();
  const stats = JSON.parse(String(statsLine.value)) as TunEchoStats;
  t.log(`echo: ${JSON.stringify(stats)}`);
  t.true(stats.echoed >= 1000);
  t.true(stats.packets >= 1000);
  t.true(stats.multiPacketBatches > 0, 'some read callbacks carried several packets');
  t.true(stats.maxBatch > 1 && stats.maxBatch <= 64);
  // The device was released and nothing else holds the loop: the echo process exits by itself.
  t.is(await exited(echo, DEADLINE_MS), 0, echoErr);
  t.false(linkExists(env.ns, 'lwte0'));
});
