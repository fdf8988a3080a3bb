// A small leveled logger: one line per event, to stderr by default.

/** Log levels, most verbose first. */
export const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type Level = (typeof LEVELS)[number];

/** Writes leveled lines; lines below `level` are skipped. */
export interface Logger {
  log(level: Level, message: string): void;
  level: Level;
}

/** A logger writing `TIME LEVEL message` lines to `write` (stderr by default). */
export function createLogger(level: Level = 'info', write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  return {
    level,
    log(lv, message) {
      if (LEVELS.indexOf(lv) < LEVELS.indexOf(this.level)) return;
      write(`${new Date().toISOString()} ${lv.toUpperCase().padEnd(5)} ${message}\n`);
    },
  };
}
