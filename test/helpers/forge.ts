/**
 * A tiny raw client of the hub protocol for security tests: it speaks the frames itself, so it can
 * do what the real client never does (skip the HELLO, lie about its source address, hammer the hub
 * with attempts). Runs inside a lab namespace:
 *
 *   node forge.js session --hub HOST:PORT [options]
 *     --hello ADDR          send a HELLO asking for ADDR (without it: a 0.0.1-era client, DATA only)
 *     --token SECRET        put this token in the HELLO; repeated, attempt I uses the I-th
 *                           (the last one for the attempts beyond)
 *     --tls                 speak TLS; with --ca FILE, --server-name NAME, --skip-verify,
 *                           --cert FILE --key FILE (client certificate)
 *     --src A[,A2...] --dst B   send UDP packets with IPv4 source A to B (dotted quads); with
 *                           several sources, packet i uses source i modulo their number
 *     --dport N             their UDP destination port (default 7001)
 *     --count N             how many packets (default 0)
 *     --interval MS         pause between packets (default 20)
 *     --linger MS           stay connected this long after the last packet (default 300)
 *     --until-icmp N        ...or only until N ICMP packets have come from the hub in all
 *     --attempts N          repeat the whole connection N times, one after another (default 1)
 *     --wait MS             how long to wait for WELCOME/REJECT after a HELLO (default DEADLINE_MS of
 *                           helpers/wait.ts; the answer or a close ends the wait at once)
 *     --caps A,B            the HELLO's capabilities (default none); `gso` makes the hub take 64 KiB bodies
 *     --mtu N               the HELLO's MTU (default 1400)
 *     --size N              pad each UDP packet to N bytes in all (DF set unless --no-df)
 *     --no-df               send the UDP packets without DF
 *     --super GSO           send SUPER frames instead: 64,000-byte TCP super-packets from --src to --dst
 *                           with segment size GSO (the hub must have offered gso)
 *
 *   Besides the lines below, a session prints `attempt I icmp TYPE CODE MTU` for every ICMP packet
 *   the hub sends it in a DATA frame, and `attempt I udp SRC:SPORT TEXT` for every UDP packet (TEXT:
 *   its payload as UTF-8).
 *
 *   Prints one line per event: `attempt I connected`, `attempt I welcome {json}`,
 *   `attempt I reject REASON: MESSAGE`, `attempt I sent N`, `attempt I closed`, `attempt I error MSG`,
 *   and `done` at the end (exit 0). Bad usage exits 2.
 *
 *   node forge.js listen-udp PORT
 *     Binds UDP 0.0.0.0:PORT, prints `ready udp PORT`, then `recv SRC_IP:SRC_PORT TEXT` for every
 *     datagram, until killed.
 *
 *   node forge.js send-udp FROM HOST PORT COUNT
 *     Binds a UDP socket to local address FROM (any port) and sends COUNT datagrams `forge I from
 *     FROM` to HOST:PORT, 20 ms apart; prints `sent COUNT` and exits 0. In a member's namespace with
 *     FROM an address added to its TUN device, the member's client gets packets with that inner
 *     source: how a test makes a member forge a source through its own tunnel.
 *
 *   node forge.js datagrams --hub HOST:PORT --kind KIND [--receiver ID] [--count N] [--interval MS] [--size N]
 *     Hostile datagrams for the hub's UDP data path (docs/protocol.md, "UDP data path"), sent from a
 *     socket of its own to HOST:PORT (the hub's UDP port). KIND is one of:
 *       forged     a well-formed header (DATA with the "I hear you" flag, epoch 0, reserved 0,
 *                  receiver ID, a random counter below 2^48) and random ciphertext and tag, --size
 *                  bytes in all (default 120): it cannot authenticate (the hub counts `bad-tag`)
 *       truncated  the start of a datagram for receiver ID, 1 to 31 bytes long (datagram i is
 *                  i modulo 31, plus 1, bytes): shorter than a header and a tag (`malformed-datagram`)
 *       unknown    a forged datagram for receiver ID, which should be no session's (`unknown-session`)
 *     --receiver    the header's receiver id, a u32 (default 1: the hub's first UDP session)
 *     --count N     how many datagrams (default 100)
 *     --interval MS pause after every 50 datagrams (default 5)
 *     Prints `sent N` (the datagrams the kernel took) and exits 0.
 *
 *   node forge.js fake-hub PORT --routes CIDR[,CIDR...] [--via ADDR]
 *     A hostile (or mistaken) hub: listens on TCP 0.0.0.0:PORT, prints `ready tcp PORT`, answers each
 *     HELLO with a WELCOME for the address it asked (hub 10.0.0.1, /24) carrying the given LAN routes
 *     (via ADDR, default 10.0.0.9), prints `hello ADDR`, and sends a KEEPALIVE every second, until
 *     killed.
 */
import { jsonFrame } from './wire.js';
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FrameType, MAX_BODY_COMPAT, MAX_BODY_SUPER, encodeFrame, encodeFrames } from '../../operators/core/wire/frames.js';
import { ACK, DEFAULT_FLOW, streamBytes, superPacketBytes } from './tcp-reference.js';
import { PROTOCOL_VERSION } from '../../operators/core/wire/control.js';
import { FrameDecoder } from '../../operators/core/wire/decoder.js';
import { DEADLINE_MS } from './wait.js';

/** Absolute path of the compiled script (dist/test/helpers/forge.js), to run in a namespace. */
export const FORGE_SCRIPT: string = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------------------
// packets

function ipv4Bytes(text: string): number[] {
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`not an IPv4 address: ${text}`);
  return parts;
}

/** The Internet checksum (RFC 1071) of `bytes`. */
export function internetChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2 === 1) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A complete IPv4/UDP packet with any source address (UDP checksum 0: none). */
export function udpPacket(src: string, dst: string, sport: number, dport: number, payload: Uint8Array, id = 0): Buffer {
  const total = 20 + 8 + payload.length;
  const p = Buffer.alloc(total);
  p[0] = 0x45; // version 4, IHL 5
  p[1] = 0;
  p.writeUInt16BE(total, 2);
  p.writeUInt16BE(id & 0xffff, 4);
  p.writeUInt16BE(0x4000, 6); // DF
  p[8] = 64; // TTL
  p[9] = 17; // UDP
  p.set(ipv4Bytes(src), 12);
  p.set(ipv4Bytes(dst), 16);
  p.writeUInt16BE(internetChecksum(p.subarray(0, 20)), 10);
  p.writeUInt16BE(sport, 20);
  p.writeUInt16BE(dport, 22);
  p.writeUInt16BE(8 + payload.length, 24);
  p.writeUInt16BE(0, 26);
  p.set(payload, 28);
  return p;
}

// ---------------------------------------------------------------------------
// session mode

interface SessionOptions {
  host: string;
  port: number;
  hello: string | undefined;
  tokens: string[];
  tls: boolean;
  ca: string | undefined;
  serverName: string | undefined;
  skipVerify: boolean;
  cert: string | undefined;
  key: string | undefined;
  src: string | undefined;
  dst: string | undefined;
  dport: number;
  count: number;
  intervalMs: number;
  lingerMs: number;
  untilIcmp: number | undefined;
  attempts: number;
  waitMs: number;
  caps: string[];
  mtu: number;
  size: number;
  df: boolean;
  superGso: number | undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const out = (line: string): void => void process.stdout.write(`${line}\n`);

function usage(msg: string): never {
  process.stderr.write(`forge: ${msg}\n`);
  process.exit(2);
}

function parseSession(args: string[]): SessionOptions {
  const o: SessionOptions = {
    host: '',
    port: 9000,
    hello: undefined,
    tokens: [],
    tls: false,
    ca: undefined,
    serverName: undefined,
    skipVerify: false,
    cert: undefined,
    key: undefined,
    src: undefined,
    dst: undefined,
    dport: 7001,
    count: 0,
    intervalMs: 20,
    lingerMs: 300,
    untilIcmp: undefined,
    attempts: 1,
    waitMs: DEADLINE_MS,
    caps: [],
    mtu: 1400,
    size: 0,
    df: true,
    superGso: undefined,
  };
  const num = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0) usage(`${flag}: expected a non-negative integer, got ${String(v)}`);
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    const value = (): string => {
      const v = args[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--hub': {
        const v = value();
        const at = v.lastIndexOf(':');
        if (at < 0) usage('--hub: expected HOST:PORT');
        o.host = v.slice(0, at);
        o.port = num('--hub port', v.slice(at + 1));
        break;
      }
      case '--hello': o.hello = value(); break;
      case '--token': o.tokens.push(value()); break;
      case '--tls': o.tls = true; break;
      case '--ca': o.ca = value(); break;
      case '--server-name': o.serverName = value(); break;
      case '--skip-verify': o.skipVerify = true; break;
      case '--cert': o.cert = value(); break;
      case '--key': o.key = value(); break;
      case '--src': o.src = value(); break;
      case '--dst': o.dst = value(); break;
      case '--dport': o.dport = num(flag, value()); break;
      case '--count': o.count = num(flag, value()); break;
      case '--interval': o.intervalMs = num(flag, value()); break;
      case '--linger': o.lingerMs = num(flag, value()); break;
      case '--until-icmp': o.untilIcmp = num(flag, value()); break;
      case '--attempts': o.attempts = Math.max(1, num(flag, value())); break;
      case '--wait': o.waitMs = num(flag, value()); break;
      case '--caps': o.caps = value().split(',').filter((c) => c !== ''); break;
      case '--mtu': o.mtu = num(flag, value()); break;
      case '--size': o.size = num(flag, value()); break;
      case '--no-df': o.df = false; break;
      case '--super': o.superGso = num(flag, value()); break;
      default: usage(`unknown flag ${flag}`);
    }
  }
  if (o.host === '') usage('--hub HOST:PORT is required');
  if (o.count > 0 && (o.src === undefined || o.dst === undefined)) usage('--count needs --src and --dst');
  return o;
}

function connect(o: SessionOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    if (o.tls) {
      socket = tls.connect({
        host: o.host,
        port: o.port,
        ...(o.serverName === undefined ? {} : { servername: o.serverName }),
        ...(o.ca === undefined ? {} : { ca: fs.readFileSync(o.ca) }),
        ...(o.cert === undefined ? {} : { cert: fs.readFileSync(o.cert) }),
        ...(o.key === undefined ? {} : { key: fs.readFileSync(o.key) }),
        rejectUnauthorized: !o.skipVerify,
        ...(o.serverName === undefined ? {} : { checkServerIdentity: (_h: string, c: tls.PeerCertificate) => tls.checkServerIdentity(o.serverName!, c) }),
      });
      socket.once('secureConnect', () => resolve(socket));
    } else {
      socket = net.connect({ host: o.host, port: o.port });
      socket.once('connect', () => resolve(socket));
    }
    socket.setNoDelay(true);
    socket.once('error', reject);
  });
}

/** One connection: HELLO (maybe), wait for the answer, packets, linger, close. */
async function attempt(o: SessionOptions, n: number): Promise<void> {
  const say = (s: string): void => out(`attempt ${n} ${s}`);
  let socket: net.Socket;
  try {
    socket = await connect(o);
  } catch (err) {
    say(`error ${(err as Error).message}`);
    return;
  }
  say('connected');
  const decoder = new FrameDecoder(o.caps.includes('gso') ? MAX_BODY_SUPER : MAX_BODY_COMPAT);
  let closed = false;
  let answered: (() => void) | undefined;
  let icmps = 0;
  let icmpArrived: (() => void) | undefined;
  const finished = new Promise<void>((resolve) => {
    socket.on('close', () => {
      if (!closed) say('closed');
      closed = true;
      answered?.();
      resolve();
    });
  });
  socket.on('error', (err) => say(`error ${err.message}`));
  socket.on('data', (chunk: Buffer) => {
    let frames;
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      say(`error bad frame from the hub: ${(err as Error).message}`);
      socket.destroy();
      return;
    }
    for (const f of frames) {
      if (f.type === FrameType.Data && f.payload.length >= 28 && f.payload[9] === 1) {
        const ihl = (f.payload[0]! & 0x0f) * 4;
        say(`icmp ${f.payload[ihl]} ${f.payload[ihl + 1]} ${(f.payload[ihl + 6]! << 8) | f.payload[ihl + 7]!}`);
        icmps++;
        icmpArrived?.();
        continue;
      }
      if (f.type === FrameType.Data && f.payload.length >= 28 && f.payload[9] === 17) {
        const ihl = (f.payload[0]! & 0x0f) * 4;
        const p = Buffer.from(f.payload);
        say(`udp ${[...p.subarray(12, 16)].join('.')}:${p.readUInt16BE(ihl)} ${p.subarray(ihl + 8).toString('utf8')}`);
        continue;
      }
      const text = Buffer.from(f.payload).toString('utf8');
      if (f.type === FrameType.Welcome) {
        say(`welcome ${text}`);
        answered?.();
      } else if (f.type === FrameType.Reject) {
        let reason = '?';
        let message = text;
        try {
          const r = JSON.parse(text) as { reason?: string; message?: string };
          reason = r.reason ?? '?';
          message = r.message ?? '';
        } catch {
          // keep the raw text
        }
        say(`reject ${reason}: ${message}`);
        answered?.();
      }
    }
  });

  if (o.hello !== undefined) {
    const token = o.tokens[Math.min(n, o.tokens.length) - 1];
    socket.write(jsonFrame(FrameType.Hello, { version: PROTOCOL_VERSION, address: o.hello, prefix: 24, mtu: o.mtu, caps: o.caps, ...(token === undefined ? {} : { token }) }));
    await Promise.race([new Promise<void>((r) => (answered = r)), sleep(o.waitMs)]);
    answered = undefined;
  }
  let sent = 0;
  let lastKeepalive = Date.now();
  for (let i = 0; i < o.count && !closed; i++) {
    const sources = o.src!.split(',');
    const src = sources[i % sources.length]!;
    if (o.superGso !== undefined) {
      const sp = superPacketBytes({ ...DEFAULT_FLOW, src, dst: o.dst!, dport: o.dport }, { seq: 1000 + i * 64_000, id: i, flags: ACK, payload: streamBytes(64_000 - 40, i) });
      const body = Buffer.alloc(3 + sp.length);
      body[0] = FrameType.Super;
      body.writeUInt16BE(o.superGso, 1);
      body.set(sp, 3);
      const header = Buffer.alloc(4);
      header.writeUInt32BE(body.length);
      socket.write(Buffer.concat([header, body]));
    } else {
      const text = Buffer.from(`forge ${i} from ${src}`);
      const payload = o.size > 28 + text.length ? Buffer.concat([text, Buffer.alloc(o.size - 28 - text.length, 0x2e)]) : text;
      const packet = udpPacket(src, o.dst!, 40000 + n, o.dport, payload, i);
      if (!o.df) {
        packet[6] = 0;
        packet.writeUInt16BE(0, 10);
        packet.writeUInt16BE(internetChecksum(packet.subarray(0, 20)), 10);
      }
      socket.write(encodeFrames(FrameType.Data, [packet]));
    }
    sent++;
    if (Date.now() - lastKeepalive >= 1000) {
      socket.write(encodeFrame(FrameType.Keepalive));
      lastKeepalive = Date.now();
    }
    if (o.intervalMs > 0) await sleep(o.intervalMs);
  }
  if (o.count > 0) say(`sent ${sent}`);
  // Linger (answering keepalive duty), then close.
  const until = Date.now() + o.lingerMs;
  const lingering = (): boolean => !closed && Date.now() < until && (o.untilIcmp === undefined || icmps < o.untilIcmp);
  while (lingering()) {
    await Promise.race([sleep(Math.min(500, until - Date.now())), new Promise<void>((r) => (icmpArrived = r))]);
    if (lingering()) socket.write(encodeFrame(FrameType.Keepalive));
  }
  if (!closed) {
    closed = true;
    say('closed');
    socket.end();
    setTimeout(() => socket.destroy(), 500).unref();
  }
  await finished;
}

async function session(args: string[]): Promise<void> {
  const o = parseSession(args);
  for (let i = 1; i <= o.attempts; i++) await attempt(o, i);
  out('done');
}

// ---------------------------------------------------------------------------
// listen-udp mode

function listenUdp(args: string[]): void {
  const port = Number(args[0]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) usage(`listen-udp: bad port ${String(args[0])}`);
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => out(`recv ${rinfo.address}:${rinfo.port} ${msg.toString('utf8')}`));
  sock.on('error', (err) => {
    process.stderr.write(`listen-udp: ${err.message}\n`);
    process.exit(1);
  });
  sock.bind(port, '0.0.0.0', () => out(`ready udp ${port}`));
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
}

// ---------------------------------------------------------------------------
// send-udp mode

async function sendUdp(args: string[]): Promise<void> {
  const [from, host, portText, countText] = args;
  const port = Number(portText);
  const count = Number(countText);
  if (from === undefined || host === undefined || !Number.isInteger(port) || port < 1 || port > 65535 || !Number.isInteger(count) || count < 1) {
    usage('send-udp FROM HOST PORT COUNT');
  }
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, from, () => resolve());
  });
  for (let i = 1; i <= count; i++) {
    await new Promise<void>((resolve, reject) => sock.send(`forge ${i} from ${from}`, port, host, (err) => (err === null ? resolve() : reject(err))));
    await sleep(20);
  }
  sock.close();
  out(`sent ${count}`);
}

// ---------------------------------------------------------------------------
// datagrams mode

/** The kinds of hostile datagram that `datagrams` sends. */
const DATAGRAM_KINDS = ['forged', 'truncated', 'unknown'] as const;
type DatagramKind = (typeof DATAGRAM_KINDS)[number];

/** A sealed-datagram header (docs/protocol.md): type, epoch, reserved, receiver id, counter. */
export function datagramHeader(type: number, epoch: number, receiver: number, counter: number): Buffer {
  const h = Buffer.alloc(16);
  h[0] = type;
  h[1] = epoch;
  h.writeUInt32BE(receiver >>> 0, 4);
  h.writeUIntBE(counter, 10, 6); // bytes 8..9 stay 0: counters below 2^48
  return h;
}

/** Datagram `i` of `kind` for `receiver`, `size` bytes where the kind has a size. */
export function hostileDatagram(kind: DatagramKind, receiver: number, i: number, size: number): Buffer {
  const sealed = Buffer.concat([datagramHeader(0x81, 0, receiver, randomInt(2 ** 48 - 1)), randomBytes(Math.max(0, size - 16))]);
  return kind === 'truncated' ? sealed.subarray(0, (i % 31) + 1) : sealed;
}

async function datagrams(args: string[]): Promise<void> {
  let host = '';
  let port = 9000;
  let kind: DatagramKind | undefined;
  let receiver = 1;
  let count = 100;
  let intervalMs = 5;
  let size = 120;
  const num = (flag: string, v: string | undefined, max = Number.MAX_SAFE_INTEGER): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0 || n > max) usage(`${flag}: expected an integer in 0..${max}, got ${String(v)}`);
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    const v = args[++i];
    switch (flag) {
      case '--hub': {
        const at = (v ?? '').lastIndexOf(':');
        if (at < 0) usage('--hub: expected HOST:PORT');
        host = v!.slice(0, at);
        port = num('--hub port', v!.slice(at + 1), 65535);
        break;
      }
      case '--kind':
        if (!(DATAGRAM_KINDS as readonly string[]).includes(v ?? '')) usage(`--kind: expected ${DATAGRAM_KINDS.join(' | ')}, got ${String(v)}`);
        kind = v as DatagramKind;
        break;
      case '--receiver': receiver = num(flag, v, 0xffffffff); break;
      case '--count': count = num(flag, v); break;
      case '--interval': intervalMs = num(flag, v); break;
      case '--size': size = num(flag, v, 65507); break;
      default: usage(`datagrams: unknown flag ${flag}`);
    }
  }
  if (host === '') usage('datagrams: --hub HOST:PORT is required');
  if (kind === undefined) usage('datagrams: --kind is required');
  if (kind !== 'truncated' && size < 32) usage('datagrams: --size must be at least 32 (header and tag) for this kind');
  const sock = dgram.createSocket('udp4');
  sock.on('error', () => undefined);
  let sent = 0;
  for (let i = 0; i < count; i++) {
    const ok = await new Promise<boolean>((resolve) => sock.send(hostileDatagram(kind!, receiver, i, size), port, host, (err) => resolve(err === null || err === undefined)));
    if (ok) sent++;
    if (intervalMs > 0 && (i + 1) % 50 === 0) await sleep(intervalMs);
  }
  sock.close();
  out(`sent ${sent}`);
}

// ---------------------------------------------------------------------------
// fake-hub mode

function fakeHub(args: string[]): void {
  const port = Number(args[0]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) usage(`fake-hub: bad port ${String(args[0])}`);
  let routes: string[] = [];
  let via = '10.0.0.9';
  for (let i = 1; i < args.length; i++) {
    if (args[i] === '--routes') routes = (args[++i] ?? '').split(',').filter((r) => r !== '');
    else if (args[i] === '--via') via = args[++i] ?? via;
    else usage(`fake-hub: unknown flag ${String(args[i])}`);
  }
  const server = net.createServer((socket) => {
    const decoder = new FrameDecoder(MAX_BODY_COMPAT);
    const keepalive = setInterval(() => socket.write(encodeFrame(FrameType.Keepalive)), 1000);
    socket.on('close', () => clearInterval(keepalive));
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        if (f.type !== FrameType.Hello) continue;
        const hello = JSON.parse(Buffer.from(f.payload).toString('utf8')) as { address?: string };
        const address = hello.address ?? '10.0.0.50';
        out(`hello ${address}`);
        socket.write(
          jsonFrame(FrameType.Welcome, {
            version: PROTOCOL_VERSION,
            address,
            prefix: 24,
            hub: '10.0.0.1',
            mtu: 1400,
            keepalive: 1,
            timeout: 5,
            caps: ['routes'],
            routes: routes.map((cidr) => ({ cidr, via })),
          }),
        );
      }
    });
  });
  server.listen(port, '0.0.0.0', () => out(`ready tcp ${port}`));
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
}

// ---------------------------------------------------------------------------

/** Exits 0 when `work` is done, 1 with its message when it fails. */
function exitWhenDone(work: Promise<void>): void {
  work.then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`forge: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href;
if (isMain) {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === 'session') {
    exitWhenDone(session(rest));
  } else if (mode === 'listen-udp') {
    listenUdp(rest);
  } else if (mode === 'send-udp') {
    exitWhenDone(sendUdp(rest));
  } else if (mode === 'fake-hub') {
    fakeHub(rest);
  } else if (mode === 'datagrams') {
    exitWhenDone(datagrams(rest));
  } else {
    usage('expected a mode: session | listen-udp | send-udp | datagrams | fake-hub');
  }
}
