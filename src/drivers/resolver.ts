// Driver: host names into addresses for the client's hub list (pipelines/hubList.ts), with the
// system's resolver (getaddrinfo: /etc/hosts, DNS), bounded in time, in answers and in lookups
// running at once.
import { lookup } from 'node:dns/promises';
import dns from 'node:dns';
import { Observable } from 'rxjs';
import { MAX_RESOLVED_ADDRESSES, type ResolverPort } from '../../pipelines/ports.js';

/** Options of makeResolver. */
export interface ResolverOptions {
  /** A lookup that takes longer fails (getaddrinfo itself has no bound). */
  readonly timeoutMs: number;
}

/**
 * The addresses of one answer as hubs to try: one family only (IPv4 when the name has any, else
 * IPv6), so that a host with both is one hub tried once per round, not two; repeats removed, in the
 * answer's order, at most MAX_RESOLVED_ADDRESSES.
 */
export function oneFamily(answers: readonly { readonly address: string; readonly family: number }[]): string[] {
  const v4 = answers.filter((a) => a.family === 4);
  return [...new Set((v4.length > 0 ? v4 : answers).map((a) => a.address))].slice(0, MAX_RESOLVED_ADDRESSES);
}

/**
 * A ResolverPort over the system's resolver (addresses of the families this host has configured,
 * oneFamily's choice). A lookup is never started twice for one name: getaddrinfo cannot be
 * cancelled and holds a thread of libuv's pool until it ends, so while one is running (past its
 * timeout too, when DNS is black-holed) every round's request for that name waits for it instead
 * of queueing another; at most one lookup per listed name runs at once.
 */
export function makeResolver(options: ResolverOptions): ResolverPort {
  const running = new Map<string, Promise<string[]>>();
  const resolveOnce = (name: string): Promise<string[]> => {
    let p = running.get(name);
    if (p === undefined) {
      p = lookup(name, { all: true, verbatim: true, hints: dns.ADDRCONFIG }).then(oneFamily, (err: unknown) => {
        const e = err as { code?: string; message?: string };
        throw new Error(e.code === 'ENOTFOUND' ? 'no such name' : (e.code ?? e.message ?? String(err)));
      });
      const settled = (): void => void running.delete(name);
      p.then(settled, settled);
      running.set(name, p);
    }
    return p;
  };
  return {
    resolve: (name) =>
      new Observable<readonly string[]>((subscriber) => {
        let done = false;
        const timer = setTimeout(() => {
          done = true;
          subscriber.error(new Error(`no answer within ${options.timeoutMs / 1000} s`));
        }, options.timeoutMs);
        resolveOnce(name).then(
          (addresses) => {
            if (done) return;
            clearTimeout(timer);
            if (addresses.length === 0) subscriber.error(new Error('no address'));
            else {
              subscriber.next(addresses);
              subscriber.complete();
            }
          },
          (err: unknown) => {
            if (done) return;
            clearTimeout(timer);
            subscriber.error(err);
          },
        );
        return () => {
          done = true;
          clearTimeout(timer);
        };
      }),
  };
}
