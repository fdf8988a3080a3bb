// Driver: the hub's lease file. JSON `{ "schema": 1, "leases": { "IDENTITY": "10.0.0.5" } }`,
// replaced atomically (atomic-file.ts) so a crash or power loss leaves either the old table or the
// new one. Synchronous on purpose: a new lease is written once per new identity (rare).
import { readFileSync } from 'node:fs';
import { AtomicWriteError, writeFileAtomically } from './atomic-file.js';
import type { LeaseTable } from '../../pipelines/allocator.js';
import { isLeft } from 'fp-ts/lib/Either.js';
import { formatIpv4 } from '../../operators/core/address.js';
import { AddressCodec, decodeErrorLine } from '../../operators/core/codecs.js';

/** The version of the file format this driver reads and writes. */
export const LEASE_FILE_SCHEMA = 1;

/** The lease file cannot be read, parsed or written; the message names the file. */
export class LeaseFileError extends Error {
  override readonly name = 'LeaseFileError';
  constructor(
    readonly path: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`lease file ${path}: ${detail}`, options);
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The lease table in `path`: empty when the file does not exist; throws LeaseFileError when it cannot be read or is not a valid lease file. */
export function loadLeases(path: string): LeaseTable {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Object.freeze({});
    throw new LeaseFileError(path, `cannot be read (${(err as Error).message})`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new LeaseFileError(path, `is not valid JSON (${(err as Error).message})`, { cause: err });
  }
  return decode(path, json);
}

function decode(path: string, json: unknown): LeaseTable {
  const bad = (where: string, expected: string, got: unknown): LeaseFileError => new LeaseFileError(path, decodeErrorLine(where, expected, got));
  if (!isRecord(json)) throw bad('(root)', 'an object', json);
  const unknown = Object.keys(json).filter((k) => k !== 'schema' && k !== 'leases');
  if (unknown.length > 0) throw new LeaseFileError(path, `unknown key(s) ${unknown.map((k) => JSON.stringify(k)).join(', ')}`);
  if (json.schema !== LEASE_FILE_SCHEMA) throw bad('schema', String(LEASE_FILE_SCHEMA), json.schema);
  if (!isRecord(json.leases)) throw bad('leases', 'an object of identity: address', json.leases);
  const entries: [string, number][] = [];
  for (const [identity, text] of Object.entries(json.leases)) {
    const address = AddressCodec.decode(text);
    if (isLeft(address)) throw bad(`leases.${JSON.stringify(identity)}`, AddressCodec.name, text);
    entries.push([identity, address.right]);
  }
  // fromEntries defines own properties, so an identity such as "__proto__" stays a plain key.
  return Object.freeze(Object.fromEntries(entries));
}

/** Replaces `path` with `leases` atomically (temporary file, fsync, rename, fsync of the directory); throws LeaseFileError, leaving the old file and no temporary behind. */
export function saveLeases(path: string, leases: LeaseTable): void {
  const sorted = Object.keys(leases)
    .sort()
    .map((id): [string, string] => {
      const a = leases[id]!;
      if (!Number.isInteger(a) || a < 0 || a > 0xffffffff) throw new LeaseFileError(path, `not written: the lease of ${JSON.stringify(id)} is not an IPv4 address (${a})`);
      return [id, formatIpv4(a)];
    });
  const text = `${JSON.stringify({ schema: LEASE_FILE_SCHEMA, leases: Object.fromEntries(sorted) }, null, 2)}\n`;
  try {
    writeFileAtomically(path, text, { mode: 0o600 });
  } catch (err) {
    if (!(err instanceof AtomicWriteError)) throw err;
    const what = err.stage === 'write' ? 'cannot be written' : 'was replaced but its directory could not be synced';
    throw new LeaseFileError(path, `${what} (${err.message})`, { cause: err.cause });
  }
}
