// The strict JSON reader for files people write by hand (the -c config file, the hub's tokens
// file). JSON.parse keeps the last of two equal keys without a word, so a second "alice" in a
// tokens file silently disables the first token; this reader refuses duplicate keys (compared
// after unescaping, so "a\u0062" and "ab" are one key). It also says where a syntax error is,
// which V8's messages often leave out ("Unexpected token '}', ... is not valid JSON").

import { left, right, type Either } from 'fp-ts/lib/Either.js';

/** Where a value sits in a document: object keys and array indices from the root. */
export type JsonPath = readonly (string | number)[];

/** Why a text was refused, and where: `position` counts UTF-16 units from 0 (after a BOM), `line` and `column` from 1. */
export class JsonError extends Error {
  override readonly name = 'JsonError';
  constructor(
    readonly kind: 'syntax' | 'duplicate-key',
    readonly position: number,
    readonly line: number,
    readonly column: number,
    readonly reason: string,
    /** For a duplicate key: its path, the key last (empty for a syntax error). */
    readonly path: JsonPath = [],
  ) {
    const what = kind === 'syntax' ? 'invalid JSON' : `duplicate key ${formatJsonPath(path)}`;
    super(`${what} at position ${position} (line ${line}, column ${column}): ${reason}`);
  }
}

const PLAIN_KEY = /^[A-Za-z0-9_-]+$/;

/** A path as people read it: `alice.routes[0]`; keys that are not plain words are quoted (`"my laptop".token`). */
export const formatJsonPath = (path: JsonPath): string =>
  path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${PLAIN_KEY.test(p) ? p : JSON.stringify(p)}`))
    .join('') || '(root)';

const LITERALS: readonly (readonly [string, unknown])[] = [
  ['true', true],
  ['false', false],
  ['null', null],
];
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
/** Deeper documents are refused rather than allowed to exhaust the stack. */
const MAX_DEPTH = 512;

const lineAndColumn = (text: string, position: number): { line: number; column: number } => {
  const before = text.slice(0, position);
  return { line: before.split('\n').length, column: position - before.lastIndexOf('\n') };
};

/**
 * Parses `text` into the value JSON.parse would give (a leading BOM is skipped), or a JsonError
 * for a syntax error or a key that appears twice in one object. Never throws.
 */
export function parseJson(text: string): Either<JsonError, unknown> {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  let i = 0;
  const fail = (reason: string, at = i, kind: JsonError['kind'] = 'syntax', path: JsonPath = []): never => {
    const { line, column } = lineAndColumn(body, at);
    throw new JsonError(kind, at, line, column, reason, path);
  };
  const unexpected = (): never => {
    if (i >= body.length) return fail('unexpected end of input');
    const c = body[i] ?? '';
    if (c === '/' && (body[i + 1] === '/' || body[i + 1] === '*')) return fail('unexpected "/" (JSON has no comments)');
    if (c === "'") return fail(`unexpected "'" (JSON strings use double quotes)`);
    return fail(`unexpected ${JSON.stringify(c)}`);
  };
  const space = (): void => {
    while (i < body.length && ' \t\n\r'.includes(body[i] ?? '')) i++;
  };
  const string = (): string => {
    const start = i;
    i++;
    for (;;) {
      if (i >= body.length) fail('unterminated string', start);
      const c = body.charCodeAt(i);
      if (c === 0x22) {
        i++;
        // The token is checked above, so JSON.parse of it alone unescapes exactly as JSON.parse would.
        return JSON.parse(body.slice(start, i)) as string;
      }
      if (c === 0x5c) {
        const e = body[i + 1] ?? '';
        if ('"\\/bfnrt'.includes(e) && e !== '') i += 2;
        else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(body.slice(i + 2, i + 6))) i += 6;
        else fail('invalid escape in a string');
      } else if (c < 0x20) {
        fail('control character in a string (write \\n, \\t, ...)');
      } else {
        i++;
      }
    }
  };
  /** Reads an object's or array's members, from its opening bracket to `close`, with `member` reading each. */
  const members = (close: '}' | ']', member: () => void): void => {
    i++;
    space();
    if (body[i] === close) {
      i++;
      return;
    }
    for (;;) {
      space();
      if (body[i] === close) fail(`trailing comma before "${close}"`);
      member();
      space();
      if (body[i] === ',') {
        i++;
        continue;
      }
      if (body[i] === close) {
        i++;
        return;
      }
      if (i >= body.length) unexpected();
      fail(`expected "," or "${close}"`);
    }
  };
  const object = (path: JsonPath): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    const seen = new Map<string, number>();
    members('}', () => {
      if (i >= body.length || body[i] === '/' || body[i] === "'") unexpected();
      if (body[i] !== '"') fail('expected a double-quoted property name');
      const at = i;
      const key = string();
      const first = seen.get(key);
      if (first !== undefined) {
        const { line, column } = lineAndColumn(body, first);
        fail(`already given at line ${line}, column ${column} (only one can count: remove or rename one)`, at, 'duplicate-key', [...path, key]);
      }
      seen.set(key, at);
      space();
      if (body[i] !== ':') fail('expected ":" after a property name');
      i++;
      // defineProperty so that "__proto__" becomes an own key, exactly as JSON.parse makes it.
      Object.defineProperty(o, key, { value: value([...path, key]), enumerable: true, writable: true, configurable: true });
    });
    return o;
  };
  const array = (path: JsonPath): unknown[] => {
    const a: unknown[] = [];
    members(']', () => a.push(value([...path, a.length])));
    return a;
  };
  const value = (path: JsonPath): unknown => {
    if (path.length > MAX_DEPTH) fail('nested too deeply');
    space();
    const c = body[i];
    if (c === '{') return object(path);
    if (c === '[') return array(path);
    if (c === '"') return string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(body);
      if (m === null) return fail('invalid number');
      i += m[0].length;
      return Number(m[0]);
    }
    for (const [literal, v] of LITERALS) {
      if (body.startsWith(literal, i)) {
        i += literal.length;
        return v;
      }
    }
    return unexpected();
  };
  try {
    const v = value([]);
    space();
    if (i < body.length) fail(`unexpected ${JSON.stringify(body[i])} after the end of the JSON value`);
    return right(v);
  } catch (e) {
    if (e instanceof JsonError) return left(e);
    throw e;
  }
}
