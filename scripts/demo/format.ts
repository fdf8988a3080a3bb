// Terminal output for the demo: optional colour, aligned tables, human units.

/** ANSI styling, or identity functions when colour is off. */
export interface Style {
  readonly enabled: boolean;
  bold(s: string): string;
  dim(s: string): string;
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

/**
 * Colour only on a terminal: never when stdout is a pipe or a file, and never when NO_COLOR is set
 * (https://no-color.org); FORCE_COLOR=1 turns it on regardless (handy with `less -R`).
 */
export function styleFor(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): Style {
  const force = env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== '';
  const enabled = force || (stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === '') && env.TERM !== 'dumb');
  const sgr =
    (open: number, close: number) =>
    (s: string): string =>
      enabled ? `\u001b[${open}m${s}\u001b[${close}m` : s;
  return {
    enabled,
    bold: sgr(1, 22),
    dim: sgr(2, 22),
    green: sgr(32, 39),
    red: sgr(31, 39),
    yellow: sgr(33, 39),
    cyan: sgr(36, 39),
  };
}

const ANSI = /\u001b\[[0-9;]*m/g;

/** Printed width of `s` (escape sequences do not count; every other code point counts as one column). */
export function visibleWidth(s: string): number {
  return [...s.replace(ANSI, '')].length;
}

function pad(s: string, width: number, align: 'left' | 'right'): string {
  const fill = ' '.repeat(Math.max(0, width - visibleWidth(s)));
  return align === 'left' ? s + fill : fill + s;
}

export interface TableOptions {
  /** Per column; default left. */
  align?: readonly ('left' | 'right')[];
  /** Prefix of every line; default two spaces. */
  indent?: string;
  /** Spaces between columns; default 2. */
  gap?: number;
  /** Style applied to the header row (the first row). */
  header?: (s: string) => string;
}

/** Renders rows (the first one is the header) as aligned columns, one string per line. */
export function table(rows: readonly (readonly string[])[], o: TableOptions = {}): string[] {
  const cols = Math.max(0, ...rows.map((r) => r.length));
  const widths = Array.from({ length: cols }, (_, c) => Math.max(0, ...rows.map((r) => visibleWidth(r[c] ?? ''))));
  const indent = o.indent ?? '  ';
  const gap = ' '.repeat(o.gap ?? 2);
  return rows.map((r, i) => {
    const cells = widths.map((w, c) => pad(r[c] ?? '', w, o.align?.[c] ?? 'left'));
    const line = (indent + cells.join(gap)).replace(/\s+$/, '');
    return i === 0 && o.header !== undefined ? o.header(line) : line;
  });
}

/** `0.42 ms`, `12.3 ms`, `153 ms`. */
export function formatMs(ms: number): string {
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  return `${Math.round(ms)} ms`;
}

/** `0.8 s`, `12.4 s`. */
export function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Bits per second, in the unit a person reads best: `850 kbit/s`, `312 Mbit/s`, `1.24 Gbit/s`. */
export function formatBitrate(bitsPerSecond: number): string {
  if (bitsPerSecond >= 1e9) return `${(bitsPerSecond / 1e9).toFixed(2)} Gbit/s`;
  if (bitsPerSecond >= 1e6) return `${(bitsPerSecond / 1e6).toFixed(bitsPerSecond >= 1e8 ? 0 : 1)} Mbit/s`;
  return `${(bitsPerSecond / 1e3).toFixed(1)} kbit/s`;
}

/** `740 KiB`, `93.5 MiB`, `1.20 GiB`. */
export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(0)} KiB`;
  return `${n} B`;
}

/** The median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
