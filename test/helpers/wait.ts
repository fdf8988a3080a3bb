// Deadlines and the one poll helper of the tests. The suite must pass on a loaded 2-core machine
// (docs/testing.md, "Under load"), so a test waits for what it waits for (a line, an event, a
// condition) and returns the moment it happens; the deadline only tells a hang from a slow machine.
// Bounds that a test asserts ("gone within the 3 s timeout") add SLACK_MS for the scheduler.

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

