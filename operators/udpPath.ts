import { Observable, asyncScheduler, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';

/** Where a session's data goes, as far as the UDP path is concerned. */
export type PathState =
  /** Probing: keepalive datagrams go out (once the peer's endpoint is known), data goes over TCP. */
  | 'probing'
  /** Both directions work: data goes over UDP. */
  | 'up'
  /** The path failed (or never came up): data over TCP, a new probing round after a backoff. */
  | 'down';

/** What the owner tells udpPath: an authenticated datagram from the peer arrived, saying whether the peer hears us. */
export interface Heard {
  readonly hearsUs: boolean;
}

/** What udpPath tells its owner. */
export type PathEvent =
  /** The path changed state (`why` says what made it). */
  | { readonly kind: 'state'; readonly state: PathState; readonly why: string }
  /** Time to send a keepalive datagram (the owner skips it when it sent one recently or knows no endpoint). */
  | { readonly kind: 'keepalive' };

/** Options of udpPath. */
export interface UdpPathOptions {
  /** A peer not heard for this long is gone: the path goes down (2 s: fall back to TCP within 2 s). */
  readonly silenceMs: number;
  /** Keepalives while probing or up, so that silence means a broken path. */
  readonly keepaliveMs: number;
  /** A probing round that does not get the path up within this long ends in `down`. */
  readonly probeMs: number;
  /** Backoff before the next probing round: initialMs doubling up to maxMs. */
  readonly backoff: { readonly initialMs: number; readonly maxMs: number };
  readonly scheduler?: SchedulerLike;
}

/**
 * The UDP path of one session as a state machine in the scheduler's time. It starts probing:
 * `keepalive` every keepaliveMs; a datagram from the peer that says it hears us brings the path
 * `up` (data goes over UDP); while up, `keepalive` keeps going, and silence for silenceMs (or the
 * peer saying it no longer hears us) takes it `down` (data over TCP). A probing round that does not
 * get up within probeMs also ends `down`; each `down` waits a backoff (initialMs doubling to maxMs,
 * reset by an `up`) and probes again. Emits each state change (the first `probing` at subscription)
 * and the keepalive ticks; completes with the source.
 *
 *   heard:  ----h--------------|       (keepalive 2, silence 5, h = heard, hears us)
 *   out:    p-k-(ku)k-k-(kd)---|       p = probing, u = up, d = down (5 after the last h)
 */
export function udpPath(options: UdpPathOptions): OperatorFunction<Heard, PathEvent> {
  const { silenceMs, keepaliveMs, probeMs, backoff } = options;
  const scheduler = options.scheduler ?? asyncScheduler;
  return (source) =>
    new Observable<PathEvent>((subscriber) => {
      let state: PathState = 'probing';
      let lastHeard = Number.NEGATIVE_INFINITY;
      let failures = 0;
      let roundStarted = scheduler.now();
      let ticks: Subscription | undefined;
      let retry: Subscription | undefined;

      const enter = (next: PathState, why: string): void => {
        if (next === state) return;
        retry?.unsubscribe();
        retry = undefined;
        state = next;
        subscriber.next({ kind: 'state', state, why });
        // The owner may have unsubscribed on hearing it (a session that ends when its path fails):
        // then nothing may be scheduled any more, or the timers would outlive the subscription.
        if (subscriber.closed) return;
        if (state === 'down') {
          stopTicks();
          const delay = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(failures, 30));
          failures++;
          retry = scheduler.schedule(() => {
            retry = undefined;
            roundStarted = scheduler.now();
            enter('probing', `probing again after ${Math.round(delay / 1000)} s`);
          }, delay);
        } else {
          if (state === 'up') failures = 0;
          startTicks();
        }
      };
      const tick = (): void => {
        if (subscriber.closed) return stopTicks();
        const now = scheduler.now();
        if (state === 'up' && now - lastHeard >= silenceMs) {
          enter('down', `no datagram from the peer for ${silenceMs / 1000} s`);
          return;
        }
        if (state === 'probing' && now - roundStarted >= probeMs) {
          enter('down', `no answer to probes for ${probeMs / 1000} s`);
          return;
        }
        subscriber.next({ kind: 'keepalive' });
      };
      const startTicks = (): void => {
        if (ticks !== undefined) return;
        ticks = scheduler.schedule(function (this: { schedule(state?: unknown, delay?: number): unknown }) {
          tick();
          if (ticks !== undefined) this.schedule(undefined, keepaliveMs);
        }, keepaliveMs);
      };
      const stopTicks = (): void => {
        ticks?.unsubscribe();
        ticks = undefined;
      };

      subscriber.next({ kind: 'state', state, why: 'probing the UDP path' });
      startTicks();
      const inner = source.subscribe({
        next(h) {
          lastHeard = scheduler.now();
          if (h.hearsUs) {
            if (state !== 'up') enter('up', state === 'down' ? 'the peer was heard again' : 'the peer hears us and we hear it');
          } else if (state === 'up') {
            enter('down', 'the peer no longer hears us');
          }
        },
        error: (e) => subscriber.error(e),
        complete: () => subscriber.complete(),
      });
      return () => {
        inner.unsubscribe();
        stopTicks();
        retry?.unsubscribe();
      };
    });
}
