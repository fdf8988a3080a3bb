// The lease file driver (src/drivers/leases.ts), against a real temporary directory.
import test from 'ava';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeaseFileError, loadLeases, saveLeases } from '../src/drivers/leases.js';
import { parseIpv4 } from '../operators/core/address.js';

const ip = (s: string): number => parseIpv4(s)!;

function tempDir(t: { teardown: (f: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'lwt-leases-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a missing lease file is an empty table', (t) => {
  t.deepEqual(loadLeases(join(tempDir(t), 'leases.json')), {});
});

test('saved leases load back the same, written as the documented JSON', (t) => {
  const path = join(tempDir(t), 'leases.json');
  const leases = { 'token:bob': ip('10.0.0.3'), 'cert:CN=alice': ip('10.0.0.2'), __proto__x: ip('10.0.0.4') };
  saveLeases(path, leases);
  t.deepEqual(loadLeases(path), leases);
  t.deepEqual(JSON.parse(readFileSync(path, 'utf8')), {
    schema: 1,
    leases: { __proto__x: '10.0.0.4', 'cert:CN=alice': '10.0.0.2', 'token:bob': '10.0.0.3' },
  });
  t.true(readFileSync(path, 'utf8').endsWith('}\n'));
  t.is(statSync(path).mode & 0o777, 0o600);
});

test('an identity named __proto__ survives the round trip as an ordinary key', (t) => {
  const path = join(tempDir(t), 'leases.json');
  saveLeases(path, Object.fromEntries([['__proto__', ip('10.0.0.9')]]));
  const back = loadLeases(path);
  t.deepEqual(Object.keys(back), ['__proto__']);
  t.is(Object.getPrototypeOf(back), Object.prototype);
});

test('saving replaces the old table and leaves no temporary file behind', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'leases.json');
  saveLeases(path, { a: ip('10.0.0.2') });
  saveLeases(path, { b: ip('10.0.0.3') });
  t.deepEqual(loadLeases(path), { b: ip('10.0.0.3') });
  t.deepEqual(readdirSync(dir), ['leases.json']);
});

test('a failed save keeps the old file and leaves no temporary file behind', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'leases.json');
  saveLeases(path, { a: ip('10.0.0.2') });
  // A directory where the temporary file would go makes the write fail.
  mkdirSync(`${path}.tmp-${process.pid}`);
  const err = t.throws(() => saveLeases(path, { b: ip('10.0.0.3') }), { instanceOf: LeaseFileError });
  t.true(err?.message.includes(path));
  rmSync(`${path}.tmp-${process.pid}`, { recursive: true });
  t.deepEqual(loadLeases(path), { a: ip('10.0.0.2') });
  t.deepEqual(readdirSync(dir), ['leases.json']);
});

test('saving into a missing directory fails with an error naming the file', (t) => {
  const path = join(tempDir(t), 'nope', 'leases.json');
  const err = t.throws(() => saveLeases(path, {}), { instanceOf: LeaseFileError });
  t.is(err?.path, path);
  t.regex(err?.message ?? '', /cannot be written/);
});

test('a lease that is not an address is not written', (t) => {
  const dir = tempDir(t);
  t.throws(() => saveLeases(join(dir, 'leases.json'), { a: 2 ** 32 }), { instanceOf: LeaseFileError, message: /"a" is not an IPv4 address/ });
  t.deepEqual(readdirSync(dir), []);
});

const refuses = test.macro({
  exec(t, content: string, pattern: RegExp) {
    const path = join(tempDir(t), 'leases.json');
    writeFileSync(path, content);
    const err = t.throws(() => loadLeases(path), { instanceOf: LeaseFileError });
    t.is(err?.name, 'LeaseFileError');
    t.is(err?.path, path);
    t.true(err?.message.startsWith(`lease file ${path}: `), err?.message);
    t.regex(err?.message ?? '', pattern);
  },
  title: (provided = '') => `a lease file is refused with a clear error when ${provided}`,
});

test('it is not JSON', refuses, '{"schema": 1, "leases": {', /is not valid JSON/);
test('it is empty', refuses, '', /is not valid JSON/);
test('it is not an object', refuses, '[]', /\(root\): expected an object, got \[\]/);
test('its schema is another version', refuses, '{"schema": 2, "leases": {}}', /schema: expected 1, got 2/);
test('it has no leases', refuses, '{"schema": 1}', /leases: expected an object of identity: address, got nothing/);
test('a lease is not an address', refuses, '{"schema": 1, "leases": {"a": "10.0.0.300"}}', /leases\."a": expected an IPv4 address like 10\.0\.0\.2, got "10\.0\.0\.300"/);
test('a lease is a number', refuses, '{"schema": 1, "leases": {"a": 167772162}}', /leases\."a": expected an IPv4 address like 10\.0\.0\.2, got 167772162/);
test('it has unknown keys', refuses, '{"schema": 1, "leases": {}, "extra": true}', /unknown key\(s\) "extra"/);

test('an unreadable path is an error naming the file, not an empty table', (t) => {
  const dir = tempDir(t);
  // A directory cannot be read as a file (EISDIR), whoever runs the test.
  const err = t.throws(() => loadLeases(dir), { instanceOf: LeaseFileError });
  t.regex(err?.message ?? '', /cannot be read/);
  t.is(err?.path, dir);
});
