// Cloned identities: two live clients with one identity (a copied client-id file, one token on two
// machines) would replace each other forever, both on one address. The hub lets an identity replace
// its own live session a few times (a laptop that roamed, a restarted process), then refuses the
// newcomer for as long as the clone keeps trying. Pure values and functions: time comes from the caller.
import type { AgedMap } from '../operators/core/agedMap.js';

/** Replacements of one identity's live session allowed within REPLACE_WINDOW_MS. */
export const MAX_REPLACEMENTS = 3;
/** The window MAX_REPLACEMENTS counts over. */
export const REPLACE_WINDOW_MS = 60_000;
/** Once refused as a clone, an identity's newcomers are refused this long after the last refusal while its holder lives. */
export const CLONE_HOLD_MS = 300_000;
/** Identities remembered at once (oldest forgotten first), so a flood of made-up ids costs bounded memory. */
export const MAX_TRACKED = 4096;

/** What the hub remembers of one identity: its recent replacement times and until when newcomers are refused. */
export interface ReplacementRecord {
  readonly times: readonly number[];
  readonly refuseUntil: number;
}

/** Identity → record, oldest first, at most MAX_TRACKED (the oldest is forgotten first; an update copies O(log n)). */
export type Replacements = AgedMap<string, ReplacementRecord>;

/** What to do with a newcomer whose identity holds a live session. */
export type ReplaceVerdict = { readonly ok: true } | { readonly ok: false; readonly replacements: number };

/**
 * Whether a newcomer of `identity` may replace that identity's live session at `now`: not when it
 * already replaced itself MAX_REPLACEMENTS times within REPLACE_WINDOW_MS, nor while a clone hold
 * (CLONE_HOLD_MS after the last refusal) lasts.
 */
export function replaceVerdict(r: Replacements, identity: string, now: number): ReplaceVerdict {
  const entry = r.get(identity);
  if (entry === undefined) return { ok: true };
  const recent = entry.times.filter((t) => now - t < REPLACE_WINDOW_MS).length;
  return now < entry.refuseUntil || recent >= MAX_REPLACEMENTS ? { ok: false, replacements: recent } : { ok: true };
}

/** `r` with a replacement of `identity` at `now` recorded. */
export function withReplacement(r: Replacements, identity: string, now: number): Replacements {
  const entry = r.get(identity);
  return r.set(identity, { times: [...(entry?.times ?? []).filter((t) => now - t < REPLACE_WINDOW_MS), now], refuseUntil: entry?.refuseUntil ?? 0 });
}

/** `r` with `identity` refused as a clone at `now` (its hold extended). */
export function withCloneRefusal(r: Replacements, identity: string, now: number): Replacements {
  const entry = r.get(identity);
  return r.set(identity, { times: (entry?.times ?? []).filter((t) => now - t < REPLACE_WINDOW_MS), refuseUntil: now + CLONE_HOLD_MS });
}

