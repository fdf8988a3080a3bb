import { filter, map, pipe, type OperatorFunction } from 'rxjs';
import { encodeFrames } from './wire/frames.js';
import type { PacketBatch } from './types.js';

/**
 * Encodes each batch of payloads as consecutive frames of `type` in one new buffer (one copy, so the
 * output outlives views in the input). Empty batches are skipped.
 *
 *   batches: -[p1,p2]--[]--[p3]-|
 *   bytes:   -B1----------B2---|     B1 = frame(p1)+frame(p2), B2 = frame(p3)
 */
export function frame(type: number): OperatorFunction<PacketBatch, Uint8Array> {
  return pipe(
    filter((batch: PacketBatch) => batch.length > 0),
    map((batch) => encodeFrames(type, batch)),
  );
}
