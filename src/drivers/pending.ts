// Driver helper: the connections a listener accepted that the hub has not admitted yet, counted per
// source host and in total, with caps. The one count behind makeNetListener, makeTlsListener and the
// TLS worker thread, which all take a slot at the TCP accept (before any TLS handshake, through
// admitPending in net.ts) and give it back on ConnectionPort.admitted() or the socket's close; what
// would exceed a cap is destroyed at once, so it costs nothing beyond the accept.
import type { ListenerEvent, PendingRefusal } from '../../pipelines/ports.js';

/** Caps on connections not yet admitted (`max_pending_per_source`, `max_pending`). */
export interface PendingLimits {
  /** At most this many from one source host. */
  readonly perSource: number;
  /** At most this many in all. */
  readonly total: number;
}

/** The caps a listener has when none are given (the config's defaults). */
export const DEFAULT_PENDING_LIMITS: PendingLimits = { perSource: 64, total: 1024 };

/** A slot taken (`release` ends it; calling it again does nothing), or why none was given. */
export type PendingSlot =
  | { readonly ok: true; readonly release: () => void }
  | { readonly ok: false; readonly reason: PendingRefusal; readonly detail: string };

/** A listener's `refused` event. */
export type RefusedEvent = Extract<ListenerEvent, { type: 'refused' }>;

/**
 * Counts pending connections by source host. The map holds only hosts with at least one pending
 * connection, so it never has more than `limits.total` entries: bounded by the total cap.
 */
export class PendingConnections {
  private readonly bySource = new Map<string, number>();
  private total = 0;

  constructor(
    readonly limits: PendingLimits = DEFAULT_PENDING_LIMITS,
    /** Called after every change of `count` (the TLS worker thread reports it to the main thread). */
    private readonly onChange?: (count: number) => void,
  ) {}

  /** Connections counted now. */
  get count(): number {
    return this.total;
  }

  /** Sources with a pending connection now (at most `limits.total`). */
  get sources(): number {
    return this.bySource.size;
  }

  /** Counts one more connection from `host` unless that would exceed a cap (the source's is checked first). */
  acquire(host: string): PendingSlot {
    const mine = this.bySource.get(host) ?? 0;
    if (mine >= this.limits.perSource) {
      return { ok: false, reason: 'pending-source-limit', detail: `${mine} connections from ${host} are already waiting to be admitted (max_pending_per_source ${this.limits.perSource})` };
    }
    if (this.total >= this.limits.total) {
      return { ok: false, reason: 'pending-limit', detail: `${this.total} connections are already waiting to be admitted (max_pending ${this.limits.total})` };
    }
    this.bySource.set(host, mine + 1);
    this.total++;
    this.onChange?.(this.total);
    let held = true;
    return {
      ok: true,
      release: () => {
        if (!held) return;
        held = false;
        const n = (this.bySource.get(host) ?? 1) - 1;
        if (n > 0) this.bySource.set(host, n);
        else this.bySource.delete(host);
        this.total--;
        this.onChange?.(this.total);
      },
    };
  }
}
