/**
 * A TCP bulk transfer for the demo's throughput figure (so that iperf3 is not needed).
 *
 *   node bulk.js receive PORT             prints "ready PORT", accepts one connection, counts bytes
 *                                         until the sender half-closes, answers with a JSON
 *                                         BulkResult on the same connection and exits 0
 *   node bulk.js send HOST PORT SECONDS   sends as fast as the connection takes for SECONDS, then
 *                                         prints the receiver's BulkResult as one JSON line
 *
 * The figure is the receiver's: bytes that arrived, from the first byte to the sender's FIN.
 */
import net from 'node:net';

export interface BulkResult {
  bytes: number;
  ms: number;
  bitsPerSecond: number;
}

const CHUNK = Buffer.alloc(64 * 1024, 0x5a);

function fail(msg: string, code = 1): never {
  process.stderr.write(`bulk: ${msg}\n`);
  process.exit(code);
}

function receive(port: number): void {
  const giveUp = setTimeout(() => fail('no sender within 30 s'), 30_000);
  const server = net.createServer((sock) => {
    clearTimeout(giveUp);
    server.close();
    let bytes = 0;
    let first: bigint | undefined;
    sock.on('data', (d: Buffer) => {
      first ??= process.hrtime.bigint();
      bytes += d.length;
    });
    sock.on('end', () => {
      const ms = first === undefined ? 0 : Number(process.hrtime.bigint() - first) / 1e6;
      const result: BulkResult = { bytes, ms, bitsPerSecond: ms > 0 ? (bytes * 8 * 1000) / ms : 0 };
      sock.end(JSON.stringify(result) + '\n');
    });
    sock.on('close', () => process.exit(0));
    sock.on('error', (err) => fail(`receiving: ${err.message}`));
  });
  server.on('error', (err) => fail(`cannot listen on port ${port}: ${err.message}`));
  server.listen({ port, host: '0.0.0.0' }, () => process.stdout.write(`ready ${port}\n`));
}

function send(host: string, port: number, seconds: number): void {
  const watchdog = setTimeout(() => fail(`no result from ${host}:${port} within ${seconds + 10} s`), (seconds + 10) * 1000);
  const sock = net.connect({ host, port });
  let answer = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => (answer += d));
  sock.on('error', (err) => fail(`sending to ${host}:${port}: ${err.message}`));
  sock.on('connect', () => {
    const until = Date.now() + seconds * 1000;
    const pump = (): void => {
      while (Date.now() < until) {
        if (!sock.write(CHUNK)) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end();
    };
    pump();
  });
  sock.on('close', () => {
    clearTimeout(watchdog);
    const line = answer.trim();
    if (!line.startsWith('{')) fail(`the receiver sent no result (got ${JSON.stringify(line)})`);
    process.stdout.write(line + '\n');
  });
}

function parsePort(s: string | undefined): number {
  const n = Number(s);
  if (s === undefined || !/^\d+$/.test(s) || n < 1 || n > 65535) fail(`bad port ${String(s)}`, 2);
  return n;
}

const [mode, a, b, c] = process.argv.slice(2);
if (mode === 'receive') {
  receive(parsePort(a));
} else if (mode === 'send') {
  const seconds = Number(c);
  if (a === undefined || !Number.isFinite(seconds) || seconds <= 0 || seconds > 60) fail('usage: bulk.js send HOST PORT SECONDS', 2);
  send(a, parsePort(b), seconds);
} else {
  fail('usage: bulk.js receive PORT | send HOST PORT SECONDS', 2);
}
