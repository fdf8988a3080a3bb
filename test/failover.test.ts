// failover (operators/failover.ts): one round over candidates, one attempt each, in order from a start.
import test from 'ava';
import { Observable, of, take, throwError } from 'rxjs';
import { failover, type FailoverOptions, type MoveInfo } from '../operators/failover.js';
import { marbles } from './helpers/marbles.js';

/** Stream values: the attempts' letters, or a move announcement. */
type Item = string | { readonly move: MoveInfo };

const fatal = new Error('auth-failed');
const options: FailoverOptions<Item> = {
  isProgress: (v) => v === 'p',
  movesOn: (e) => e !== fatal,
  moving: (info) => ({ move: info }),
};
const move = (from: number, to: number, cause: unknown): Item => ({ move: { from, to, cause } });

test('candidates are tried in order from the start, wrapping around, each once; the last one\'s error ends the round', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }) => {
    const refused = new Error('refused');
    const conflict = new Error('ip-conflict');
    const a = cold<Item>('-#', undefined, refused);
    const b = cold<Item>('--#', undefined, conflict);
    const c = cold<Item>('-#', undefined, refused);
    const attempts = [a, b, c];
    // Start at 1: b, c, then a.
    const out = '--xy#';
    expectObservable(failover(3, 1, (i) => attempts[i]!, options)).toBe(out, { x: move(1, 2, conflict), y: move(2, 0, refused) }, refused);
    expectSubscriptions(b.subscriptions).toBe('^-!');
    expectSubscriptions(c.subscriptions).toBe('--^!');
    expectSubscriptions(a.subscriptions).toBe('---^!');
  });
});

test('the candidate that makes progress keeps the round: its end ends it, with no move to the next', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }) => {
    const refused = new Error('refused');
    const closed = new Error('closed');
    const a = cold<Item>('-#', undefined, refused);
    const b = cold<Item>('-p--x--#', undefined, closed);
    const c = cold<Item>('-#', undefined, refused);
    const attempts = [a, b, c];
    expectObservable(failover(3, 0, (i) => attempts[i]!, options)).toBe('-mp--x--#', { m: move(0, 1, refused), p: 'p', x: 'x' }, closed);
    expectSubscriptions(c.subscriptions).toBe([]);
  });
});

test('an error that does not move on ends the round at once', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }) => {
    const a = cold<Item>('-#', undefined, fatal);
    const b = cold<Item>('-#');
    expectObservable(failover(2, 0, (i) => [a, b][i]!, options)).toBe('-#', undefined, fatal);
    expectSubscriptions(b.subscriptions).toBe([]);
  });
});

test('an attempt that completes without progress moves on; no candidates: the round completes at once', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const a = cold<Item>('-|');
    const b = cold<Item>('-p|');
    expectObservable(failover(2, 0, (i) => [a, b][i]!, options)).toBe('-mp|', { m: move(0, 1, undefined), p: 'p' });
    expectObservable(failover(0, 0, () => of<Item>('x'), options)).toBe('|');
  });
});

test('attempts that fail while they are subscribed hand on synchronously, and unsubscribing reaches the live one', (t) => {
  let opened = 0;
  let closed = 0;
  const live = new Observable<Item>(() => {
    opened++;
    return () => closed++;
  });
  const attempts: Observable<Item>[] = [throwError(() => new Error('refused')), throwError(() => new Error('refused')), live];
  const got: Item[] = [];
  const sub = failover(3, 0, (i) => attempts[i]!, options).subscribe((v) => got.push(v));
  t.is(got.length, 2);
  t.is(opened, 1);
  sub.unsubscribe();
  t.is(closed, 1);
  // A consumer that stops on the first move starts no further attempt.
  opened = 0;
  failover(3, 0, (i) => attempts[i]!, options).pipe(take(1)).subscribe();
  t.is(opened, 0);
});
