import { Observable, type OperatorFunction } from 'rxjs';
import { FrameType } from './core/wire/frames.js';
import { ipv4Source, isIpv4 } from './core/wire/ipv4.js';
import type { Inbound } from './core/packet.js';

/** The item learnSource adds. */
export type Learned = Extract<Inbound, { readonly kind: 'learned' }>;

type Item = { readonly kind: string; readonly type?: number; readonly packets?: readonly Uint8Array[] };

/**
 * Source-address learning for peers that send no HELLO (0.0.1-era clients). Passes every item through;
 * if a `data` item arrives before any HELLO control frame, it first emits `{kind:'learned'}` with
 * the source address of that item's first IPv4 packet. Learns at most once; after a HELLO it never
 * learns.
 *
 *   in:  -d1--d2-|      d1 = data from 10.0.0.2
 *   out: -(ld1)-d2-|    l = learned 10.0.0.2
 */
export function learnSource<T extends { readonly kind: string } = Inbound>(): OperatorFunction<T, T | Learned> {
  return (source) =>
    new Observable<T | Learned>((subscriber) => {
      let done = false;
      return source.subscribe({
        next(item) {
          if (!done) {
            const i = item as Item;
            if (i.kind === 'control' && i.type === FrameType.Hello) done = true;
            else if (i.kind === 'data' && i.packets !== undefined) {
              const first = i.packets.find(isIpv4);
              if (first !== undefined) {
                done = true;
                subscriber.next({ kind: 'learned', address: ipv4Source(first) });
              }
            }
          }
          subscriber.next(item);
        },
        error: (e) => subscriber.error(e),
        complete: () => subscriber.complete(),
      });
    });
}
