// Driver: host names into addresses for the client's hub list (pipelines/hubList.ts), with the
// system's resolver (getaddrinfo: /etc/hosts, DNS), bounded in time and in answers.
import { lookup } from 'node:dns/promises';
import { Observable } from 'rxjs';
import { MAX_RESOLVED_ADDRESSES, type ResolverPort } from '../../pipelines/ports.js';

/** Options of makeResolver. */
export interface ResolverOptions {
  /** A lookup that takes longer fails (getaddrinfo itself has no bound). */
  readonly timeoutMs: number;
}

/** A ResolverPort over the system's resolver: every address of the name (IPv4 and IPv6, in its order), at most MAX_RESOLVED_ADDRESSES. */
export function makeResolver(options: ResolverOptions): ResolverPort {
  return {
    resolve: (name) =>
      new Observable<readonly string[]>((subscriber) => {
        let done = false;
        const timer = setTimeout(() => {
          done = true;
          subscriber.error(new Error(`no answer within ${options.timeoutMs / 1000} s`));
        }, options.timeoutMs);
        lookup(name, { all: true, verbatim: true }).then(
          (answers) => {
            if (done) return;
            clearTimeout(timer);
            const addresses = [...new Set(answers.map((a) => a.address))].slice(0, MAX_RESOLVED_ADDRESSES);
            if (addresses.length === 0) subscriber.error(new Error('no address'));
            else {
              subscriber.next(addresses);
              subscriber.complete();
            }
          },
          (err: unknown) => {
            if (done) return;
            clearTimeout(timer);
            const e = err as { code?: string; message?: string };
            subscriber.error(new Error(e.code === 'ENOTFOUND' ? 'no such name' : (e.code ?? e.message ?? String(err))));
          },
        );
        return () => {
          done = true;
          clearTimeout(timer);
        };
      }),
  };
}
