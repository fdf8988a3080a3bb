// Driver: the state directory (`-state-dir`): the hub's lease file as a LeaseStore, a client's
// generated identity (`client-id`). Synchronous on purpose: both are touched once at start-up, and a
// lease is saved once per new identity.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LeaseStore } from '../../pipelines/ports.js';
import { AtomicWriteError, writeFileAtomically } from './atomic-file.js';
import { loadLeases, saveLeases } from './leases.js';

/** The state directory or a file in it cannot be used; the message names the path and says why. */
export class StateError extends Error {
  override readonly name = 'StateError';
  constructor(
    readonly path: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`state_dir: ${path}: ${detail}`, options);
  }
}

const errnoText = (err: unknown): string => {
  const e = err as NodeJS.ErrnoException;
  return e.code === 'EACCES' ? 'permission denied' : e.code === 'ENOENT' ? 'no such file or directory' : (e.code ?? e.message);
};

/** Creates `dir` (and its parents) with mode 0700 when missing; throws StateError when it cannot. */
export function ensureStateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StateError(dir, `cannot be created (${errnoText(err)}; choose another with -state-dir DIR)`, { cause: err });
  }
}

/** The file a client keeps its identity in. */
export const CLIENT_ID_FILE = 'client-id';
const CLIENT_ID = /^[0-9a-f]{32}$/;

/**
 * The client identity in `<dir>/client-id`: 32 lowercase hex digits (128 random bits). A missing
 * file, or one that is empty or only whitespace (as a crash of an older version could leave), is no
 * identity: with `create` a new one is written atomically (mode 0600; a missing file exclusively, an
 * empty one replaced), else undefined. Throws StateError when the file cannot be read or written or
 * holds something other than an identity.
 */
export function clientId(dir: string, create: boolean): string | undefined {
  const path = join(dir, CLIENT_ID_FILE);
  let text: string | undefined;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new StateError(path, `cannot be read (${errnoText(err)})`, { cause: err });
  }
  const stored = text?.trim();
  if (stored !== undefined && stored !== '') {
    if (!CLIENT_ID.test(stored)) throw new StateError(path, 'is not a client id (32 hex digits); delete it to get a new identity (and a new address)');
    return stored;
  }
  if (!create) return undefined;
  ensureStateDir(dir);
  const id = randomBytes(16).toString('hex');
  try {
    // Exclusive when missing: of two clients racing on one directory, one wins and the other reads its id.
    writeFileAtomically(path, `${id}\n`, { mode: 0o600, exclusive: text === undefined });
  } catch (err) {
    if (!(err instanceof AtomicWriteError)) throw err;
    const winner = err.code === 'EEXIST' ? clientId(dir, false) : undefined;
    if (winner !== undefined) return winner;
    const what = err.stage === 'write' ? 'cannot be written' : 'was written but its directory could not be synced';
    throw new StateError(path, `${what} (${errnoText(err.cause)})`, { cause: err.cause });
  }
  return id;
}

/** The file the hub keeps its leases in. */
export const LEASES_FILE = 'leases.json';

/**
 * The hub's LeaseStore over `<dir>/leases.json`: read now (a missing file or directory is an empty
 * table; throws LeaseFileError when it is not a lease file); the directory is created on the first
 * save, so a hub that never assigns an address never touches the disk.
 */
export function makeLeaseStore(dir: string): LeaseStore & { readonly path: string } {
  const path = join(dir, LEASES_FILE);
  return {
    path,
    initial: loadLeases(path),
    save(leases) {
      try {
        ensureStateDir(dir);
        saveLeases(path, leases);
        return { ok: true };
      } catch (err) {
        return { ok: false, detail: (err as Error).message };
      }
    },
  };
}
