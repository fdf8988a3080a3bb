// Fakes of the UDP data path's ports (pipelines/ports.ts): a datagram channel the test plays the
// peer of (its arrivals and drops are Subjects, what the pipeline sends is recorded), a pair channel
// likewise, the hub's UDP port and a client's (whose socket opens fake pair channels). Virtual time
// comes from the scheduler the test runs in.
import { Observable, Subject, type SchedulerLike } from 'rxjs';
import type { DropCounts } from '../../operators/core/packet.js';
import { copyPacket } from '../../operators/core/wire/gso.js';
import type { Arrival, DatagramChannel, PacketBatch, PairArrival, PairChannel, PairKeys, PairOpening, UdpCipher, UdpClientPort, UdpClientSocket, UdpEndpoint, UdpHub, UdpHubPort } from '../../pipelines/ports.js';

/** One send() or keepalive() the pipeline made on a fake channel. */
export interface SentDatagrams {
  readonly at: number;
  readonly kind: 'data' | 'keepalive';
  readonly packets: readonly Uint8Array[];
  readonly hearsUs: boolean;
}

/** What the fake channels share: `sent` records, `arrivals` is theirs to deliver. */
export class FakeDatagramChannel<A extends Arrival> {
  readonly arrivals = new Subject<A>();
  readonly drops = new Subject<DropCounts>();
  readonly arrivals$ = this.arrivals.asObservable();
  readonly drops$ = this.drops.asObservable();
  readonly sent: SentDatagrams[] = [];
  closed = false;
  /** What maxPacket() answers. */
  max = 1440;
  /** How many packets a send() takes at most (the socket's room). */
  room = Number.POSITIVE_INFINITY;
  /** What endpoint() answers. */
  at: UdpEndpoint | undefined;

  constructor(
    protected readonly scheduler: SchedulerLike,
    readonly id: number,
    readonly secret: Uint8Array,
  ) {}

  endpoint(): UdpEndpoint | undefined {
    return this.at;
  }

  send(packets: PacketBatch, hearsUs: boolean): number {
    const n = Math.min(packets.length, this.room);
    this.sent.push({ at: this.scheduler.now(), kind: 'data', packets: packets.slice(0, n).map(copyPacket), hearsUs });
    return n;
  }

  keepalive(hearsUs: boolean): void {
    this.sent.push({ at: this.scheduler.now(), kind: 'keepalive', packets: [], hearsUs });
  }

  maxPacket(): number {
    return this.max;
  }

  stats(): { rx: { packets: number; bytes: number }; tx: { packets: number; bytes: number } } {
    const tx = { packets: 0, bytes: 0 };
    for (const s of this.sent) for (const p of s.packets) (tx.packets++, (tx.bytes += p.length));
    return { rx: { packets: 0, bytes: 0 }, tx };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.arrivals.complete();
    this.drops.complete();
  }

  /** The data packets the pipeline sent over this channel. */
  dataPackets(): Uint8Array[] {
    return this.sent.filter((s) => s.kind === 'data').flatMap((s) => s.packets);
  }
}

/** A channel whose peer is the test: `arrive` delivers, `sent` records. */
export class FakeChannel extends FakeDatagramChannel<Arrival> implements DatagramChannel {
  /** The peer's datagrams of one read: `packets` (none: a keepalive), saying whether it hears us. */
  arrive(packets: readonly Uint8Array[], hearsUs = true): void {
    this.arrivals.next({ packets: [...packets], hearsUs });
  }
}

/** A keepalive a pair channel sent to an explicit endpoint (keepaliveTo). */
export interface SentProbe {
  readonly at: number;
  readonly to: UdpEndpoint;
  readonly hearsUs: boolean;
}

/** A PING or PONG a pair channel sent: its token, where to (a PING: the endpoint in use) and when. */
export interface SentPing {
  readonly kind: 'ping' | 'pong';
  readonly at: number;
  readonly token: number;
  readonly to: UdpEndpoint;
}

/** A pair channel whose peer is the test: `arrive` delivers from an endpoint, `probes`, `pings` and `sent` record, `at` is what use() chose. */
export class FakePairChannel extends FakeDatagramChannel<PairArrival> implements PairChannel {
  readonly peerId: number;
  readonly cipher: UdpCipher;
  readonly probes: SentProbe[] = [];
  readonly pings: SentPing[] = [];

  constructor(scheduler: SchedulerLike, keys: PairKeys) {
    super(scheduler, keys.id, Uint8Array.from(keys.key));
    this.peerId = keys.peerId;
    this.cipher = keys.cipher;
  }

  override send(packets: PacketBatch, hearsUs: boolean): number {
    return this.at === undefined ? 0 : super.send(packets, hearsUs);
  }

  override keepalive(hearsUs: boolean): void {
    if (this.at !== undefined) super.keepalive(hearsUs);
  }

  keepaliveTo(to: UdpEndpoint, hearsUs: boolean): void {
    this.probes.push({ at: this.scheduler.now(), to, hearsUs });
  }

  ping(token: number, _hearsUs: boolean): void {
    if (this.at !== undefined) this.pings.push({ kind: 'ping', at: this.scheduler.now(), token, to: this.at });
  }

  pong(token: number, to: UdpEndpoint, _hearsUs: boolean): void {
    this.pings.push({ kind: 'pong', at: this.scheduler.now(), token, to });
  }

  use(to: UdpEndpoint | undefined): void {
    this.at = to;
  }

  /** The peer's datagrams of one read from `from`: `packets` (none: a keepalive), saying whether it hears us, with a PING's or PONG's token. */
  arrive(from: UdpEndpoint, packets: readonly Uint8Array[], hearsUs = true, tokens: { readonly ping?: number; readonly pong?: number } = {}): void {
    this.arrivals.next({ packets: [...packets], hearsUs, from, ...tokens });
  }
}

/** The hub's fake UDP port: bind() succeeds (or fails with `failWith`) and records the channels it makes. */
export class FakeUdpHubPort implements UdpHubPort {
  readonly channels: FakeChannel[] = [];
  readonly bound: number[] = [];
  readonly unknown = new Subject<DropCounts>();
  /** When set, bind() errors with it. */
  failWith: Error | undefined;
  closed = false;

  constructor(
    private readonly scheduler: SchedulerLike,
    readonly cipher: UdpCipher = 'aes-256-gcm',
  ) {}

  bind(port: number): Observable<UdpHub> {
    return new Observable<UdpHub>((subscriber) => {
      if (this.failWith !== undefined) {
        subscriber.error(this.failWith);
        return;
      }
      this.bound.push(port);
      let n = 0;
      subscriber.next({
        port,
        cipher: this.cipher,
        randomSecret: () => Uint8Array.from({ length: 32 }, () => ++n),
        channel: (id, secret) => {
          const ch = new FakeChannel(this.scheduler, id, Uint8Array.from(secret));
          this.channels.push(ch);
          return ch;
        },
        drops$: this.unknown.asObservable(),
      });
      return () => {
        this.closed = true;
      };
    });
  }
}

/** What a client asked its fake UDP port to open. */
export interface OpenRequest {
  readonly host: string;
  readonly port: number;
  readonly id: number;
  readonly secret: Uint8Array;
  readonly cipher: UdpCipher;
  /** The socket's hub channel. */
  readonly channel: FakeChannel;
  /** The pair channels the pipeline opened on the socket, in order. */
  readonly pairs: FakePairChannel[];
  /** The socket's datagrams of no channel (the test's to emit). */
  readonly unclaimed: Subject<DropCounts>;
}

/** A client's fake UDP port: open() records the request and hands out a socket with a fake hub channel (or fails with `failWith`); its pair() hands out FakePairChannels, at most `maxPairs`. */
export class FakeUdpClientPort implements UdpClientPort {
  readonly opened: OpenRequest[] = [];
  failWith: Error | undefined;
  /** How many pair channels a socket opens before it answers `pair-limit`. */
  maxPairs = 32;

  constructor(private readonly scheduler: SchedulerLike) {}

  open(host: string, port: number, id: number, secret: Uint8Array, cipher: UdpCipher): Observable<UdpClientSocket> {
    return new Observable<UdpClientSocket>((subscriber) => {
      if (this.failWith !== undefined) {
        subscriber.error(this.failWith);
        return;
      }
      const channel = new FakeChannel(this.scheduler, id, Uint8Array.from(secret));
      const pairs: FakePairChannel[] = [];
      const unclaimed = new Subject<DropCounts>();
      this.opened.push({ host, port, id, secret: Uint8Array.from(secret), cipher, channel, pairs, unclaimed });
      const pair = (keys: PairKeys): PairOpening => {
        const open = pairs.filter((p) => !p.closed);
        if (keys.id === id || open.some((p) => p.id === keys.id)) return { ok: false, reason: 'id-in-use', detail: `receiver id ${keys.id} is in use` };
        if (open.length >= this.maxPairs) return { ok: false, reason: 'pair-limit', detail: `${this.maxPairs} pair channels` };
        const ch = new FakePairChannel(this.scheduler, keys);
        pairs.push(ch);
        return { ok: true, channel: ch };
      };
      subscriber.next({ localPort: 40000 + id, hub: channel, pair, drops$: unclaimed.asObservable() });
      return () => {
        channel.close();
        for (const p of pairs) p.close();
        unclaimed.complete();
      };
    });
  }
}
