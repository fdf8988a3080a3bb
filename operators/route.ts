import { map, type OperatorFunction } from 'rxjs';
import { ipv4Destination, ipv4Problem } from './core/wire/ipv4.js';
import { addDrop, type DropReason, type PacketBatch, type Routed, type RoutedBatch } from './core/packet.js';

/** Decides where `packet` (to `destination`) goes: a target, or the reason it is dropped. Must be O(1). */
export type RouteDecision<T extends object> = (destination: number, packet: Uint8Array) => T | DropReason;

/**
 * Splits each batch by IPv4 destination with `decide` (one call per packet, O(1) lookups expected).
 * Packets keep their order within a target. Non-IPv4 or runt packets are dropped as `not-ipv4`, IPv4
 * packets whose header or total length lies past their bytes as `malformed-ipv4` (ipv4Problem);
 * drops are counted in the output's `drops`. Emits one RoutedBatch per input batch.
 *
 *   batches: -[a→A, b→B, c→A, x]-|
 *   routed:  -{A:[a,c], B:[b]; drops: not-ipv4 1}-|
 */
export function route<T extends object>(decide: RouteDecision<T>): OperatorFunction<PacketBatch, RoutedBatch<T>> {
  return map((batch) => routeBatch(batch, decide));
}

/** The per-batch work of `route`, for callers that already hold a batch. */
export function routeBatch<T extends object>(batch: PacketBatch, decide: RouteDecision<T>): RoutedBatch<T> {
  const routes: Routed<T>[] = [];
  let drops: RoutedBatch<T>['drops'];
  let last: Routed<T> | undefined;
  for (let i = 0; i < batch.length; i++) {
    const p = batch[i]!;
    const problem = ipv4Problem(p);
    if (problem !== undefined) {
      drops = addDrop(drops, problem);
      continue;
    }
    const t = decide(ipv4Destination(p), p);
    if (typeof t === 'string') {
      drops = addDrop(drops, t);
      continue;
    }
    if (last !== undefined && last.target === t) {
      last.packets.push(p);
      continue;
    }
    last = undefined;
    for (const r of routes) if (r.target === t) last = r;
    if (last === undefined) {
      last = { target: t, packets: [] };
      routes.push(last);
    }
    last.packets.push(p);
  }
  return { routes, drops };
}
