// The hub's longest-prefix-match table: member addresses (/32), LANs announced behind members, and
// covering entries such as the tunnel subnet or a 0/0 default. Pure data structure, no time, no I/O.
import { normalizePrefix, prefixMask, type Ipv4Prefix } from './address.js';

/** One entry of a RouteTable; `prefix.address` is always the network (host bits cleared). */
export interface RouteEntry<T> {
  readonly prefix: Ipv4Prefix;
  readonly target: T;
  /** A fallback entry takes part in lookups but not in overlap checks (see RouteTable.add). */
  readonly fallback: boolean;
}

/** How `RouteTable.add` refused a prefix: it overlaps `with`, which belongs to another target. */
export interface RouteRefusal {
  readonly ok: false;
  readonly reason: 'overlap';
  readonly with: Ipv4Prefix;
}

/** The outcome of `RouteTable.add`: installed (or already there for the same target), or refused. */
export type RouteAddResult = { readonly ok: true } | RouteRefusal;

/** Options of `RouteTable.add`. */
export interface RouteAddOptions {
  /**
   * A covering entry (a 0/0 default, the tunnel subnet) that more specific entries of other targets
   * may sit inside: it is never refused for overlapping, and never refuses anything, except the
   * exact same prefix for another target (one prefix has one target).
   */
  readonly fallback?: boolean;
}

const OK: RouteAddResult = { ok: true };

/**
 * Longest-prefix match over IPv4, one Map per prefix length (keyed by the network as a u32).
 *
 * Cost: `lookup` does one mask and one `Map.get` per prefix length *present* in the table, longest
 * first, and stops at the first hit; a /32 (a member's tunnel address) is found by the first get,
 * so member traffic stays O(1); a miss costs at most one get per distinct length (33 at the very
 * worst, two or three in practice: /32 members, /24 LANs, a 0/0 default). `add` is O(entries) (the
 * overlap check walks the longer lengths), `remove` is O(1), `removeTarget` and `entries` are
 * O(entries): all of those are on the control path (join, leave, announcements), never per packet.
 */
export class RouteTable<T> {
  /** By length: network → entry. Only lengths with at least one entry are kept. */
  readonly #byLength = new Map<number, Map<number, RouteEntry<T>>>();
  /** The lengths present, longest first, with their masks: the order `lookup` probes in. */
  #lengths: number[] = [];
  #masks: number[] = [];
  #size = 0;

  /** How many prefixes the table holds. */
  get size(): number {
    return this.#size;
  }

  /**
   * Installs `prefix → target` (host bits of the address are ignored). Refuses with `overlap` when the
   * prefix equals, contains or lies inside a non-fallback entry of another target (fallback entries,
   * see RouteAddOptions, are skipped by the check unless the prefix is the same); re-adding the same
   * prefix for the same target is a no-op that succeeds (it updates the fallback flag). Overlapping
   * prefixes of one target are allowed (the longest still wins). Throws RangeError on a bad length.
   */
  add(prefix: Ipv4Prefix, target: T, options: RouteAddOptions = {}): RouteAddResult {
    const p = normalizePrefix(prefix);
    const fallback = options.fallback === true;
    const same = this.#byLength.get(p.prefix)?.get(p.address);
    if (same !== undefined) {
      if (same.target !== target) return refuse(same.prefix);
      if (same.fallback !== fallback) this.#byLength.get(p.prefix)!.set(p.address, { prefix: same.prefix, target, fallback });
      return OK;
    }
    if (!fallback) {
      const clash = this.#overlapping(p, target);
      if (clash !== undefined) return refuse(clash.prefix);
    }
    let level = this.#byLength.get(p.prefix);
    if (level === undefined) {
      level = new Map();
      this.#byLength.set(p.prefix, level);
      this.#reindex();
    }
    level.set(p.address, { prefix: p, target, fallback });
    this.#size++;
    return OK;
  }

  /** The entry that `add(prefix, target)` would be refused for (same prefix or an overlap with another target), or undefined; changes nothing. `target` undefined: a newcomer without entries. */
  conflict(prefix: Ipv4Prefix, target: T | undefined): RouteEntry<T> | undefined {
    const p = normalizePrefix(prefix);
    const same = this.#byLength.get(p.prefix)?.get(p.address);
    if (same !== undefined) return same.target === target ? undefined : same;
    return this.#overlapping(p, target);
  }

  /** Removes exactly `prefix` (host bits ignored); returns the target it had, or undefined when absent. */
  remove(prefix: Ipv4Prefix): T | undefined {
    const p = normalizePrefix(prefix);
    const level = this.#byLength.get(p.prefix);
    const entry = level?.get(p.address);
    if (level === undefined || entry === undefined) return undefined;
    level.delete(p.address);
    this.#size--;
    if (level.size === 0) {
      this.#byLength.delete(p.prefix);
      this.#reindex();
    }
    return entry.target;
  }

  /** Removes every prefix of `target` (a member left); returns the removed prefixes, longest first. */
  removeTarget(target: T): Ipv4Prefix[] {
    const removed: Ipv4Prefix[] = [];
    for (const e of this.entries()) if (e.target === target) removed.push(e.prefix);
    for (const p of removed) this.remove(p);
    return removed;
  }

  /** An independent copy (O(entries)): changing one never changes the other. */
  clone(): RouteTable<T> {
    const c = new RouteTable<T>();
    for (const [len, level] of this.#byLength) c.#byLength.set(len, new Map(level));
    c.#lengths = [...this.#lengths];
    c.#masks = [...this.#masks];
    c.#size = this.#size;
    return c;
  }

  /** A copy without any prefix of `target` (this table unchanged). */
  without(target: T): RouteTable<T> {
    const c = this.clone();
    c.removeTarget(target);
    return c;
  }

  /** The target of the longest prefix containing `address` (a u32), or undefined. Allocates nothing. */
  lookup(address: number): T | undefined {
    const lengths = this.#lengths;
    const masks = this.#masks;
    for (let i = 0; i < lengths.length; i++) {
      const hit = this.#byLength.get(lengths[i]!)!.get((address & masks[i]!) >>> 0);
      if (hit !== undefined) return hit.target;
    }
    return undefined;
  }

  /** Every entry, longest prefix first, then by network address ascending. A fresh array (a snapshot). */
  entries(): RouteEntry<T>[] {
    const out: RouteEntry<T>[] = [];
    for (const len of this.#lengths) {
      const level = [...this.#byLength.get(len)!.values()];
      level.sort((a, b) => a.prefix.address - b.prefix.address);
      out.push(...level);
    }
    return out;
  }

  /** A non-fallback entry of another target that contains or lies inside `p`, shortest first. */
  #overlapping(p: Ipv4Prefix, target: T | undefined): RouteEntry<T> | undefined {
    // Prefixes are nested or disjoint: `p` overlaps a shorter entry only by lying in it (one get per
    // shorter length), and a longer entry only by containing it (a walk over that length's entries).
    for (let i = this.#lengths.length - 1; i >= 0; i--) {
      const len = this.#lengths[i]!;
      const level = this.#byLength.get(len)!;
      if (len < p.prefix) {
        const e = level.get((p.address & this.#masks[i]!) >>> 0);
        if (e !== undefined && !e.fallback && e.target !== target) return e;
      } else if (len > p.prefix) {
        const mask = prefixMask(p.prefix);
        for (const e of level.values()) if (!e.fallback && e.target !== target && ((e.prefix.address & mask) >>> 0) === p.address) return e;
      }
    }
    return undefined;
  }

  #reindex(): void {
    this.#lengths = [...this.#byLength.keys()].sort((a, b) => b - a);
    this.#masks = this.#lengths.map(prefixMask);
  }
}

function refuse(with_: Ipv4Prefix): RouteRefusal {
  return { ok: false, reason: 'overlap', with: with_ };
}
