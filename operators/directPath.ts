import { Observable, asyncScheduler, type OperatorFunction, type SchedulerAction, type SchedulerLike, type Subscription } from 'rxjs';

/** Where one peer's packets go, as far as its direct path is concerned (docs/direct.md, "Status"). */
export type DirectPathState =
  /** Probes go to every candidate endpoint at once; packets go through the hub (`relayed (probing)`). */
  | { readonly kind: 'probing' }
  /** The peer answered from `endpoint` (`ip:port`): packets go there (`direct 192.0.2.7:41641`). */
  | { readonly kind: 'direct'; readonly endpoint: string }
  /** Packets go through the hub; the next probing round starts in `retryMs` (`relayed (probing)`). */
  | { readonly kind: 'relayed'; readonly retryMs: number }
  /**
   * Probing rounds failed too often: packets go through the hub (`relayed (no direct path: why)`,
   * or without `: why`). Probing goes on at the backoff, quietly: this state holds until an answer.
   */
  | { readonly kind: 'no-direct-path'; readonly why: string | undefined }
  /** The hub withdrew the pair (or its owner ended it): the path is over. */
  | { readonly kind: 'withdrawn'; readonly why: string };

/** What the owner tells directPath. */
export type DirectPathInput =
  /** An authenticated datagram of the pair arrived from `from` (`ip:port`); `hearsUs` is its "I have heard you lately" flag. */
  | { readonly kind: 'heard'; readonly from: string; readonly hearsUs: boolean }
  /** A PONG of the pair arrived (after its `heard`), echoing `token`. */
  | { readonly kind: 'pong'; readonly token: number }
  /** The pair is withdrawn (the hub's WITHDRAWAL, a newer introduction, the session's end): `why` for people. */
  | { readonly kind: 'withdrawn'; readonly why: string };

/** What directPath tells its owner. */
export type DirectPathEvent =
  /** The path changed state (`why` says what made it, for the log). */
  | { readonly kind: 'state'; readonly state: DirectPathState; readonly why: string }
  /** Send a keepalive datagram to every candidate endpoint now (hole punching). */
  | { readonly kind: 'probe' }
  /** The peer was heard from `to` but does not hear us yet: send it a keepalive there at once. */
  | { readonly kind: 'answer'; readonly to: string }
  /** While direct: send a keepalive to `to` (the owner skips it when it sent a datagram there lately). */
  | { readonly kind: 'keepalive'; readonly to: string }
  /** While direct (with pingMs): send a PING carrying `token` to `to` now, whatever else went out (it is a keepalive too). */
  | { readonly kind: 'ping'; readonly to: string; readonly token: number }
  /** A PONG answered one of the last PINGS_KEPT pings while direct: the round trip `ms` and the smoothed one (RFC 6298's 7/8 + 1/8, from the first sample of this direct path). */
  | { readonly kind: 'rtt'; readonly ms: number; readonly smoothedMs: number }
  /** A PONG that answers none of the pings outstanding (an old one after a path change, or a peer's invention): for the owner to count. */
  | { readonly kind: 'stray-pong' };

/** Options of directPath. */
export interface DirectPathOptions {
  /** While direct, no answer (an authenticated datagram saying it hears us) for this long: relayed. */
  readonly silenceMs: number;
  /** While direct, a keepalive this often, so that silence means a broken path. */
  readonly keepaliveMs: number;
  /** While probing, probes to every candidate this often. */
  readonly probeMs: number;
  /** A probing round without an answer ends after this long. */
  readonly roundMs: number;
  /** The wait before the next probing round: initialMs, doubling up to maxMs; reset by a direct path. */
  readonly backoff: { readonly initialMs: number; readonly maxMs: number };
  /** After this many probing rounds in a row without an answer: `no-direct-path`. */
  readonly maxRounds: number;
  /** While direct, a PING (instead of a keepalive tick) when this long went by since the last one: round-trip times. Without it: no pings. */
  readonly pingMs?: number;
  /** What `no-direct-path` says is the likely cause (`symmetric NAT`), when the owner knows one. */
  readonly noPathWhy?: string;
  readonly scheduler?: SchedulerLike;
}

/** The timing of direct paths: a silent path is relayed after 2 s; a ping every 1 s while direct; probes every 250 ms, 5 s per round, 3 rounds before `no-direct-path`, then every 1 s doubling to 30 s. */
export const DIRECT_TIMING = { silenceMs: 1500, keepaliveMs: 500, pingMs: 1000, probeMs: 250, roundMs: 5000, backoff: { initialMs: 1000, maxMs: 30_000 }, maxRounds: 3 } as const;

/** The pings a path remembers (token and time sent): a PONG of an older one is a stray. The whole state of round-trip times, however many go unanswered. */
export const PINGS_KEPT = 4;

/**
 * The direct path to one peer as a state machine in the scheduler's time. It starts `probing`
 * (a `probe` at once and every probeMs). A datagram from the peer that says it hears us makes it
 * `direct` to the datagram's source (a `keepalive` there at once and every keepaliveMs; a later
 * answer from another source moves it); one that does not hear us yet is answered (`answer`). While
 * direct, no answer for silenceMs makes it `relayed`; a probing round of roundMs without one too;
 * each waits a backoff (initialMs doubling to maxMs, reset by `direct`) before probing again, and
 * after maxRounds failed rounds in a row it reports `no-direct-path` and probes on at the backoff
 * without reporting `probing` again. `withdrawn` ends it: the state, then completion. Completes
 * with the source; errors with it. With pingMs, the first datagram of a direct path and then one
 * keepalive tick each pingMs is a `ping` (a fresh token, remembered with its time in a ring of
 * PINGS_KEPT); a `pong` echoing a remembered token while direct is an `rtt` (then forgotten), any
 * other a `stray-pong`. Leaving `direct` forgets the pings and the smoothed round trip.
 *
 *   in:   ---h-----        (probe 2, keepalive 2, silence 4; h: heard from e, hears us)
 *   out:  p-od-k-r         p: probing + probe, o: probe, d: direct e + keepalive, k: keepalive, r: relayed
 */
export function directPath(options: DirectPathOptions): OperatorFunction<DirectPathInput, DirectPathEvent> {
  const { silenceMs, keepaliveMs, probeMs, roundMs, backoff, maxRounds } = options;
  const scheduler = options.scheduler ?? asyncScheduler;
  return (source) =>
    new Observable<DirectPathEvent>((subscriber) => {
      /** What the machine does now (the reported state may still say `no-direct-path` while it probes). */
      let phase: 'probing' | 'direct' | 'waiting' = 'probing';
      let endpoint = '';
      let givenUp = false;
      let failedRounds = 0;
      let failures = 0;
      let lastAnswer = Number.NEGATIVE_INFINITY;
      /** The probes or keepalives: one series at a time, told apart by `series`. */
      let ticks: Subscription | undefined;
      let series = 0;
      /** The end of a probing round, the silence deadline, or the wait before the next round. */
      let timer: Subscription | undefined;
      /** The pings outstanding by token % PINGS_KEPT: token (0: none) and when it went. */
      const pingTokens = new Array<number>(PINGS_KEPT).fill(0);
      const pingTimes = new Array<number>(PINGS_KEPT).fill(0);
      let lastToken = 0;
      let lastPing = Number.NEGATIVE_INFINITY;
      let smoothedMs: number | undefined;

      const stopTicks = (): void => {
        series++;
        ticks?.unsubscribe();
        ticks = undefined;
      };
      const stop = (): void => {
        stopTicks();
        timer?.unsubscribe();
        timer = undefined;
        pingTokens.fill(0);
        smoothedMs = undefined;
      };
      /** Emits `e`; false when the owner unsubscribed on hearing it (then nothing may be scheduled any more). */
      const emit = (e: DirectPathEvent): boolean => {
        subscriber.next(e);
        return !subscriber.closed;
      };
      const every = (ms: number, work: () => void): void => {
        const mine = ++series;
        ticks = scheduler.schedule(function (this: SchedulerAction<unknown>) {
          work();
          if (mine === series && !subscriber.closed) this.schedule(undefined, ms);
        }, ms);
      };
      /** While direct: a ping when pingMs went by since the last one (or `first`), else a keepalive. */
      const keepOrPing = (first: boolean): DirectPathEvent => {
        const now = scheduler.now();
        if (options.pingMs === undefined || (!first && now - lastPing < options.pingMs)) return { kind: 'keepalive', to: endpoint };
        lastPing = now;
        lastToken = lastToken >= 0xffffffff ? 1 : lastToken + 1;
        pingTokens[lastToken % PINGS_KEPT] = lastToken;
        pingTimes[lastToken % PINGS_KEPT] = now;
        return { kind: 'ping', to: endpoint, token: lastToken };
      };
      /** A PONG: the round trip of the ping it answers, or a stray. */
      const onPong = (token: number): void => {
        const slot = token % PINGS_KEPT;
        if (phase !== 'direct' || token === 0 || pingTokens[slot] !== token) {
          emit({ kind: 'stray-pong' });
          return;
        }
        pingTokens[slot] = 0;
        const ms = scheduler.now() - pingTimes[slot]!;
        smoothedMs = smoothedMs === undefined ? ms : smoothedMs + (ms - smoothedMs) / 8;
        emit({ kind: 'rtt', ms, smoothedMs });
      };
      const backoffMs = (): number => Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(failures++, 30));

      const startProbing = (why: string): void => {
        phase = 'probing';
        if (!givenUp && !emit({ kind: 'state', state: { kind: 'probing' }, why })) return;
        if (!emit({ kind: 'probe' })) return;
        every(probeMs, () => subscriber.next({ kind: 'probe' }));
        timer = scheduler.schedule(roundOver, roundMs);
      };
      /** Waits a backoff, then probes again. */
      const wait = (state: DirectPathState | undefined, delay: number, why: string): void => {
        phase = 'waiting';
        if (state !== undefined && !emit({ kind: 'state', state, why })) return;
        timer = scheduler.schedule(() => {
          timer = undefined;
          startProbing(`probing again after ${delay / 1000} s`);
        }, delay);
      };
      const roundOver = (): void => {
        timer = undefined;
        stopTicks();
        failedRounds++;
        const delay = backoffMs();
        const why = `no answer to probes for ${roundMs / 1000} s`;
        if (givenUp) return wait(undefined, delay, why);
        if (failedRounds >= maxRounds) {
          givenUp = true;
          return wait({ kind: 'no-direct-path', why: options.noPathWhy }, delay, `${why}, ${failedRounds} rounds in a row`);
        }
        wait({ kind: 'relayed', retryMs: delay }, delay, why);
      };
      const silenceCheck = function (this: SchedulerAction<unknown>): void {
        const quiet = scheduler.now() - lastAnswer;
        if (quiet < silenceMs) {
          this.schedule(undefined, silenceMs - quiet);
          return;
        }
        timer = undefined;
        stopTicks();
        const delay = backoffMs();
        wait({ kind: 'relayed', retryMs: delay }, delay, `no answer from the peer for ${silenceMs / 1000} s`);
      };
      const goDirect = (from: string, why: string): void => {
        stop();
        phase = 'direct';
        endpoint = from;
        failures = 0;
        failedRounds = 0;
        givenUp = false;
        if (!emit({ kind: 'state', state: { kind: 'direct', endpoint }, why })) return;
        // The peer learns that we hear it from this keepalive's flag, without waiting a period.
        if (!emit(keepOrPing(true))) return;
        every(keepaliveMs, () => subscriber.next(keepOrPing(false)));
        timer = scheduler.schedule(silenceCheck, silenceMs);
      };

      startProbing('introduced: probing the candidates');
      if (subscriber.closed) return;
      const inner = source.subscribe({
        next(input) {
          if (input.kind === 'withdrawn') {
            stop();
            if (emit({ kind: 'state', state: { kind: 'withdrawn', why: input.why }, why: input.why })) subscriber.complete();
            return;
          }
          if (input.kind === 'pong') {
            onPong(input.token);
            return;
          }
          if (!input.hearsUs) {
            // A probe of the peer's reached us: answering it at its source punches our side of the hole.
            emit({ kind: 'answer', to: input.from });
            return;
          }
          lastAnswer = scheduler.now();
          if (phase !== 'direct') goDirect(input.from, phase === 'probing' ? `the peer answered from ${input.from}` : `the peer was heard again from ${input.from}`);
          else if (input.from !== endpoint) {
            endpoint = input.from;
            emit({ kind: 'state', state: { kind: 'direct', endpoint }, why: `the peer moved to ${input.from}` });
          }
        },
        error: (e) => subscriber.error(e),
        complete: () => subscriber.complete(),
      });
      return () => {
        inner.unsubscribe();
        stop();
      };
    });
}
