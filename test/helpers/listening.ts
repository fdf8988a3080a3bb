// Driver contract test harness: a running ListenerPort's events, taken in order per type, and a
// connection's data collected.
import type { ExecutionContext } from 'ava';
import type { Subscription } from 'rxjs';
import type { ConnectionPort, ListenerEvent, ListenerPort } from '../../pipelines/ports.js';
import { DEADLINE_MS } from './wait.js';

export type EventOf<T extends ListenerEvent['type']> = Extract<ListenerEvent, { type: T }>;

/** A running listener: its events, taken in order per type. */
export interface Listening {
  readonly port: number;
  /** The next event of `type` not taken yet (waits up to `timeoutMs`, default DEADLINE_MS; rejects if the listener failed). */
  next<T extends ListenerEvent['type']>(type: T, timeoutMs?: number): Promise<EventOf<T>>;
  /** Events of `type` not taken yet. */
  pending(type: ListenerEvent['type']): ListenerEvent[];
  readonly subscription: Subscription;
  /** What events$ errored with, if it did. */
  failure(): unknown;
}

/** Subscribes to `listener` (unsubscribed at the test's end) and resolves once it listens on 127.0.0.1. */
export async function listening(t: ExecutionContext, listener: ListenerPort): Promise<Listening> {
  const events: ListenerEvent[] = [];
  const waiters = new Set<() => void>();
  let failure: unknown;
  const subscription = listener.events$.subscribe({
    next(e) {
      events.push(e);
      for (const w of [...waiters]) w();
    },
    error(err: unknown) {
      failure = err;
      for (const w of [...waiters]) w();
    },
  });
  t.teardown(() => subscription.unsubscribe());
  const take = <T extends ListenerEvent['type']>(type: T): EventOf<T> | undefined => {
    const i = events.findIndex((e) => e.type === type);
    return i < 0 ? undefined : (events.splice(i, 1)[0] as EventOf<T>);
  };
  const next = <T extends ListenerEvent['type']>(type: T, timeoutMs = DEADLINE_MS): Promise<EventOf<T>> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const e = take(type);
        if (e !== undefined) {
          done();
          resolve(e);
        } else if (failure !== undefined) {
          done();
          reject(failure instanceof Error ? failure : new Error(String(failure)));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${type} event within ${timeoutMs} ms; events: ${JSON.stringify(events.map((e) => e.type))}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const first = await next('listening');
  const m = /^127\.0\.0\.1:(\d+)$/.exec(first.address);
  if (m === null) throw new Error(`unexpected listening address ${first.address}`);
  return { port: Number(m[1]), next, pending: (type) => events.filter((e) => e.type === type), subscription, failure: () => failure };
}

/** Subscribes once to a connection's data and collects it. */
export function collect(t: ExecutionContext, conn: ConnectionPort): { bytes(): Buffer; waitFor(n: number, timeoutMs?: number): Promise<Buffer>; ended: Promise<string> } {
  const chunks: Buffer[] = [];
  const waiters = new Set<() => void>();
  let endedWith: (s: string) => void = () => undefined;
  const ended = new Promise<string>((r) => (endedWith = r));
  const sub = conn.data$.subscribe({
    next(c) {
      chunks.push(Buffer.from(c));
      for (const w of [...waiters]) w();
    },
    error: (err: Error) => endedWith(`error: ${err.message}`),
    complete: () => endedWith('complete'),
  });
  t.teardown(() => sub.unsubscribe());
  const bytes = (): Buffer => Buffer.concat(chunks);
  return {
    bytes,
    ended,
    waitFor: (n, timeoutMs = DEADLINE_MS) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (bytes().length >= n) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(bytes());
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`only ${bytes().length} of ${n} bytes within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
  };
}
