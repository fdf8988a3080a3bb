// reconnect (operators/reconnect.ts): resubscribe forever with capped, jittered exponential backoff.
import test from 'ava';
import { Observable, concat, defer, of, take } from 'rxjs';
import { reconnect, type ReconnectOptions, type RetryInfo } from '../operators/reconnect.js';
import { marbles } from './helpers/marbles.js';

/** Stream values: the source's letters, or a retry announcement. */
type Item = string | { readonly retry: RetryInfo };

/** Options with no jitter spread: random() = 0 makes every wait exactly half the base delay. */
function options(extra: Partial<ReconnectOptions<Item>> = {}): ReconnectOptions<Item> {
  return {
    initialMs: 4,
    maxMs: 16,
    retrying: (info) => ({ retry: info }),
    random: () => 0,
    ...extra,
  };
}

const retry = (attempt: number, delayMs: number, cause: unknown): Item => ({ retry: { attempt, delayMs, cause } });

/** Subscribes to `attempts[i]` on the i-th subscription (the last one repeats). */
function attemptsOf(list: Observable<string>[]): Observable<string> {
  let i = 0;
  return defer(() => list[Math.min(i++, list.length - 1)]!);
}

test('the wait doubles per consecutive failure up to the maximum', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }, scheduler) => {
    const err = new Error('refused');
    const source = cold('-#', undefined, err);
    // Waits of 2, 4, 8, 8 frames (base 4, 8, 16, 16 halved by the jitter factor 0.5).
    const unsub = '      ^ 29ms !';
    const out = '        -a 2ms b 4ms c 8ms d 8ms e';
    expectObservable(source.pipe(reconnect(options({ scheduler }))), unsub).toBe(out, {
      a: retry(1, 2, err),
      b: retry(2, 4, err),
      c: retry(3, 8, err),
      d: retry(4, 8, err),
      e: retry(5, 8, err),
    });
    expectSubscriptions(source.subscriptions).toBe(['^!', '---^!', '--------^!', '17ms ^!', '26ms ^!']);
  });
});

test('unsubscribing while a retry waits cancels it: the source is not subscribed again', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }, scheduler) => {
    const err = new Error('refused');
    const source = cold('-#', undefined, err);
    const unsub = '      ^--!';
    const out = '        -a-';
    expectObservable(source.pipe(reconnect(options({ scheduler }))), unsub).toBe(out, { a: retry(1, 2, err) });
    expectSubscriptions(source.subscriptions).toBe('^!');
  });
});

test('unsubscribing from within the retrying emission cancels the retry', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }, scheduler) => {
    const err = new Error('refused');
    const source = cold('-x#', undefined, err);
    const out = '        -x(a|)';
    expectObservable(source.pipe(reconnect(options({ scheduler })), take(2))).toBe(out, { x: 'x', a: retry(1, 2, err) });
    expectSubscriptions(source.subscriptions).toBe('^-!');
  });
});

test('a consumer that unsubscribes on a value a later attempt emits synchronously leaves no attempt open', (t) => {
  let opened = 0;
  let closed = 0;
  const err = new Error('refused');
  const got: Item[] = [];
  marbles(t, ({ cold, flush }, scheduler) => {
    const fails = cold<string>('-#', undefined, err);
    // The second attempt says hello at once and stays open, as a connection does.
    const connects = concat(
      of('x'),
      new Observable<string>(() => {
        opened++;
        return () => closed++;
      }),
    );
    attemptsOf([fails, connects])
      .pipe(reconnect(options({ scheduler })), take(2))
      .subscribe((v) => got.push(v));
    flush();
  });
  t.deepEqual(got, [retry(1, 2, err), 'x']);
  t.is(opened, 1);
  t.is(closed, 1);
});

test('values of each attempt pass through, and a completed attempt is retried with no cause', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }, scheduler) => {
    const source = cold('-x|');
    const unsub = '      ^------!';
    const out = '        -xa--xb';
    expectObservable(source.pipe(reconnect(options({ scheduler }))), unsub).toBe(out, { x: 'x', a: retry(1, 2, undefined), b: retry(2, 4, undefined) });
    expectSubscriptions(source.subscriptions).toBe(['^-!', '----^-!']);
  });
});

test('a progress value resets the backoff', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const err = new Error('reset');
    const first = cold('-#', undefined, err);
    const second = cold('-#', undefined, err);
    const third = cold('-p-#', undefined, err);
    const fourth = cold('-');
    const source = attemptsOf([first, second, third, fourth]);
    // Failures at 1 (wait 2), 4 (wait 4), then progress at 9 and a failure at 11: back to a wait of 2.
    const out = '        -a--b----p-c--';
    expectObservable(source.pipe(reconnect(options({ scheduler, isProgress: (v) => v === 'p' })))).toBe(out, {
      a: retry(1, 2, err),
      b: retry(2, 4, err),
      p: 'p',
      c: retry(1, 2, err),
    });
  });
});

test('for settleMs after a session that made progress ended, the waits stay at initialMs; then they grow from there', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const err = new Error('ip-conflict');
    const session = cold('-p-#', undefined, err);
    const refused = cold('-#', undefined, err);
    const source = attemptsOf([session, refused]);
    // The session ends at 3: every wait is 2 (base 4 halved) while the window of 10 lasts (failures
    // at 3, 6, 9, 12), then 4, 8, 8: the growth starts over at the window's end.
    const unsub = '      ^ 30ms !';
    const out = '        -p-a--b--c--d--e----f--------g';
    expectObservable(source.pipe(reconnect(options({ scheduler, isProgress: (v) => v === 'p', settleMs: 10 }))), unsub).toBe(out, {
      p: 'p',
      a: retry(1, 2, err),
      b: retry(2, 2, err),
      c: retry(3, 2, err),
      d: retry(4, 2, err),
      e: retry(5, 4, err),
      f: retry(6, 8, err),
      g: retry(7, 8, err),
    });
  });
});

test('values that are not progress do not reset the backoff', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const err = new Error('reset');
    const source = cold('-v#', undefined, err);
    const unsub = '      ^------------!';
    const out = '        -va--vb----vc-';
    expectObservable(source.pipe(reconnect(options({ scheduler, isProgress: (v) => v === 'p' }))), unsub).toBe(out, {
      v: 'v',
      a: retry(1, 2, err),
      b: retry(2, 4, err),
      c: retry(3, 8, err),
    });
  });
});

test('a fatal error is passed through and ends the stream', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }, scheduler) => {
    const fatal = new Error('bad certificate');
    const source = cold('-x-#', undefined, fatal);
    const out = '        -x-#';
    expectObservable(source.pipe(reconnect(options({ scheduler, isFatal: (e) => e === fatal })))).toBe(out, { x: 'x' }, fatal);
    expectSubscriptions(source.subscriptions).toBe('^--!');
  });
});

test('a fatal error after retries ends the stream too', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const transient = new Error('refused');
    const fatal = new Error('rejected: outside-subnet');
    const source = attemptsOf([cold('-#', undefined, transient), cold('-#', undefined, fatal)]);
    const out = '        -a--#';
    expectObservable(source.pipe(reconnect(options({ scheduler, isFatal: (e) => e === fatal })))).toBe(out, { a: retry(1, 2, transient) }, fatal);
  });
});

test('jitter scales each wait by 0.5 + 0.5 * random()', (t) => {
  const randoms = [0, 0.5, 0.75, 0.999];
  const infos: RetryInfo[] = [];
  const started: number[] = [];
  marbles(t, ({ cold, flush }, scheduler) => {
    const err = new Error('refused');
    const source = defer(() => {
      started.push(scheduler.now());
      return cold<RetryInfo>('#', undefined, err);
    });
    const out = source.pipe(
      reconnect<RetryInfo>({ initialMs: 1000, maxMs: 8000, retrying: (info) => info, random: () => randoms[infos.length]!, scheduler }),
      take(4),
    );
    out.subscribe((info) => infos.push(info));
    flush();
  });
  // Bases 1000, 2000, 4000, 8000.
  t.deepEqual(
    infos.map((i) => i.delayMs),
    [500, 1500, 3500, 7996],
  );
  // The attempts start after exactly those waits.
  t.deepEqual(started, [0, 500, 2000, 5500]);
});

test('every jittered wait lies between half the base and the base', (t) => {
  let seed = 7;
  const random = (): number => {
    seed = (seed * 16807) % 2147483647;
    return (seed - 1) / 2147483646;
  };
  const failures: string[] = [];
  marbles(t, ({ cold, flush }, scheduler) => {
    const err = new Error('refused');
    const source = cold<RetryInfo>('#', undefined, err);
    source.pipe(reconnect<RetryInfo>({ initialMs: 100, maxMs: 3000, retrying: (info) => info, random, scheduler }), take(200)).subscribe((info) => {
      const base = Math.min(3000, 100 * 2 ** (info.attempt - 1));
      if (info.delayMs < base / 2 || info.delayMs > base) failures.push(`attempt ${info.attempt}: ${info.delayMs} outside [${base / 2}, ${base}]`);
    });
    flush();
  });
  t.deepEqual(failures, []);
});

test('each subscription keeps its own backoff state', (t) => {
  marbles(t, ({ cold, expectObservable }, scheduler) => {
    const err = new Error('refused');
    const source = cold('-#', undefined, err);
    const retried = source.pipe(reconnect(options({ scheduler })));
    const unsub = '      ^------!';
    const out = '        -a--b---';
    expectObservable(retried, unsub).toBe(out, { a: retry(1, 2, err), b: retry(2, 4, err) });
    expectObservable(retried, unsub).toBe(out, { a: retry(1, 2, err), b: retry(2, 4, err) });
  });
});

test('by default time comes from asyncScheduler, which run mode virtualises', (t) => {
  marbles(t, ({ cold, expectObservable, expectSubscriptions }) => {
    const err = new Error('refused');
    const source = cold('-#', undefined, err);
    const unsub = '      ^----!';
    const out = '        -a--b';
    expectObservable(source.pipe(reconnect(options())), unsub).toBe(out, { a: retry(1, 2, err), b: retry(2, 4, err) });
    expectSubscriptions(source.subscriptions).toBe(['^!', '---^!']);
  });
});
