// The functional core stays pure: operators/ and pipelines/ do no I/O, read no clock, start no timers
// and hold no promises; only operators subscribe (to implement Observables); every exported function
// and class carries its contract. This file reads the TypeScript sources, not the compiled output.
import test from 'ava';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest directory above this (compiled) file with a package.json and operators/. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'operators'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json with operators/ above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

const ROOT = repoRoot();
const SCANNED = ['operators', 'pipelines'] as const;

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...tsFiles(full));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A small lexer: blank out comments (and, for the call rules, the insides of strings, templates and
// regular expressions) while keeping every newline, so offsets still map to the same lines.

interface Blanked {
  /** Comments replaced by spaces; strings kept (import specifiers live there). */
  readonly code: string;
  /** Comments and the contents of strings, templates and regular expressions replaced by spaces. */
  readonly bare: string;
}

const REGEX_AFTER = new Set(['', '(', ',', '=', ':', '[', '!', '&', '|', '?', '{', '}', ';', '+', '-', '*', '%', '<', '>', '~', '^']);
const REGEX_AFTER_WORD = /\b(?:return|typeof|case|do|else|in|of|new|delete|void|throw|yield|await)$/;

function blank(text: string): Blanked {
  const code = text.split('');
  const bare = text.split('');
  const wipe = (arr: string[], from: number, to: number): void => {
    for (let k = from; k < to; k++) if (arr[k] !== '\n') arr[k] = ' ';
  };
  // Template nesting: each entry is the brace depth at which a `${` was opened.
  const templates: number[] = [];
  let depth = 0;
  let i = 0;
  const n = text.length;
  const prevSignificant = (at: number): string => {
    let k = at - 1;
    while (k >= 0 && /\s/.test(bare[k]!)) k--;
    return k < 0 ? '' : bare[k]!;
  };
  // Scans a template body from `i` (just after ` or }) to its end or to a `${`.
  const templateBody = (): void => {
    const start = i;
    while (i < n) {
      const c = text[i]!;
      if (c === '\\') {
        i += 2;
        continue;
      }
      if (c === '`') {
        wipe(bare, start, i);
        i++;
        return;
      }
      if (c === '$' && text[i + 1] === '{') {
        wipe(bare, start, i);
        templates.push(depth);
        depth++;
        i += 2;
        return;
      }
      i++;
    }
    wipe(bare, start, i);
  };
  while (i < n) {
    const c = text[i]!;
    const next = text[i + 1];
    if (c === '/' && next === '/') {
      const end = text.indexOf('\n', i);
      const stop = end < 0 ? n : end;
      wipe(code, i, stop);
      wipe(bare, i, stop);
      i = stop;
    } else if (c === '/' && next === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end + 2;
      wipe(code, i, stop);
      wipe(bare, i, stop);
      i = stop;
    } else if (c === '"' || c === "'") {
      let k = i + 1;
      while (k < n && text[k] !== c && text[k] !== '\n') k += text[k] === '\\' ? 2 : 1;
      wipe(bare, i + 1, Math.min(k, n));
      i = k + 1;
    } else if (c === '`') {
      i++;
      templateBody();
    } else if (c === '{') {
      depth++;
      i++;
    } else if (c === '}') {
      depth--;
      i++;
      if (templates.length > 0 && templates[templates.length - 1] === depth) {
        templates.pop();
        templateBody();
      }
    } else if (c === '/') {
      const before = text.slice(Math.max(0, i - 12), i).trimEnd();
      if (REGEX_AFTER.has(prevSignificant(i)) || REGEX_AFTER_WORD.test(before)) {
        let k = i + 1;
        let inClass = false;
        while (k < n && text[k] !== '\n') {
          const d = text[k]!;
          if (d === '\\') k++;
          else if (d === '[') inClass = true;
          else if (d === ']') inClass = false;
          else if (d === '/' && !inClass) break;
          k++;
        }
        wipe(bare, i + 1, k);
        i = k + 1;
      } else i++;
    } else i++;
  }
  return { code: code.join(''), bare: bare.join('') };
}

// ---------------------------------------------------------------------------------------------
// The rules. Each returns violations as `file:line: what`.

type Area = 'operators' | 'pipelines';

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let k = 0; k < offset; k++) if (text.charCodeAt(k) === 10) line++;
  return line;
}

const IMPORT_FORMS = [
  /\bimport\s+(?:type\s+)?[^'";]*?\bfrom\s*(['"])([^'"\n]+)\1/g,
  /\bexport\s+(?:type\s+)?[^'";]*?\bfrom\s*(['"])([^'"\n]+)\1/g,
  /\bimport\s*(['"])([^'"\n]+)\1/g,
  /\bimport\s*\(\s*(['"])([^'"\n]+)\1/g,
  /\brequire\s*\(\s*(['"])([^'"\n]+)\1/g,
];
const BUILTINS = new Set(builtinModules);
const NATIVE = new Set(['bindings', 'node-gyp-build', 'node-addon-api']);

/**
 * The layers, bottom up: the shared core (operators/core: wire codecs, packet types, addresses),
 * the operators, the pipelines, the drivers and CLI (src). Imports point down, never up.
 */
const LAYERS = ['operators/core', 'operators', 'pipelines', 'src'] as const;

/** The index in LAYERS of the layer `path` (absolute) belongs to, or undefined outside them. */
function layerOf(path: string, root: string): number | undefined {
  const rel = relative(root, path).split(sep).join('/');
  let found: number | undefined;
  LAYERS.forEach((layer, i) => {
    if ((rel === layer || rel.startsWith(`${layer}/`)) && (found === undefined || layer.length > LAYERS[found]!.length)) found = i;
  });
  return found;
}

/** Why importing `spec` from `file` (absolute) breaks the pure core or the layering, or undefined when it does not. */
function badImport(spec: string, file: string, root: string): string | undefined {
  if (spec.startsWith('node:')) return `imports the Node built-in '${spec}'`;
  if (BUILTINS.has(spec) || BUILTINS.has(spec.split('/')[0]!)) return `imports the Node built-in '${spec}'`;
  if (NATIVE.has(spec) || spec.endsWith('.node') || /(^|\/)build\/(Release|Debug)\//.test(spec)) return `imports the native addon ('${spec}')`;
  if (spec.startsWith('.')) {
    const target = resolve(dirname(file), spec);
    const src = join(root, 'src');
    if (target === src || target.startsWith(src + sep)) return `imports the driver module '${spec}' from src/`;
    if (target.startsWith(join(root, 'native') + sep)) return `imports the native addon ('${spec}')`;
    const from = layerOf(file, root);
    const to = layerOf(target, root);
    if (from !== undefined && to !== undefined && to > from) return `imports '${spec}' from ${LAYERS[to]}/, a layer above ${LAYERS[from]}/ (imports point down: ${LAYERS.join(' ← ')})`;
  }
  return undefined;
}

function importRule(file: string, text: string, root: string): string[] {
  const { code } = blank(text);
  const rel = relative(root, file).split(sep).join('/');
  const out: string[] = [];
  const seen = new Set<number>();
  for (const form of IMPORT_FORMS) {
    for (const m of code.matchAll(form)) {
      const at = m.index + m[0].lastIndexOf(m[2]!) - 1;
      if (seen.has(at)) continue;
      seen.add(at);
      const why = badImport(m[2]!, file, root);
      if (why !== undefined) out.push(`${rel}:${lineOf(text, at)}: ${why}`);
    }
  }
  return out.sort(byLine);
}

const CALLS: ReadonlyArray<readonly [RegExp, string, Area[]]> = [
  [/\bDate\s*\.\s*now\s*\(/g, 'reads the wall clock with Date.now( (use the scheduler: scheduler.now())', ['operators', 'pipelines']],
  [/\bsetTimeout\s*\(/g, 'calls setTimeout( (use timer/scheduler so TestScheduler can virtualise it)', ['operators', 'pipelines']],
  [/\bsetInterval\s*\(/g, 'calls setInterval( (use interval with a scheduler)', ['operators', 'pipelines']],
  [/\bsetImmediate\s*\(/g, 'calls setImmediate( (use a scheduler)', ['operators', 'pipelines']],
  [/\bnew\s+Promise\b/g, 'creates a Promise (use an Observable)', ['operators', 'pipelines']],
  [/\basync\s/g, 'uses async (use an Observable)', ['operators', 'pipelines']],
  [/\bawait\s/g, 'uses await (use an Observable)', ['operators', 'pipelines']],
  [/\.\s*subscribe\s*\(/g, 'calls .subscribe( (pipelines compose; only operators, the CLI and tests subscribe)', ['pipelines']],
];

function callRule(file: string, text: string, root: string, area: Area): string[] {
  const { bare } = blank(text);
  const rel = relative(root, file).split(sep).join('/');
  const out: string[] = [];
  for (const [pattern, what, areas] of CALLS) {
    if (!areas.includes(area)) continue;
    for (const m of bare.matchAll(pattern)) out.push(`${rel}:${lineOf(text, m.index)}: ${what}`);
  }
  return out.sort(byLine);
}

const EXPORT_DECL = /^\s*export\s+(?:default\s+)?(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?(function\*?|class)\s*([\w$]*)/;

function docRule(file: string, text: string, root: string): string[] {
  const { code } = blank(text);
  const lines = text.split('\n');
  const codeLines = code.split('\n');
  const rel = relative(root, file).split(sep).join('/');
  const out: string[] = [];
  const prevNonBlank = (k: number): number => {
    let j = k - 1;
    while (j >= 0 && lines[j]!.trim() === '') j--;
    return j;
  };
  const isLaterOverload = (i: number, name: string): boolean => {
    const j = prevNonBlank(i);
    if (j < 0 || !codeLines[j]!.trimEnd().endsWith(';')) return false;
    const signature = new RegExp(`^\\s*export\\s+function\\s+${name.replace(/\$/g, '\\$')}\\b`);
    for (let k = j; k >= 0 && k > j - 10; k--) {
      if (signature.test(codeLines[k]!)) return true;
      if (k !== j && (codeLines[k]!.trim() === '' || /[;{}]\s*$/.test(codeLines[k]!))) return false;
    }
    return false;
  };
  for (let i = 0; i < codeLines.length; i++) {
    const m = EXPORT_DECL.exec(codeLines[i]!);
    if (m === null) continue;
    const [, kind, name] = m;
    // Overloads: the contract sits above the first signature; later signatures are not checked again.
    if (kind === 'function' && name && isLaterOverload(i, name)) continue;
    const j = prevNonBlank(i);
    let documented = false;
    if (j >= 0 && lines[j]!.trimEnd().endsWith('*/')) {
      let k = j;
      while (k >= 0 && !lines[k]!.includes('/*')) k--;
      documented = k >= 0 && /\/\*\*(?!\/)/.test(lines[k]!) && /[A-Za-z]/.test(lines.slice(k, j + 1).join(' ').replace(/\/\*\*|\*\/|\*/g, ''));
    }
    if (!documented) out.push(`${rel}:${i + 1}: export ${kind} ${name || '(anonymous)'} has no /** contract */ comment right above it`);
  }
  return out;
}

function byLine(a: string, b: string): number {
  const [fa, la] = a.split(':');
  const [fb, lb] = b.split(':');
  return fa === fb ? Number(la) - Number(lb) : fa! < fb! ? -1 : 1;
}

interface SourceFile {
  readonly file: string;
  readonly area: Area;
  readonly text: string;
}

const SOURCES: SourceFile[] = SCANNED.flatMap((area) => (existsSync(join(ROOT, area)) ? tsFiles(join(ROOT, area)) : []).map((file) => ({ file, area, text: readFileSync(file, 'utf8') })));

// ---------------------------------------------------------------------------------------------
// The tree

test('the scan covers the operators, the wire codec and the pipelines', (t) => {
  const rel = SOURCES.map((s) => relative(ROOT, s.file).split(sep).join('/'));
  for (const expected of ['operators/deframe.ts', 'operators/route.ts', 'operators/core/packet.ts', 'operators/core/address.ts', 'operators/core/wire/decoder.ts', 'operators/core/wire/frames.ts', 'pipelines/ports.ts']) {
    t.true(rel.includes(expected), `${expected} was not scanned (root ${ROOT})`);
  }
  t.true(SOURCES.length >= 15, `only ${SOURCES.length} files scanned`);
});

test('the lexer blanks only comments and literals: the code of every scanned file survives it', (t) => {
  // A regular expression taken for a comment (or a string left open) would hide code from the rules.
  const tokens = /\bexport\b|\breturn\b|=>|\.subscribe\s*\(/g;
  const lost: string[] = [];
  for (const s of SOURCES) {
    const { code, bare } = blank(s.text);
    const inCode = code.match(tokens)?.length ?? 0;
    const inBare = bare.match(tokens)?.length ?? 0;
    if (inBare !== inCode) lost.push(`${relative(ROOT, s.file)}: ${inCode - inBare} of ${inCode} tokens hidden`);
    if (code.length !== s.text.length || bare.length !== s.text.length) lost.push(`${relative(ROOT, s.file)}: length changed`);
  }
  t.deepEqual(lost, []);
});

test('operators and pipelines import no Node built-ins, no drivers from src/ and not the native addon', (t) => {
  t.deepEqual(
    SOURCES.flatMap((s) => importRule(s.file, s.text, ROOT)),
    [],
  );
});

test('operators and pipelines use no wall clock, timers, promises or async functions, and pipelines never subscribe', (t) => {
  t.deepEqual(
    SOURCES.flatMap((s) => callRule(s.file, s.text, ROOT, s.area)),
    [],
  );
});

test('every exported function and class in operators and pipelines carries a /** contract */ comment', (t) => {
  t.deepEqual(
    SOURCES.flatMap((s) => docRule(s.file, s.text, ROOT)),
    [],
  );
});

// ---------------------------------------------------------------------------------------------
// The rules themselves: each must flag what it is meant to flag, and only that.

const FAKE_ROOT = resolve(sep, 'repo');
const fake = (path: string): string => join(FAKE_ROOT, ...path.split('/'));

const flags = test.macro({
  exec(t, path: string, text: string, expected: string[]) {
    const area: Area = path.startsWith('pipelines/') ? 'pipelines' : 'operators';
    const file = fake(path);
    const found = [...importRule(file, text, FAKE_ROOT), ...callRule(file, text, FAKE_ROOT, area), ...docRule(file, text, FAKE_ROOT)];
    // Compare the `file:line` part; the whole messages are shown when it differs.
    t.deepEqual(
      found.map((v) => v.slice(0, v.indexOf(': '))),
      expected,
      found.join('\n'),
    );
    for (const v of found) t.regex(v, /^[\w/.-]+\.ts:\d+: \S/);
  },
  title: (provided = '') => `the purity scan ${provided}`,
});

test('flags a node: import', flags, 'operators/a.ts', "import net from 'node:net';", ['operators/a.ts:1']);
test('flags a bare built-in import', flags, 'operators/a.ts', "\nimport { readFileSync } from 'fs';", ['operators/a.ts:2']);
test('flags a built-in subpath import', flags, 'pipelines/a.ts', "import { readFile } from 'fs/promises';", ['pipelines/a.ts:1']);
test('flags a type-only import from a built-in', flags, 'pipelines/a.ts', "import type { Socket } from 'net';", ['pipelines/a.ts:1']);
test('flags a multi-line import on the line of its specifier', flags, 'operators/a.ts', "import {\n  createServer,\n  Socket,\n} from 'node:net';", ['operators/a.ts:4']);
test('flags a re-export from a built-in', flags, 'operators/a.ts', "export { EventEmitter } from 'events';", ['operators/a.ts:1']);
test('flags an import from src/', flags, 'operators/core/a.ts', "import { openTun } from '../../src/tun/device.js';", ['operators/core/a.ts:1']);
test('flags the shared core importing an operator', flags, 'operators/core/wire/a.ts', "import { route } from '../../route.js';", ['operators/core/wire/a.ts:1']);
test('flags an operator importing a pipeline module', flags, 'operators/a.ts', "import type { ServerPorts } from '../pipelines/server.js';", ['operators/a.ts:1']);
test('lets a pipeline import operators and the core, and an operator the core', (t) => {
  const ok = [
    ['pipelines/a.ts', "import { route } from '../operators/route.js';\nimport type { DropReason } from '../operators/core/packet.js';"],
    ['operators/a.ts', "import { FrameType } from './core/wire/frames.js';"],
    ['operators/core/wire/a.ts', "import type { Ipv4Prefix } from '../address.js';"],
  ] as const;
  for (const [file, text] of ok) t.deepEqual(importRule(join(FAKE_ROOT, file), text, FAKE_ROOT), [], file);
});
test('flags the native addon', flags, 'pipelines/a.ts', "import addon from '../build/Release/tun.node';\nconst b = require('bindings')('tun');", ['pipelines/a.ts:1', 'pipelines/a.ts:2']);
test('flags a dynamic import and its await', flags, 'operators/a.ts', "const fs = await import('node:fs');", ['operators/a.ts:1', 'operators/a.ts:1']);
test('flags Date.now', flags, 'operators/a.ts', 'const a = 1;\nconst t = Date.now();', ['operators/a.ts:2']);
test('flags setTimeout, setInterval and setImmediate', flags, 'operators/a.ts', 'setTimeout(f, 1);\nsetInterval(f, 1);\nglobalThis.setImmediate(f);', ['operators/a.ts:1', 'operators/a.ts:2', 'operators/a.ts:3']);
test('flags new Promise', flags, 'pipelines/a.ts', 'const p = new Promise<void>((r) => r());', ['pipelines/a.ts:1']);
test('flags async and await', flags, 'operators/a.ts', 'const f = async () => {\n  await g();\n};', ['operators/a.ts:1', 'operators/a.ts:2']);
test('flags subscribe in a pipeline', flags, 'pipelines/a.ts', 'const s = x$\n  .pipe(map(f))\n  .subscribe(g);', ['pipelines/a.ts:3']);
test('allows subscribe in an operator', flags, 'operators/a.ts', 'return source.subscribe({ next: (v) => subscriber.next(v) });', []);
test('allows rxjs, relative operator imports and asyncScheduler', flags, 'pipelines/a.ts', "import { asyncScheduler, timer } from 'rxjs';\nimport { route } from '../operators/route.js';\nconst s = asyncScheduler;", []);
test('ignores words in comments and strings', flags, 'pipelines/a.ts', "// never setTimeout( or Date.now( here; x.subscribe( neither\n/* new Promise */\nconst m = 'await setInterval(';\nconst u = `async ${1} Date.now(`;", []);
test('sees code after a template expression', flags, 'pipelines/a.ts', 'const u = `a ${b} c`; setTimeout(f);', ['pipelines/a.ts:1']);
test('does not take a regular expression for a comment', flags, 'operators/a.ts', "const re = /^\\/\\/ x/;\nsetTimeout(f);\nconst d = a / b / c;\nDate.now();", ['operators/a.ts:2', 'operators/a.ts:4']);
test('flags an undocumented export function', flags, 'operators/a.ts', '// a line comment is not a contract\nexport function f(): void {}', ['operators/a.ts:2']);
test('flags an undocumented export class', flags, 'pipelines/a.ts', 'const x = 1;\n\nexport class E extends Error {}', ['pipelines/a.ts:3']);
test('flags a plain block comment as no contract', flags, 'operators/a.ts', '/* not a doc comment */\nexport class C {}', ['operators/a.ts:2']);
test('accepts documented exports, one-line and multi-line', flags, 'operators/a.ts', '/** Does f. */\nexport function f(): void {}\n\n/**\n * A class.\n */\nexport class C {}', []);
test('accepts overloads documented above the first signature', flags, 'operators/a.ts', '/** Encodes. */\nexport function e(a: string): string;\nexport function e(a: number): string;\nexport function e(a: unknown): string {\n  return String(a);\n}', []);
test('flags an overload set without a contract', flags, 'operators/a.ts', 'export function e(a: string): string;\nexport function e(a: unknown): string {\n  return String(a);\n}', ['operators/a.ts:1']);
test('ignores exports that are not functions or classes', flags, 'operators/a.ts', "export const X = 1;\nexport type T = number;\nexport interface I {}\nexport { y } from './y.js';", []);
