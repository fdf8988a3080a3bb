// A live in-process hub for hostile-input tests: the real hub pipeline on a real TCP listener bound to
// 127.0.0.1 (ephemeral port), over a recording TUN port (never a real device), with every event
// folded into per-session records. Plus real-socket clients: a raw WireClient (any bytes, FIN or RST)
// and a GoodClient that says HELLO and exchanges sequence-numbered DATA with a peer through the hub.
import { jsonFrame } from './wire.js';
import * as net from 'node:net';
import { Subject, type Observable, type Subscription } from 'rxjs';
import { serverPipeline } from '../../pipelines/server.js';
import type { ServerEvent, SessionEndReason } from '../../pipelines/events.js';
import type { Authenticator, PacketBatch, PacketSink, TunPort } from '../../pipelines/ports.js';
import type { ServerSettings } from '../../pipelines/settings.js';
import type { DropCounts } from '../../operators/core/packet.js';
import { ControlDecodeError, PROTOCOL_VERSION, RejectCodec, WelcomeCodec, decodeControl, type HelloJson, type Reject, type Welcome } from '../../operators/core/wire/control.js';
import { FrameDecoder } from '../../operators/core/wire/decoder.js';
import { FrameType, MAX_BODY_COMPAT, encodeFrames } from '../../operators/core/wire/frames.js';
import { makeNetListener } from '../../src/drivers/net.js';
import { parseIpv4 } from '../../operators/core/address.js';
import { DEADLINE_MS, waitUntil } from './wait.js';

/** Only loopback: these tests never leave the machine. */
export const LOOPBACK = '127.0.0.1';

/** Hub settings of the live tests: 10.0.0.1/24, short keepalive and timeout so silent peers go quickly. */
export const LIVE_SETTINGS: ServerSettings = {
  tunnel: { address: parseIpv4('10.0.0.1')!, prefix: 24 },
  mtu: 1400,
  keepaliveMs: 1000,
  timeoutMs: 4000,
  sendQueueSize: 512,
  recvQueueSize: 512,
  clientIsolation: false,
  maxClients: 64,
  multiClient: true,
  helloTimeoutMs: 3000,
};

/** Every reason docs/protocol.md and pipelines/events.ts give for a session's end. */
export const DOCUMENTED_END_REASONS: ReadonlySet<SessionEndReason> = new Set<SessionEndReason>(['closed', 'reset', 'idle', 'frame-error', 'rejected', 'replaced', 'handshake-timeout']);

// ---------------------------------------------------------------------------------------------
// TUN

/** A TUN port for tests: counts what the hub writes (keeping at most `keep` copies) and lets the test inject reads. */
export class RecordingTun implements TunPort {
  readonly name = 'tun-live';
  readonly mtu = 1400;
  readonly packets$: Observable<PacketBatch>;
  readonly sink: PacketSink;
  /** Packets written by the hub. */
  written = 0;
  /** The last `keep` packets written, copied. */
  readonly kept: Uint8Array[] = [];
  private readonly reads = new Subject<PacketBatch>();

  constructor(private readonly keep = 0) {
    this.packets$ = this.reads.asObservable();
    this.sink = {
      write: (packets) => {
        this.written += packets.length;
        if (this.keep > 0) {
          for (const p of packets) this.kept.push(Uint8Array.from(p));
          if (this.kept.length > this.keep) this.kept.splice(0, this.kept.length - this.keep);
        }
        return packets.length;
      },
      ready$: new Subject<void>(),
    };
  }

  /** The "device" delivers one read batch to the hub. */
  read(...packets: Uint8Array[]): void {
    this.reads.next(packets);
  }
}

// ---------------------------------------------------------------------------------------------
// Events

/** What the hub reported about one connection. */
export interface SessionRecord {
  readonly id: number;
  readonly remote: string;
  /** Order of its `connected` event among all events. */
  readonly seq: number;
  joined: { readonly address: string; readonly via: 'hello' | 'data' } | undefined;
  rejected: { readonly reason: string; readonly address: string | undefined; readonly message: string } | undefined;
  left: { readonly reason: SessionEndReason; readonly detail: string; readonly address: string | undefined; readonly at: number } | undefined;
  /** Drops attributed to this session (by its remote before it joined, by its address after). */
  readonly drops: DropCounts;
  /** Taken by a test-side client (see HubLog.claim). */
  claimed: boolean;
}

/** Folds hub events into per-session records and totals. */
export class HubLog {
  /** Events seen. */
  seq = 0;
  listening: string | undefined;
  connected = 0;
  joined = 0;
  left = 0;
  /** Members according to the latest joined/left event. */
  members = 0;
  readonly leftReasons: Record<string, number> = {};
  readonly rejectReasons: Record<string, number> = {};
  readonly dropTotals: DropCounts = {};
  /** Drops whose `who` matched no session (the TUN, or a session already gone). */
  readonly otherDrops: Record<string, DropCounts> = {};
  /** Every joined event, in order (only when retaining). */
  readonly joins: Array<Extract<ServerEvent, { type: 'joined' }>> = [];
  /** Sessions without a `left` event yet. */
  readonly open = new Map<number, SessionRecord>();
  /** Every session by remote, closed ones included (only when retaining). */
  private readonly byRemote = new Map<string, SessionRecord[]>();
  private readonly openByRemote = new Map<string, SessionRecord>();
  private readonly byMember = new Map<string, SessionRecord>();

  /** `retain`: keep closed sessions' records (for claim and per-session checks); off for long floods. */
  constructor(private readonly retain = true) {}

  handle(ev: ServerEvent): void {
    this.seq++;
    switch (ev.type) {
      case 'listening':
        this.listening = ev.address;
        return;
      case 'connected': {
        this.connected++;
        const rec: SessionRecord = { id: ev.id, remote: ev.remote, seq: this.seq, joined: undefined, rejected: undefined, left: undefined, drops: {}, claimed: false };
        this.open.set(ev.id, rec);
        this.openByRemote.set(ev.remote, rec);
        if (this.retain) {
          const list = this.byRemote.get(ev.remote);
          if (list === undefined) this.byRemote.set(ev.remote, [rec]);
          else list.push(rec);
        }
        return;
      }
      case 'joined': {
        this.joined++;
        if (this.retain) this.joins.push(ev);
        this.members = ev.members;
        const rec = this.open.get(ev.id);
        if (rec !== undefined) {
          rec.joined = { address: ev.address, via: ev.via };
          this.byMember.set(ev.address, rec);
        }
        return;
      }
      case 'rejected': {
        this.rejectReasons[ev.reason] = (this.rejectReasons[ev.reason] ?? 0) + 1;
        const rec = this.open.get(ev.id);
        if (rec !== undefined) rec.rejected = { reason: ev.reason, address: ev.address, message: ev.message };
        return;
      }
      case 'left': {
        this.left++;
        this.members = ev.members;
        this.leftReasons[ev.reason] = (this.leftReasons[ev.reason] ?? 0) + 1;
        const rec = this.open.get(ev.id);
        if (rec === undefined) return;
        rec.left = { reason: ev.reason, detail: ev.detail, address: ev.address, at: Date.now() };
        this.open.delete(ev.id);
        if (this.openByRemote.get(rec.remote) === rec) this.openByRemote.delete(rec.remote);
        if (rec.joined !== undefined && this.byMember.get(rec.joined.address) === rec) this.byMember.delete(rec.joined.address);
        return;
      }
      case 'drops': {
        const rec = this.byMember.get(ev.who) ?? this.openByRemote.get(ev.who);
        const target = rec?.drops ?? (this.otherDrops[ev.who] ??= {});
        for (const [reason, n] of Object.entries(ev.drops) as Array<[keyof DropCounts, number]>) {
          target[reason] = (target[reason] ?? 0) + n;
          this.dropTotals[reason] = (this.dropTotals[reason] ?? 0) + n;
        }
        return;
      }
    }
  }

  /** True while the hub has an open session for the client endpoint `remote`. */
  isOpen(remote: string): boolean {
    return this.openByRemote.has(remote);
  }

  /**
   * The hub's session for a client whose local endpoint is `remote`, if the hub reported it: the
   * oldest one not claimed yet (a port is only reused after the earlier connection, which its own
   * client claimed first, is gone). Marks it claimed.
   */
  claim(remote: string): SessionRecord | undefined {
    const rec = this.byRemote.get(remote)?.find((r) => !r.claimed);
    if (rec !== undefined) rec.claimed = true;
    return rec;
  }
}

/** A hub running in this process. */
export interface LiveHub {
  readonly port: number;
  readonly log: HubLog;
  readonly tun: RecordingTun;
  readonly settings: ServerSettings;
  /** What the pipeline errored with, if it did (it must not). */
  readonly error: unknown;
  /** True if the pipeline completed (it must not while subscribed). */
  readonly completed: boolean;
  /** Unsubscribes: closes every session and the listener. */
  stop(): void;
}

/** Starts the hub pipeline on 127.0.0.1, port 0, and resolves once it listens. */
export async function startLiveHub(
  options: { readonly settings?: Partial<ServerSettings>; readonly retain?: boolean; readonly tun?: RecordingTun; readonly authenticator?: Authenticator } = {},
): Promise<LiveHub> {
  const settings: ServerSettings = { ...LIVE_SETTINGS, ...options.settings };
  const tun = options.tun ?? new RecordingTun();
  const log = new HubLog(options.retain ?? true);
  let error: unknown;
  let failed = false;
  let completed = false;
  const sub: Subscription = serverPipeline(settings, {
    tun,
    // Every test client comes from 127.0.0.1, many at once (the floods): the caps on pending
    // connections (test/pending.test.ts) are not what these tests look at.
    listener: makeNetListener({ host: LOOPBACK, port: 0, pending: { perSource: 100_000, total: 100_000 } }),
    ...(options.authenticator === undefined ? {} : { authenticator: options.authenticator }),
  }).subscribe({
    next: (ev) => log.handle(ev),
    error: (err: unknown) => {
      failed = true;
      error = err;
    },
    complete: () => {
      completed = true;
    },
  });
  try {
    await waitUntil(() => log.listening !== undefined || failed, 'the hub to listen');
  } catch (err) {
    sub.unsubscribe();
    throw err;
  }
  if (failed) throw new Error(`the hub failed to start: ${String(error)}`);
  const port = Number(log.listening!.slice(log.listening!.lastIndexOf(':') + 1));
  return {
    port,
    log,
    tun,
    settings,
    get error() {
      return error;
    },
    get completed() {
      return completed;
    },
    stop: () => sub.unsubscribe(),
  };
}

// ---------------------------------------------------------------------------------------------
// Clients

/** A raw client connection over loopback: writes any bytes, decodes what the hub sends. */
export class WireClient {
  /** Frames received by type. */
  readonly received = new Map<number, number>();
  /** The hub's WELCOME or REJECT, once received. */
  welcome: Welcome | undefined;
  reject: Reject | undefined;
  /** Set if the hub's byte stream broke the framing (a hub bug). */
  protocolError: string | undefined;
  /** The socket's error, if any (ECONNRESET, EPIPE... are expected for hostile clients). */
  error: Error | undefined;
  /** True once the socket has closed. */
  closed = false;
  /** Called with every DATA payload (a view valid during the call). */
  onData: ((payload: Uint8Array) => void) | undefined;
  /** Called with every other frame (type and a payload view valid during the call). */
  onControl: ((type: number, payload: Uint8Array) => void) | undefined;
  readonly closed$: Promise<void>;
  private readonly decoder = new FrameDecoder(MAX_BODY_COMPAT);

  private constructor(readonly socket: net.Socket) {
    this.closed$ = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('close', () => (this.closed = true));
    socket.on('error', (err) => (this.error ??= err));
    socket.on('data', (chunk: Buffer) => this.onChunk(chunk));
  }

  /** Connects to the hub on 127.0.0.1:`port`. */
  static connect(port: number, timeoutMs = DEADLINE_MS): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: LOOPBACK, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to ${LOOPBACK}:${port} timed out`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new WireClient(socket));
      });
    });
  }

  /** `ip:port` of this end: what the hub reports as the session's remote. */
  get remote(): string {
    return `${this.socket.localAddress}:${this.socket.localPort}`;
  }

  /** True while bytes can still be written. */
  get writable(): boolean {
    return !this.socket.destroyed && this.socket.writable;
  }

  /** Writes raw bytes; resolves when the socket takes more (drain) or is gone. Never rejects. */
  write(bytes: Uint8Array): Promise<void> {
    if (!this.writable) return Promise.resolve();
    if (this.socket.write(bytes)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Sends HELLO for `address`. */
  hello(address: string, extra: Partial<HelloJson> = {}): void {
    this.socket.write(jsonFrame(FrameType.Hello, { version: PROTOCOL_VERSION, address, prefix: 24, mtu: 1400, caps: [], ...extra }));
  }

  /** Resolves with the hub's WELCOME; rejects on REJECT, close or timeout. */
  async awaitWelcome(timeoutMs = DEADLINE_MS): Promise<Welcome> {
    await waitUntil(() => this.welcome !== undefined || this.reject !== undefined || this.closed, 'WELCOME', timeoutMs);
    if (this.welcome === undefined) throw new Error(`no WELCOME: ${this.reject ? `REJECT ${this.reject.reason}: ${this.reject.message}` : 'connection closed'}`);
    return this.welcome;
  }

  /** Sends DATA frames, one per packet, in one write. Returns socket.write's answer. */
  sendData(packets: readonly Uint8Array[]): boolean {
    if (!this.writable) return false;
    return this.socket.write(encodeFrames(FrameType.Data, packets));
  }

  /** FIN: ends the stream after what is queued. */
  end(): void {
    this.socket.end();
  }

  /** RST: aborts the connection at once. */
  reset(): void {
    if (!this.socket.destroyed) this.socket.resetAndDestroy();
  }

  /** Closes without RST (destroy). */
  destroy(): void {
    this.socket.destroy();
  }

  private onChunk(chunk: Buffer): void {
    if (this.protocolError !== undefined) return;
    let frames;
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.protocolError = `the hub sent a broken stream: ${String(err)}`;
      return;
    }
    for (const f of frames) {
      this.received.set(f.type, (this.received.get(f.type) ?? 0) + 1);
      if (f.type === FrameType.Data) this.onData?.(f.payload);
      else this.onControl?.(f.type, f.payload);
      if (f.type === FrameType.Welcome) {
        const w = decodeControl(FrameType.Welcome, WelcomeCodec, f.payload);
        if (w instanceof ControlDecodeError) this.protocolError = `bad WELCOME: ${w.message}`;
        else this.welcome = w;
      } else if (f.type === FrameType.Reject) {
        const r = decodeControl(FrameType.Reject, RejectCodec, f.payload);
        if (r instanceof ControlDecodeError) this.protocolError = `bad REJECT: ${r.message}`;
        else this.reject = r;
      }
    }
  }
}

/** Bytes of the tag in a GoodClient packet: run nonce (8), sender (4), sequence number (4). */
const TAG_BYTES = 16;

/**
 * A well-behaved member: HELLO, then sequence-numbered DATA to one peer every `everyMs` (a batch of
 * `perTick` packets). It checks what arrives: packets from its peer carry this run's nonce and come
 * in order without gaps; anything else is counted as foreign, and foreign packets claiming the
 * peer's source address as spoofed.
 */
export class GoodClient {
  /** Packets sent to the peer. */
  sent = 0;
  /** Packets from the peer received in order. */
  received = 0;
  /** Sequence numbers skipped (lost) or repeated/out of order. */
  lost = 0;
  misordered = 0;
  /** Packets without this run's tag from the peer. */
  foreign = 0;
  /** Foreign packets whose IPv4 source is the peer's address (forged by someone else). */
  spoofed = 0;
  /** Date.now() of the last packet received from the peer. */
  lastReceivedAt = 0;
  private gapWindow: { maxGap: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly self: number;

  private constructor(
    readonly client: WireClient,
    readonly address: string,
    private readonly nonce: Uint8Array,
  ) {
    this.self = parseIpv4(address)!;
    client.onData = (p) => this.onPacket(p);
  }

  /** Connects to the hub on `port`, says HELLO for `address` (plus `extra`, e.g. a token) and waits for the WELCOME. */
  static async join(port: number, address: string, nonce: Uint8Array, extra: Partial<HelloJson> = {}): Promise<GoodClient> {
    const client = await WireClient.connect(port);
    const good = new GoodClient(client, address, nonce);
    client.hello(address, extra);
    await client.awaitWelcome();
    return good;
  }

  /** Starts sending to `peer` (its tunnel address). */
  startSending(peer: GoodClient, everyMs = 10, perTick = 2): void {
    this.stopSending();
    const dst = parseIpv4(peer.address)!;
    this.timer = setInterval(() => {
      if (!this.client.writable) return;
      const batch: Uint8Array[] = [];
      for (let i = 0; i < perTick; i++) batch.push(this.packet(dst, this.sent++));
      this.client.sendData(batch);
    }, everyMs);
  }

  stopSending(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Starts measuring the longest gap between packets from the peer. */
  watchGaps(): void {
    this.gapWindow = { maxGap: 0 };
    this.lastReceivedAt = Date.now();
  }

  /** The longest gap since watchGaps, including the time since the last packet. */
  maxGap(): number {
    const w = this.gapWindow;
    if (w === undefined) return 0;
    return Math.max(w.maxGap, Date.now() - this.lastReceivedAt);
  }

  private packet(dst: number, seq: number): Uint8Array {
    const p = new Uint8Array(20 + TAG_BYTES + 24);
    p[0] = 0x45;
    p[2] = (p.length >> 8) & 255;
    p[3] = p.length & 255;
    p[8] = 64;
    p[9] = 17;
    const v = new DataView(p.buffer);
    v.setUint32(12, this.self);
    v.setUint32(16, dst);
    p.set(this.nonce, 20);
    v.setUint32(28, this.self);
    v.setUint32(32, seq);
    return p;
  }

  private onPacket(p: Uint8Array): void {
    const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const src = p.length >= 20 ? v.getUint32(12) : -1;
    let tagged = p.length === 20 + TAG_BYTES + 24 && v.getUint32(16) === this.self;
    for (let i = 0; tagged && i < 8; i++) if (p[20 + i] !== this.nonce[i]) tagged = false;
    if (!tagged || v.getUint32(28) !== src) {
      this.foreign++;
      if (src >= 0 && src !== this.self && this.peerAddress !== undefined && src === this.peerAddress) this.spoofed++;
      return;
    }
    const seq = v.getUint32(32);
    if (seq === this.received + this.lost) this.received++;
    else if (seq > this.received + this.lost) {
      this.lost += seq - (this.received + this.lost);
      this.received++;
    } else this.misordered++;
    const now = Date.now();
    if (this.gapWindow !== undefined) this.gapWindow.maxGap = Math.max(this.gapWindow.maxGap, now - this.lastReceivedAt);
    this.lastReceivedAt = now;
  }

  /** The peer's address as u32, set by pairing (for the spoofed count). */
  peerAddress: number | undefined;

  /** Pairs two clients: each sends to the other. */
  static pair(a: GoodClient, b: GoodClient, everyMs = 10, perTick = 2): void {
    a.peerAddress = b.self;
    b.peerAddress = a.self;
    a.startSending(b, everyMs, perTick);
    b.startSending(a, everyMs, perTick);
  }
}
