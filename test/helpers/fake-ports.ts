// Fake ports for whole-pipeline tests: TUN, listener, dialer and connections built from Subjects.
// Create them inside `TestScheduler.run` and hand them the TestScheduler: every record carries the
// virtual time (`scheduler.now()`) at which it happened, and nothing here touches a real socket.
import { Observable, Subject, defer, mergeMap, of, throwError, timer, NEVER, type SchedulerLike, type Subscriber } from 'rxjs';
import type { ConnectionPort, DialerPort, KernelRouteEvent, ListenerEvent, ListenerPort, PacketBatch, PendingRefusal, PacketSink, RoutesPort, TunPort } from '../../pipelines/ports.js';
import {
  HelloCodec,
  PROTOCOL_VERSION,
  RejectCodec,
  WelcomeCodec,
  decodeControl,
  encodeControl,
  type HelloJson,
  type Reject,
  type WelcomeJson,
  type RoutesJson,
} from '../../operators/core/wire/control.js';
import { FrameDecoder } from '../../operators/core/wire/decoder.js';
import { jsonFrame } from './wire.js';

export { jsonFrame };
import { FrameType, encodeFrame, encodeFrames } from '../../operators/core/wire/frames.js';
import { formatIpv4, type Ipv4Prefix } from '../../operators/core/address.js';

/** A frame the code under test wrote, decoded, with the virtual time of the write. */
export interface WrittenFrame {
  readonly at: number;
  readonly type: number;
  /** A copy of the payload (the body after the type byte). */
  readonly payload: Uint8Array;
}

/** A packet written to a fake sink, with the virtual time of the write. */
export interface WrittenPacket {
  readonly at: number;
  readonly packet: Uint8Array;
}

/** Tracks the subscribers of a fake's input stream: how many came and whether they left. */
class Tap<T> {
  readonly subject = new Subject<T>();
  subscriptions = 0;
  unsubscribedAt: number | undefined;
  private live = 0;

  constructor(private readonly scheduler: SchedulerLike) {}

  /** The stream the code under test subscribes to. */
  stream(): Observable<T> {
    return new Observable<T>((subscriber: Subscriber<T>) => {
      this.subscriptions++;
      this.live++;
      const inner = this.subject.subscribe(subscriber);
      return () => {
        this.live--;
        inner.unsubscribe();
        this.unsubscribedAt = this.scheduler.now();
      };
    });
  }

  /** True while somebody is subscribed. */
  get active(): boolean {
    return this.live > 0;
  }
}

/**
 * A fake established connection. It records every chunk written to it (raw and decoded into frames),
 * lets the test push chunks, end or fail the incoming stream, and controls `needsDrain` / `drain$`.
 */
export class FakeConnection implements ConnectionPort {
  /** Raw chunks as written, copied at write time. */
  readonly chunks: Uint8Array[] = [];
  /** Every frame written, in order. */
  readonly frames: WrittenFrame[] = [];
  /** Virtual time of close(), or undefined while it was not called. */
  closedAt: number | undefined;
  /** How many times close() was called. */
  closeCalls = 0;
  /** Virtual times at which admitted() was called. */
  readonly admittedAt: number[] = [];
  needsDrain = false;
  /** The TLS exporter's secret, when the test plays a TLS connection. */
  tlsSecret: Uint8Array | undefined;
  readonly drain$ = new Subject<void>();
  readonly data$: Observable<Uint8Array>;
  private readonly incoming: Tap<Uint8Array>;
  private readonly decoder = new FrameDecoder(65535);

  constructor(
    private readonly scheduler: SchedulerLike,
    readonly id: number,
    readonly remote: string,
  ) {
    this.incoming = new Tap(scheduler);
    this.data$ = this.incoming.stream();
  }

  // ---- ConnectionPort ----

  write(chunk: Uint8Array): boolean {
    const at = this.scheduler.now();
    this.chunks.push(Uint8Array.from(chunk));
    for (const f of this.decoder.push(chunk)) this.frames.push({ at, type: f.type, payload: Uint8Array.from(f.payload) });
    return !this.needsDrain;
  }

  close(): void {
    this.closeCalls++;
    this.closedAt ??= this.scheduler.now();
  }

  admitted(): void {
    this.admittedAt.push(this.scheduler.now());
  }

  // ---- what the test does as the peer ----

  /** Delivers raw bytes as one chunk. */
  push(chunk: Uint8Array): void {
    this.incoming.subject.next(chunk);
  }

  /** Delivers DATA frames carrying `packets`, all in one chunk. */
  sendData(...packets: Uint8Array[]): void {
    this.push(encodeFrames(FrameType.Data, packets));
  }

  /** Delivers one KEEPALIVE frame. */
  sendKeepalive(): void {
    this.push(encodeFrame(FrameType.Keepalive));
  }

  /** Delivers a HELLO as JSON (version 1, prefix 24 unless overridden). */
  sendHello(address: string, extra: Partial<HelloJson> = {}): void {
    this.push(jsonFrame(FrameType.Hello, { version: PROTOCOL_VERSION, address, prefix: 24, ...extra }));
  }

  /** Delivers a WELCOME as JSON. */
  sendWelcome(msg: Omit<WelcomeJson, 'version'>): void {
    this.push(jsonFrame(FrameType.Welcome, { version: PROTOCOL_VERSION, ...msg }));
  }

  /** Delivers a ROUTES as JSON. */
  sendRoutes(routes: RoutesJson['routes']): void {
    this.push(jsonFrame(FrameType.Routes, { version: PROTOCOL_VERSION, routes }));
  }

  /** Delivers a REJECT. */
  sendReject(reason: Reject['reason'], message: string): void {
    this.push(encodeControl(FrameType.Reject, { version: PROTOCOL_VERSION, reason, message }));
  }

  /** The peer ends the stream (data$ completes). */
  end(): void {
    this.incoming.subject.complete();
  }

  /** The socket fails (data$ errors). */
  fail(err: Error): void {
    this.incoming.subject.error(err);
  }

  /** The send buffer goes above its high-water mark. */
  block(): void {
    this.needsDrain = true;
  }

  /** The send buffer drains: needsDrain turns false and drain$ emits. */
  drain(): void {
    this.needsDrain = false;
    this.drain$.next();
  }

  // ---- what the test checks ----

  /** True once close() was called. */
  get closed(): boolean {
    return this.closedAt !== undefined;
  }

  /** How often data$ was subscribed. */
  get dataSubscriptions(): number {
    return this.incoming.subscriptions;
  }

  /** True while the code under test reads data$. */
  get reading(): boolean {
    return this.incoming.active;
  }

  /** Virtual time at which the reader of data$ went away. */
  get stoppedReadingAt(): number | undefined {
    return this.incoming.unsubscribedAt;
  }

  /** The frame types written, in order. */
  types(): number[] {
    return this.frames.map((f) => f.type);
  }

  /** Payloads of DATA frames written, in order (each one IPv4 packet). */
  dataPackets(): Uint8Array[] {
    return this.frames.filter((f) => f.type === FrameType.Data).map((f) => f.payload);
  }

  /** Virtual times of KEEPALIVE frames written. */
  keepaliveTimes(): number[] {
    return this.frames.filter((f) => f.type === FrameType.Keepalive).map((f) => f.at);
  }

  /** HELLO messages written, as their JSON (checked by the codec first: a broken one is returned as an Error). */
  hellos(): Array<HelloJson | Error> {
    return this.frames.filter((f) => f.type === FrameType.Hello).map((f) => asJson(decodeControl(FrameType.Hello, HelloCodec, f.payload), HelloCodec));
  }

  /** WELCOME messages written, as their JSON. */
  welcomes(): Array<WelcomeJson | Error> {
    return this.frames.filter((f) => f.type === FrameType.Welcome).map((f) => asJson(decodeControl(FrameType.Welcome, WelcomeCodec, f.payload), WelcomeCodec));
  }

  /** REJECT messages written. */
  rejects(): Array<Reject | Error> {
    return this.frames.filter((f) => f.type === FrameType.Reject).map((f) => decodeControl(FrameType.Reject, RejectCodec, f.payload));
  }
}

/** A decoded control message back in its JSON form (errors pass through). */
function asJson<A, O>(decoded: A | Error, codec: { encode(a: A): O }): O | Error {
  return decoded instanceof Error ? decoded : codec.encode(decoded);
}

/**
 * A fake TUN device. The test pushes read batches; writes are recorded. The sink accepts up to
 * `capacity` more packets (unbounded by default) and then reports short writes, like EAGAIN; `makeRoom`
 * raises the capacity and fires `ready$`.
 */
export class FakeTun implements TunPort {
  readonly name: string;
  readonly mtu: number;
  readonly packets$: Observable<PacketBatch>;
  readonly sink: PacketSink;
  readonly ready$ = new Subject<void>();
  /** Every packet accepted by the sink, copied at write time. */
  readonly written: WrittenPacket[] = [];
  /** Packets the sink still accepts before a short write. */
  capacity = Number.POSITIVE_INFINITY;
  /** How many times write() was called. */
  writeCalls = 0;
  private readonly reads: Tap<PacketBatch>;

  constructor(
    private readonly scheduler: SchedulerLike,
    options: { readonly name?: string; readonly mtu?: number } = {},
  ) {
    this.name = options.name ?? 'tun-test';
    this.mtu = options.mtu ?? 1400;
    this.reads = new Tap(scheduler);
    this.packets$ = this.reads.stream();
    this.sink = {
      write: (packets) => {
        this.writeCalls++;
        const n = Math.min(this.capacity, packets.length);
        const at = this.scheduler.now();
        for (let i = 0; i < n; i++) this.written.push({ at, packet: Uint8Array.from(packets[i]!) });
        this.capacity -= n;
        return n;
      },
      ready$: this.ready$,
    };
  }

  /** Addresses set with setIpv4, as `a.b.c.d/p`, in order. */
  readonly addresses: string[] = [];
  /** When set, setIpv4 throws it (the kernel refuses). */
  refuseIpv4: Error | undefined;

  setIpv4(address: number, prefix: number): void {
    if (this.refuseIpv4 !== undefined) throw this.refuseIpv4;
    this.addresses.push(`${formatIpv4(address)}/${prefix}`);
  }

  /** The device delivers one read batch. */
  read(...packets: Uint8Array[]): void {
    this.reads.subject.next(packets);
  }

  /** The device fails. */
  fail(err: Error): void {
    this.reads.subject.error(err);
  }

  /** The device is full: further writes are short. */
  block(): void {
    this.capacity = 0;
  }

  /** The device has room for `n` more packets (unbounded by default); ready$ fires. */
  makeRoom(n = Number.POSITIVE_INFINITY): void {
    this.capacity = n;
    this.ready$.next();
  }

  /** The packets written, in order. */
  packets(): Uint8Array[] {
    return this.written.map((w) => w.packet);
  }

  /** True while the code under test reads the device. */
  get reading(): boolean {
    return this.reads.active;
  }

  /** Virtual time at which the reader went away. */
  get stoppedReadingAt(): number | undefined {
    return this.reads.unsubscribedAt;
  }
}

/** A fake routes port: records every requested set (as `a.b.c.d/n` lists); the test emits its events. */
export class FakeRoutes implements RoutesPort {
  readonly sets: string[][] = [];
  readonly events$ = new Subject<KernelRouteEvent>();
  set(prefixes: readonly Ipv4Prefix[]): void {
    this.sets.push(prefixes.map((p) => `${formatIpv4(p.address)}/${p.prefix}`));
  }
}

/** A fake listener: the test announces `listening` and hands over connections. */
export class FakeListener implements ListenerPort {
  readonly events$: Observable<ListenerEvent>;
  private readonly events: Tap<ListenerEvent>;

  constructor(scheduler: SchedulerLike) {
    this.events = new Tap(scheduler);
    this.events$ = this.events.stream();
  }

  listening(address = '0.0.0.0:9000'): void {
    this.events.subject.next({ type: 'listening', address });
  }

  accept(connection: ConnectionPort): void {
    this.events.subject.next({ type: 'connection', connection });
  }

  /** Reports a connection closed at accept (a cap on pending connections). */
  refuse(remote: string, reason: PendingRefusal = 'pending-source-limit', detail = 'too many connections wait'): void {
    this.events.subject.next({ type: 'refused', remote, reason, detail });
  }

  fail(err: Error): void {
    this.events.subject.error(err);
  }

  /** True while the code under test listens. */
  get listeningNow(): boolean {
    return this.events.active;
  }

  get stoppedAt(): number | undefined {
    return this.events.unsubscribedAt;
  }
}

/** How one dial attempt ends. `afterMs` delays the outcome in virtual time (0: at once). */
export type DialOutcome =
  | { readonly connect: FakeConnection; readonly afterMs?: number }
  | { readonly fail: Error; readonly afterMs?: number }
  | { readonly hang: true };

/** A dial attempt as the fake dialer saw it. */
export interface DialAttempt {
  readonly at: number;
  readonly host: string;
  readonly port: number;
  /** The name `host` was resolved from, when the client said. */
  readonly name?: string;
}

/**
 * A fake dialer: each attempt takes the next scripted outcome; when the script runs out it uses
 * `otherwise` (hang forever by default). Records the virtual time of every attempt.
 */
export class FakeDialer implements DialerPort {
  readonly attempts: DialAttempt[] = [];
  /** Attempts unsubscribed before they produced an outcome. */
  aborted = 0;
  private readonly script: DialOutcome[] = [];

  constructor(
    private readonly scheduler: SchedulerLike,
    private readonly otherwise: (attempt: number) => DialOutcome = () => ({ hang: true }),
  ) {}

  /** Appends outcomes for the next attempts. */
  then(...outcomes: DialOutcome[]): this {
    this.script.push(...outcomes);
    return this;
  }

  /** Virtual times of the attempts. */
  times(): number[] {
    return this.attempts.map((a) => a.at);
  }

  dial(host: string, port: number, name?: string): Observable<FakeConnection> {
    return defer(() => {
      this.attempts.push({ at: this.scheduler.now(), host, port, ...(name === undefined ? {} : { name }) });
      const outcome = this.script.shift() ?? this.otherwise(this.attempts.length);
      let settled = false;
      const result: Observable<FakeConnection> =
        'hang' in outcome
          ? NEVER
          : 'connect' in outcome
            ? delayed(outcome.afterMs, this.scheduler, () => of(outcome.connect))
            : delayed(outcome.afterMs, this.scheduler, () => throwError(() => outcome.fail));
      return new Observable<FakeConnection>((subscriber) => {
        const inner = result.subscribe({
          next: (c) => {
            settled = true;
            subscriber.next(c);
          },
          error: (e) => {
            settled = true;
            subscriber.error(e);
          },
          complete: () => subscriber.complete(),
        });
        return () => {
          if (!settled) this.aborted++;
          inner.unsubscribe();
        };
      });
    });
  }
}

function delayed<T>(afterMs: number | undefined, scheduler: SchedulerLike, outcome: () => Observable<T>): Observable<T> {
  return afterMs === undefined || afterMs === 0 ? defer(outcome) : timer(afterMs, scheduler).pipe(mergeMap(outcome));
}

/** An error shaped like Node's connect failure. */
export function connectError(code: string, address = '192.0.2.1:9000'): Error {
  return Object.assign(new Error(`connect ${code} ${address}`), { code });
}

/** Builds fakes that share one scheduler and one connection-id counter. */
export function fakes(scheduler: SchedulerLike): {
  readonly tun: (options?: { readonly name?: string; readonly mtu?: number }) => FakeTun;
  readonly listener: () => FakeListener;
  readonly dialer: (otherwise?: (attempt: number) => DialOutcome) => FakeDialer;
  readonly connection: (remote?: string) => FakeConnection;
} {
  let nextId = 1;
  return {
    tun: (options) => new FakeTun(scheduler, options),
    listener: () => new FakeListener(scheduler),
    dialer: (otherwise) => new FakeDialer(scheduler, otherwise),
    connection: (remote) => {
      const id = nextId++;
      return new FakeConnection(scheduler, id, remote ?? `198.51.100.${id}:${40000 + id}`);
    },
  };
}
