import { asyncScheduler, type OperatorFunction, type SchedulerLike } from 'rxjs';
import { keyedWindows } from './keyedWindows.js';
import { addDrops, type DropCounts } from './core/packet.js';

/** Drops attributed to one key (a member, or the hub itself). */
export interface DropReport<K> {
  readonly key: K;
  readonly drops: DropCounts;
}

/**
 * Rate-limits drop reporting for logs: the first report for a key opens a window of `periodMs`;
 * reports for that key during the window are added up; at the window's end one summary with the
 * totals is emitted. So at most one summary per key per period, never one per packet. On completion
 * the open windows are emitted at once.
 *
 *   reports: -a-a-a--b------|    (period 5, a and b are keys)
 *   out:     ------A------B-|    A = sum of a's three reports, B = b's
 */
export function summarizeDrops<K>(periodMs: number, scheduler: SchedulerLike = asyncScheduler): OperatorFunction<DropReport<K>, DropReport<K>> {
  return keyedWindows<DropReport<K>, K, DropCounts, DropReport<K>>(periodMs, scheduler, {
    keyOf: (report) => report.key,
    start: () => ({}),
    add(sum, { drops }) {
      addDrops(sum, drops);
      return undefined;
    },
    end: (key, drops) => ({ key, drops }),
    chain: false,
  });
}
