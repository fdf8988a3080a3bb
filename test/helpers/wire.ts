// Control frames as a peer writes them: the JSON text, without this project's codecs in between
// (so tests and scripted peers can also send what the codecs would never produce).
import { encodeFrame } from '../../operators/core/wire/frames.js';

/** A control frame of `type` whose body is `json` as text. */
export function jsonFrame(type: number, json: unknown): Buffer {
  return encodeFrame(type, new TextEncoder().encode(JSON.stringify(json)));
}
