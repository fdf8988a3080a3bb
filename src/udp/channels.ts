// Driver: the UDP data path's channels (pipelines/ports.ts DatagramChannel, PairChannel, UdpHubPort,
// UdpClientPort) over the batched socket and AEAD of the lwt_udp addon. A channel keeps one key
// per direction and epoch (HKDF-SHA256 from a secret), a replay window per receive epoch, and the
// peer's endpoint. A socket carries several channels: each read's datagrams go to the channel of
// the receiver id in their header (ChannelSocket, the one demultiplexing rule of the hub's socket
// and a client's), and a client's socket carries its hub channel and a pair channel per introduced
// peer (docs/direct.md). See docs/protocol.md ("UDP data path") for the format.
import { hkdfSync, randomBytes } from 'node:crypto';
import { Observable, Subject } from 'rxjs';
import { ReplayWindow } from '../../operators/core/replayWindow.js';
import { addDrop, type DropCounts } from '../../operators/core/packet.js';
import { parseIpv4 } from '../../operators/core/address.js';
import { INTRODUCTION_LIMITS } from '../../pipelines/introductions.js';
import type { Arrival, DatagramChannel, PacketBatch, PairArrival, PairChannel, PairKeys, PairOpening, UdpCipher, UdpClientPort, UdpClientSocket, UdpHub, UdpHubPort } from '../../pipelines/ports.js';
import { AeadKey, DatagramStatus, IPV4_DATAGRAM_OVERHEAD, SEAL_OVERHEAD, type DatagramBatch, type OpenSelector } from './aead.js';
import type { UdpError } from './errors.js';
import { UdpSocket, type Endpoint, type SegmentPlan } from './socket.js';
import { SuperPacket, segmentCount } from '../../operators/core/wire/gso.js';
import { coalesce } from '../../operators/core/wire/gro.js';

/** The label both ends of a TLS session give the RFC 5705 exporter for the session secret. */
export const TLS_EXPORTER_LABEL = 'EXPORTER-lightweight-tunnel-udp';
/** HKDF's info: what the derived bytes are for (and which version of it). */
const HKDF_INFO = 'lightweight-tunnel udp keys v1';
/** Datagram types (the header's type byte; the top bit says the sender hears the receiver). PING and PONG only on pair channels. */
export const DatagramType = { Data: 1, Keepalive: 2, Ping: 3, Pong: 4 } as const;
/** The payload of a PING or a PONG: a u32 token (BE), chosen by the pinging side and echoed. */
export const PING_BYTES = 4;
/** The type byte's flag: the sender has heard the receiver lately. */
export const HEARS_YOU = 0x80;
/** A key seals at most this many datagrams before the sender moves to the next epoch's key. */
export const REKEY_AFTER = 2 ** 32;
/** The most pair channels one client socket holds: the hub's own limit of introduced peers per member (a hub that exceeds it is refused). */
export const MAX_PAIR_CHANNELS = INTRODUCTION_LIMITS.maxPairs;
/** A path MTU assumed until the kernel knows better (Ethernet). */
const DEFAULT_PATH_MTU = 1500;
const EMPTY = new Uint8Array(0);
const KEEPALIVE_PAYLOAD: readonly Uint8Array[] = [EMPTY];
/** How long the drops a read counted may wait before they are reported (at most one report per channel per this long, however many datagrams a flood brings). */
export const DROP_REPORT_MS = 100;
/** Marks of a read's rows (ChannelSocket's scratch): no channel took it yet, a channel took it and dropped it, a channel accepted it. */
const ROW_FREE = 0;
const ROW_DROPPED = 1;
const ROW_ACCEPTED = 2;

/** Which way a key seals: the first 32 derived bytes are the client→hub key, the last 32 the hub→client one. */
export type KeyDirection = 'toHub' | 'toClient';

/**
 * The key of direction `direction` of epoch `epoch` of receiver id `id`: HKDF-SHA256 of `secret`
 * with salt id (u32 BE) ‖ epoch (u32 BE), 64 bytes, the half that direction takes (docs/protocol.md).
 * A pair's datagrams to receiver id r are sealed with r's `toHub` key of the pair key (docs/direct.md).
 */
export function epochKey(secret: Uint8Array, id: number, epoch: number, cipher: UdpCipher, direction: KeyDirection): AeadKey {
  const salt = Buffer.alloc(8);
  salt.writeUInt32BE(id >>> 0, 0);
  salt.writeUInt32BE(epoch >>> 0, 4);
  const okm = new Uint8Array(hkdfSync('sha256', secret, salt, HKDF_INFO, 64));
  try {
    return AeadKey.create(cipher, direction === 'toHub' ? okm.subarray(0, 32) : okm.subarray(32, 64));
  } finally {
    okm.fill(0);
  }
}

/** A channel's keys: the receiver id each direction's datagrams carry, and the key of each epoch of each direction. */
interface Keying {
  /** The receiver id of the datagrams this side sends. */
  readonly sendId: number;
  /** The receiver id of the datagrams this side takes. */
  readonly receiveId: number;
  sendKey(epoch: number): AeadKey;
  receiveKey(epoch: number): AeadKey;
  /** Forgets the secret (the channel closed). */
  wipe(): void;
}

/** Keys from a copy of `secret` (wiped by wipe()): sending under `send.id` with its `send.direction` key, receiving likewise. */
function keying(secret: Uint8Array, cipher: UdpCipher, send: { readonly id: number; readonly direction: KeyDirection }, receive: { readonly id: number; readonly direction: KeyDirection }): Keying {
  const own = Uint8Array.from(secret);
  return {
    sendId: send.id,
    receiveId: receive.id,
    sendKey: (epoch) => epochKey(own, send.id, epoch, cipher, send.direction),
    receiveKey: (epoch) => epochKey(own, receive.id, epoch, cipher, receive.direction),
    wipe: () => own.fill(0),
  };
}

/** A session's keys: both directions under the session id; the client seals with the client→hub key, the hub with the other. */
function sessionKeying(secret: Uint8Array, id: number, cipher: UdpCipher, role: 'hub' | 'client'): Keying {
  const toHub = { id, direction: 'toHub' } as const;
  const toClient = { id, direction: 'toClient' } as const;
  return role === 'client' ? keying(secret, cipher, toHub, toClient) : keying(secret, cipher, toClient, toHub);
}

/** A pair's keys: datagrams to receiver id r are sealed with r's client→hub key of the pair key, so the two directions (two ids) have two keys. */
function pairKeying(k: PairKeys): Keying {
  return keying(k.key, k.cipher, { id: k.peerId, direction: 'toHub' }, { id: k.id, direction: 'toHub' });
}

/** One receive epoch: its key, which rows it opens, and the counters it accepted. */
interface ReceiveEpoch {
  readonly epoch: number;
  readonly key: AeadKey;
  readonly selector: OpenSelector;
  readonly window: ReplayWindow;
}

/** The drops what arrives can cause. */
type ArrivalDrop = 'replay' | 'bad-tag' | 'malformed-datagram' | 'unknown-session';

/**
 * Drops of datagrams that arrived, counted in place (nothing allocated per datagram or per read)
 * and reported as one DropCounts at most DROP_REPORT_MS after the first of them: a flood of
 * hostile datagrams costs a report per channel per DROP_REPORT_MS, however fast it comes.
 */
class DropTally {
  #replay = 0;
  #badTag = 0;
  #malformed = 0;
  #unknown = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #report: (drops: DropCounts) => void;
  readonly #flush = (): void => this.flush();

  /** `report` hears each report. */
  constructor(report: (drops: DropCounts) => void) {
    this.#report = report;
  }

  /** One more drop of `reason`; a report follows within DROP_REPORT_MS. */
  add(reason: ArrivalDrop): void {
    if (reason === 'replay') this.#replay++;
    else if (reason === 'bad-tag') this.#badTag++;
    else if (reason === 'malformed-datagram') this.#malformed++;
    else this.#unknown++;
    // An idle timer: it never keeps the process alive on its own.
    this.#timer ??= setTimeout(this.#flush, DROP_REPORT_MS).unref();
  }

  /** Reports what was counted (if anything) now, and starts counting afresh. */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    let drops: DropCounts | undefined;
    if (this.#replay > 0) drops = addDrop(drops, 'replay', this.#replay);
    if (this.#badTag > 0) drops = addDrop(drops, 'bad-tag', this.#badTag);
    if (this.#malformed > 0) drops = addDrop(drops, 'malformed-datagram', this.#malformed);
    if (this.#unknown > 0) drops = addDrop(drops, 'unknown-session', this.#unknown);
    this.#replay = this.#badTag = this.#malformed = this.#unknown = 0;
    if (drops !== undefined) this.#report(drops);
  }
}

/** How a channel knows where its peer is. */
type EndpointRule =
  /** Given up front and never changed (a client's hub). */
  | { readonly kind: 'fixed'; readonly at: Endpoint }
  /** The source of the peer's newest authenticated datagram: a member may move (NAT rebinding). */
  | { readonly kind: 'roams' }
  /** Whatever the owner sets (a pair channel: its direct path's choice), never a source on its own. */
  | { readonly kind: 'owner' };

/** What a socket asks of a channel on it. */
interface SocketChannel {
  /** Takes its rows of a read (see Channel.take). */
  take(batch: DatagramBatch, count: number, done: Uint8Array): void;
  /** A payload of its send in progress was refused by the kernel. */
  rejected(index: number, code: string): void;
  close(): void;
}

/** Options of a channel. */
interface ChannelOptions<A extends Arrival> {
  readonly socket: ChannelSocket;
  readonly keys: Keying;
  readonly endpoint: EndpointRule;
  readonly rekeyAfter: number;
  /** One arrival of `packets`, the flag of the last of its datagrams, (a pair channel) their source, and the tokens of its newest PING and PONG. */
  readonly arrival: (packets: PacketBatch, hearsUs: boolean, address: number, port: number, ping: number | undefined, pong: number | undefined) => A;
  /** A pair channel: one arrival per run of a read's datagrams from one source (instead of one per read), and PING and PONG datagrams taken (to others they are malformed). */
  readonly pair: boolean;
  /** Called once when the channel closes. */
  readonly onClose?: () => void;
}

/** The arrival of a session channel: one per read. */
const sessionArrival = (packets: PacketBatch, hearsUs: boolean): Arrival => ({ packets, hearsUs });
/** The arrival of a pair channel: one per run of datagrams from one source, with the source. */
const pairArrival = (packets: PacketBatch, hearsUs: boolean, address: number, port: number, ping: number | undefined, pong: number | undefined): PairArrival => {
  const from = { address, port };
  if (ping === undefined) return pong === undefined ? { packets, hearsUs, from } : { packets, hearsUs, from, pong };
  return pong === undefined ? { packets, hearsUs, from, ping } : { packets, hearsUs, from, ping, pong };
};

/** The payload of a PING or PONG carrying `token`; throws RangeError for a token that is not a u32. */
function tokenPayload(token: number): readonly Uint8Array[] {
  if (!Number.isInteger(token) || token < 0 || token > 0xffffffff) throw new RangeError(`not a ping token: ${token}`);
  const b = new Uint8Array(PING_BYTES);
  new DataView(b.buffer).setUint32(0, token);
  return [b];
}

/** `to` itself, when it is an IPv4 address (u32) and a port 1..65535; throws RangeError otherwise. */
function checkedEndpoint(to: Endpoint): Endpoint {
  const { address, port } = to;
  if (!Number.isInteger(address) || address < 0 || address > 0xffffffff || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`not a UDP endpoint: ${JSON.stringify(to)}`);
  }
  return { address, port };
}

/**
 * One channel over a socket it may share (the hub's session channels, a client's hub channel, a
 * pair channel): the keys, counters, replay windows and rekeying of the UDP data path, in one place.
 * Its socket hands it the rows of each read that carry its receiver id.
 */
class Channel<A extends Arrival = Arrival> implements DatagramChannel, SocketChannel {
  readonly #o: ChannelOptions<A>;
  readonly #keys: Keying;
  readonly #arrivals = new Subject<A>();
  readonly #drops = new Subject<DropCounts>();
  readonly arrivals$: Observable<A> = this.#arrivals.asObservable();
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
  /** What arrived and was dropped, reported together. */
  readonly #tally: DropTally;
  /** The read being taken: how many rows were accepted, and the newest counter of the current epoch and its row. */
  #accepted = 0;
  #newest = -1;
  #newestRow = -1;
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

  constructor(o: ChannelOptions<A>) {
    this.#o = o;
    this.#keys = o.keys;
    this.#tally = new DropTally((drops) => this.#drops.next(drops));
    this.#sendKey = o.keys.sendKey(0);
    this.#receive = [this.#receiveEpoch(0)];
    if (o.endpoint.kind === 'fixed') this.setEndpoint(o.endpoint.at);
    o.socket.add(o.keys.receiveId, this);
  }

  send(packets: PacketBatch, hearsUs: boolean): number {
    return this.sealTo(packets, DatagramType.Data, hearsUs, this.#endpoint);
  }

  keepalive(hearsUs: boolean): void {
    this.sealTo(KEEPALIVE_PAYLOAD, DatagramType.Keepalive, hearsUs, this.#endpoint);
  }

  maxPacket(): number {
    return this.#maxPacket;
  }

  endpoint(): Endpoint | undefined {
    return this.#endpoint;
  }

  stats(): { rx: { packets: number; bytes: number }; tx: { packets: number; bytes: number } } {
    return { rx: { ...this.#rx }, tx: { ...this.#tx } };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#o.socket.remove(this.#keys.receiveId, this);
    this.#sendKey.destroy();
    for (const r of this.#receive) r.key.destroy();
    this.#next?.key.destroy();
    this.#keys.wipe();
    this.#tally.flush();
    this.#arrivals.complete();
    this.#drops.complete();
    this.#o.onClose?.();
  }

  /** @internal Payload `index` of a send this channel made was refused by the kernel (EMSGSIZE: the path MTU fell). */
  rejected(index: number, code: string): void {
    this.#refused?.push(index);
    this.#drops.next({ [code === 'EMSGSIZE' ? 'too-big' : 'udp-send-error']: 1 });
    if (code === 'EMSGSIZE') this.#mtuFell = true;
  }

  /**
   * @internal Opens and takes this channel's rows of a read (those whose receiver id is its
   * receive id): per receive epoch (current, next, previous) one native open, then the replay
   * window; counts what it refused, then emits its arrivals (rows in read order). Marks the rows
   * it took in `done` (the socket's scratch). What fails to open or is a replay changes nothing and
   * allocates nothing: the only exception is the first datagram claiming the next epoch, which has
   * that epoch's key derived once (the key a genuine rekey derives anyway).
   */
  take(batch: DatagramBatch, count: number, done: Uint8Array): void {
    if (this.#closed) return;
    const id = this.#keys.receiveId;
    const current = this.#receive[0]!;
    this.#accepted = 0;
    this.#newest = -1;
    this.#newestRow = -1;
    const previousTop = current.window.highest;
    current.key.open(batch, current.selector, 0, count);
    this.#accept(batch, count, done, current, true);
    // A datagram of the next epoch: the peer rekeyed. Its key is derived once, when such a datagram
    // first arrives, and becomes the current one when one authenticates (the old one stays for
    // stragglers until the next move).
    if (this.#anyPending(batch, count, id, (current.epoch + 1) & 0xff)) {
      const next = (this.#next ??= this.#receiveEpoch(current.epoch + 1));
      if (next.key.open(batch, next.selector, 0, count) > 0) {
        this.#accept(batch, count, done, next, false);
        for (const old of this.#receive.slice(1)) old.key.destroy();
        this.#receive = [next, current];
        this.#next = undefined;
      }
    }
    const previous = this.#receive[1];
    if (previous !== undefined && previous !== current && this.#anyPending(batch, count, id, previous.epoch & 0xff)) {
      previous.key.open(batch, previous.selector, 0, count);
      this.#accept(batch, count, done, previous, false);
    }
    for (let i = 0; i < count; i++) {
      if (batch.receivers[i] !== id || done[i] !== ROW_FREE) continue;
      done[i] = ROW_DROPPED;
      this.#tally.add(batch.status[i] === DatagramStatus.Malformed ? 'malformed-datagram' : 'bad-tag');
    }
    // A member that moved (NAT rebinding, another network) keeps its session: its newest datagram's source is where it is now.
    const row = this.#newestRow;
    if (row >= 0 && this.#newest > previousTop && this.#o.endpoint.kind === 'roams') {
      const was = this.#endpoint;
      if (was === undefined || batch.addrs[row] !== was.address || batch.ports[row] !== was.port) this.setEndpoint({ address: batch.addrs[row]!, port: batch.ports[row]! });
    }
    if (this.#accepted > 0) this.#emit(batch, count, done, id);
  }

  /** Takes the rows epoch `r` opened: the replay window, then the type; marks each accepted or dropped. */
  #accept(batch: DatagramBatch, count: number, done: Uint8Array, r: ReceiveEpoch, isCurrent: boolean): void {
    const id = this.#keys.receiveId;
    for (let i = 0; i < count; i++) {
      if (batch.receivers[i] !== id || done[i] !== ROW_FREE || batch.status[i] !== DatagramStatus.Opened) continue;
      done[i] = ROW_DROPPED;
      const counter = batch.counters[i]!;
      if (r.window.accept(counter) !== 'ok') {
        this.#tally.add('replay');
        continue;
      }
      const type = batch.types[i]! & ~HEARS_YOU;
      const ping = type === DatagramType.Ping || type === DatagramType.Pong;
      if ((type !== DatagramType.Data && type !== DatagramType.Keepalive && !ping) || (ping && (!this.#o.pair || batch.lengths[i] !== PING_BYTES))) {
        this.#tally.add('malformed-datagram');
        continue;
      }
      done[i] = ROW_ACCEPTED;
      this.#accepted++;
      if (isCurrent && counter > this.#newest) {
        this.#newest = counter;
        this.#newestRow = i;
      }
    }
  }

  /**
   * Emits the accepted rows of this channel in read order: one arrival, or (a pair channel) one per run
   * of rows from one source. Packets are views into the read's arena (and coalesced runs in the
   * read's own memory): valid during this emission, as PacketBatch says; a consumer that keeps one copies it.
   */
  #emit(batch: DatagramBatch, count: number, done: Uint8Array, id: number): void {
    let packets: Uint8Array[] | undefined;
    let hearsUs = false;
    let address = -1;
    let port = -1;
    let ping: number | undefined;
    let pong: number | undefined;
    for (let i = 0; i < count; i++) {
      if (done[i] !== ROW_ACCEPTED || batch.receivers[i] !== id) continue;
      if (this.#o.pair && address >= 0 && (batch.addrs[i] !== address || batch.ports[i] !== port)) {
        this.#arrive(packets, hearsUs, address, port, ping, pong);
        packets = undefined;
        ping = pong = undefined;
      }
      address = batch.addrs[i]!;
      port = batch.ports[i]!;
      const type = batch.types[i]!;
      if ((type & ~HEARS_YOU) === DatagramType.Data) {
        (packets ??= []).push(new Uint8Array(batch.buffer, batch.offsets[i], batch.lengths[i]));
        this.#rx.packets++;
        this.#rx.bytes += batch.lengths[i]!;
      } else if ((type & ~HEARS_YOU) === DatagramType.Ping) ping = tokenAt(batch, i);
      else if ((type & ~HEARS_YOU) === DatagramType.Pong) pong = tokenAt(batch, i);
      hearsUs = (type & HEARS_YOU) !== 0;
    }
    this.#arrive(packets, hearsUs, address, port, ping, pong);
  }

  #arrive(packets: Uint8Array[] | undefined, hearsUs: boolean, address: number, port: number, ping: number | undefined, pong: number | undefined): void {
    const out = packets === undefined ? [] : this.#o.socket.coalesce ? coalesce(packets, this.#runs, this.#o.socket.arena.alloc) : packets;
    this.#arrivals.next(this.#o.arrival(out, hearsUs, address, port, ping, pong));
  }

  /** Whether a row of this channel is still unopened and carries epoch byte `epoch` (header byte 1, intact until opened). */
  #anyPending(batch: DatagramBatch, count: number, id: number, epoch: number): boolean {
    const arena = arenaOf(batch);
    for (let i = 0; i < count; i++) if (batch.receivers[i] === id && batch.status[i] === DatagramStatus.Pending && arena[batch.offsets[i]! + 1] === epoch) return true;
    return false;
  }

  /** The receive key, the rows it opens and a fresh replay window of `epoch`. */
  #receiveEpoch(epoch: number): ReceiveEpoch {
    return { epoch, key: this.#keys.receiveKey(epoch), selector: { receiverId: this.#keys.receiveId, epoch: epoch & 0xff }, window: new ReplayWindow() };
  }

  /** Datagrams to the peer go to `at` from now on (undefined: nowhere); the largest packet follows the kernel's path MTU toward it. */
  protected setEndpoint(at: Endpoint | undefined): void {
    this.#endpoint = at;
    let mtu = DEFAULT_PATH_MTU;
    if (at !== undefined) {
      try {
        mtu = this.#o.socket.udp.pathMtu(at);
      } catch {
        // keep the default: the kernel will say EMSGSIZE if it is wrong
      }
    }
    this.#maxPacket = Math.max(0, mtu - IPV4_DATAGRAM_OVERHEAD);
  }

  /** Seals `payloads` as datagrams of `type` and sends them to `to`; returns how many went (nothing without an endpoint). */
  protected sealTo(payloads: readonly Uint8Array[], type: number, hearsUs: boolean, to: Endpoint | undefined): number {
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
      this.#sendKey.destroy();
      this.#sendKey = this.#keys.sendKey(this.#sendEpoch);
    }
    const header = { type: type | (hearsUs ? HEARS_YOU : 0), epoch: this.#sendEpoch & 0xff, receiverId: this.#keys.sendId };
    const socket = this.#o.socket;
    const refused: number[] = (this.#refused = []);
    socket.sending = this;
    let sent: number;
    try {
      sent = socket.udp.sealAndSend(this.#sendKey, payloads, header, to, 0, -1, plan);
    } finally {
      socket.sending = undefined;
      this.#refused = undefined;
    }
    // The path MTU fell under some of them: probe it once for the whole send.
    if (this.#mtuFell) {
      this.#mtuFell = false;
      if (this.#endpoint !== undefined) this.setEndpoint(this.#endpoint);
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

/** A pair channel (docs/direct.md): keyed from the pair key, sending under the peer's id, its endpoint its owner's to set. */
class Pair extends Channel<PairArrival> implements PairChannel {
  readonly id: number;
  readonly peerId: number;

  constructor(socket: ChannelSocket, keys: PairKeys, rekeyAfter: number, onClose: () => void) {
    super({ socket, keys: pairKeying(keys), endpoint: { kind: 'owner' }, rekeyAfter, arrival: pairArrival, pair: true, onClose });
    this.id = keys.id;
    this.peerId = keys.peerId;
  }

  keepaliveTo(to: Endpoint, hearsUs: boolean): void {
    this.sealTo(KEEPALIVE_PAYLOAD, DatagramType.Keepalive, hearsUs, checkedEndpoint(to));
  }

  ping(token: number, hearsUs: boolean): void {
    this.sealTo(tokenPayload(token), DatagramType.Ping, hearsUs, this.endpoint());
  }

  pong(token: number, to: Endpoint, hearsUs: boolean): void {
    this.sealTo(tokenPayload(token), DatagramType.Pong, hearsUs, checkedEndpoint(to));
  }

  use(to: Endpoint | undefined): void {
    this.setEndpoint(to === undefined ? undefined : checkedEndpoint(to));
  }
}

/** The u32 token of an opened PING or PONG row (its PING_BYTES of plaintext, checked by #accept). */
function tokenAt(batch: DatagramBatch, row: number): number {
  const a = arenaOf(batch);
  const at = batch.offsets[row]!;
  return ((a[at]! << 24) | (a[at + 1]! << 16) | (a[at + 2]! << 8) | a[at + 3]!) >>> 0;
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

/**
 * One UDP socket and the channels on it by receiver id: each read's datagrams go to the channel of
 * their receiver id (the one demultiplexing rule, for the hub's socket and a client's), and what no
 * channel takes is counted (`unknown-session`, or `malformed-datagram` when too short to carry a
 * header) in a DropTally, without anything allocated. Its channels share the read's scratch and arena.
 */
class ChannelSocket {
  readonly udp: UdpSocket;
  /** The channels coalesce their arrivals (UdpDriverOptions.coalesce)... */
  readonly coalesce: boolean;
  /** ...into this memory, reset before each read. */
  readonly arena = new ReadArena();
  /** The channel sending right now, so that a refusal reaches the channel that caused it. */
  sending: SocketChannel | undefined;
  readonly #channels = new Map<number, SocketChannel>();
  /** Per row of a read: ROW_FREE, ROW_DROPPED or ROW_ACCEPTED. */
  readonly #done: Uint8Array;
  /** The datagrams no channel took. */
  readonly #unclaimed: DropTally;

  /** Binds a socket to host:port and starts reading; throws UdpError. `unclaimed` hears each read's datagrams of no channel, `failed` a socket error (reading stops). */
  constructor(o: { readonly host: string; readonly port: number; readonly coalesce: boolean }, unclaimed: (drops: DropCounts) => void, failed: (err: UdpError) => void) {
    this.coalesce = o.coalesce;
    this.#unclaimed = new DropTally(unclaimed);
    this.udp = UdpSocket.open({ host: o.host, port: o.port, onRejected: (i, code) => this.sending?.rejected(i, code) });
    this.#done = new Uint8Array(this.udp.receive.capacity);
    try {
      this.udp.read((batch, count) => this.#onRead(batch, count), failed);
    } catch (err) {
      this.udp.close();
      throw err;
    }
  }

  /** A read: each row to the channel of its receiver id, then the rows none took counted. */
  #onRead(batch: DatagramBatch, count: number): void {
    const done = this.#done;
    done.fill(ROW_FREE, 0, count);
    this.arena.reset();
    for (let i = 0; i < count; i++) {
      if (done[i] === ROW_FREE) this.#channels.get(batch.receivers[i]!)?.take(batch, count, done);
    }
    for (let i = 0; i < count; i++) if (done[i] === ROW_FREE) this.#unclaimed.add(batch.lengths[i]! < SEAL_OVERHEAD ? 'malformed-datagram' : 'unknown-session');
  }

  /** Whether a channel takes datagrams of receiver id `id`. */
  has(id: number): boolean {
    return this.#channels.has(id);
  }

  /** `channel` takes the datagrams of receiver id `id` from now on (its constructor calls this). */
  add(id: number, channel: SocketChannel): void {
    this.#channels.set(id, channel);
  }

  /** `channel` closed: datagrams of `id` are nobody's now (unless another channel took the id since). */
  remove(id: number, channel: SocketChannel): void {
    if (this.#channels.get(id) === channel) this.#channels.delete(id);
  }

  /** Closes every channel, reports what is still counted, then closes the socket. */
  close(): void {
    for (const ch of [...this.#channels.values()]) ch.close();
    this.#unclaimed.flush();
    this.udp.close();
  }
}

/** The hub's UDP port: a socket bound beside the listener that hands each datagram to its session's channel. */
export function makeUdpHub(options: UdpDriverOptions = {}): UdpHubPort {
  const cipher = options.cipher ?? 'aes-256-gcm';
  const rekeyAfter = options.rekeyAfter ?? REKEY_AFTER;
  return {
    bind: (port) =>
      new Observable<UdpHub>((subscriber) => {
        const drops$ = new Subject<DropCounts>();
        let socket: ChannelSocket;
        try {
          socket = new ChannelSocket({ host: options.host ?? '0.0.0.0', port, coalesce: options.coalesce ?? false }, (drops) => drops$.next(drops), (err) => subscriber.error(err));
        } catch (err) {
          subscriber.error(err);
          return;
        }
        const channels = new Map<number, Channel>();
        subscriber.next({
          port: socket.udp.localPort,
          cipher,
          randomSecret: () => new Uint8Array(randomBytes(32)),
          channel: (id, secret) => {
            channels.get(id)?.close();
            const ch: Channel = new Channel({ socket, keys: sessionKeying(secret, id, cipher, 'hub'), endpoint: { kind: 'roams' }, rekeyAfter, arrival: sessionArrival, pair: false, onClose: () => channels.get(id) === ch && channels.delete(id) });
            channels.set(id, ch);
            return ch;
          },
          drops$: drops$.asObservable(),
        });
        return () => {
          socket.close();
          drops$.complete();
        };
      }),
  };
}

/**
 * A client's UDP: a socket of its own per session, carrying the channel to the hub's endpoint and,
 * beside it, at most MAX_PAIR_CHANNELS pair channels (docs/direct.md), all told apart by receiver id.
 */
export function makeUdpClient(options: UdpDriverOptions = {}): UdpClientPort {
  const rekeyAfter = options.rekeyAfter ?? REKEY_AFTER;
  return {
    open: (host, port, id, secret, cipher) =>
      new Observable<UdpClientSocket>((subscriber) => {
        const address = parseIpv4(host);
        if (address === undefined) {
          subscriber.error(new Error(`the UDP data path needs the hub's IPv4 address, not ${JSON.stringify(host)}`));
          return;
        }
        const drops$ = new Subject<DropCounts>();
        let socket: ChannelSocket;
        try {
          socket = new ChannelSocket({ host: options.host ?? '0.0.0.0', port: 0, coalesce: options.coalesce ?? false }, (drops) => drops$.next(drops), (err) => subscriber.error(err));
        } catch (err) {
          subscriber.error(err);
          return;
        }
        const hub = new Channel({ socket, keys: sessionKeying(secret, id, cipher, 'client'), endpoint: { kind: 'fixed', at: { address, port } }, rekeyAfter, arrival: sessionArrival, pair: false });
        let pairs = 0;
        const pair = (keys: PairKeys): PairOpening => {
          const ids = [keys.id, keys.peerId];
          if (ids.some((n) => !Number.isInteger(n) || n < 1 || n > 0xffffffff) || keys.id === keys.peerId || keys.key.length !== 32) {
            throw new RangeError(`a pair needs two different receiver ids in 1..2^32-1 and a 32-byte key (ids ${keys.id} and ${keys.peerId}, ${keys.key.length} bytes)`);
          }
          if (socket.has(keys.id)) return { ok: false, reason: 'id-in-use', detail: `receiver id ${keys.id} is taken by another channel of this socket` };
          if (pairs >= MAX_PAIR_CHANNELS) return { ok: false, reason: 'pair-limit', detail: `the socket holds ${MAX_PAIR_CHANNELS} pair channels already` };
          pairs++;
          return { ok: true, channel: new Pair(socket, keys, rekeyAfter, () => pairs--) };
        };
        subscriber.next({ localPort: socket.udp.localPort, hub, pair, drops$: drops$.asObservable() });
        return () => {
          socket.close();
          drops$.complete();
        };
      }),
  };
}
