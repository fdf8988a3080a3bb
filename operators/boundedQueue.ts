import { Observable, take, type OperatorFunction, type Subscription } from 'rxjs';
import type { PacketSink } from './core/packet.js';
import type { PacketBatch } from './core/packet.js';
import { copyPacket } from './core/wire/gso.js';

/** Options of boundedQueue. */
export interface BoundedQueueOptions {
  /** Packets that may wait for the sink; beyond this, new packets are dropped (tail drop). */
  readonly limit: number;
  /** Where packets go. */
  readonly sink: PacketSink;
  /** When given, `depth` is kept equal to the number of waiting packets (for status reporting). */
  readonly gauge?: { depth: number };
}

/**
 * Writes each batch to `sink`. While the sink is full, up to `limit` packets wait (copied, since
 * input packets may be views into reused buffers) and are written, oldest first, when the sink's
 * `ready$` fires. Packets arriving to a full queue are dropped (tail drop, the newest go): the
 * output emits the number dropped for each input batch that lost any. Completes with the source;
 * waiting packets are discarded on unsubscribe.
 *
 *   batches: -[a,b]-[c,d]--R--|   sink takes a, then is full; limit 2; R = sink ready
 *   drops:   -------1---------|   b, c wait; d is dropped; at R the sink takes b, c
 */
export function boundedQueue(options: BoundedQueueOptions): OperatorFunction<PacketBatch, number> {
  const { limit, sink, gauge } = options;
  return (source) =>
    new Observable<number>((subscriber) => {
      let queue: Uint8Array[] = [];
      let waiting: Subscription | undefined;

      const enqueue = (batch: PacketBatch, from: number): number => {
        const room = limit - queue.length;
        const keep = Math.min(room, batch.length - from);
        for (let i = 0; i < keep; i++) queue.push(copyPacket(batch[from + i]!));
        if (gauge) gauge.depth = queue.length;
        return batch.length - from - keep;
      };
      const awaitReady = (): void => {
        if (waiting !== undefined) return;
        waiting = sink.ready$.pipe(take(1)).subscribe(() => {
          waiting = undefined;
          flush();
        });
      };
      const flush = (): void => {
        if (queue.length === 0) return;
        const n = sink.write(queue);
        if (n >= queue.length) queue = [];
        else {
          queue.splice(0, n);
          awaitReady();
        }
        if (gauge) gauge.depth = queue.length;
      };

      const inner = source.subscribe({
        next(batch) {
          let dropped: number;
          if (queue.length === 0) {
            const n = sink.write(batch);
            if (n >= batch.length) return;
            dropped = enqueue(batch, n);
            awaitReady();
          } else {
            dropped = enqueue(batch, 0);
          }
          if (dropped > 0) subscriber.next(dropped);
        },
        error: (e) => subscriber.error(e),
        complete: () => subscriber.complete(),
      });
      return () => {
        inner.unsubscribe();
        waiting?.unsubscribe();
        queue = [];
        if (gauge) gauge.depth = 0;
      };
    });
}
