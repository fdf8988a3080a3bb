// Driver: the UDP data path's channels (pipelines/ports.ts DatagramChannel, UdpHubPort,
// UdpClientPort) over the batched socket and AEAD of the lwt_udp addon. A channel keeps one key
// per direction and epoch (HKDF-SHA256 from the session secret), a replay window per receive epoch,
// and the peer's endpoint; the hub's socket hands each read's datagrams to their channels by the
// receiver id in the header. See docs/protocol.md ("UDP data path") for the format.
import { hkdfSync, randomBytes } from 'node:crypto';
import { Observable, Subject } from 'rxjs';
import { ReplayWindow } from '../../operators/core/replayWindow.js';
import { addDrop, type DropCounts } from '../../operators/core/packet.js';
import { parseIpv4 } from '../../operators/core/address.js';
import type { Arrival, DatagramChannel, PacketBatch, UdpCipher, UdpClientPort, UdpHub, UdpHubPort } from '../../pipelines/ports.js';
import { AeadKey, DatagramStatus, IPV4_DATAGRAM_OVERHEAD, SEAL_OVERHEAD, type DatagramBatch } from './aead.js';
import { UdpSocket, type Endpoint, type SegmentPlan } from './socket.js';
import { SuperPacket, segmentCount } from '../../operators/core/wire/gso.js';
import { coalesce } from '../../operators/core/wire/gro.js';

/** The label both ends of a TLS session give the RFC 5705 exporter for the session secret. */
export const TLS_EXPORTER_LABEL = 'EXPORTER-lightweight-tunnel-udp';
/** HKDF's info: what the derived bytes are for (and which version of it). */
const HKDF_INFO = 'lightweight-tunnel udp keys v1';
/** Datagram types (the header's type byte; the top bit says the sender hears the receiver). */
export const DatagramType = { Data: 1, Keepalive: 2 } as const;
/** The type byte's flag: the sender has heard the receiver lately. */
export const HEARS_YOU = 0x80;
/** A key seals at most this many datagrams before the sender moves to the next epoch's key. */
export const REKEY_AFTER = 2 ** 32;
/** A path MTU assumed until the kernel knows better (Ethernet). */
const DEFAULT_PATH_MTU = 1500;
const EMPTY = new Uint8Array(0);
const KEEPALIVE_PAYLOAD: readonly Uint8Array[] = [EMPTY];

/** The two keys of epoch `epoch` of session `id`: client→hub and hub→client (HKDF-SHA256 from the secret). */
export function epochKeys(secret: Uint8Array, id: number, epoch: number, cipher: UdpCipher): { readonly toHub: AeadKey; readonly toClient: AeadKey } {
  const salt = Buffer.alloc(8);
  salt.writeUInt32BE(id >>> 0, 0);
  salt.writeUInt32BE(epoch >>> 0, 4);
  const okm = new Uint8Array(hkdfSync('sha256', secret, salt, HKDF_INFO, 64));
  try {
    return { toHub: AeadKey.create(cipher, okm.subarray(0, 32)), toClient: AeadKey.create(cipher, okm.subarray(32, 64)) };
  } finally {
    okm.fill(0);
  }
}

/** One receive epoch: its key and the counters it accepted. */
interface ReceiveEpoch {
  readonly epoch: number;
  readonly key: AeadKey;
  readonly window: ReplayWindow;
}

/** Options of a channel's owner (the hub's socket, or a client's). */
interface ChannelOptions {
  readonly socket: UdpSocket;
  /** Which end this is: it seals with the key toward the other and opens with the other's. */
  readonly role: 'hub' | 'client';
  readonly id: number;
  readonly secret: Uint8Array;
  readonly cipher: UdpCipher;
  /** The peer's endpoint when known up front (a client's hub); a hub learns each member's from its datagrams. */
  readonly endpoint?: Endpoint;
  /** The peer may move (a member's NAT rebinding): follow the source of its newest datagram. */
  readonly roams: boolean;
  readonly rekeyAfter: number;
  /** Called when the channel closes (its owner forgets it). */
  readonly onClose: () => void;
  /** Merge each read's runs of one TCP flow into SuperPackets (UdpDriverOptions.coalesce)... */
  readonly coalesce: boolean;
  /** ...in this memory, reset by the socket's owner before each read. */
  readonly arena: ReadArena;
}

/** One session's channel over a socket it may share; its owner hands it the rows of each read that carry its id. */
class Channel implements DatagramChannel {
  readonly #o: ChannelOptions;
  readonly #arrivals = new Subject<Arrival>();
  readonly #drops = new Subject<DropCounts>();
  readonly arrivals$: Observable<Arrival> = this.#arrivals.asObservable();
  readonly drops$: Observable<DropCounts> = this.#drops.asObservable();
  #endpoint: Endpoint | undefined;
  #maxPacket = DEFAULT_PATH_MTU - IPV4_DATAGRAM_OVERHEAD;
  #sendEpoch = 0;
  #sendKey: AeadKey;
  /** The receive epochs kept: the current one and, for a while, the one before. */
  #receive: ReceiveEpoch[];
  /** The next epoch's receive key, once a datagram claimed it (derived once, not per batch). */
  #next: ReceiveEpoch | undefined;
  #closed = false;
  /** Indexes of the payloads the kernel refused during the send in progress (see rejected). */
  #refused: number[] | undefined;
  /** The kernel said EMSGSIZE during the send in progress (the path MTU is probed again after it). */
  #mtuFell = false;
  /** coalesce's scratch (how many packets each output stands for; unused here). */
  readonly #runs: number[] = [];
  /** Segment sizes of the payloads of a send (sealAndSend's plan), reused. */
  #gso = new Uint32Array(64);
  readonly #rx = { packets: 0, bytes: 0 };
  readonly #tx = { packets: 0, bytes: 0 };

  constructor(o: ChannelOptions) {
    this.#o = o;
    const keys = epochKeys(o.secret, o.id, 0, o.cipher);
    this.#sendKey = o.role === 'hub' ? keys.toClient : keys.toHub;
    this.#receive = [{ epoch: 0, key: o.role === 'hub' ? keys.toHub : keys.toClient, window: new ReplayWindow() }];
    if (o.endpoint !== undefined) this.#setEndpoint(o.endpoint);
  }

  send(packets: PacketBatch, hearsUs: boolean): number {
    return this.#seal(packets, DatagramType.Data, hearsUs);
  }

  keepalive(hearsUs: boolean): void {
    this.#seal(KEEPALIVE_PAYLOAD, DatagramType.Keepalive, hearsUs);
  }

  maxPacket(): number {
    return this.#maxPacket;
  }

  stats(): { rx: { packets: number; bytes: number }; tx: { packets: number; bytes: number } } {
    return { rx: { ...this.#rx }, tx: { ...this.#tx } };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sendKey.destroy();
    for (const r of this.#receive) r.key.destroy();
    this.#next?.key.destroy();
    this.#arrivals.complete();
    this.#drops.complete();
    this.#o.onClose();
  }

  /** @internal Datagrams its socket got that no session could take (a client's socket has one channel). */
  refused(drops: DropCounts): void {
    this.#drops.next(drops);
  }

  /** @internal Payload `index` of a send this channel made was refused by the kernel (EMSGSIZE: the path MTU fell). */
  rejected(index: number, code: string): void {
    this.#refused?.push(index);
    this.#drops.next({ [code === 'EMSGSIZE' ? 'too-big' : 'udp-send-error']: 1 });
    if (code === 'EMSGSIZE') this.#mtuFell = true;
  }

  /**
   * @internal Opens and takes this channel's rows of a read (those whose receiver id is its id):
   * per receive epoch (current, next, previous) one native open, then the replay window; emits one
   * arrival with the packets; counts what it refused. `done` marks rows taken (shared scratch).
   */
  take(batch: DatagramBatch, count: number, done: Uint8Array): void {
    if (this.#closed) return;
    const id = this.#o.id;
    const current = this.#receive[0]!;
    let drops: DropCounts | undefined;
    let packets: Uint8Array[] | undefined;
    let hearsUs = false;
    let keepalive = false;
    let newest = -1;
    let newestRow = -1;
    const accept = (r: ReceiveEpoch): void => {
      for (let i = 0; i < count; i++) {
        if (batch.receivers[i] !== id || done[i] !== 0 || batch.status[i] !== DatagramStatus.Opened) continue;
        done[i] = 1;
        const counter = batch.counters[i]!;
        const verdict = r.window.accept(counter);
        if (verdict !== 'ok') {
          drops = addDrop(drops, 'replay');
          continue;
        }
        const type = batch.types[i]! & ~HEARS_YOU;
        if (type === DatagramType.Data) {
          (packets ??= []).push(new Uint8Array(batch.buffer, batch.offsets[i], batch.lengths[i]));
          this.#rx.packets++;
          this.#rx.bytes += batch.lengths[i]!;
        } else if (type === DatagramType.Keepalive) keepalive = true;
        else {
          drops = addDrop(drops, 'malformed-datagram');
          continue;
        }
        if (r === current && counter > newest) {
          newest = counter;
          newestRow = i;
        }
        hearsUs = (batch.types[i]! & HEARS_YOU) !== 0;
      }
    };
    const previousTop = current.window.highest;
    current.key.open(batch, { receiverId: id, epoch: current.epoch & 0xff }, 0, count);
    accept(current);
    // A datagram of the next epoch: the peer rekeyed. Its key is derived once, when such a datagram
    // first arrives, and becomes the current one when one authenticates (the old one stays for
    // stragglers until the next move).
    if (this.#anyPending(batch, count, id, (current.epoch + 1) & 0xff)) {
      const next = (this.#next ??= this.#receiveEpoch(current.epoch + 1));
      if (next.key.open(batch, { receiverId: id, epoch: next.epoch & 0xff }, 0, count) > 0) {
        accept(next);
        for (const old of this.#receive.slice(1)) old.key.destroy();
        this.#receive = [next, current];
        this.#next = undefined;
      }
    }
    const previous = this.#receive[1];
    if (previous !== undefined && previous !== current && this.#anyPending(batch, count, id, previous.epoch & 0xff)) {
      previous.key.open(batch, { receiverId: id, epoch: previous.epoch & 0xff }, 0, count);
      accept(previous);
    }
    for (let i = 0; i < count; i++) {
      if (batch.receivers[i] !== id || done[i] !== 0) continue;
      done[i] = 1;
      drops = addDrop(drops, batch.status[i] === DatagramStatus.Malformed ? 'malformed-datagram' : 'bad-tag');
    }
    // A member that moved (NAT rebinding, another network) keeps its session: its newest datagram's source is where it is now.
    if (newestRow >= 0 && newest > previousTop && this.#o.roams) {
      const at = { address: batch.addrs[newestRow]!, port: batch.ports[newestRow]! };
      if (this.#endpoint === undefined || at.address !== this.#endpoint.address || at.port !== this.#endpoint.port) this.#setEndpoint(at);
    }
    if (drops !== undefined) this.#drops.next(drops);
    // Views into the read's arena (and coalesced runs in the read's own memory): valid during this
    // emission, as PacketBatch says; a consumer that keeps one copies it.
    if (packets !== undefined || keepalive) this.#arrivals.next({ packets: packets === undefined ? [] : this.#o.coalesce ? coalesce(packets, this.#runs, this.#o.arena.alloc) : packets, hearsUs });
  }

  /** Whether a row of this channel is still unopened and carries epoch byte `epoch` (header byte 1, intact until opened). */
  #anyPending(batch: DatagramBatch, count: number, id: number, epoch: number): boolean {
    const arena = arenaOf(batch);
    for (let i = 0; i < count; i++) if (batch.receivers[i] === id && batch.status[i] === DatagramStatus.Pending && arena[batch.offsets[i]! + 1] === epoch) return true;
    return false;
  }

  /** The receive key and a fresh replay window of `epoch`. */
  #receiveEpoch(epoch: number): ReceiveEpoch {
    const keys = epochKeys(this.#o.secret, this.#o.id, epoch, this.#o.cipher);
    (this.#o.role === 'hub' ? keys.toClient : keys.toHub).destroy();
    return { epoch, key: this.#o.role === 'hub' ? keys.toHub : keys.toClient, window: new ReplayWindow() };
  }

  #setEndpoint(at: Endpoint): void {
    this.#endpoint = at;
    let mtu = DEFAULT_PATH_MTU;
    try {
      mtu = this.#o.socket.pathMtu(at);
    } catch {
      // keep the default: the kernel will say EMSGSIZE if it is wrong
    }
    this.#maxPacket = Math.max(0, mtu - IPV4_DATAGRAM_OVERHEAD);
  }

  #seal(payloads: readonly Uint8Array[], type: number, hearsUs: boolean): number {
    const to = this.#endpoint;
    if (this.#closed || to === undefined || payloads.length === 0) return 0;
    // Super-packets leave as one datagram per segment: the rows they take, and their segment sizes for the addon.
    let rows = payloads.length;
    let plan: SegmentPlan | undefined;
    for (let i = 0; i < payloads.length; i++) {
      const p = payloads[i]!;
      if (!(p instanceof SuperPacket)) continue;
      if (plan === undefined) {
        if (this.#gso.length < payloads.length) this.#gso = new Uint32Array(Math.max(payloads.length, 2 * this.#gso.length));
        this.#gso.fill(0, 0, payloads.length);
        plan = { gso: this.#gso, maxPacket: this.#maxPacket };
      }
      this.#gso[i] = p.gsoSize;
      rows += segmentCount(p, this.#maxPacket) - 1;
    }
    if (this.#sendKey.nextCounter + rows >= this.#o.rekeyAfter) {
      // Before the counter limit: the next epoch's key (both ends derive it alike).
      this.#sendEpoch++;
      const keys = epochKeys(this.#o.secret, this.#o.id, this.#sendEpoch, this.#o.cipher);
      this.#sendKey.destroy();
      this.#sendKey = this.#o.role === 'hub' ? keys.toClient : keys.toHub;
      (this.#o.role === 'hub' ? keys.toHub : keys.toClient).destroy();
    }
    const header = { type: type | (hearsUs ? HEARS_YOU : 0), epoch: this.#sendEpoch & 0xff, receiverId: this.#o.id };
    owners.set(this.#o.socket, this);
    const refused: number[] = (this.#refused = []);
    const sent = this.#o.socket.sealAndSend(this.#sendKey, payloads, header, to, 0, -1, plan);
    owners.delete(this.#o.socket);
    this.#refused = undefined;
    // The path MTU fell under some of them: probe it once for the whole send.
    if (this.#mtuFell) {
      this.#mtuFell = false;
      if (this.#endpoint !== undefined) this.#setEndpoint(this.#endpoint);
    }
    if (type === DatagramType.Data) {
      // What the kernel refused is consumed (counted as a drop by rejected()) but did not go over UDP.
      const skip = refused.length === 0 ? undefined : new Set(refused);
      for (let i = 0; i < sent; i++) {
        if (skip?.has(i) === true) continue;
        const p = payloads[i]!;
        this.#tx.packets += plan !== undefined && p instanceof SuperPacket ? segmentCount(p, plan.maxPacket) : 1;
        this.#tx.bytes += p.length;
      }
    }
    return sent;
  }
}

/**
 * Memory for the super-packets one read coalesces: handed out from one buffer and reused from the
 * start by the next read (what a read hands out is valid during its emissions, as PacketBatch
 * says). It grows to what the largest read needs, at most the read's own bytes.
 */
class ReadArena {
  #buf: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  #at = 0;

  /** The next read begins: everything handed out before may be overwritten. */
  reset(): void {
    this.#at = 0;
  }

  /** `bytes` bytes for this read (a bigger buffer when it is full; views handed out keep the old one alive). */
  readonly alloc = (bytes: number): Uint8Array<ArrayBuffer> => {
    if (this.#at + bytes > this.#buf.length) {
      this.#buf = new Uint8Array(Math.max(2 * this.#buf.length, bytes, 256 << 10));
      this.#at = 0;
    }
    this.#at += bytes;
    return this.#buf.subarray(this.#at - bytes, this.#at);
  };
}

/** A byte view of a batch's arena (one per batch, kept). */
const arenas = new WeakMap<DatagramBatch, Uint8Array>();
function arenaOf(batch: DatagramBatch): Uint8Array {
  let a = arenas.get(batch);
  if (a === undefined) {
    a = new Uint8Array(batch.buffer);
    arenas.set(batch, a);
  }
  return a;
}

/** Which channel is sending on a socket right now (so a refusal reaches the channel that caused it). */
const owners = new WeakMap<UdpSocket, Channel>();

/** Options of the UDP drivers. */
export interface UdpDriverOptions {
  /** The address to bind (the hub: its listener's host; a client: any). */
  readonly host?: string;
  readonly cipher?: UdpCipher;
  /** Datagrams per key before the next epoch (tests lower it to see rekeying). */
  readonly rekeyAfter?: number;
  /**
   * Merge each read's runs of consecutive segments of one TCP flow into SuperPackets, as GRO would
   * (operators/core/wire/gro.ts): one copy instead of two, and the TUN device takes one write per
   * run. Only where everything downstream takes SuperPackets: a TUN device that offloads. Default false.
   */
  readonly coalesce?: boolean;
}

/** The rows of a read no channel took (`done` 0): too short to be sealed, or of no session. */
function unclaimedDrops(batch: DatagramBatch, count: number, done: Uint8Array): DropCounts | undefined {
  let drops: DropCounts | undefined;
  for (let i = 0; i < count; i++) if (done[i] === 0) drops = addDrop(drops, batch.lengths[i]! < SEAL_OVERHEAD ? 'malformed-datagram' : 'unknown-session');
  return drops;
}

/** The hub's UDP port: a socket bound beside the listener that hands each datagram to its session's channel. */
export function makeUdpHub(options: UdpDriverOptions = {}): UdpHubPort {
  const cipher = options.cipher ?? 'aes-256-gcm';
  return {
    bind: (port) =>
      new Observable<UdpHub>((subscriber) => {
        let socket: UdpSocket;
        try {
          socket = UdpSocket.open({ host: options.host ?? '0.0.0.0', port, onRejected: (i, code) => owners.get(socket)?.rejected(i, code) });
        } catch (err) {
          subscriber.error(err);
          return;
        }
        const channels = new Map<number, Channel>();
        const drops$ = new Subject<DropCounts>();
        const done = new Uint8Array(socket.receive.capacity);
        const arena = new ReadArena();
        socket.read(
          (batch, count) => {
            done.fill(0, 0, count);
            arena.reset();
            for (let i = 0; i < count; i++) {
              if (done[i] !== 0) continue;
              const ch = channels.get(batch.receivers[i]!);
              if (ch !== undefined) ch.take(batch, count, done);
            }
            const drops = unclaimedDrops(batch, count, done);
            if (drops !== undefined) drops$.next(drops);
          },
          (err) => subscriber.error(err),
        );
        subscriber.next({
          port: socket.localPort,
          cipher,
          randomSecret: () => new Uint8Array(randomBytes(32)),
          channel: (id, secret) => {
            channels.get(id)?.close();
            const ch = new Channel({ socket, role: 'hub', id, secret, cipher, roams: true, rekeyAfter: options.rekeyAfter ?? REKEY_AFTER, coalesce: options.coalesce ?? false, arena, onClose: () => channels.get(id) === ch && channels.delete(id) });
            channels.set(id, ch);
            return ch;
          },
          drops$: drops$.asObservable(),
        });
        return () => {
          for (const ch of [...channels.values()]) ch.close();
          drops$.complete();
          socket.close();
        };
      }),
  };
}

/** A client's UDP: a socket of its own per session, talking to the hub's endpoint. */
export function makeUdpClient(options: UdpDriverOptions = {}): UdpClientPort {
  return {
    open: (host, port, id, secret, cipher) =>
      new Observable<DatagramChannel>((subscriber) => {
        const address = parseIpv4(host);
        if (address === undefined) {
          subscriber.error(new Error(`the UDP data path needs the hub's IPv4 address, not ${JSON.stringify(host)}`));
          return;
        }
        let socket: UdpSocket;
        try {
          socket = UdpSocket.open({ host: options.host ?? '0.0.0.0', port: 0, onRejected: (i, code) => owners.get(socket)?.rejected(i, code) });
        } catch (err) {
          subscriber.error(err);
          return;
        }
        const arena = new ReadArena();
        const channel = new Channel({ socket, role: 'client', id, secret, cipher, endpoint: { address, port }, roams: false, rekeyAfter: options.rekeyAfter ?? REKEY_AFTER, coalesce: options.coalesce ?? false, arena, onClose: () => socket.close() });
        const done = new Uint8Array(socket.receive.capacity);
        socket.read(
          (batch, count) => {
            done.fill(0, 0, count);
            arena.reset();
            channel.take(batch, count, done);
            const drops = unclaimedDrops(batch, count, done);
            if (drops !== undefined) channel.refused(drops);
          },
          (err) => subscriber.error(err),
        );
        subscriber.next(channel);
        return () => channel.close();
      }),
  };
}
