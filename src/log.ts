// The program's logger, built on pino: leveled lines to stderr, either as JSON (one object per
// line: level, time, msg and the line's structured fields) or as the human-readable
// `TIME LEVEL message` text. This is the one module that knows pino.
import { pino, type Logger as PinoLogger } from 'pino';

/** Log levels, most verbose first. */
export const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type Level = (typeof LEVELS)[number];

/** How lines look: `auto` is text on a TTY and JSON lines otherwise. */
export const LOG_FORMATS = ['auto', 'text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Structured fields of a line (`member`, `remote`, `identity`, `reason`, ...); undefined values are left out. */
export type LogFields = Readonly<Record<string, string | number | boolean | undefined | Readonly<Record<string, number | undefined>>>>;

/** Writes leveled lines; lines below `level` are skipped. `level` may be changed at any time. */
export interface Logger {
  log(level: Level, message: string, fields?: LogFields): void;
  level: Level;
  /** The format in use (`auto` resolved). */
  readonly format: 'text' | 'json';
}

export interface LoggerOptions {
  /** Default `info`. */
  readonly level?: Level;
  /** Default `auto`. */
  readonly format?: LogFormat;
  /** Where whole lines (ending in a newline) go; default process.stderr. */
  readonly write?: (line: string) => void;
  /** Whether the output is a terminal, for `auto`; default process.stderr.isTTY. */
  readonly isTty?: boolean;
}

/** `auto` resolved: text on a terminal, JSON lines otherwise. */
export function resolveLogFormat(format: LogFormat, isTty: boolean): 'text' | 'json' {
  return format === 'auto' ? (isTty ? 'text' : 'json') : format;
}

/** Reformats one pino JSON line as `TIME LEVEL message` (the fields stay in the JSON format only). */
function textLine(json: string): string {
  const o = JSON.parse(json) as { level?: string; time?: string; msg?: string };
  return `${o.time ?? new Date().toISOString()} ${(o.level ?? 'info').toUpperCase().padEnd(5)} ${o.msg ?? ''}\n`;
}

/**
 * A logger writing to `write` (stderr by default). Accepts a level for compatibility with the
 * seed's `createLogger(level, write)`, or options. Writes are synchronous: a fatal line is out
 * before the process exits.
 */
export function createLogger(options: LoggerOptions | Level = {}, write?: (line: string) => void): Logger {
  const o: LoggerOptions = typeof options === 'string' ? { level: options, ...(write === undefined ? {} : { write }) } : options;
  const out = o.write ?? ((line: string) => void process.stderr.write(line));
  const format = resolveLogFormat(o.format ?? 'auto', o.isTty ?? process.stderr.isTTY === true);
  const destination = { write: format === 'json' ? out : (s: string) => out(textLine(s)) };
  const p: PinoLogger = pino(
    {
      level: o.level ?? 'info',
      base: undefined,
      messageKey: 'msg',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  return {
    format,
    get level(): Level {
      return p.level as Level;
    },
    set level(level: Level) {
      p.level = level;
    },
    log(level, message, fields) {
      if (fields === undefined) p[level](message);
      else p[level]({ ...fields }, message);
    },
  };
}
