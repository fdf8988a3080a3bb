/**
 * The WAN emulator of bench/wan.ts: one-way delay and a rate limit per link and direction, in
 * userspace, because this kernel has no netem (and no delaying qdisc at all).
 *
 *   node dist/bench/wan-emu.js --tun NAME --link NAME=A.B.C.0/24 [--link ...] --delay-ms 15
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
 * pipe, then B's down pipe: it reaches B at the earliest 2 × delay after it left A. Timing uses
 * Node timers, so packets leave up to ~1 ms late and in bursts of about a millisecond's worth;
 * the lateness is measured and reported.
 *
 * On SIGUSR1 it prints one JSON line of cumulative counters (EmuStats); on SIGTERM/SIGINT it
 * closes the device (the kernel deletes it) and exits. It prints `ready NAME` once the device is up.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { parsePrefix, prefixMask } from '../operators/core/address.js';
import { TunDevice } from '../src/tun/index.js';

/** Counters of one pipe, cumulative since the start. */
export interface PipeStats {
  readonly link: string;
  readonly dir: 'up' | 'down';
  readonly packets: number;
  readonly bytes: number;
  /** Packets dropped because the queue was full (drop-tail). */
  readonly queueDrops: number;
  /** The longest wait for the serializer any packet had, ms. */
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
  /** How late packets left against their schedule: the worst, and the mean, ms. */
  readonly lateMaxMs: number;
  readonly lateMeanMs: number;
}

interface Queued {
  readonly packet: Buffer;
  readonly due: number;
  readonly next: Pipe | undefined;
}

class Pipe {
  busyUntil = 0;
  private items: Queued[] = [];
  private head = 0;
  packets = 0;
  bytes = 0;
  queueDrops = 0;
  maxQueueMs = 0;

  constructor(
    readonly link: string,
    readonly dir: 'up' | 'down',
    private readonly msPerByte: number,
    private readonly delayMs: number,
    private readonly queueMs: number,
  ) {}

  /** Queues `packet` arriving at time `t` (ms); false when the queue is full (dropped). */
  offer(packet: Buffer, t: number, next: Pipe | undefined): boolean {
    const wait = Math.max(0, this.busyUntil - t);
    if (wait > this.queueMs) {
      this.queueDrops++;
      return false;
    }
    if (wait > this.maxQueueMs) this.maxQueueMs = wait;
    this.busyUntil = Math.max(t, this.busyUntil) + packet.length * this.msPerByte;
    this.items.push({ packet, due: this.busyUntil + this.delayMs, next });
    this.packets++;
    this.bytes += packet.length;
    return true;
  }

  /** Due time of the first packet, or Infinity when empty. */
  get nextDue(): number {
    return this.head < this.items.length ? this.items[this.head]!.due : Number.POSITIVE_INFINITY;
  }

  /** Removes and returns the first packet. */
  take(): Queued {
    const q = this.items[this.head++]!;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return q;
  }

  stats(): PipeStats {
    return { link: this.link, dir: this.dir, packets: this.packets, bytes: this.bytes, queueDrops: this.queueDrops, maxQueueMs: this.maxQueueMs };
  }
}

interface Link {
  readonly name: string;
  readonly network: number;
  readonly mask: number;
  readonly up: Pipe;
  readonly down: Pipe;
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
    throw new Error('usage: wan-emu --tun NAME --link NAME=PREFIX ... [--delay-ms 15] [--rate-mbit 200] [--queue-ms 10]');
  }
  // rate Mbit/s = rate × 1000 bits per ms, so one byte takes 8 / (rate × 1000) ms.
  const msPerByte = 8 / (rateMbit * 1000);
  const links: Link[] = values.link.map((spec) => {
    const [name, cidr] = spec.split('=');
    const p = cidr === undefined ? undefined : parsePrefix(cidr);
    if (name === undefined || name === '' || p === undefined) throw new Error(`bad --link ${spec} (expected NAME=A.B.C.D/N)`);
    const mask = prefixMask(p.prefix) >>> 0;
    return {
      name,
      network: (p.address & mask) >>> 0,
      mask,
      up: new Pipe(name, 'up', msPerByte, delayMs, queueMs),
      down: new Pipe(name, 'down', msPerByte, delayMs, queueMs),
    };
  });
  const linkOf = (addr: number): Link | undefined => links.find((l) => ((addr & l.mask) >>> 0) === l.network);
  const pipes = links.flatMap((l) => [l.up, l.down]);

  const device = TunDevice.open({ name: values.tun, mtu: 1500, up: true, batch: 256 });
  let forwarded = 0;
  let unknown = 0;
  let writeDrops = 0;
  let lateMax = 0;
  let lateSum = 0;
  let lateCount = 0;
  let timer: NodeJS.Timeout | undefined;
  let timerDue = Number.POSITIVE_INFINITY;

  const send = (out: Buffer[]): void => {
    if (out.length === 0) return;
    const n = device.write(out);
    forwarded += n;
    writeDrops += out.length - n;
  };

  const arm = (): void => {
    let due = Number.POSITIVE_INFINITY;
    for (const p of pipes) due = Math.min(due, p.nextDue);
    if (due === timerDue) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    timerDue = due;
    if (due === Number.POSITIVE_INFINITY) return;
    timer = setTimeout(release, Math.max(0, due - performance.now()));
  };

  // Moves every packet that is due: out of an up pipe into the next (down) pipe at its due time,
  // out of a last pipe onto the device.
  function release(): void {
    timer = undefined;
    timerDue = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const out: Buffer[] = [];
    let moved = true;
    while (moved) {
      moved = false;
      for (const p of pipes) {
        while (p.nextDue <= now) {
          const q = p.take();
          moved = true;
          if (q.next !== undefined) {
            q.next.offer(q.packet, q.due, undefined);
          } else {
            const late = now - q.due;
            lateSum += late;
            lateCount++;
            if (late > lateMax) lateMax = late;
            out.push(q.packet);
          }
        }
      }
    }
    send(out);
    arm();
  }

  device.read(
    (packets) => {
      const now = performance.now();
      const direct: Buffer[] = [];
      for (const view of packets) {
        if (view.length < 20 || view[0]! >> 4 !== 4) {
          unknown++;
          continue;
        }
        const packet = Buffer.allocUnsafe(view.length);
        packet.set(view);
        const from = linkOf(packet.readUInt32BE(12));
        const to = linkOf(packet.readUInt32BE(16));
        if (from !== undefined) from.up.offer(packet, now, to?.down);
        else if (to !== undefined) to.down.offer(packet, now, undefined);
        else {
          unknown++;
          direct.push(packet);
        }
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
      lateMaxMs: lateMax,
      lateMeanMs: lateCount > 0 ? lateSum / lateCount : 0,
    };
    process.stdout.write(`${JSON.stringify(s)}\n`);
  });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => {
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
