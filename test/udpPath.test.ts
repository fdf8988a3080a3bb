// udpPath (operators/udpPath.ts): the UDP path's state machine in virtual time: probing, up,
// silence and the fall back to down, the backoff between probing rounds, a peer that stops hearing us.
import test from 'ava';
import { map, type Observable } from 'rxjs';
import type { TestScheduler } from 'rxjs/testing';
import { udpPath, type Heard, type PathEvent, type UdpPathOptions } from '../operators/udpPath.js';
import { marbles } from './helpers/marbles.js';

const OPTIONS: Omit<UdpPathOptions, 'scheduler'> = { silenceMs: 5, keepaliveMs: 2, probeMs: 7, backoff: { initialMs: 10, maxMs: 40 } };
const yes: Heard = { hearsUs: true };
const no: Heard = { hearsUs: false };

/** k for a keepalive, the state's first letter for a state change (the `why` sentences are for people). */
const shape = (e: PathEvent): string => (e.kind === 'keepalive' ? 'k' : e.state[0]!);

/** The state changes of `out` with their virtual times, collected until `until`. */
function states(scheduler: TestScheduler, out: Observable<PathEvent>, until: number): string[] {
  const seen: string[] = [];
  const sub = out.subscribe((e) => {
    if (e.kind === 'state') seen.push(`${scheduler.now()} ${e.state}`);
  });
  scheduler.schedule(() => sub.unsubscribe(), until);
  scheduler.flush();
  return seen;
}

test('probing sends keepalives; a datagram from a peer that hears us brings the path up; silence takes it down', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen: string[] = [];
    const sub = cold<Heard>('----h-------------', { h: yes })
      .pipe(udpPath({ ...OPTIONS, scheduler }), map(shape))
      .subscribe((e) => seen.push(`${scheduler.now()}${e}`));
    scheduler.schedule(() => sub.unsubscribe(), 17);
    scheduler.flush();
    // 0 probing; keepalives every 2; h at 4 brings it up; silence of 5 after 4 is seen by the tick at 10: down, no more ticks.
    t.deepEqual(seen, ['0p', '2k', '4u', '4k', '6k', '8k', '10d']);
  });
});

test('a probing round without an answer ends down; the next round starts after the backoff, which doubles up to its bound', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = states(scheduler, cold<Heard>('-').pipe(udpPath({ ...OPTIONS, scheduler })), 300);
    // Probing 0..8 (the tick at 8 is the first past 7) → down, 10 later probing, 8 later down, 20 later ...
    t.deepEqual(seen.slice(0, 9), ['0 probing', '8 down', '18 probing', '26 down', '46 probing', '54 down', '94 probing', '102 down', '142 probing']);
    t.true(seen.includes('150 down') && seen.includes('190 probing'), `the backoff stays at its 40 bound: ${seen.join(', ')}`);
  });
});

test('a peer that says it no longer hears us takes the path down at once; hearing it again brings it up, and the backoff starts over', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const seen = states(scheduler, cold<Heard>('-h--n---h----', { h: yes, n: no }).pipe(udpPath({ ...OPTIONS, scheduler })), 12);
    t.deepEqual(seen, ['0 probing', '1 up', '4 down', '8 up']);
  });
});

test('datagrams from a peer that does not hear us yet keep probing (it needs our keepalives)', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const out = cold<Heard>('-n-n-n', { n: no }).pipe(udpPath({ ...OPTIONS, probeMs: 100, scheduler }), map(shape));
    expectObservable(out, '^------!').toBe('p-k-k-k', { p: 'p', k: 'k' });
  });
});

test('unsubscribing stops the ticks and the pending retry', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const out = cold<Heard>('-').pipe(udpPath({ ...OPTIONS, scheduler }), map(shape));
    expectObservable(out, '^--!').toBe('p-k', { p: 'p', k: 'k' });
  });
});

test('an owner that unsubscribes on hearing `down` leaves nothing scheduled (no retry, no ticks)', (t) => {
  marbles(t, ({ cold }, scheduler) => {
    const actions = (): number => (scheduler as unknown as { actions: unknown[] }).actions.length;
    const seen: string[] = [];
    const sub = cold<Heard>('-').pipe(udpPath({ ...OPTIONS, scheduler })).subscribe((e) => {
      seen.push(shape(e));
      if (e.kind === 'state' && e.state === 'down') sub.unsubscribe();
    });
    scheduler.flush();
    t.deepEqual(seen, ['p', 'k', 'k', 'k', 'd']);
    t.is(actions(), 0, 'the virtual clock has nothing left to run');
  });
});
