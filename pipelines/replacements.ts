// Cloned identities: two live clients with one identity (a copied client-id file, one token on two
// machines) would replace each other forever, both on one address. The hub lets an identity replace
// its own live session a few times (a laptop that roamed, a restarted process), then refuses the
// newcomer for as long as the clone keeps trying. Pure: time comes from the caller.

/** Replacements of one identity's live session allowed within REPLACE_WINDOW_MS. */
export const MAX_REPLACEMENTS = 3;
/** The window MAX_REPLACEMENTS counts over. */
export const REPLACE_WINDOW_MS = 60_000;
/** Once refused as a clone, an identity's newcomers are refused this long after the last refusal while its holder lives. */
export const CLONE_HOLD_MS = 300_000;
/** Identities remembered at once (oldest forgotten first), so a flood of made-up ids costs bounded memory. */
export const MAX_TRACKED = 4096;

/** What to do with a newcomer whose identity holds a live session. */
export type ReplaceVerdict = { readonly ok: true } | { readonly ok: false; readonly replacements: number };

/** Per identity: recent replacement times, and until when newcomers are refused as clones. */
export class ReplacementTracker {
  readonly #seen = new Map<string, { times: number[]; refuseUntil: number }>();

  /**
   * A newcomer of `identity` wants to replace that identity's session, which was heard from within
   * the timeout (it lives). Replacing is allowed (and recorded) unless the identity already replaced
   * itself MAX_REPLACEMENTS times within REPLACE_WINDOW_MS, or was refused as a clone within
   * CLONE_HOLD_MS: then the newcomer is refused and the hold is extended.
   */
  replaceLive(identity: string, now: number): ReplaceVerdict {
    const entry = this.#seen.get(identity) ?? { times: [], refuseUntil: 0 };
    this.#seen.delete(identity);
    if (this.#seen.size >= MAX_TRACKED) this.#seen.delete(this.#seen.keys().next().value!);
    this.#seen.set(identity, entry);
    entry.times = entry.times.filter((t) => now - t < REPLACE_WINDOW_MS);
    if (now < entry.refuseUntil || entry.times.length >= MAX_REPLACEMENTS) {
      entry.refuseUntil = now + CLONE_HOLD_MS;
      return { ok: false, replacements: entry.times.length };
    }
    entry.times.push(now);
    return { ok: true };
  }

  /** How many identities are remembered (at most MAX_TRACKED). */
  get size(): number {
    return this.#seen.size;
  }
}
