// A client's hubs for one round (docs/cluster.md, "Failover"): the listed hubs in order, each name
// resolved (when the client has a resolver) into its addresses in the answer's order, the same
// address and port once, at most MAX_CANDIDATES in all. A name that cannot be resolved stays in the
// list as a candidate that fails (so the round reports it and moves on), never a silent gap.
import { Observable, catchError, forkJoin, map, of } from 'rxjs';
import { formatHostPort, isAddress } from '../operators/core/address.js';
import { MAX_RESOLVED_ADDRESSES, type ResolverPort } from './ports.js';

/** The most hubs a round tries (the config's MAX_HUBS listed, names expanded, then cut to this). */
export const MAX_CANDIDATES = 16;

/** One hub to try: an address to dial (with the name it came from), or a name that did not resolve. */
export type HubCandidate =
  | { readonly kind: 'dial'; readonly host: string; readonly port: number; readonly name: string | undefined; readonly label: string }
  | { readonly kind: 'unresolved'; readonly label: string; readonly detail: string };

/**
 * The round's candidates for `remotes`: addresses as given; names through `resolver` (or, without
 * one, as given: the dialer resolves them). Emits once.
 */
export function hubCandidates(remotes: readonly { readonly host: string; readonly port: number }[], resolver: ResolverPort | undefined): Observable<readonly HubCandidate[]> {
  const entries = remotes.map((r): Observable<readonly HubCandidate[]> => {
    const label = formatHostPort(r);
    if (resolver === undefined || isAddress(r.host)) return of([{ kind: 'dial', host: r.host, port: r.port, name: undefined, label }]);
    return resolver.resolve(r.host).pipe(
      map((addresses): readonly HubCandidate[] =>
        addresses.length === 0
          ? [{ kind: 'unresolved', label, detail: `cannot resolve ${r.host}: no address` }]
          : addresses.slice(0, MAX_RESOLVED_ADDRESSES).map((a): HubCandidate => ({ kind: 'dial', host: a, port: r.port, name: r.host, label: `${label} (${formatHostPort({ host: a, port: r.port })})` })),
      ),
      catchError((err: unknown) => of([{ kind: 'unresolved', label, detail: `cannot resolve ${r.host}: ${err instanceof Error ? err.message : String(err)}` } as const])),
    );
  });
  return (entries.length === 0 ? of([]) : forkJoin(entries)).pipe(
    map((lists) => {
      const seen = new Set<string>();
      const out: HubCandidate[] = [];
      for (const c of lists.flat()) {
        const key = candidateKey(c);
        if (seen.has(key)) continue;
        seen.add(key);
        out.push(c);
      }
      return out.slice(0, MAX_CANDIDATES);
    }),
  );
}

/** What identifies a candidate from one round to the next: the address and port dialed (or the unresolved name). */
export function candidateKey(c: HubCandidate): string {
  return c.kind === 'dial' ? formatHostPort({ host: c.host, port: c.port }) : `unresolved ${c.label}`;
}
