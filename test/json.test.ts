// The strict JSON reader (src/config/json.ts): the values JSON.parse gives, duplicate keys refused
// with their path, syntax errors located.
import test from 'ava';
import { isLeft, isRight } from 'fp-ts/lib/Either.js';
import { JsonError, formatJsonPath, parseJson, type JsonPath } from '../src/config/json.js';

const parsesLikeJsonParse = test.macro({
  exec(t, text: string) {
    const got = parseJson(text);
    if (!isRight(got)) return t.fail(`refused: ${got.left.message}`);
    t.deepEqual(got.right, JSON.parse(text));
    // Same key order and the same own keys (deepEqual would not see a prototype set by "__proto__").
    t.is(JSON.stringify(got.right), JSON.stringify(JSON.parse(text)));
  },
  title: (_, text: string) => `parses ${JSON.stringify(text)} as JSON.parse does`,
});

test(parsesLikeJsonParse, '{"a": [1, -2.5e3, true, null, "\\u00e9"]}');
test(parsesLikeJsonParse, '  [0, -0, 1e400, 0.1, 12345678901234567890, 5E-3]  ');
test(parsesLikeJsonParse, '"\\ud83d\\ude00 \\" \\\\ \\/ \\b\\f\\n\\r\\t"');
test(parsesLikeJsonParse, '{"ab": 1, "AB": 2, "a b": 3, "": 4, "x": {"ab": 5}}');
test(parsesLikeJsonParse, '[{"a": 1}, {"a": 2}]');
test(parsesLikeJsonParse, 'null');

test('"__proto__" is an own key, as JSON.parse makes it, and sets no prototype', (t) => {
  const got = parseJson('{"__proto__": {"polluted": true}}');
  if (!isRight(got)) return t.fail();
  const o = got.right as Record<string, unknown>;
  t.deepEqual(Object.keys(o), ['__proto__']);
  t.is(Object.getPrototypeOf(o), Object.prototype);
  t.is((o as { polluted?: boolean }).polluted, undefined);
});

test('a leading byte order mark is skipped; positions count from after it', (t) => {
  t.deepEqual(parseJson('\uFEFF{"mtu": 1280}'), parseJson('{"mtu": 1280}'));
  const bad = parseJson('\uFEFF{"a": }');
  t.like(isLeft(bad) ? bad.left : undefined, { position: 6, line: 1, column: 7 });
});

const duplicate = test.macro({
  exec(t, text: string, expected: { path: JsonPath; position: number; line: number; column: number; first: string }) {
    t.notThrows(() => JSON.parse(text), 'JSON.parse would accept it silently');
    const got = parseJson(text);
    if (!isLeft(got)) return t.fail('accepted');
    t.true(got.left instanceof JsonError);
    t.like(got.left, { name: 'JsonError', kind: 'duplicate-key', path: expected.path, position: expected.position, line: expected.line, column: expected.column });
    t.is(
      got.left.message,
      `duplicate key ${formatJsonPath(expected.path)} at position ${expected.position} (line ${expected.line}, column ${expected.column}): already given at ${expected.first} (only one can count: remove or rename one)`,
    );
  },
  title: (_, text: string) => `refuses the duplicate key in ${JSON.stringify(text)}`,
});

test(duplicate, '{"a": 1, "a": 2}', { path: ['a'], position: 9, line: 1, column: 10, first: 'line 1, column 2' });
test(duplicate, '{"alice": {"token": "x"},\n "alice": {"token": "y"}}', { path: ['alice'], position: 27, line: 2, column: 2, first: 'line 1, column 2' });
test(duplicate, '{"alice": {"token": "x", "address": "10.0.0.2", "token": "y"}}', { path: ['alice', 'token'], position: 48, line: 1, column: 49, first: 'line 1, column 12' });
test(duplicate, '{"a": [{"b": 1}, {"b": 1, "c": {"d": 0, "d": 0}}]}', { path: ['a', 1, 'c', 'd'], position: 40, line: 1, column: 41, first: 'line 1, column 33' });
test(duplicate, '{"a\\u0062": 1, "ab": 2}', { path: ['ab'], position: 15, line: 1, column: 16, first: 'line 1, column 2' });
test(duplicate, '{"\\/": 1, "/": 2}', { path: ['/'], position: 10, line: 1, column: 11, first: 'line 1, column 2' });
test(duplicate, '{"my laptop": 1, "my laptop": 2}', { path: ['my laptop'], position: 17, line: 1, column: 18, first: 'line 1, column 2' });

test('keys equal only before unescaping, or in different objects, are not duplicates', (t) => {
  t.true(isRight(parseJson('{"ab": 1, "a\\\\b": 2, "AB": 3}')));
  t.true(isRight(parseJson('{"x": {"a": 1}, "y": {"a": 1}, "a": 0}')));
  t.true(isRight(parseJson('[{"a": 1}, {"a": 1}]')));
});

test('formatJsonPath writes keys and indices as people read them', (t) => {
  t.is(formatJsonPath([]), '(root)');
  t.is(formatJsonPath(['alice', 'routes', 0]), 'alice.routes[0]');
  t.is(formatJsonPath(['my laptop', 'token']), '"my laptop".token');
  t.is(formatJsonPath(['']), '""');
});

const locates = test.macro({
  exec(t, text: string, expected: { position: number; reason: string }) {
    t.throws(() => JSON.parse(text));
    const got = parseJson(text);
    if (!isLeft(got)) return t.fail('accepted');
    t.like(got.left, { kind: 'syntax', position: expected.position, reason: expected.reason, path: [] });
    t.regex(got.left.message, new RegExp(`^invalid JSON at position ${expected.position} \\(line \\d+, column \\d+\\): `));
  },
  title: (_, text: string, expected: { position: number; reason: string }) => `refuses ${JSON.stringify(text)}: "${expected.reason}" at ${expected.position}`,
});

test(locates, '{"a": tru}', { position: 6, reason: 'unexpected "t"' });
test(locates, '{"a": 1 "b": 2}', { position: 8, reason: 'expected "," or "}"' });
test(locates, '[1, 2,]', { position: 6, reason: 'trailing comma before "]"' });
test(locates, '{"a": 1,}', { position: 8, reason: 'trailing comma before "}"' });
test(locates, '[1 2]', { position: 3, reason: 'expected "," or "]"' });
test(locates, '{"a": 01}', { position: 7, reason: 'expected "," or "}"' });
test(locates, '[1.]', { position: 2, reason: 'expected "," or "]"' });
test(locates, '[+1]', { position: 1, reason: 'unexpected "+"' });
test(locates, '[NaN]', { position: 1, reason: 'unexpected "N"' });
test(locates, '{"a": -}', { position: 6, reason: 'invalid number' });
test(locates, '{"a": "x\ny"}', { position: 8, reason: 'control character in a string (write \\n, \\t, ...)' });
test(locates, '{"a": "\\q"}', { position: 7, reason: 'invalid escape in a string' });
test(locates, '{"a": "\\u12"}', { position: 7, reason: 'invalid escape in a string' });
test(locates, '{"a": "open', { position: 6, reason: 'unterminated string' });
test(locates, '{"a": 1} x', { position: 9, reason: 'unexpected "x" after the end of the JSON value' });
test(locates, '{a: 1}', { position: 1, reason: 'expected a double-quoted property name' });
test(locates, "{'a': 1}", { position: 1, reason: `unexpected "'" (JSON strings use double quotes)` });
test(locates, '{"a": 1, // no\n"b": 2}', { position: 9, reason: 'unexpected "/" (JSON has no comments)' });
test(locates, '{"a" 1}', { position: 5, reason: 'expected ":" after a property name' });
test(locates, '{"a": [1, 2', { position: 11, reason: 'unexpected end of input' });
test(locates, '', { position: 0, reason: 'unexpected end of input' });

test('a document nested deeper than 512 levels is refused instead of exhausting the stack', (t) => {
  const got = parseJson(`${'['.repeat(600)}${']'.repeat(600)}`);
  t.like(isLeft(got) ? got.left : undefined, { kind: 'syntax', position: 513, reason: 'nested too deeply' });
  t.true(isRight(parseJson(`${'['.repeat(512)}${']'.repeat(512)}`)));
});

test('line and column count from 1, the column within its line', (t) => {
  const got = parseJson('{\n  "a": 1,\n  "b": }');
  t.like(isLeft(got) ? got.left : undefined, { position: 19, line: 3, column: 8, reason: 'unexpected "}"' });
});
