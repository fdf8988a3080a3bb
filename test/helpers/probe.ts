/**
 * Reachability probe, run inside lab network namespaces (`ping` is not
 * available on the test machines).
 *
 *   node probe.js udp-echo-server PORT          prints "ready udp PORT" once bound
 *   node probe.js tcp-echo-server PORT          prints "ready tcp PORT" once listening
 *   node probe.js echo-server PORT              both of the above in one process
 *   node probe.js udp HOST PORT [count] [timeoutMs]
 *   node probe.js tcp HOST PORT [timeoutMs]
 *   node probe.js udp-ping HOST PORT [intervalMs] [timeoutMs]
 *
 * For `udp` and `tcp` the HOST/PORT order may be swapped (`udp PORT HOST` is
 * accepted too): the all-digit argument is taken as the port.
 *
 * Clients print exactly one JSON line (see ProbeResult) and exit 0 when every
 * request was answered, 1 otherwise. Usage errors exit 2. `udp-ping` is ping
 * over a UDP echo server: one datagram every intervalMs (default 100) until
 * SIGTERM, one PingSample JSON line per datagram (its echo, or lost after
 * timeoutMs, default 1000).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomBytes } from 'node:crypto';

export interface ProbeResult {
  ok: boolean;
  proto: 'udp' | 'tcp';
  host: string;
  port: number;
  sent: number;
  received: number;
  rttMs: number[];
  error?: string;
}

function usage(msg: string): never {
  process.stderr.write(`probe: ${msg}\n`);
  process.stderr.write(
    'usage: probe.js udp-echo-server PORT | tcp-echo-server PORT | echo-server PORT | ' +
      'udp HOST PORT [count] [timeoutMs] | tcp HOST PORT [timeoutMs]\n',
  );
  process.exit(2);
}

function parsePort(s: string | undefined): number {
  const n = Number(s);
  if (s === undefined || !/^\d+$/.test(s) || n < 1 || n > 65535) usage(`bad port ${String(s)}`);
  return n;
}

function parsePositive(s: string | undefined, dflt: number, what: string): number {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0) usage(`bad ${what} ${s}`);
  return n;
}

/** Accepts `HOST PORT` or `PORT HOST`. */
function hostPort(a: string | undefined, b: string | undefined): { host: string; port: number } {
  if (a === undefined || b === undefined) usage('missing HOST and PORT');
  if (/^\d+$/.test(a) && !/^\d+$/.test(b)) return { host: b, port: parsePort(a) };
  return { host: a, port: parsePort(b) };
}

function emit(result: ProbeResult): void {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(result.ok ? 0 : 1));
}

function exitOnSignals(cleanup: () => void): void {
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => {
      cleanup();
      process.exit(0);
    });
  }
}

function udpEchoServer(port: number): () => void {
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  sock.on('message', (msg, rinfo) => {
    sock.send(msg, rinfo.port, rinfo.address);
  });
  sock.on('error', (err) => {
    process.stderr.write(`udp-echo-server error: ${err.message}\n`);
    process.exit(1);
  });
  sock.bind(port, '0.0.0.0', () => {
    process.stdout.write(`ready udp ${port}\n`);
  });
  return () => sock.close();
}

function tcpEchoServer(port: number): () => void {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.on('close', () => sockets.delete(s));
    s.pipe(s);
  });
  server.on('error', (err) => {
    process.stderr.write(`tcp-echo-server error: ${err.message}\n`);
    process.exit(1);
  });
  server.listen({ port, host: '0.0.0.0' }, () => {
    process.stdout.write(`ready tcp ${port}\n`);
  });
  return () => {
    for (const s of sockets) s.destroy();
    server.close();
  };
}

async function udpClient(host: string, port: number, count: number, timeoutMs: number): Promise<void> {
  const sock = dgram.createSocket('udp4');
  const rtts: number[] = [];
  const result: ProbeResult = { ok: false, proto: 'udp', host, port, sent: 0, received: 0, rttMs: rtts };
  const pending = new Map<string, { t0: bigint; done: () => void }>();
  sock.on('message', (msg) => {
    const p = pending.get(msg.toString('latin1'));
    if (p === undefined) return;
    pending.delete(msg.toString('latin1'));
    rtts.push(Number(process.hrtime.bigint() - p.t0) / 1e6);
    result.received++;
    p.done();
  });
  sock.on('error', (err) => {
    result.error = err.message;
  });
  await new Promise<void>((resolve) => sock.bind(0, resolve));
  for (let i = 0; i < count; i++) {
    const nonce = `probe:${i}:${randomBytes(8).toString('hex')}`;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        pending.delete(nonce);
        resolve();
      }, timeoutMs);
      pending.set(nonce, {
        t0: process.hrtime.bigint(),
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      result.sent++;
      sock.send(nonce, port, host, (err) => {
        if (err) {
          result.error = err.message;
          clearTimeout(timer);
          pending.delete(nonce);
          resolve();
        }
      });
    });
  }
  sock.close();
  result.ok = result.received === count;
  if (!result.ok && result.error === undefined) result.error = `${count - result.received} of ${count} lost`;
  emit(result);
}

/** One datagram of `udp-ping`: its round trip, or lost. */
export interface PingSample {
  readonly seq: number;
  /** When it was sent, ms since the pinger started. */
  readonly sentAtMs: number;
  /** Undefined when no echo came within the timeout. */
  readonly rttMs?: number;
}

function udpPing(host: string, port: number, intervalMs: number, timeoutMs: number): () => void {
  const sock = dgram.createSocket('udp4');
  const start = process.hrtime.bigint();
  const sinceStart = (t: bigint): number => Number(t - start) / 1e6;
  const pending = new Map<string, { seq: number; t0: bigint; timer: NodeJS.Timeout }>();
  const print = (s: PingSample): void => void process.stdout.write(`${JSON.stringify(s)}\n`);
  sock.on('message', (msg) => {
    const p = pending.get(msg.toString('latin1'));
    if (p === undefined) return;
    pending.delete(msg.toString('latin1'));
    clearTimeout(p.timer);
    print({ seq: p.seq, sentAtMs: sinceStart(p.t0), rttMs: Number(process.hrtime.bigint() - p.t0) / 1e6 });
  });
  sock.on('error', () => undefined);
  let seq = 0;
  const tick = setInterval(() => {
    const nonce = `ping:${seq}:${randomBytes(8).toString('hex')}`;
    const t0 = process.hrtime.bigint();
    const mine = seq++;
    pending.set(nonce, { seq: mine, t0, timer: setTimeout(() => pending.delete(nonce) && print({ seq: mine, sentAtMs: sinceStart(t0) }), timeoutMs) });
    sock.send(nonce, port, host);
  }, intervalMs);
  return () => {
    clearInterval(tick);
    for (const p of pending.values()) clearTimeout(p.timer);
    sock.close();
  };
}

async function tcpClient(host: string, port: number, timeoutMs: number): Promise<void> {
  const result: ProbeResult = { ok: false, proto: 'tcp', host, port, sent: 0, received: 0, rttMs: [] };
  const line = `probe:${randomBytes(8).toString('hex')}\n`;
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    const sock = net.connect({ host, port });
    let buf = '';
    const finish = (error?: string): void => {
      clearTimeout(timer);
      if (error !== undefined) result.error = error;
      sock.destroy();
      resolve();
    };
    const timer = setTimeout(() => finish(`timeout after ${timeoutMs} ms`), timeoutMs);
    sock.setEncoding('latin1');
    sock.on('connect', () => {
      result.sent = 1;
      sock.write(line);
    });
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length >= line.length) {
        if (buf.startsWith(line)) {
          result.received = 1;
          result.rttMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
          result.ok = true;
          finish();
        } else {
          finish('echo mismatch');
        }
      }
    });
    sock.on('error', (err) => finish(err.message));
    sock.on('close', () => finish(result.ok ? undefined : (result.error ?? 'connection closed')));
  });
  emit(result);
}

async function main(argv: string[]): Promise<void> {
  const [mode, a, b, c, d] = argv;
  switch (mode) {
    case 'udp-echo-server':
      return exitOnSignals(udpEchoServer(parsePort(a)));
    case 'tcp-echo-server':
      return exitOnSignals(tcpEchoServer(parsePort(a)));
    case 'echo-server': {
      const port = parsePort(a);
      const stopUdp = udpEchoServer(port);
      const stopTcp = tcpEchoServer(port);
      return exitOnSignals(() => {
        stopUdp();
        stopTcp();
      });
    }
    case 'udp': {
      const { host, port } = hostPort(a, b);
      await udpClient(host, port, Math.floor(parsePositive(c, 1, 'count')), parsePositive(d, 1000, 'timeoutMs'));
      return;
    }
    case 'tcp': {
      const { host, port } = hostPort(a, b);
      await tcpClient(host, port, parsePositive(c, 2000, 'timeoutMs'));
      return;
    }
    case 'udp-ping': {
      const { host, port } = hostPort(a, b);
      return exitOnSignals(udpPing(host, port, parsePositive(c, 100, 'intervalMs'), parsePositive(d, 1000, 'timeoutMs')));
    }
    default:
      usage(`unknown mode ${String(mode)}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`probe: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(2);
});
