// Micro-benchmark of the UDP data path's native layer (src/udp over the lwt_udp addon) against
// Node's own crypto and dgram, over loopback:
//
//   npx tsc -p tsconfig.json && node dist/bench/udp-native.js [--duration 3] [--payload 1400] [--batch 64]
//
// Phases, for AES-256-GCM and ChaCha20-Poly1305:
//   seal            AeadKey.seal of `batch` payloads into a DatagramBatch (no I/O)
//   seal+send       UdpSocket.sealAndSend of `batch` payloads (GSO on, then off) to a sink process
//   recv+open       a sender process floods sealed datagrams; this process reads them (GRO on, then
//                   off) and opens each batch with AeadKey.open, reading status and length per row
//   node seal+send  per packet: createCipheriv + setAAD + update + final + getAuthTag, dgram send
//   node recv+open  per packet: a dgram 'message', createDecipheriv + setAAD + setAuthTag + update + final
// Rates are per CPU second of THIS process (user + system, process.cpuUsage), i.e. per core, and
// Gb/s counts payload bits. On loopback the kernel delivers a datagram to the receiving socket in
// the sender's system call, so seal+send also pays the receiver's kernel-side delivery (and, with
// GSO, the software segmentation a NIC with UDP segmentation offload would do), while recv+open
// pays only the copy-out and what follows.
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes, type CipherGCMTypes } from 'node:crypto';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { parseIpv4 } from '../operators/core/address.js';
import { AeadKey, DatagramBatch, DatagramStatus, HEADER_BYTES, TAG_BYTES, UdpSocket, type AeadCipher } from '../src/udp/index.js';

const LOOPBACK = parseIpv4('127.0.0.1')!;
const HEADER = { type: 4, epoch: 0, receiverId: 1 };
const CIPHERS: readonly AeadCipher[] = ['aes-256-gcm', 'chacha20-poly1305'];

interface Args {
  readonly duration: number;
  readonly payload: number;
  readonly batch: number;
  readonly role: string | undefined;
  readonly port: number;
  readonly cipher: AeadCipher;
  readonly key: string;
}

function parseArgs(argv: readonly string[]): Args {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return {
    duration: Number(get('duration') ?? 3),
    payload: Number(get('payload') ?? 1400),
    batch: Number(get('batch') ?? 64),
    role: get('role'),
    port: Number(get('port') ?? 0),
    cipher: (get('cipher') ?? 'aes-256-gcm') as AeadCipher,
    key: get('key') ?? '',
  };
}

const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};
const yieldLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Row {
  readonly phase: string;
  readonly cipher: string;
  readonly variant: string;
  readonly packets: number;
  readonly wall: number;
  readonly cpu: number;
  readonly payload: number;
}

function format(rows: readonly Row[]): string {
  const lines = ['| phase | cipher | variant | packets | CPU s | Mpps per core | Gb/s per core | Gb/s wall |', '|---|---|---|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    const ppsCore = r.packets / r.cpu;
    lines.push(
      `| ${r.phase} | ${r.cipher} | ${r.variant} | ${r.packets} | ${r.cpu.toFixed(2)} | ${(ppsCore / 1e6).toFixed(3)} | ` +
        `${((ppsCore * r.payload * 8) / 1e9).toFixed(2)} | ${((r.packets * r.payload * 8) / r.wall / 1e9).toFixed(2)} |`,
    );
  }
  return lines.join('\n');
}

/** Runs `step` (which returns packets done) until `seconds` pass, yielding to the loop every ~20 ms. */
async function timed(seconds: number, step: () => number | Promise<number>): Promise<{ packets: number; wall: number; cpu: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let packets = 0;
  let slice = performance.now();
  while (performance.now() < end) {
    packets += await step();
    if (performance.now() - slice > 20) {
      await yieldLoop();
      slice = performance.now();
    }
  }
  return { packets, wall: (performance.now() - t0) / 1000, cpu: cpuSeconds(cpu0) };
}

function child(args: readonly string[]): ChildProcess {
  return spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
}

/** Waits for a child's first stdout line (its port). */
function firstLine(proc: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const nl = text.indexOf('\n');
      if (nl >= 0) resolve(text.slice(0, nl));
    });
    proc.once('exit', (code) => reject(new Error(`child exited (${String(code)}) before reporting`)));
  });
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGTERM');
  await exited;
}

// ---- child roles ----

/** A sink: reads (GRO off: every datagram costs a slot, as from a real peer) and discards. */
function runSink(): void {
  const socket = UdpSocket.open({ host: '127.0.0.1', gro: false, batch: 256 });
  socket.read(() => undefined, (err) => {
    throw err;
  });
  process.stdout.write(`${socket.localPort}\n`);
  process.on('SIGTERM', () => {
    socket.close();
    process.exit(0);
  });
}

/** A sender flooding sealed datagrams to --port, with GSO, as fast as the socket takes them. */
function runSender(a: Args): void {
  const key = AeadKey.create(a.cipher, Buffer.from(a.key, 'hex'));
  const socket = UdpSocket.open({ host: '127.0.0.1', gro: false, sndbuf: 1 << 20 });
  const payloads = Array.from({ length: a.batch }, () => new Uint8Array(randomBytes(a.payload)));
  const to = { address: LOOPBACK, port: a.port };
  process.stdout.write('ready\n');
  const pump = (): void => {
    const t0 = performance.now();
    while (performance.now() - t0 < 20) {
      if (socket.sealAndSend(key, payloads, HEADER, to) < payloads.length) {
        socket.onWritable(pump);
        return;
      }
    }
    setImmediate(pump);
  };
  pump();
  process.on('SIGTERM', () => {
    socket.close();
    process.exit(0);
  });
}

// ---- phases ----

async function sealOnly(a: Args, cipher: AeadCipher): Promise<Row> {
  const key = AeadKey.create(cipher, randomBytes(32));
  const out = DatagramBatch.create(a.batch, a.batch * (a.payload + 64));
  const payloads = Array.from({ length: a.batch }, () => new Uint8Array(randomBytes(a.payload)));
  const r = await timed(a.duration, () => key.seal(payloads, HEADER, out));
  return { phase: 'seal', cipher, variant: `batch ${a.batch}`, ...r, payload: a.payload };
}

async function sealAndSend(a: Args, cipher: AeadCipher, gso: boolean): Promise<Row> {
  const sink = child(['--role', 'sink']);
  const port = Number(await firstLine(sink));
  const key = AeadKey.create(cipher, randomBytes(32));
  const socket = UdpSocket.open({ host: '127.0.0.1', gro: false, gso });
  const payloads = Array.from({ length: a.batch }, () => new Uint8Array(randomBytes(a.payload)));
  const to = { address: LOOPBACK, port };
  const r = await timed(a.duration, async () => {
    const k = socket.sealAndSend(key, payloads, HEADER, to);
    if (k < payloads.length) await new Promise<void>((resolve) => socket.onWritable(resolve));
    return k;
  });
  const stats = socket.stats();
  socket.close();
  await stop(sink);
  return { phase: 'seal+send', cipher, variant: `GSO ${gso ? 'on' : 'off'} (${(stats.sent / Math.max(1, stats.sendCalls)).toFixed(0)} dgrams/syscall)`, ...r, payload: a.payload };
}

/** Floods `port` from a sender process and measures this process over `duration` seconds of it
 * (after 300 ms to reach a steady state); `counting(true/false)` brackets the window. */
async function whileFlooded(a: Args, cipher: AeadCipher, secret: Buffer, port: number, counting: (on: boolean) => void): Promise<{ wall: number; cpu: number }> {
  const sender = child(['--role', 'sender', '--port', String(port), '--cipher', cipher, '--key', secret.toString('hex'), '--payload', String(a.payload), '--batch', String(a.batch)]);
  await firstLine(sender);
  await sleep(300);
  counting(true);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(a.duration * 1000);
  const cpu = cpuSeconds(cpu0);
  const wall = (performance.now() - t0) / 1000;
  counting(false);
  await stop(sender);
  return { wall, cpu };
}

async function recvAndOpen(a: Args, cipher: AeadCipher, gro: boolean): Promise<Row> {
  const secret = randomBytes(32);
  const key = AeadKey.create(cipher, secret);
  const socket = UdpSocket.open({ host: '127.0.0.1', gro, rcvbuf: 8 << 20 });
  let opened = 0;
  let bytes = 0;
  let counting = false;
  socket.read(
    (batch, count) => {
      key.open(batch, HEADER, 0, count);
      if (!counting) return;
      const status = batch.status;
      const lengths = batch.lengths;
      for (let i = 0; i < count; i++) {
        if (status[i] === DatagramStatus.Opened) {
          opened++;
          bytes += lengths[i]!;
        }
      }
    },
    (err) => {
      throw err;
    },
  );
  const { wall, cpu } = await whileFlooded(a, cipher, secret, socket.localPort, (on) => (counting = on));
  const packets = opened;
  const stats = socket.stats();
  socket.close();
  if (bytes !== packets * a.payload) throw new Error('opened lengths do not add up');
  return { phase: 'recv+open', cipher, variant: `GRO ${gro ? 'on' : 'off'} (${(stats.received / Math.max(1, stats.batches)).toFixed(0)} dgrams/callback)`, packets, wall, cpu, payload: a.payload };
}

function nodeSeal(cipher: AeadCipher, secret: Buffer, counter: number, payload: Uint8Array): Buffer[] {
  const header = Buffer.alloc(HEADER_BYTES);
  header[0] = HEADER.type;
  header.writeUInt32BE(HEADER.receiverId, 4);
  header.writeBigUInt64BE(BigInt(counter), 8);
  const nonce = Buffer.alloc(12);
  header.copy(nonce, 4, 8, 16);
  const c = createCipheriv(cipher as CipherGCMTypes, secret, nonce, { authTagLength: TAG_BYTES });
  c.setAAD(header);
  const body = c.update(payload);
  c.final();
  return [header, body, c.getAuthTag()];
}

async function nodeSealAndSend(a: Args, cipher: AeadCipher): Promise<Row> {
  const sink = child(['--role', 'sink']);
  const port = Number(await firstLine(sink));
  const secret = randomBytes(32);
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const payloads = Array.from({ length: a.batch }, () => new Uint8Array(randomBytes(a.payload)));
  let counter = 0;
  const r = await timed(a.duration, async () => {
    for (const p of payloads) socket.send(nodeSeal(cipher, secret, counter++, p), port, '127.0.0.1');
    await yieldLoop(); // let the sends complete, or the queue grows without bound
    return payloads.length;
  });
  socket.close();
  await stop(sink);
  return { phase: 'node seal+send', cipher, variant: 'createCipheriv + dgram, per packet', ...r, payload: a.payload };
}

async function nodeRecvAndOpen(a: Args, cipher: AeadCipher): Promise<Row> {
  const secret = randomBytes(32);
  const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  let opened = 0;
  let counting = false;
  socket.on('message', (msg: Buffer) => {
    const nonce = Buffer.alloc(12);
    msg.copy(nonce, 4, 8, 16);
    const d = createDecipheriv(cipher as CipherGCMTypes, secret, nonce, { authTagLength: TAG_BYTES });
    d.setAAD(msg.subarray(0, HEADER_BYTES));
    d.setAuthTag(msg.subarray(msg.length - TAG_BYTES));
    d.update(msg.subarray(HEADER_BYTES, msg.length - TAG_BYTES));
    d.final();
    if (counting) opened++;
  });
  const { wall, cpu } = await whileFlooded(a, cipher, secret, socket.address().port, (on) => (counting = on));
  const packets = opened;
  socket.close();
  return { phase: 'node recv+open', cipher, variant: "dgram 'message' + createDecipheriv, per packet", packets, wall, cpu, payload: a.payload };
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (a.role === 'sink') return runSink();
  if (a.role === 'sender') return runSender(a);
  const rows: Row[] = [];
  for (const cipher of CIPHERS) {
    rows.push(await sealOnly(a, cipher));
    rows.push(await sealAndSend(a, cipher, true));
    rows.push(await sealAndSend(a, cipher, false));
    rows.push(await recvAndOpen(a, cipher, true));
    rows.push(await recvAndOpen(a, cipher, false));
    rows.push(await nodeSealAndSend(a, cipher));
    rows.push(await nodeRecvAndOpen(a, cipher));
    process.stderr.write(`${cipher} done\n`);
  }
  process.stdout.write(`payload ${a.payload} bytes, batch ${a.batch}, ${a.duration} s per phase, load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
  process.stdout.write(`${format(rows)}\n`);
}

await main();
