// The state directory driver (src/drivers/state.ts): a client's identity file, and the atomic
// writer it shares with the lease file (src/drivers/atomic-file.ts), against real temporary
// directories.
import test from 'ava';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLIENT_ID_FILE, StateError, clientId } from '../src/drivers/state.js';
import { AtomicWriteError, writeFileAtomically } from '../src/drivers/atomic-file.js';

const ID = /^[0-9a-f]{32}$/;

function tempDir(t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'lwt-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A state directory whose client-id file holds `content`. */
function withIdFile(t: { teardown: (f: () => void) => void }, content: string): { dir: string; path: string } {
  const dir = tempDir(t);
  const path = join(dir, CLIENT_ID_FILE);
  writeFileSync(path, content, { mode: 0o600 });
  return { dir, path };
}

test('a missing client-id is created when asked (32 hex digits, mode 0600, no temporary left) and read back unchanged', (t) => {
  const dir = join(tempDir(t), 'state');
  const id = clientId(dir, true);
  t.regex(id ?? '', ID);
  const path = join(dir, CLIENT_ID_FILE);
  t.is(readFileSync(path, 'utf8'), `${id}\n`);
  t.is(statSync(path).mode & 0o777, 0o600);
  t.is(statSync(dir).mode & 0o777, 0o700, 'the directory is created private');
  t.deepEqual(readdirSync(dir), [CLIENT_ID_FILE]);
  t.is(clientId(dir, true), id);
  t.is(clientId(dir, false), id);
});

test('a missing client-id is not created when not asked', (t) => {
  const dir = tempDir(t);
  t.is(clientId(dir, false), undefined);
  t.deepEqual(readdirSync(dir), []);
});

for (const [what, content] of [
  ['empty', ''],
  ['only whitespace', ' \n\t\n'],
] as const) {
  test(`a client-id that is ${what} counts as missing: without create it is left alone`, (t) => {
    const { dir, path } = withIdFile(t, content);
    t.is(clientId(dir, false), undefined);
    t.is(readFileSync(path, 'utf8'), content);
  });

  test(`a client-id that is ${what} counts as missing: with create a new id replaces it (by rename, not by writing into it)`, (t) => {
    const { dir, path } = withIdFile(t, content);
    const before = statSync(path).ino;
    const id = clientId(dir, true);
    t.regex(id ?? '', ID);
    t.is(readFileSync(path, 'utf8'), `${id}\n`);
    t.not(statSync(path).ino, before, 'a new file was renamed over the empty one');
    t.is(statSync(path).mode & 0o777, 0o600);
    t.deepEqual(readdirSync(dir), [CLIENT_ID_FILE]);
    t.is(clientId(dir, false), id);
  });
}

test('a client-id with surrounding whitespace is read as the id', (t) => {
  const { dir } = withIdFile(t, `  ${'ab'.repeat(16)}\r\n\n`);
  t.is(clientId(dir, false), 'ab'.repeat(16));
});

test('a client-id that holds something else is a StateError naming the file, with or without create, and is left alone', (t) => {
  for (const content of ['hello\n', 'AB'.repeat(16), 'ab'.repeat(15), `${'ab'.repeat(16)} extra`]) {
    const { dir, path } = withIdFile(t, content);
    for (const create of [false, true]) {
      const err = t.throws(() => clientId(dir, create), { instanceOf: StateError });
      t.is(err?.path, path);
      t.is(err?.message, `state_dir: ${path}: is not a client id (32 hex digits); delete it to get a new identity (and a new address)`);
    }
    t.is(readFileSync(path, 'utf8'), content);
  }
});

test('a client-id that cannot be read is a StateError', (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, CLIENT_ID_FILE));
  const err = t.throws(() => clientId(dir, true), { instanceOf: StateError });
  t.regex(err?.message ?? '', /: cannot be read \(EISDIR\)$/);
});

test('writeFileAtomically replaces a file, or with exclusive refuses an existing one with EEXIST; no temporary is left either way', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'f');
  writeFileAtomically(path, 'one\n', { mode: 0o600, exclusive: true });
  t.is(readFileSync(path, 'utf8'), 'one\n');
  const err = t.throws(() => writeFileAtomically(path, 'two\n', { mode: 0o600, exclusive: true }), { instanceOf: AtomicWriteError });
  t.like(err, { path, stage: 'write', code: 'EEXIST' });
  t.is(readFileSync(path, 'utf8'), 'one\n');
  writeFileAtomically(path, Buffer.from('three\n'), { mode: 0o640 });
  t.is(readFileSync(path, 'utf8'), 'three\n');
  t.is(statSync(path).mode & 0o777, 0o640);
  t.deepEqual(readdirSync(dir), ['f']);
});
