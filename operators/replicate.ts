import { Observable, asyncScheduler, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import { ipv4Destination, isIpv4 } from './core/wire/ipv4.js';
import type { DropCounts, DropReason, Routed } from './core/packet.js';
import { broadcastAddress, parseIpv4, type Ipv4Prefix } from './core/address.js';

/** The drop reason this operator adds: a sender went over its broadcast/multicast packets-per-second limit. */
export type BroadcastLimitDrop = Extract<DropReason, 'broadcast-limit'>;

/** The reasons replicate counts drops under. */
export type ReplicateDropReason = DropReason;

/** Drop counts by reason, as replicate reports them. */
export type ReplicateDropCounts = DropCounts;

/** The multicast groups replicated when no allow-list is given: mDNS 224.0.0.251 and SSDP 239.255.255.250. */
export const DEFAULT_GROUPS: readonly number[] = [parseIpv4('224.0.0.251')!, parseIpv4('239.255.255.250')!];

/** Packets read from one sender: a member's session, or the hub itself (its TUN device). */
export interface ReplicateInput<T> {
  readonly sender: T;
  readonly packets: Uint8Array[];
}

/** What replicate makes of one input batch. */
export interface ReplicatedBatch<T> {
  readonly sender: T;
  /** The input packets that are not broadcast or allowed multicast, untouched and in order: for `route`. */
  readonly passed: Uint8Array[];
  /** One route per receiver with the replicated packets in order (the same views in every route). */
  readonly routes: Routed<T>[];
  /** `broadcast-limit` drops (each counts one input packet, not its copies), or undefined. */
  drops: ReplicateDropCounts | undefined;
}

/** Options of `replicate`. */
export interface ReplicateOptions<T> {
  /** The tunnel subnet; its directed broadcast address is replicated (the network address is not). */
  readonly subnet: Ipv4Prefix;
  /** Who gets a copy of a broadcast from `sender` (the hub's forwarding policy decides: isolation, the hub itself); read once per batch that has something to replicate. */
  readonly receivers: (sender: T) => Iterable<T>;
  /** Multicast groups (u32) to replicate; others pass through. Defaults to DEFAULT_GROUPS. */
  readonly groups?: Iterable<number>;
  /** Replicated packets per second allowed per sender (the bucket's refill rate), > 0. */
  readonly rate: number;
  /** Bucket size: how many packets a quiet sender may send at once. Defaults to `rate`. */
  readonly burst?: number;
  /** A sender's bucket is forgotten when it emits here (a member left); its next packet starts full. */
  readonly forget$?: Observable<T>;
  /** Whose clock refills the buckets; TestScheduler virtualises it. Defaults to asyncScheduler. */
  readonly scheduler?: SchedulerLike;
}

/** A token bucket in thousandths of a packet: with a whole `rate`, refills in whole milliseconds stay exact integers. */
interface Bucket {
  milli: number;
  at: number;
}

/**
 * Broadcast and multicast at the hub. For each batch of one sender, emits one ReplicatedBatch: the
 * packets to the subnet broadcast address, 255.255.255.255 or an allowed multicast group (IPv4 only)
 * are copied to every receiver, the rest are handed back untouched in `passed` for `route` (not this
 * operator's business: unlisted multicast, unicast, non-IPv4). The receivers are whoever
 * `receivers(sender)` names (the forwarding policy: the hub and the other members, only the hub
 * under isolation); copies not made are not drops. Each sender has a token bucket (`rate` per second,
 * `burst` deep, in the scheduler's time): a replicable packet that finds it empty is dropped and
 * counted as `broadcast-limit`. State: one bucket per sender, removed via `forget$` or with the
 * subscription. Mirrors the source's completion and errors (and `forget$`'s errors).
 *
 *   batches: -{A:[bc1, u, bc2, bc3]}-|          (rate 2/s, burst 2; members A, B, C)
 *   out:     -{A; passed:[u]; hub:[bc1,bc2], B:[bc1,bc2], C:[bc1,bc2]; broadcast-limit 1}-|
 */
export function replicate<T>(options: ReplicateOptions<T>): OperatorFunction<ReplicateInput<T>, ReplicatedBatch<T>> {
  const { receivers, rate } = options;
  if (!(rate > 0)) throw new RangeError(`replicate: rate ${rate} must be above 0`);
  const burst = options.burst ?? rate;
  if (!(burst >= 1)) throw new RangeError(`replicate: burst ${burst} must be at least 1`);
  const scheduler = options.scheduler ?? asyncScheduler;
  const groups = new Set(options.groups ?? DEFAULT_GROUPS);
  const directed = broadcastAddress(options.subnet);
  const capacity = burst * 1000;
  const replicable = (dst: number): boolean => dst === directed || dst === 0xffffffff || groups.has(dst);

  return (source) =>
    new Observable<ReplicatedBatch<T>>((subscriber) => {
      const buckets = new Map<T, Bucket>();
      let forgetting: Subscription | undefined;
      if (options.forget$ !== undefined) {
        forgetting = options.forget$.subscribe({ next: (s) => void buckets.delete(s), error: (e) => subscriber.error(e) });
      }

      /** Takes one token of `sender`'s bucket; false when it is empty. */
      const take = (sender: T): boolean => {
        const now = scheduler.now();
        let b = buckets.get(sender);
        if (b === undefined) {
          b = { milli: capacity, at: now };
          buckets.set(sender, b);
        } else if (now > b.at) {
          // rate packets per 1000 ms = rate milli-packets per ms.
          b.milli = Math.min(capacity, b.milli + (now - b.at) * rate);
          b.at = now;
        }
        if (b.milli < 1000) return false;
        b.milli -= 1000;
        return true;
      };

      const inner = source.subscribe({
        next({ sender, packets }) {
          const passed: Uint8Array[] = [];
          let copies: Uint8Array[] | undefined;
          let drops: ReplicateDropCounts | undefined;
          for (let i = 0; i < packets.length; i++) {
            const p = packets[i]!;
            if (!isIpv4(p) || !replicable(ipv4Destination(p))) {
              passed.push(p);
              continue;
            }
            if (!take(sender)) {
              drops ??= {};
              drops['broadcast-limit'] = (drops['broadcast-limit'] ?? 0) + 1;
              continue;
            }
            (copies ??= []).push(p);
          }
          const routes: Routed<T>[] = [];
          if (copies !== undefined) for (const r of receivers(sender)) if (r !== sender) routes.push({ target: r, packets: copies.slice() });
          subscriber.next({ sender, passed, routes, drops });
        },
        error: (e) => subscriber.error(e),
        complete: () => subscriber.complete(),
      });
      return () => {
        inner.unsubscribe();
        forgetting?.unsubscribe();
      };
    });
}
