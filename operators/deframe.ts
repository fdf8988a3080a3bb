import { Observable, type OperatorFunction } from 'rxjs';
import { FrameDecoder } from './core/wire/decoder.js';
import { FrameType, MAX_BODY_SUPER, superPacketOf } from './core/wire/frames.js';
import { addDrop, type DropCounts, type Inbound } from './core/packet.js';

/** Options of deframe. */
export interface DeframeOptions {
  /** Largest accepted frame body; a longer announced length ends the stream with FrameError. */
  readonly maxBody: number;
  /** Called with counts of frames the decoder skipped (zero-length bodies), when there are any. */
  readonly onDrops?: (drops: DropCounts) => void;
  /** Asked before each chunk: true once SUPER frames are negotiated; they are then decoded as
   * data (bodies up to MAX_BODY_SUPER) instead of being passed on as unknown control frames. */
  readonly superFrames?: () => boolean;
}

/**
 * Decodes a byte stream into Inbound items, in order: consecutive DATA frames become one `data`
 * item (payload views, no copies, valid during the emission: large frames that span chunks are
 * assembled in reused buffers), every other frame a `control` item; with `superFrames`, SUPER
 * frames join the `data` items as SuperPackets (refused ones are counted as `malformed-super` or
 * `gso-too-small`, see superPacketOf). Completes with the source;
 * errors with FrameError on an oversize length (nothing of that size is allocated).
 *
 *   chunks: -a----b-c--|     a = DATA p1 + KEEPALIVE + DATA p2, b+c = halves of DATA p3
 *   items:  -(xyz)----w|     x = data[p1], y = control(0x02), z = data[p2], w = data[p3]
 */
export function deframe(options: DeframeOptions): OperatorFunction<Uint8Array, Inbound> {
  return (source) =>
    new Observable<Inbound>((subscriber) => {
      const decoder = new FrameDecoder(options.maxBody, true);
      return source.subscribe({
        next(chunk) {
          const supers = options.superFrames?.() === true;
          decoder.maxBody = supers ? Math.max(MAX_BODY_SUPER, options.maxBody) : options.maxBody;
          let frames;
          try {
            frames = decoder.push(chunk);
          } catch (err) {
            subscriber.error(err);
            return;
          }
          if (decoder.emptyFrames > 0) {
            options.onDrops?.({ 'empty-frame': decoder.emptyFrames });
            decoder.emptyFrames = 0;
          }
          let data: Uint8Array[] | undefined;
          let refused: DropCounts | undefined;
          for (const f of frames) {
            if (f.type === FrameType.Data) {
              (data ??= []).push(f.payload);
              continue;
            }
            if (supers && f.type === FrameType.Super) {
              const p = superPacketOf(f.payload);
              if (typeof p === 'string') refused = addDrop(refused, p);
              else (data ??= []).push(p);
              continue;
            }
            if (data !== undefined) {
              subscriber.next({ kind: 'data', packets: data });
              data = undefined;
            }
            subscriber.next({ kind: 'control', type: f.type, payload: f.payload });
          }
          if (refused !== undefined) options.onDrops?.(refused);
          if (data !== undefined) subscriber.next({ kind: 'data', packets: data });
        },
        error: (err) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });
    });
}
