// Fakes of the UDP data path's ports (pipelines/ports.ts): a datagram channel the test plays the
// peer of (its arrivals and drops are Subjects, what the pipeline sends is recorded), the hub's UDP
// port and a client's. Virtual time comes from the scheduler the test runs in.
import { Observable, Subject, type SchedulerLike } from 'rxjs';
import type { DropCounts } from '../../operators/core/packet.js';
import { copyPacket } from '../../operators/core/wire/gso.js';
import type { Arrival, DatagramChannel, PacketBatch, UdpCipher, UdpClientPort, UdpHub, UdpHubPort } from '../../pipelines/ports.js';

/** One send() or keepalive() the pipeline made on a fake channel. */
export interface SentDatagrams {
  readonly at: number;
  readonly kind: 'data' | 'keepalive';
  readonly packets: readonly Uint8Array[];
  readonly hearsUs: boolean;
}

/** A channel whose peer is the test: `arrive` delivers, `sent` records. */
export class FakeChannel implements DatagramChannel {
  readonly arrivals = new Subject<Arrival>();
  readonly drops = new Subject<DropCounts>();
  readonly arrivals$ = this.arrivals.asObservable();
  readonly drops$ = this.drops.asObservable();
  readonly sent: SentDatagrams[] = [];
  closed = false;
  /** What maxPacket() answers. */
  max = 1440;
  /** How many packets a send() takes at most (the socket's room). */
  room = Number.POSITIVE_INFINITY;

  constructor(
    private readonly scheduler: SchedulerLike,
    readonly id: number,
    readonly secret: Uint8Array,
  ) {}

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

  /** The peer's datagrams of one read: `packets` (none: a keepalive), saying whether it hears us. */
  arrive(packets: readonly Uint8Array[], hearsUs = true): void {
    this.arrivals.next({ packets: [...packets], hearsUs });
  }

  /** The data packets the pipeline sent over this channel. */
  dataPackets(): Uint8Array[] {
    return this.sent.filter((s) => s.kind === 'data').flatMap((s) => s.packets);
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
  readonly channel: FakeChannel;
}

/** A client's fake UDP port: open() records the request and hands out a FakeChannel (or fails with `failWith`). */
export class FakeUdpClientPort implements UdpClientPort {
  readonly opened: OpenRequest[] = [];
  failWith: Error | undefined;

  constructor(private readonly scheduler: SchedulerLike) {}

  open(host: string, port: number, id: number, secret: Uint8Array, cipher: UdpCipher): Observable<DatagramChannel> {
    return new Observable<DatagramChannel>((subscriber) => {
      if (this.failWith !== undefined) {
        subscriber.error(this.failWith);
        return;
      }
      const channel = new FakeChannel(this.scheduler, id, Uint8Array.from(secret));
      this.opened.push({ host, port, id, secret: Uint8Array.from(secret), cipher, channel });
      subscriber.next(channel);
      return () => channel.close();
    });
  }
}
