/**
 * Opens many idle member sessions to a hub, without TUN devices, to measure what an idle member
 * costs the hub. Each session is one TCP connection that sends a HELLO with its own address and then
 * only KEEPALIVEs.
 *
 *   node dist/bench/idle-members.js --connect HOST:PORT --count 1000 [--first 10.0.0.2]
 *       [--prefix 16] [--keepalive 10] [--concurrency 64] [--hold 300]
 *
 * Addresses are consecutive from --first (skipping addresses ending in .0 and .255 is not needed
 * inside a /16, but the hub's own address must not be in the range). Prints progress lines and then
 * one JSON line `{"event":"ready",...}` once every session has been welcomed, refused or failed;
 * then holds the sessions, sending a KEEPALIVE on each every --keepalive seconds, until SIGTERM or
 * SIGINT (or --hold seconds, a safety bound), and prints `{"event":"closed",...}` when it ends.
 * Exit code 0 when every session was welcomed and still open at the end, 1 otherwise, 2 on usage.
 *
 * Only ever connects to the address it is given; the benchmark runs it inside its own namespace
 * against a hub in another namespace of the same lab.
 */
import { jsonFrame } from '../test/helpers/wire.js';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { FrameType, KEEPALIVE_FRAME, MAX_BODY_COMPAT } from '../operators/core/wire/frames.js';
import { FrameDecoder } from '../operators/core/wire/decoder.js';
import { PROTOCOL_VERSION } from '../operators/core/wire/control.js';
import { formatIpv4, parseIpv4 } from '../operators/core/address.js';

interface Options {
  host: string;
  port: number;
  count: number;
  first: number;
  prefix: number;
  keepaliveS: number;
  concurrency: number;
  holdS: number;
  connectTimeoutMs: number;
}

type State = 'connecting' | 'hello-sent' | 'welcomed' | 'rejected' | 'failed' | 'closed';

interface Session {
  address: string;
  socket: net.Socket;
  state: State;
  detail?: string;
}

function usage(msg: string): never {
  process.stderr.write(`idle-members: ${msg}\n`);
  process.stderr.write('usage: idle-members --connect HOST:PORT --count N [--first 10.0.0.2] [--prefix 16] [--keepalive S] [--concurrency N] [--hold S]\n');
  process.exit(2);
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      connect: { type: 'string' },
      count: { type: 'string', default: '1000' },
      first: { type: 'string', default: '10.0.0.2' },
      prefix: { type: 'string', default: '16' },
      keepalive: { type: 'string', default: '10' },
      concurrency: { type: 'string', default: '64' },
      hold: { type: 'string', default: '300' },
      'connect-timeout': { type: 'string', default: '10000' },
    },
    strict: true,
  });
  const m = /^(.+):(\d+)$/.exec(values.connect ?? '');
  if (m === null) usage('--connect HOST:PORT is required');
  const int = (name: string, s: string, min: number, max: number): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min || n > max) usage(`--${name}: expected an integer from ${min} to ${max}, got ${s}`);
    return n;
  };
  const first = parseIpv4(values.first);
  if (first === undefined) usage(`--first: not an IPv4 address: ${values.first}`);
  return {
    host: m[1]!,
    port: int('connect', m[2]!, 1, 65535),
    count: int('count', values.count, 1, 60000),
    first,
    prefix: int('prefix', values.prefix, 8, 30),
    keepaliveS: int('keepalive', values.keepalive, 1, 3600),
    concurrency: int('concurrency', values.concurrency, 1, 1024),
    holdS: int('hold', values.hold, 1, 3600),
    connectTimeoutMs: int('connect-timeout', values['connect-timeout'], 100, 120000),
  };
}

function main(): void {
  const o = options(process.argv.slice(2));
  const sessions: Session[] = [];
  let next = 0;
  let inFlight = 0;
  let settled = 0;
  let reported = false;
  const started = Date.now();

  const counts = (): Record<State, number> => {
    const c: Record<State, number> = { connecting: 0, 'hello-sent': 0, welcomed: 0, rejected: 0, failed: 0, closed: 0 };
    for (const s of sessions) c[s.state]++;
    return c;
  };

  const settle = (s: Session, state: State, detail?: string): void => {
    const wasPending = s.state === 'connecting' || s.state === 'hello-sent';
    s.state = state;
    if (detail !== undefined) s.detail = detail;
    if (wasPending) {
      inFlight--;
      settled++;
      if (settled % 100 === 0 || settled === o.count) process.stdout.write(`progress ${settled}/${o.count}\n`);
      pump();
      if (settled === o.count && !reported) {
        reported = true;
        const c = counts();
        const firstProblem = sessions.find((x) => x.state !== 'welcomed');
        process.stdout.write(
          `${JSON.stringify({
            event: 'ready',
            count: o.count,
            welcomed: c.welcomed,
            rejected: c.rejected,
            failed: c.failed + c.closed,
            ms: Date.now() - started,
            ...(firstProblem !== undefined ? { example: `${firstProblem.address}: ${firstProblem.state} ${firstProblem.detail ?? ''}`.trim() } : {}),
          })}\n`,
        );
      }
    }
  };

  const open = (index: number): void => {
    const address = formatIpv4((o.first + index) >>> 0);
    const socket = net.connect({ host: o.host, port: o.port });
    const s: Session = { address, socket, state: 'connecting' };
    sessions.push(s);
    inFlight++;
    const decoder = new FrameDecoder(MAX_BODY_COMPAT);
    socket.setTimeout(o.connectTimeoutMs, () => {
      if (s.state === 'connecting' || s.state === 'hello-sent') {
        settle(s, 'failed', 'timeout');
        socket.destroy();
      }
    });
    socket.on('connect', () => {
      s.state = 'hello-sent';
      socket.write(jsonFrame(FrameType.Hello, { version: PROTOCOL_VERSION, address, prefix: o.prefix, mtu: 1400, caps: [] }));
    });
    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        settle(s, 'failed', (err as Error).message);
        socket.destroy();
        return;
      }
      for (const f of frames) {
        if (f.type === FrameType.Welcome && s.state === 'hello-sent') {
          socket.setTimeout(0);
          settle(s, 'welcomed');
        } else if (f.type === FrameType.Reject) {
          settle(s, 'rejected', Buffer.from(f.payload).toString('utf8'));
        }
      }
    });
    socket.on('error', (err) => {
      if (s.state === 'connecting' || s.state === 'hello-sent') settle(s, 'failed', err.message);
    });
    socket.on('close', () => {
      if (s.state === 'connecting' || s.state === 'hello-sent') settle(s, 'failed', 'closed by the hub');
      else if (s.state === 'welcomed') s.state = 'closed';
    });
  };

  function pump(): void {
    while (inFlight < o.concurrency && next < o.count) open(next++);
  }

  const keepalive = setInterval(() => {
    for (const s of sessions) if (s.state === 'welcomed') s.socket.write(KEEPALIVE_FRAME);
  }, o.keepaliveS * 1000);

  let finished = false;
  const finish = (why: string): void => {
    if (finished) return;
    finished = true;
    clearInterval(keepalive);
    clearTimeout(hold);
    const c = counts();
    process.stdout.write(`${JSON.stringify({ event: 'closed', why, welcomedAtEnd: c.welcomed, lostAfterWelcome: c.closed, rejected: c.rejected, failed: c.failed })}\n`);
    const ok = reported && c.welcomed === o.count;
    for (const s of sessions) s.socket.destroy();
    process.exitCode = ok ? 0 : 1;
    setTimeout(() => process.exit(ok ? 0 : 1), 200).unref();
  };
  const hold = setTimeout(() => finish('hold time over'), o.holdS * 1000);
  process.on('SIGTERM', () => finish('SIGTERM'));
  process.on('SIGINT', () => finish('SIGINT'));
  pump();
}

main();
