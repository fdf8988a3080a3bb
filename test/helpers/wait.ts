// Deadlines and the one poll helper of the tests. The suite must pass on a loaded 2-core machine
// (docs/testing.md, "Under load"), so a test waits for what it waits for (a line, an event, a
// condition) and returns the moment it happens; the deadline only tells a hang from a slow machine.
// Bounds that a test asserts ("gone within the 3 s timeout") add SLACK_MS for the scheduler.
import fs from 'node:fs';

/** Multiplies every deadline and the slack: `LWT_TEST_TIME_SCALE=3 npm test` on a very slow machine. */
export const TIME_SCALE: number = ((): number => {
  const raw = process.env['LWT_TEST_TIME_SCALE'];
  const n = raw === undefined || raw === '' ? 1 : Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`LWT_TEST_TIME_SCALE must be a positive number, not ${JSON.stringify(raw)}`);
  return n;
})();

/**
 * How long a test waits for something that must happen: a starting process prints its line (or
 * exits, which ends the wait at once), a listener listens, a member joins, a condition holds. Only
 * a hang takes this long.
 */
export const DEADLINE_MS: number = 60_000 * TIME_SCALE;

/**
 * What a timing assertion allows on top of the time the program is specified to take (a timeout, a
 * backoff delay): a loaded machine runs timers, processes and log lines late.
 */
export const SLACK_MS: number = 5_000 * TIME_SCALE;

/** A promise of a timer. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Resolves as soon as `pred()` holds (polled every `pollMs`; it may be async); rejects after
 * `timeoutMs` with `what` (a function: evaluated then, to describe the last state).
 */
export async function waitUntil(
  pred: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs: number = DEADLINE_MS,
  pollMs = 10,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(pollMs);
  }
}

/** Microseconds in which some task of the machine waited for a CPU (Linux pressure stall information), or undefined. */
function cpuStallUs(): number | undefined {
  try {
    const m = /^some .*\btotal=(\d+)$/m.exec(fs.readFileSync('/proc/pressure/cpu', 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/**
 * A stopwatch for a bound on how long a whole program run may take: `unloadedMs()` is the wall
 * time since it started less the time in which some task of the machine waited for a CPU
 * (/proc/pressure/cpu; without it, the plain wall time). On an idle machine that is nearly the
 * wall time; on a loaded one it leaves out what the load cost.
 */
export function stopwatch(): { elapsedMs(): number; unloadedMs(): number } {
  const started = Date.now();
  const stalled = cpuStallUs();
  return {
    elapsedMs: () => Date.now() - started,
    unloadedMs: () => {
      const now = cpuStallUs();
      const lost = stalled === undefined || now === undefined ? 0 : (now - stalled) / 1000;
      return Math.max(0, Date.now() - started - lost);
    },
  };
}
