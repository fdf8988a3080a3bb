import { map, type MonoTypeOperatorFunction } from 'rxjs';
import { addDrop, type RoutedBatch } from './core/packet.js';

/**
 * Client isolation: when `enabled` (a flag, or a function read per batch so the setting can change
 * live), removes the routes whose target `isPeer` (another client) and counts their packets as
 * `isolation` drops; routes to the hub pass. When not enabled it passes every batch through untouched.
 *
 *   routed:   -{hub:[a], peer:[b,c]}-|
 *   isolated: -{hub:[a]; drops: isolation 2}-|
 */
export function isolate<T extends object>(enabled: boolean | (() => boolean), isPeer: (target: T) => boolean): MonoTypeOperatorFunction<RoutedBatch<T>> {
  const on = typeof enabled === 'function' ? enabled : () => enabled;
  return map((rb) => (on() ? isolateBatch(rb, isPeer) : rb));
}

/** The per-batch work of `isolate` (when enabled); mutates and returns `rb`. */
export function isolateBatch<T extends object>(rb: RoutedBatch<T>, isPeer: (target: T) => boolean): RoutedBatch<T> {
  const routes = rb.routes;
  let w = 0;
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i]!;
    if (isPeer(r.target)) rb.drops = addDrop(rb.drops, 'isolation', r.packets.length);
    else routes[w++] = r;
  }
  routes.length = w;
  return rb;
}
