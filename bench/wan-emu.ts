/**
 * The WAN emulator of bench/wan.ts: one-way delay and a rate limit per link and direction, in
 * userspace, because this kernel has no netem (and no delaying qdisc at all).
 *
 *   node dist/bench/wan-emu.js --tun NAME --link NAME=A.B.C.0/24[@MS] [--link ...] --delay-ms 15
 *                              --rate-mbit 200 --queue-ms 10
 *
 * It runs in the lab's router namespace ("wan"), which bench/wan.ts sets up so that every packet
 * arriving from an access link is policy-routed into this process's TUN device (`ip rule iif w-X
 * lookup T`, table T: `default dev NAME`). The process reads each packet, works out from its
 * source and destination addresses which link it came in on and which it leaves by (one /24 per
 * link), holds it for the two link crossings and writes it back into the same device; the kernel
 * then forwards it by the main table to the destination's link. Loss is not done here: nftables
 * rules in the router namespace drop packets as they enter from a link and as they leave to one.
 *
 * Why a TUN device and not AF_PACKET: the router stays an ordinary Linux router (ARP, TTL,
 * ICMP errors, nftables all work unchanged), the emulator sees exactly the forwarded IPv4 packets
 * and nothing else, and the project's own TUN binding reads them in batches with one JS call per
 * batch. An AF_PACKET bridge would need its own ARP/MAC handling and a raw-socket binding.
 *
 * Each link has two pipes (up: towards the router, down: away from it). A pipe is a FIFO with a
 * serializer of `rate` Mbit/s (IP bytes; no Ethernet overhead) followed by `delay` ms of
 * propagation; a packet that would wait longer than `queue` ms for the serializer is dropped
 * (drop-tail, a byte limit of rate × queue). A packet from link A to link B goes through A's up
 * pipe, then B's down pipe: it reaches B at the earliest 2 × delay after it left A. A link given
 * as `NAME=PREFIX@MS` has a delay of its own, MS instead of --delay-ms (both of its pipes): A to B
 * then takes delay(A) + delay(B), which makes a star of links that are near to each other and far
 * from another (bench/wan.ts --near). Packets are
 * released by a sub-millisecond timer thread (bench/wan-clock.ts), not by Node's millisecond
 * timers, so that they leave when due (tens of microseconds late) instead of on the next
 * millisecond tick; while more than BUSY_PACKETS wait in the pipes (a bulk transfer), releases come
 * at most once a millisecond, as Node's timers made them. The lateness is measured and reported.
 *
 * On SIGUSR1 it prints one JSON line of counters (EmuStats: cumulative, the maxima and the mean
 * lateness since the previous line); on SIGTERM/SIGINT it
 * closes the device (the kernel deletes it) and exits. It prints `ready NAME` once the device is up.
 */
import { parseArgs } from 'node:util';
import { parsePrefix, prefixMask } from '../operators/core/address.js';
import { TunDevice } from '../src/tun/index.js';
import { PreciseTimer, clockMs } from './wan-clock.js';

/**
 * More packets than this in the pipes is a bulk transfer: the emulator then releases at most once
 * per BUSY_PACE_MS, a batch per TUN write. Releasing each packet on its own at 200 Mbit/s (a wake-up
 * of the timer thread, a message and a write per packet) tripled the emulator's CPU, which its
 * real-time priority takes from the tunnels. The idle ping-pong keeps fewer than 20 packets in
 * flight, and each of its packets leaves when due.
 */
const BUSY_PACKETS = 64;
const BUSY_PACE_MS = 1;

/** Counters of one pipe, cumulative since the start. */
export interface PipeStats {
  readonly link: string;
  readonly dir: 'up' | 'down';
  readonly packets: number;
  readonly bytes: number;
  /** Packets dropped because the queue was full (drop-tail). */
  readonly queueDrops: number;
  /** The longest wait for the serializer any packet had since the previous report, ms. */
  readonly maxQueueMs: number;
}

/** What the emulator prints on SIGUSR1 (cumulative since the start). */
export interface EmuStats {
  readonly pipes: readonly PipeStats[];
  /** Packets written back to the device. */
  readonly forwarded: number;
  /** Packets whose addresses matched no link (forwarded without delay) or that were not IPv4 (dropped). */
  readonly unknown: number;
  /** Packets the device refused (EAGAIN or rejected); dropped. */
  readonly writeDrops: number;
  /** Packets whose bytes the arena had reused before they were due (see Arena); dropped. */
  readonly overwritten: number;
  /** Since the previous report: packets released onto the device, and how late against their
   * schedule: the worst and the mean (ms), and how many more than 2 and 5 ms late. */
  readonly released: number;
  readonly lateMaxMs: number;
  readonly lateMeanMs: number;
  readonly lateOver2Ms: number;
  readonly lateOver5Ms: number;
}

/**
 * Packet bytes live in one arena written round-robin (no allocation per packet, so the garbage
 * collector has nothing to pause for). Accepted packets enter at most at the links' rates and
 * leave within 2 × (queue + delay) plus lateness, so a packet is overwritten only if it waited
 * while the arena's whole size of newer packets came in (about 0.7 s at 2 × 200 Mbit/s); a
 * packet found overwritten on release is counted and dropped, never sent.
 */
class Arena {
  readonly bytes = new Uint8Array(64 * 1024 * 1024);
  /** Bytes ever stored: a packet's absolute position tells whether it was overwritten. */
  total = 0;
  private offset = 0;

  /** Copies `packet` in; returns its absolute position. */
  store(packet: Uint8Array): number {
    if (this.offset + packet.length > this.bytes.length) {
      this.total += this.bytes.length - this.offset;
      this.offset = 0;
    }
    this.bytes.set(packet, this.offset);
    const at = this.total;
    this.offset += packet.length;
    this.total += packet.length;
    return at;
  }

  /** A view of the packet stored at `at`, or undefined when it has been overwritten since. */
  view(at: number, length: number): Uint8Array | undefined {
    if (this.total - at > this.bytes.length) return undefined;
    return new Uint8Array(this.bytes.buffer, at % this.bytes.length, length);
  }
}

class Pipe {
  busyUntil = 0;
  // A ring of queued packets in columns: due time, arena position, length, next pipe (-1: none).
  private due = new Float64Array(4096);
  private at = new Float64Array(4096);
  private len = new Uint32Array(4096);
  private nextPipe = new Int32Array(4096);
  private head = 0;
  private count = 0;
  packets = 0;
  bytes = 0;
  queueDrops = 0;
  maxQueueMs = 0;

  constructor(
    readonly index: number,
    readonly link: string,
    readonly dir: 'up' | 'down',
    private readonly msPerByte: number,
    private readonly delayMs: number,
    private readonly queueMs: number,
  ) {}

  /** Whether a packet arriving at time `t` (ms) would find the queue full (then it is counted dropped). */
  full(t: number): boolean {
    if (this.busyUntil - t <= this.queueMs) return false;
    this.queueDrops++;
    return true;
  }

  /** Queues the packet of `length` bytes at arena position `at`, arriving at `t` (ms); call full() first. */
  push(at: number, length: number, t: number, next: number): void {
    const wait = Math.max(0, this.busyUntil - t);
    if (wait > this.maxQueueMs) this.maxQueueMs = wait;
    this.busyUntil = Math.max(t, this.busyUntil) + length * this.msPerByte;
    if (this.count === this.due.length) this.grow();
    const i = (this.head + this.count) % this.due.length;
    this.due[i] = this.busyUntil + this.delayMs;
    this.at[i] = at;
    this.len[i] = length;
    this.nextPipe[i] = next;
    this.count++;
    this.packets++;
    this.bytes += length;
  }

  /** Packets queued. */
  get size(): number {
    return this.count;
  }

  /** Due time of the first packet, or Infinity when empty. */
  get nextDue(): number {
    return this.count > 0 ? this.due[this.head]! : Number.POSITIVE_INFINITY;
  }

  /** The columns of the packet last taken. */
  takenDue = 0;
  takenAt = 0;
  takenLength = 0;
  takenNext = -1;

  /** Removes the first packet; its columns are then in taken*. */
  take(): void {
    const i = this.head;
    this.head = (this.head + 1) % this.due.length;
    this.count--;
    this.takenDue = this.due[i]!;
    this.takenAt = this.at[i]!;
    this.takenLength = this.len[i]!;
    this.takenNext = this.nextPipe[i]!;
  }

  private grow(): void {
    const n = this.due.length;
    const order = (a: Float64Array | Uint32Array | Int32Array): number[] => Array.from({ length: n }, (_, k) => a[(this.head + k) % n]!);
    const [due, at, len, next] = [order(this.due), order(this.at), order(this.len), order(this.nextPipe)];
    this.due = new Float64Array(2 * n);
    this.at = new Float64Array(2 * n);
    this.len = new Uint32Array(2 * n);
    this.nextPipe = new Int32Array(2 * n);
    this.due.set(due);
    this.at.set(at);
    this.len.set(len);
    this.nextPipe.set(next);
    this.head = 0;
  }

  /** The counters; starts a new period for maxQueueMs. */
  stats(): PipeStats {
    const s = { link: this.link, dir: this.dir, packets: this.packets, bytes: this.bytes, queueDrops: this.queueDrops, maxQueueMs: this.maxQueueMs };
    this.maxQueueMs = 0;
    return s;
  }
}

interface Link {
  readonly name: string;
  readonly network: number;
  readonly mask: number;
  readonly up: Pipe;
  readonly down: Pipe;
}

/** Packets released later than their schedule, in the current report period. */
class Lateness {
  max = 0;
  sum = 0;
  count = 0;
  over2 = 0;
  over5 = 0;

  add(late: number): void {
    this.sum += late;
    this.count++;
    if (late > this.max) this.max = late;
    if (late > 2) this.over2++;
    if (late > 5) this.over5++;
  }

  reset(): void {
    this.max = this.sum = this.count = this.over2 = this.over5 = 0;
  }
}

function main(): void {
  const { values } = parseArgs({
    options: {
      tun: { type: 'string' },
      link: { type: 'string', multiple: true, default: [] },
      'delay-ms': { type: 'string', default: '15' },
      'rate-mbit': { type: 'string', default: '200' },
      'queue-ms': { type: 'string', default: '10' },
    },
    strict: true,
  });
  const delayMs = Number(values['delay-ms']);
  const rateMbit = Number(values['rate-mbit']);
  const queueMs = Number(values['queue-ms']);
  if (values.tun === undefined || !(delayMs >= 0) || !(rateMbit > 0) || !(queueMs >= 0)) {
    throw new Error('usage: wan-emu --tun NAME --link NAME=PREFIX[@MS] ... [--delay-ms 15] [--rate-mbit 200] [--queue-ms 10]');
  }
  // rate Mbit/s = rate × 1000 bits per ms, so one byte takes 8 / (rate × 1000) ms.
  const msPerByte = 8 / (rateMbit * 1000);
  let pipeCount = 0;
  const links: Link[] = values.link.map((spec) => {
    const [name, rest] = spec.split('=');
    const [cidr, ownDelay] = rest?.split('@') ?? [];
    const p = cidr === undefined ? undefined : parsePrefix(cidr);
    const delay = ownDelay === undefined ? delayMs : Number(ownDelay);
    if (name === undefined || name === '' || p === undefined || !(delay >= 0)) throw new Error(`bad --link ${spec} (expected NAME=A.B.C.D/N or NAME=A.B.C.D/N@MS)`);
    const mask = prefixMask(p.prefix) >>> 0;
    return {
      name,
      network: (p.address & mask) >>> 0,
      mask,
      up: new Pipe(pipeCount++, name, 'up', msPerByte, delay, queueMs),
      down: new Pipe(pipeCount++, name, 'down', msPerByte, delay, queueMs),
    };
  });
  const linkOf = (addr: number): Link | undefined => links.find((l) => ((addr & l.mask) >>> 0) === l.network);
  const pipes = links.flatMap((l) => [l.up, l.down]);

  const device = TunDevice.open({ name: values.tun, mtu: 1500, up: true, batch: 256 });
  const arena = new Arena();
  const late = new Lateness();
  let forwarded = 0;
  let unknown = 0;
  let writeDrops = 0;
  let overwritten = 0;
  // Node's own timers would release packets on whole-millisecond ticks (see bench/wan-clock.ts).
  const timer = new PreciseTimer(release);
  let timerDue = Number.POSITIVE_INFINITY;

  const send = (out: Uint8Array[]): void => {
    if (out.length === 0) return;
    const n = device.write(out);
    forwarded += n;
    writeDrops += out.length - n;
  };

  const arm = (): void => {
    let due = Number.POSITIVE_INFINITY;
    let queued = 0;
    for (const p of pipes) {
      due = Math.min(due, p.nextDue);
      queued += p.size;
    }
    if (due === timerDue) return;
    timerDue = due;
    timer.set(due, queued > BUSY_PACKETS ? BUSY_PACE_MS : 0);
  };

  // Moves every packet that is due: out of an up pipe into the next (down) pipe at its due time
  // (not now: a late timer does not add to the next link's delay), out of a last pipe onto the device.
  function release(): void {
    timerDue = Number.POSITIVE_INFINITY;
    const now = clockMs();
    const out: Uint8Array[] = [];
    let moved = true;
    while (moved) {
      moved = false;
      for (const p of pipes) {
        while (p.nextDue <= now) {
          p.take();
          moved = true;
          if (p.takenNext >= 0) {
            const next = pipes[p.takenNext]!;
            if (!next.full(p.takenDue)) next.push(p.takenAt, p.takenLength, p.takenDue, -1);
            continue;
          }
          const view = arena.view(p.takenAt, p.takenLength);
          if (view === undefined) {
            overwritten++;
            continue;
          }
          late.add(now - p.takenDue);
          out.push(view);
        }
      }
    }
    send(out);
    arm();
  }

  device.read(
    (packets) => {
      const now = clockMs();
      const direct: Uint8Array[] = [];
      for (const packet of packets) {
        if (packet.length < 20 || packet[0]! >> 4 !== 4) {
          unknown++;
          continue;
        }
        const src = ((packet[12]! << 24) | (packet[13]! << 16) | (packet[14]! << 8) | packet[15]!) >>> 0;
        const dst = ((packet[16]! << 24) | (packet[17]! << 16) | (packet[18]! << 8) | packet[19]!) >>> 0;
        const from = linkOf(src);
        const to = linkOf(dst);
        const first = from?.up ?? to?.down;
        if (first === undefined) {
          unknown++;
          direct.push(arena.view(arena.store(packet), packet.length)!);
          continue;
        }
        // Drop-tail before copying: a full queue costs nothing.
        if (first.full(now)) continue;
        const next = from !== undefined && to !== undefined ? to.down.index : -1;
        first.push(arena.store(packet), packet.length, now, next);
      }
      send(direct);
      arm();
    },
    (err) => {
      process.stderr.write(`wan-emu: ${err.message}\n`);
      process.exit(1);
    },
  );

  process.on('SIGUSR1', () => {
    const s: EmuStats = {
      pipes: pipes.map((p) => p.stats()),
      forwarded,
      unknown,
      writeDrops,
      overwritten,
      released: late.count,
      lateMaxMs: late.max,
      lateMeanMs: late.count > 0 ? late.sum / late.count : 0,
      lateOver2Ms: late.over2,
      lateOver5Ms: late.over5,
    };
    process.stdout.write(`${JSON.stringify(s)}\n`);
    late.reset();
  });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => {
      timer.close();
      device.release();
      process.exit(0);
    });
  }
  process.stdout.write(`ready ${device.name}\n`);
}

try {
  main();
} catch (err) {
  process.stderr.write(`wan-emu: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
