// directPath (operators/directPath.ts): one peer's direct path as a state machine in virtual time:
// probing, the first answer, keepalives, silence and the fall back to relayed, the backoff between
// probing rounds and its bound, `no-direct-path` after failed rounds (and leaving it), answers to a
// peer that does not hear us yet, a peer that moves, withdrawal, and unsubscribing.
import test from 'ava';
import { filter, map, type Observable } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { DIRECT_TIMING, directPath, type DirectPathEvent, type DirectPathInput, type DirectPathOptions } from '../operators/directPath.js';
import { marbles } from './helpers/marbles.js';

/** Probes every 2, keepalives every 2, silence 4, rounds of 6, backoff 10 doubling to 40, 2 rounds before no-direct-path. */
const OPTIONS: Omit<DirectPathOptions, 'scheduler'> = { silenceMs: 4, keepaliveMs: 2, probeMs: 2, roundMs: 6, backoff: { initialMs: 10, maxMs: 40 }, maxRounds: 2 };
/** Heard from e1 / e2, saying it hears us; heard from e1 not hearing us yet; withdrawn. */
const VALUES: Record<string, DirectPathInput> = {
  h: { kind: 'heard', from: '192.0.2.7:41641', hearsUs: true },
  m: { kind: 'heard', from: '198.51.100.9:50000', hearsUs: true },
  q: { kind: 'heard', from: '192.0.2.7:41641', hearsUs: false },
  w: { kind: 'withdrawn', why: 'the peer left' },
};
const E1 = '192.0.2.7:41641';
const E2 = '198.51.100.9:50000';

/** An event as short text: p probing, d@E direct, r<ms> relayed, n[:why] no-direct-path, w withdrawn; o probe, a@E answer, k@E keepalive; i<token>@E ping, t<ms>/<smoothed> rtt, s stray pong. */
function shape(e: DirectPathEvent): string {
  switch (e.kind) {
    case 'probe':
      return 'o';
    case 'answer':
      return `a@${e.to}`;
    case 'keepalive':
      return `k@${e.to}`;
    case 'ping':
      return `i${e.token}@${e.to}`;
    case 'rtt':
      return `t${e.ms}/${e.smoothedMs}`;
    case 'stray-pong':
      return 's';
    case 'state': {
      const s = e.state;
      if (s.kind === 'probing') return 'p';
      if (s.kind === 'direct') return `d@${s.endpoint}`;
      if (s.kind === 'relayed') return `r${s.retryMs}`;
      if (s.kind === 'no-direct-path') return s.why === undefined ? 'n' : `n:${s.why}`;
      return 'w';
    }
  }
}

/** Every event of `out` as `<time> <shape>` (and `<time> |` for completion) until `until`. */
function run(scheduler: TestScheduler, out: Observable<DirectPathEvent>, until: number, keep: (e: DirectPathEvent) => boolean = () => true): string[] {
  const seen: string[] = [];
  const sub = out.subscribe({
    next: (e) => keep(e) && seen.push(`${scheduler.now()} ${shape(e)}`),
    error: (err: Error) => seen.push(`${scheduler.now()} # ${err.message}`),
    complete: () => seen.push(`${scheduler.now()} |`),
  });
  scheduler.schedule(() => sub.unsubscribe(), until);
  scheduler.flush();
  return seen;
}

const states = (e: DirectPathEvent): boolean => e.kind === 'state';
/** What the virtual clock still has to run. */
const pending = (scheduler: TestScheduler): number => (scheduler as unknown as { actions: unknown[] }).actions.length;

test('probing sends probes at once and every period; an answer makes the path direct to its source; silence makes it relayed', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold('---h', VALUES).pipe(directPath({ ...OPTIONS, scheduler })), 18);
    // Direct at 3 with a keepalive at once (the peer learns we hear it), then every 2; the answer at 3
    // is 4 old at 7: relayed, the keepalive due at 7 not sent; probing again 10 later.
    t.deepEqual(seen, ['0 p', '0 o', '2 o', `3 d@${E1}`, `3 k@${E1}`, `5 k@${E1}`, '7 r10', '17 p', '17 o']);
  });
});

test('the marble of the contract comment (the first event of each frame)', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    let last = -1;
    const firstOfFrame = (): boolean => last !== scheduler.now() && ((last = scheduler.now()), true);
    const out = cold('---h', VALUES).pipe(
      directPath({ ...OPTIONS, scheduler }),
      map((e) => (e.kind === 'state' ? shape(e)[0]! : e.kind === 'probe' ? 'o' : 'k')),
      filter(firstOfFrame),
    );
    expectObservable(out, '^-------!').toBe('p-od-k-r', { p: 'p', o: 'o', d: 'd', k: 'k', r: 'r' });
  });
});

test('a peer that keeps answering keeps the path direct, with keepalives every period', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold('-h--h--h--h', VALUES).pipe(directPath({ ...OPTIONS, scheduler })), 14);
    t.deepEqual(seen, ['0 p', '0 o', `1 d@${E1}`, `1 k@${E1}`, `3 k@${E1}`, `5 k@${E1}`, `7 k@${E1}`, `9 k@${E1}`, `11 k@${E1}`, `13 k@${E1}`]);
  });
});

test('probing rounds without an answer end relayed, back off doubling, then report no-direct-path once and probe on quietly at the bound', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold<DirectPathInput>('-').pipe(directPath({ ...OPTIONS, scheduler })), 140);
    // Rounds 0-6 (probes 0, 2, 4), relayed 10; 16-22, then no-direct-path (2 rounds), 20 later
    // quiet rounds at 42 and, the backoff at its bound of 40, 88 and 134: probes, no state.
    t.deepEqual(seen, ['0 p', '0 o', '2 o', '4 o', '6 r10', '16 p', '16 o', '18 o', '20 o', '22 n', '42 o', '44 o', '46 o', '88 o', '90 o', '92 o', '134 o', '136 o', '138 o']);
  });
});

test('no-direct-path says the cause the owner knows', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold<DirectPathInput>('-').pipe(directPath({ ...OPTIONS, maxRounds: 1, noPathWhy: 'symmetric NAT', scheduler })), 30, states);
    t.deepEqual(seen, ['0 p', '6 n:symmetric NAT']);
  });
});

test('an answer after no-direct-path makes the path direct, and the backoff and the round count start over', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const input = cold(`${'-'.repeat(50)}h`, VALUES);
    const seen = run(scheduler, input.pipe(directPath({ ...OPTIONS, scheduler })), 100, states);
    // Silent from 50: relayed at 54 with the first backoff again; probing is reported again at 64, and
    // it takes 2 failed rounds again to say no-direct-path.
    t.deepEqual(seen, ['0 p', '6 r10', '16 p', '22 n', `50 d@${E1}`, '54 r10', '64 p', '70 r20', '90 p', '96 n']);
  });
});

test('a relayed path the peer answers again is direct at once, before the next round', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold('---h-----h', VALUES).pipe(directPath({ ...OPTIONS, scheduler })), 12, states);
    t.deepEqual(seen, ['0 p', `3 d@${E1}`, '7 r10', `9 d@${E1}`]);
  });
});

test('a datagram from a peer that does not hear us yet is answered at its source and keeps probing', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold('-q-q', VALUES).pipe(directPath({ ...OPTIONS, scheduler })), 5);
    t.deepEqual(seen, ['0 p', '0 o', `1 a@${E1}`, '2 o', `3 a@${E1}`, '4 o']);
  });
});

test('while direct, datagrams that do not say they hear us are answered but do not keep the path alive', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold('-h-q-q', VALUES).pipe(directPath({ ...OPTIONS, scheduler })), 6);
    // The answer at 1 is 4 old at 5: relayed, whatever else came (the datagram at 5 is answered first).
    t.deepEqual(seen, ['0 p', '0 o', `1 d@${E1}`, `1 k@${E1}`, `3 a@${E1}`, `3 k@${E1}`, `5 a@${E1}`, '5 r10']);
  });
});

test('an answer from another source moves the direct path there, and the keepalives follow', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold('-h-m', VALUES).pipe(directPath({ ...OPTIONS, scheduler })), 6);
    t.deepEqual(seen, ['0 p', '0 o', `1 d@${E1}`, `1 k@${E1}`, `3 d@${E2}`, `3 k@${E2}`, `5 k@${E2}`]);
  });
});

test('withdrawal reports withdrawn and completes, leaving nothing scheduled', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold('-h--w', VALUES).pipe(directPath({ ...OPTIONS, scheduler })), 10);
    t.deepEqual(seen, ['0 p', '0 o', `1 d@${E1}`, `1 k@${E1}`, `3 k@${E1}`, '4 w', '4 |']);
    t.is(pending(scheduler), 0);
  });
});

test('withdrawal while probing ends the path too, with the reason', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const events: DirectPathEvent[] = [];
    cold('---w', VALUES)
      .pipe(directPath({ ...OPTIONS, scheduler }))
      .subscribe((e) => events.push(e));
    scheduler.flush();
    t.deepEqual(events.at(-1), { kind: 'state', state: { kind: 'withdrawn', why: 'the peer left' }, why: 'the peer left' });
    t.is(pending(scheduler), 0);
  });
});

test('the source completing completes the path', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    t.deepEqual(run(scheduler, cold<DirectPathInput>('---|').pipe(directPath({ ...OPTIONS, scheduler })), 10), ['0 p', '0 o', '2 o', '3 |']);
    t.is(pending(scheduler), 0);
  });
});

test('an error of the source passes through', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    t.deepEqual(run(scheduler, cold<DirectPathInput>('---#', undefined, new Error('boom')).pipe(directPath({ ...OPTIONS, scheduler })), 10), ['0 p', '0 o', '2 o', '3 # boom']);
    t.is(pending(scheduler), 0);
  });
});

test('unsubscribing stops the probes and the round', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold<DirectPathInput>('-').pipe(directPath({ ...OPTIONS, scheduler })), 3);
    t.deepEqual(seen, ['0 p', '0 o', '2 o']);
    t.is(pending(scheduler), 0);
  });
});

test('an owner that unsubscribes on hearing `direct` leaves nothing scheduled (no keepalives, no silence check)', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen: string[] = [];
    const sub = cold('-h', VALUES)
      .pipe(directPath({ ...OPTIONS, scheduler }))
      .subscribe((e) => {
        seen.push(shape(e));
        if (e.kind === 'state' && e.state.kind === 'direct') sub.unsubscribe();
      });
    scheduler.flush();
    t.deepEqual(seen, ['p', 'o', `d@${E1}`]);
    t.is(pending(scheduler), 0);
  });
});

test('an owner that unsubscribes on hearing `relayed` leaves no retry scheduled', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen: string[] = [];
    const sub = cold<DirectPathInput>('-')
      .pipe(directPath({ ...OPTIONS, scheduler }))
      .subscribe((e) => {
        seen.push(shape(e));
        if (e.kind === 'state' && e.state.kind === 'relayed') sub.unsubscribe();
      });
    scheduler.flush();
    t.deepEqual(seen, ['p', 'o', 'o', 'o', 'r10']);
    t.is(pending(scheduler), 0);
  });
});

test('the default timing relays a silent path within 2 s and probes the way docs/direct.md says', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    // Answers at 100 ms, then silence: relayed at 1600 ms (1.5 s: three keepalives unanswered, and
    // 0.5 s of margin under the 2 s the issue allows); probing again 1 s later.
    const seen = run(scheduler, cold('100ms h', VALUES).pipe(directPath({ ...DIRECT_TIMING, scheduler })), 3200, states);
    t.deepEqual(seen, ['0 p', `100 d@${E1}`, '1600 r1000', '2600 p']);
  });
});

/** Pings every 4 (with keepalives every 2), silence 4. */
const PINGING: Omit<DirectPathOptions, 'scheduler'> = { ...OPTIONS, pingMs: 4 };
/** A pong echoing `token`. */
const pong = (token: number): DirectPathInput => ({ kind: 'pong', token });

test('while direct, the first datagram and then every pingMs a keepalive tick is a ping with a fresh token; a pong of it is a round trip, smoothed 7/8 + 1/8', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    // Direct at 1 (ping 1 at once), answered at 2; the tick at 3 is a keepalive, the one at 5 ping 2, answered at 8;
    // ping 3 at 9, answered at 10 (the peer heard all along).
    const input = cold('-hAh-h-hBhCh', { ...VALUES, A: pong(1), B: pong(2), C: pong(3) });
    const seen = run(scheduler, input.pipe(directPath({ ...PINGING, scheduler })), 12);
    t.deepEqual(seen, ['0 p', '0 o', `1 d@${E1}`, `1 i1@${E1}`, '2 t1/1', `3 k@${E1}`, `5 i2@${E1}`, `7 k@${E1}`, '8 t3/1.25', `9 i3@${E1}`, '10 t1/1.21875', `11 k@${E1}`]);
  });
});

test('a pong answers once: the same token again, a token never sent, and token 0 are strays', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const input = cold('-hAABZ', { ...VALUES, A: pong(1), B: pong(77), Z: pong(0) });
    const seen = run(scheduler, input.pipe(directPath({ ...PINGING, scheduler })), 6, (e) => e.kind === 'rtt' || e.kind === 'stray-pong');
    t.deepEqual(seen, ['2 t1/1', '3 s', '4 s', '5 s']);
  });
});

test('only the last PINGS_KEPT pings are remembered: a pong of an older one is a stray', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    // The peer keeps answering (h every 2), no pong comes: pings 1-5 go at 1, 5, 9, 13, 17, and ping 5 takes ping 1's
    // place. Then pongs of 1 (forgotten: a stray) and 2 (still kept: 14 old).
    const input = cold(`-${'h-'.repeat(8)}hAB`, { ...VALUES, A: pong(1), B: pong(2) });
    const seen = run(scheduler, input.pipe(directPath({ ...PINGING, scheduler })), 20, (e) => e.kind === 'ping' || e.kind === 'rtt' || e.kind === 'stray-pong');
    t.deepEqual(seen, [`1 i1@${E1}`, `5 i2@${E1}`, `9 i3@${E1}`, `13 i4@${E1}`, `17 i5@${E1}`, '18 s', '19 t14/14']);
  });
});

test('leaving direct forgets the pings and the smoothed round trip: a late pong is a stray, and the next direct path starts afresh', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    // Direct at 1 (ping 1), answered at 2 (rtt 1); silent: relayed at 5; pong 1 again would be a replay, so the late
    // pong is a made-up one of ping 1 at 6: a stray; direct again at 7 (ping 2), answered at 9: rtt 2, not smoothed with 1.
    const input = cold('-hA---Ah-B', { ...VALUES, A: pong(1), B: pong(2) });
    const seen = run(scheduler, input.pipe(directPath({ ...PINGING, scheduler })), 10, (e) => e.kind !== 'probe' && e.kind !== 'keepalive');
    t.deepEqual(seen, ['0 p', `1 d@${E1}`, `1 i1@${E1}`, '2 t1/1', '5 r10', '6 s', `7 d@${E1}`, `7 i2@${E1}`, '9 t2/2']);
  });
});

test('without pingMs no pings go out and every pong is a stray', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = run(scheduler, cold('-hA', { ...VALUES, A: pong(1) }).pipe(directPath({ ...OPTIONS, scheduler })), 4);
    t.deepEqual(seen, ['0 p', '0 o', `1 d@${E1}`, `1 k@${E1}`, '2 s', `3 k@${E1}`]);
  });
});

test('the default timing pings once a second while direct', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const answers = cold('100ms h 399ms h 499ms h 499ms h 499ms h', VALUES);
    const seen = run(scheduler, answers.pipe(directPath({ ...DIRECT_TIMING, scheduler })), 3200, (e) => e.kind === 'ping');
    t.deepEqual(seen, [`100 i1@${E1}`, `1100 i2@${E1}`, `2100 i3@${E1}`, `3100 i4@${E1}`]);
  });
});
