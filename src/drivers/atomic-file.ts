// Driver: writing a small state file so that a crash or power loss leaves either the old content or
// the new, never an empty or half-written file: a temporary file next to it, fsync, then rename
// (or link, when the file must not exist yet), then fsync of the directory. Synchronous: state
// files are written at start-up or once per new lease. One writer per process at a time is what
// makes the fixed temporary name `<path>.tmp-<pid>` safe.
import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Writing `path` failed: at `stage` 'write' nothing changed; at 'sync-directory' the new file is in place but may not survive a power loss. */
export class AtomicWriteError extends Error {
  override readonly name = 'AtomicWriteError';
  constructor(
    readonly path: string,
    readonly stage: 'write' | 'sync-directory',
    /** The errno code of the failure (`EEXIST` for an exclusive write to an existing file). */
    readonly code: string | undefined,
    options: { cause: unknown },
  ) {
    super((options.cause as Error).message, options);
  }
}

/**
 * Writes `data` to `path` atomically with `mode`: replaces an existing file, or with `exclusive`
 * fails (code EEXIST) when `path` exists. Throws AtomicWriteError; leaves no temporary file behind.
 */
export function writeFileAtomically(path: string, data: string | Uint8Array, options: { readonly mode: number; readonly exclusive?: boolean }): void {
  const tmp = `${path}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w', options.mode);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    // link() refuses an existing target, so of two writers racing for a new file exactly one wins.
    if (options.exclusive === true) linkSync(tmp, path);
    else renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeQuietly(fd);
    removeQuietly(tmp);
    throw new AtomicWriteError(path, 'write', (err as NodeJS.ErrnoException).code, { cause: err });
  }
  if (options.exclusive === true) removeQuietly(tmp);
  // The rename or link is durable only once the directory entry is on disk.
  let dirFd: number | undefined;
  try {
    dirFd = openSync(dirname(path), 'r');
    fsyncSync(dirFd);
  } catch (err) {
    throw new AtomicWriteError(path, 'sync-directory', (err as NodeJS.ErrnoException).code, { cause: err });
  } finally {
    if (dirFd !== undefined) closeQuietly(dirFd);
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Nothing was created, or it is already gone.
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed or invalid: nothing more to release.
  }
}
