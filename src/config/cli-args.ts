// The command line: the Go program's flags verbatim, their --long forms, and the help text.
//
// node:util parseArgs refuses single-dash long flags ("-mtu"), which users of the Go program type,
// so this is a small strict parser driven by the key table in schema.ts. Like Go's flag package,
// every flag takes one or two dashes, a value after a space or "=", and booleans are switches that
// take "=false". Unlike Go, a value flag never swallows the next flag ("-r -t x" is an error, not
// remote_addr "-t"), and every problem is reported at once instead of the first.

import { isLeft, left, right, type Either } from 'fp-ts/lib/Either.js';
import { closestMatch, decodeLayer, parseConfigText, resolveConfig, type ConfigLayer } from './decode.js';
import { describeKeys, type KeyDescription } from './example.js';
import { CONFIG_KEYS, ConfigError, KEY_INFO, type Config, type ConfigKey, type KeyGroup } from './schema.js';

/** What the command line asks for. `run` carries the resolved config and warnings to print. */
export type CliCommand =
  | { readonly kind: 'run'; readonly config: Config; readonly warnings: readonly string[] }
  | { readonly kind: 'version' }
  | { readonly kind: 'help'; readonly text: string }
  | { readonly kind: 'generate'; readonly file: string };

/** Reads a file as UTF-8 text; throws (ideally an errno error with a `code`) when it cannot. */
export type ReadFile = (path: string) => string;

type ActionKind = 'config' | 'generate' | 'version' | 'help';

interface ActionFlag {
  readonly kind: ActionKind;
  readonly names: readonly string[];
  readonly metavar: string | undefined;
  readonly meaning: string;
}

/** Flags that are not settings. */
const ACTION_FLAGS: readonly ActionFlag[] = [
  {
    kind: 'config',
    names: ['c', 'config'],
    metavar: 'FILE',
    meaning: 'Read settings from a JSON file (keys as listed above); flags given as well override it.',
  },
  {
    kind: 'generate',
    names: ['g', 'generate-config'],
    metavar: 'FILE',
    meaning: "Write example configs, the server's to FILE and a client's to FILE.client, then exit.",
  },
  { kind: 'version', names: ['v', 'version'], metavar: undefined, meaning: 'Print the version and exit.' },
  { kind: 'help', names: ['h', 'help'], metavar: undefined, meaning: 'Print this help and exit.' },
];

type FlagTarget = { readonly kind: 'setting'; readonly key: ConfigKey } | { readonly kind: ActionKind };

const FLAGS: ReadonlyMap<string, FlagTarget> = new Map<string, FlagTarget>([
  ...CONFIG_KEYS.flatMap((key) => KEY_INFO[key].flags.map((name): [string, FlagTarget] => [name, { kind: 'setting', key }])),
  ...ACTION_FLAGS.flatMap((flag) => flag.names.map((name): [string, FlagTarget] => [name, { kind: flag.kind }])),
]);

const takesValue = (target: FlagTarget): boolean =>
  target.kind === 'setting' ? KEY_INFO[target.key].metavar !== undefined : target.kind === 'config' || target.kind === 'generate';

/** The spellings Go's strconv.ParseBool accepts. */
const BOOLEANS: ReadonlyMap<string, boolean> = new Map([
  ...['1', 't', 'T', 'TRUE', 'true', 'True'].map((s): [string, boolean] => [s, true]),
  ...['0', 'f', 'F', 'FALSE', 'false', 'False'].map((s): [string, boolean] => [s, false]),
]);

const NUMERIC = /^[+-]?[0-9]+(?:\.[0-9]+)?$/;

/** Flag text to the JSON value it stands for; text that does not convert stays a string so the error shows it. */
const flagValue = (key: ConfigKey, text: string): unknown => {
  switch (KEY_INFO[key].valueType) {
    case 'int':
      return NUMERIC.test(text) ? Number(text) : text;
    case 'bool':
      return BOOLEANS.get(text) ?? text;
    case 'text':
      return text;
  }
};

interface Token {
  /** The flag as typed, without "=value": "-mtu", "--listen". */
  readonly flag: string;
  /** The name without dashes. */
  readonly name: string;
  /** The text after "=", if any. */
  readonly inline: string | undefined;
}

/** Splits "-name", "--name" and "-name=value"; undefined when `arg` is not a flag. */
const tokenize = (arg: string): Token | undefined => {
  const dashes = arg.startsWith('--') ? 2 : arg.startsWith('-') ? 1 : 0;
  if (dashes === 0 || arg.length === dashes) return undefined;
  const eq = arg.indexOf('=');
  const flag = eq < 0 ? arg : arg.slice(0, eq);
  return { flag, name: flag.slice(dashes), inline: eq < 0 ? undefined : arg.slice(eq + 1) };
};

const ALL_FLAG_NAMES = [...FLAGS.keys()];

const unknownFlag = (token: Token): ConfigError => {
  const near = closestMatch(token.name, ALL_FLAG_NAMES);
  const dashes = token.flag.slice(0, token.flag.length - token.name.length);
  const hint = near === undefined ? '' : `did you mean ${dashes}${near}? `;
  return new ConfigError(token.flag, `unknown flag (${hint}see lightweight-tunnel --help)`);
};

const isHelpRequest = (argv: readonly string[]): boolean => {
  for (const arg of argv) {
    if (arg === '--') return false;
    const token = tokenize(arg);
    if (token !== undefined && FLAGS.get(token.name)?.kind === 'help') return true;
  }
  return false;
};

const describeError = (e: unknown): string => {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  return e instanceof Error ? e.message : String(e);
};

/**
 * Turns argv (without the node and script paths) into a command. Settings come from the defaults,
 * then the `-c` file, then the flags, a later source winning. `readFile` is called at most once,
 * for `-c`, and never for --help, -v or -g. All problems are returned together, one ConfigError
 * each, flags in argv order, then the config file's.
 */
export const parseCommandLine = (argv: readonly string[], readFile: ReadFile): Either<ConfigError[], CliCommand> => {
  if (isHelpRequest(argv)) return right({ kind: 'help', text: helpText() });

  const errors: ConfigError[] = [];
  const flagValues: Partial<ConfigLayer['values']>[] = [];
  let configFile: { readonly flag: string; readonly path: string } | undefined;
  let generate: string | undefined;
  let version = false;

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      for (const rest of argv.slice(i + 1)) errors.push(new ConfigError(rest, 'unexpected argument (this program takes only flags)'));
      break;
    }
    const token = tokenize(arg);
    if (token === undefined) {
      const previous = tokenize(argv[i - 1] ?? '');
      const target = previous === undefined ? undefined : FLAGS.get(previous.name);
      const switchHint =
        previous !== undefined && previous.inline === undefined && target !== undefined && !takesValue(target)
          ? ` (${previous.flag} is a switch: write ${previous.flag}=${arg})`
          : '';
      errors.push(new ConfigError(arg, `unexpected argument${switchHint}`));
      continue;
    }
    const target = FLAGS.get(token.name);
    if (target === undefined) {
      errors.push(unknownFlag(token));
      // Its value most likely follows; one error about the flag says enough.
      const next = argv[i + 1];
      if (token.inline === undefined && next !== undefined && next !== '--' && tokenize(next) === undefined) i++;
      continue;
    }

    let text: string | undefined;
    if (takesValue(target)) {
      text = token.inline;
      if (text === undefined) {
        const next = argv[i + 1];
        if (next === undefined) {
          errors.push(new ConfigError(token.flag, 'missing value'));
          continue;
        }
        // A negative number is a (bad) value, never a flag: let the decoder say what is wrong with it.
        if ((tokenize(next) !== undefined && !/^-[0-9]/.test(next)) || next === '--') {
          errors.push(
            new ConfigError(token.flag, `missing value (the next argument ${JSON.stringify(next)} is a flag; write ${token.flag}=VALUE for a value starting with "-")`),
          );
          continue;
        }
        text = next;
        i++;
      }
    } else if (token.inline !== undefined && target.kind !== 'setting') {
      errors.push(new ConfigError(token.flag, `takes no value, got ${JSON.stringify(token.inline)}`));
      continue;
    }

    switch (target.kind) {
      case 'setting': {
        const value = text !== undefined ? flagValue(target.key, text) : token.inline === undefined ? true : flagValue(target.key, token.inline);
        const decoded = decodeLayer({ [target.key]: value }, () => token.flag);
        if (isLeft(decoded)) errors.push(...decoded.left);
        else flagValues.push(decoded.right);
        break;
      }
      case 'config':
        configFile = { flag: token.flag, path: text ?? '' };
        break;
      case 'generate':
        generate = text;
        break;
      case 'version':
        version = true;
        break;
      case 'help':
        break;
    }
  }

  if (errors.length === 0 && version) return right({ kind: 'version' });
  if (errors.length === 0 && generate !== undefined) return right({ kind: 'generate', file: generate });

  const layers: ConfigLayer[] = [];
  if (configFile !== undefined) {
    const source = `${configFile.flag} ${configFile.path}`;
    let text: string | undefined;
    try {
      text = readFile(configFile.path);
    } catch (e) {
      errors.push(new ConfigError(source, `cannot read file (${describeError(e)})`));
    }
    if (text !== undefined) {
      const layer = parseConfigText(text, source);
      if (isLeft(layer)) errors.push(...layer.left);
      else layers.push(layer.right);
    }
  }
  if (errors.length > 0) return left(errors);

  layers.push({ values: Object.assign({}, ...flagValues), warnings: [] });
  const resolved = resolveConfig(layers);
  return isLeft(resolved) ? resolved : right({ kind: 'run', config: resolved.right.config, warnings: resolved.right.warnings });
};

// ---------------------------------------------------------------------------------------------
// Help

const WIDTH = 100;
const INDENT = '      ';

const wrap = (text: string, indent: string): string[] => {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && indent.length + line.length + 1 + word.length > WIDTH) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(indent + line);
  return lines;
};

const actionUsage = (flag: ActionFlag): string => {
  const names = flag.names.map((name, i) => (i === 0 ? `-${name}` : `--${name}`)).join(', ');
  return flag.metavar === undefined ? names : `${names} ${flag.metavar}`;
};

const GROUPS: readonly KeyGroup[] = ['Mode and addresses', 'Tunnel', 'Timing', 'Clients (server only)', 'Assigned addresses, LANs and broadcast', 'TLS', 'Authentication', 'Cluster (server only)', 'Operations'];

/** The --help text: usage, examples, every flag with its JSON key and default, grouped. */
export const helpText = (): string => {
  const keys = describeKeys();
  const column = Math.max(...keys.map((k) => k.flag.length), ...ACTION_FLAGS.map((f) => actionUsage(f).length)) + 2;
  const keyLine = (k: KeyDescription): string => {
    const info = KEY_INFO[k.key];
    const json = info.defaultText === undefined ? `${k.key} = ${k.default}` : `${k.key} (${k.default})`;
    return `  ${k.flag.padEnd(column)}${json}`;
  };
  const out: string[] = [
    'lightweight-tunnel: a virtual LAN over TCP or TLS. One server is the hub; clients dial it and',
    'reach the server and each other through it. Creating the TUN device needs root (or CAP_NET_ADMIN).',
    '',
    'Usage:',
    '  lightweight-tunnel [flags]',
    '  lightweight-tunnel -c FILE [flags]',
    '  lightweight-tunnel status [ADDR] [--json]   (the status of a hub or client run with -status)',
    '',
    'Examples:',
    '  # the server (hub), 10.0.0.1 on the virtual LAN 10.0.0.0/24',
    '  sudo lightweight-tunnel -m server -l 0.0.0.0:9000 -t 10.0.0.1/24',
    '  # two clients, each with its own address in that LAN',
    '  sudo lightweight-tunnel -m client -r SERVER_IP:9000 -t 10.0.0.2/24',
    '  sudo lightweight-tunnel -m client -r SERVER_IP:9000 -t 10.0.0.3/24',
    '  # a client that lets the hub pick its address (kept for it across restarts)',
    '  sudo lightweight-tunnel -m client -r SERVER_IP:9000',
    '  # write tunnel.json (server) and tunnel.json.client, edit them, then run from a file',
    '  lightweight-tunnel -g tunnel.json',
    '  sudo lightweight-tunnel -c tunnel.json.client -mtu 1300',
    '',
    'Settings come from the defaults, then the -c file, then the flags; a later source wins.',
    'Every flag takes one or two dashes (-mtu or --mtu) and its value after a space or "="',
    '(-mtu 1300, -mtu=1300). Switches turn on by name and off with "=false" (-multi-client=false).',
    'Addresses are HOST:PORT (IPv6 as [ADDR]:PORT); a missing port means 9000.',
    'Each setting shows its JSON key for the -c file and its default.',
  ];
  for (const group of GROUPS) {
    out.push('', `${group}:`);
    for (const k of keys.filter((d) => d.group === group)) out.push(keyLine(k), ...wrap(k.meaning, INDENT));
  }
  out.push('', 'Other:');
  for (const flag of ACTION_FLAGS) out.push(`  ${actionUsage(flag)}`, ...wrap(flag.meaning, INDENT));
  return `${out.join('\n')}\n`;
};
