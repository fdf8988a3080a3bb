// Turns pipeline events into log lines that say what happened and to whom.
import { connect, filter, map, merge, mergeMap, type Observable } from 'rxjs';
import { summarizeDrops } from '../operators/summarizeDrops.js';
import { summarizeRepeats } from '../operators/summarizeRepeats.js';
import type { DropCounts } from '../operators/core/packet.js';
import type { ClientEvent, DropsEvent, KernelRouteEvent, LanRoute, ServerEvent, TransportEvent } from '../pipelines/events.js';
import type { Level, LogFields } from './log.js';

/** One log line: `message` for people, `fields` for machines (the JSON format carries both). */
export interface LogLine {
  readonly level: Level;
  readonly message: string;
  /** Who and why: `member` (tunnel address), `remote` (endpoint), `identity`, `reason`, ... */
  readonly fields?: LogFields;
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** `12 packets (queue-full 10, no-route 2)`. */
export function describeDrops(drops: DropCounts): string {
  const entries = Object.entries(drops).filter(([, n]) => (n ?? 0) > 0) as [string, number][];
  const total = entries.reduce((s, [, n]) => s + n, 0);
  return `${plural(total, 'packet')} (${entries.map(([r, n]) => `${r} ${n}`).join(', ')})`;
}

/** The fields of a drop summary: the member (or place) and the reasons with their counts. */
export function dropFields(who: string, drops: DropCounts): LogFields {
  const entries = Object.entries(drops).filter(([, n]) => (n ?? 0) > 0) as [string, number][];
  return {
    event: 'drops',
    ...(who === 'tun' || who === 'hub' ? {} : { member: who }),
    at: who,
    reason: entries.map(([r]) => r).join(','),
    dropped: entries.reduce((s, [, n]) => s + n, 0),
    drops: Object.fromEntries(entries),
  };
}

/** `192.168.10.0/24 via 10.0.0.2, ...` or `none`. */
function describeRoutes(routes: readonly LanRoute[]): string {
  return routes.length === 0 ? 'none' : routes.map((r) => `${r.cidr} via ${r.via}`).join(', ');
}

/** The log line of a kernel route change (both sides). */
function describeKernelRoute(e: KernelRouteEvent): LogLine {
  const what = e.action === 'add' ? 'added' : 'removed';
  return e.ok
    ? { level: 'info', message: `kernel route ${e.cidr} ${what}`, fields: { event: e.type, action: e.action, route: e.cidr } }
    : { level: 'warn', message: `kernel route ${e.cidr} could not be ${what}: ${e.detail ?? 'unknown error'}`, fields: { event: e.type, action: e.action, route: e.cidr, detail: e.detail } };
}

/** The log line of a session's transport change (both sides): one line per change, with why. */
function describeTransport(e: TransportEvent): LogLine {
  const whose = e.who === 'hub' ? 'data to the hub' : `member ${e.who}'s data`;
  return {
    level: e.transport === 'udp' ? 'info' : 'warn',
    message: `${whose} now travels over ${e.transport === 'udp' ? 'UDP' : 'the TCP connection'}: ${e.why}`,
    fields: { event: e.type, ...(e.who === 'hub' ? {} : { member: e.who }), transport: e.transport, reason: e.why },
  };
}

/** The log line for a hub event (drops are summarized elsewhere). */
export function describeServerEvent(e: ServerEvent): LogLine | undefined {
  switch (e.type) {
    case 'listening':
      return { level: 'info', message: `hub ${e.hub} listening on ${e.address}, TUN device ${e.tun}`, fields: { event: e.type, address: e.address, hub: e.hub, tun: e.tun } };
    case 'udp-listening':
      return { level: 'info', message: `UDP data path listening on ${e.address}`, fields: { event: e.type, address: e.address } };
    case 'udp-unavailable':
      return { level: 'warn', message: `no UDP data path: ${e.detail}; every member stays on TCP`, fields: { event: e.type, detail: e.detail } };
    case 'transport':
      return describeTransport(e);
    case 'reloaded':
      return {
        level: 'info',
        message: `reloaded: ${e.changed.length === 0 ? 'nothing changed' : e.changed.map((k) => (k === 'clientIsolation' ? `client_isolation ${e.clientIsolation}` : `max_clients ${e.maxClients}`)).join(', ')}`,
        fields: { event: e.type, changed: e.changed.join(','), client_isolation: e.clientIsolation, max_clients: e.maxClients },
      };
    case 'handshake-failed':
      return { level: 'warn', message: `connection from ${e.remote} failed its handshake: ${e.reason}: ${e.detail}`, fields: { event: e.type, remote: e.remote, reason: e.reason, detail: e.detail } };
    case 'refused':
      return { level: 'warn', message: `refused a connection from ${e.remote}: ${e.reason}: ${e.detail}`, fields: { event: e.type, remote: e.remote, reason: e.reason, detail: e.detail } };
    case 'connected':
      return { level: 'debug', message: `connection #${e.id} from ${e.remote}`, fields: { event: e.type, connection: e.id, remote: e.remote } };
    case 'joined':
      return {
        level: 'info',
        message: `member ${e.address}${e.identity === undefined ? '' : ` (${e.identity})`} joined from ${e.remote}${e.via === 'data' ? ' (0.0.1-era client, address learned from its first packet)' : ''}${e.assigned === true ? ' (address assigned)' : ''}${e.routes === undefined ? '' : ` with LANs ${e.routes.join(', ')}`}; ${plural(e.members, 'member')}`,
        fields: { event: e.type, member: e.address, remote: e.remote, identity: e.identity, connection: e.id, via: e.via, members: e.members, assigned: e.assigned, routes: e.routes?.join(',') },
      };
    case 'rejected':
      return {
        level: 'warn',
        message: `refused ${e.address ?? 'a client'} from ${e.remote}: ${e.reason}: ${e.message}`,
        fields: { event: e.type, member: e.address, remote: e.remote, connection: e.id, reason: e.reason, detail: e.message },
      };
    case 'left':
      if (e.address === undefined) {
        if (e.reason === 'rejected') return undefined;
        // A peer speaking the wrong protocol (TLS on a plain hub, garbage) or never saying who it is
        // is worth a warning; one that just went away before joining is not.
        const level = e.reason === 'frame-error' || e.reason === 'handshake-timeout' ? 'warn' : 'debug';
        return {
          level,
          message: `connection #${e.id} from ${e.remote} ended before joining: ${e.reason} (${e.detail})`,
          fields: { event: e.type, remote: e.remote, connection: e.id, reason: e.reason, detail: e.detail },
        };
      }
      return {
        level: 'info',
        message: `member ${e.address} (${e.remote}) left: ${e.reason} (${e.detail}); ${plural(e.members, 'member')}`,
        fields: { event: e.type, member: e.address, remote: e.remote, connection: e.id, reason: e.reason, detail: e.detail, members: e.members },
      };
    case 'introduced':
      return {
        level: 'info',
        message: `introduced ${e.a} and ${e.b} for a direct path (${e.by === 'request' ? 'one of them asked' : 'the hub forwards their traffic'})`,
        fields: { event: e.type, member: e.a, peer: e.b, reason: e.by },
      };
    case 'withdrawn':
      return { level: 'info', message: `withdrew the direct path of ${e.a} and ${e.b}: ${e.reason}`, fields: { event: e.type, member: e.a, peer: e.b, reason: e.reason } };
    case 'pair-path':
      // At most a few a second per member: its reports are rate-limited (PATH_REPORT_LIMITS).
      return {
        level: 'info',
        message: `pair ${e.a} and ${e.b}: ${e.path === 'direct' ? 'direct (both report it)' : 'relayed (not both report a direct path)'}`,
        fields: { event: e.type, member: e.a, peer: e.b, path: e.path },
      };
    case 'leases':
      return { level: 'debug', message: `leases: ${e.leases.length === 0 ? 'none' : e.leases.map((l) => `${l.identity} ${l.address}`).join(', ')}`, fields: { event: e.type, leases: e.leases.length } };
    case 'lease-error':
      return { level: 'error', message: `leases: ${e.detail}`, fields: { event: e.type, detail: e.detail } };
    case 'routes':
      return { level: 'info', message: `LAN routes: ${describeRoutes(e.routes)}`, fields: { event: e.type, routes: e.routes.map((r) => `${r.cidr}>${r.via}`).join(',') } };
    case 'kernel-route':
      return describeKernelRoute(e);
    case 'drops':
      return { level: 'warn', message: `dropped ${describeDrops(e.drops)} at ${e.who}`, fields: dropFields(e.who, e.drops) };
    case 'cluster-joined':
      return { level: 'info', message: `joined the cluster (lease ${e.lease}, revision ${e.revision}, ${plural(e.hubs, 'hub')})`, fields: { event: e.type, lease: e.lease, revision: e.revision, hubs: e.hubs } };
    case 'cluster-unavailable':
      return { level: 'warn', message: `the cluster's store is unreachable: ${e.detail}; new members are refused (cluster-unavailable) and the members stay until the lease would end`, fields: { event: e.type, detail: e.detail } };
    case 'cluster-back':
      return { level: 'info', message: "the cluster's store answers again", fields: { event: e.type } };
    case 'cluster-fenced':
      return { level: 'error', message: `fenced: ${e.detail}; every member's session ends and the hub joins the cluster again when its store answers`, fields: { event: e.type, detail: e.detail } };
    case 'cluster-name-taken':
      return { level: 'warn', message: `cannot join the cluster: ${e.detail}; trying again`, fields: { event: e.type, detail: e.detail } };
    case 'cluster-release-failed':
      return { level: 'warn', message: `could not release ${e.key} of member ${e.address}: ${e.detail} (it goes with the hub's lease)`, fields: { event: e.type, member: e.address, key: e.key, detail: e.detail } };
    case 'trunk-up':
      return { level: 'info', message: `trunk to hub ${e.hub} up (${e.side === 'dialed' ? `dialed ${e.remote}` : `accepted from ${e.remote}`})`, fields: { event: e.type, hub: e.hub, side: e.side, remote: e.remote } };
    case 'trunk-down':
      return { level: 'warn', message: `trunk to hub ${e.hub} down: ${e.reason} (${e.detail})`, fields: { event: e.type, hub: e.hub, side: e.side, reason: e.reason, detail: e.detail } };
    case 'trunk-retrying':
      return { level: e.attempt === 1 ? 'info' : 'debug', message: `trunk to hub ${e.hub}: trying again in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt}: ${e.cause})`, fields: { event: e.type, hub: e.hub, attempt: e.attempt, delayMs: e.delayMs, detail: e.cause } };
  }
}

/** The log line for a client event (drops are summarized elsewhere). */
export function describeClientEvent(e: ClientEvent): LogLine | undefined {
  switch (e.type) {
    case 'connecting':
      return { level: 'debug', message: `connecting to hub ${e.remote}`, fields: { event: e.type, remote: e.remote } };
    case 'connected':
      return { level: 'info', message: `connected to hub ${e.remote}`, fields: { event: e.type, remote: e.remote } };
    case 'welcomed':
      return {
        level: 'info',
        message: `joined the virtual LAN as ${e.address}/${e.prefix} (hub ${e.hub}${e.assigned === true ? ', address assigned by the hub' : ''})`,
        fields: { event: e.type, member: e.address, prefix: e.prefix, hub: e.hub, assigned: e.assigned },
      };
    case 'udp-unavailable':
      return { level: 'warn', message: `no UDP data path: ${e.detail}; data stays on the TCP connection`, fields: { event: e.type, detail: e.detail } };
    case 'transport':
      return describeTransport(e);
    case 'established':
      return { level: 'info', message: `hub ${e.remote} answers (it sent no WELCOME: a 0.0.1-era hub)`, fields: { event: e.type, remote: e.remote } };
    case 'rejected':
      if (e.reason === 'replaced') return { level: 'warn', message: `the hub closed this session: replaced: ${e.message}`, fields: { event: e.type, reason: e.reason, detail: e.message } };
      return { level: 'error', message: `the hub refused this client: ${e.reason}: ${e.message}`, fields: { event: e.type, reason: e.reason, detail: e.message } };
    case 'disconnected':
      return {
        level: e.reason === 'rejected' ? 'debug' : 'warn',
        message: `disconnected from hub ${e.remote}: ${e.reason} (${e.detail})`,
        fields: { event: e.type, remote: e.remote, reason: e.reason, detail: e.detail },
      };
    case 'next-hub':
      return {
        level: 'info',
        message: `hub ${e.from} did not take this client (${e.cause}): trying hub ${e.to}`,
        fields: { event: e.type, remote: e.from, next: e.to, reason: e.cause },
      };
    case 'retrying':
      return {
        level: 'info',
        message: `reconnecting in ${(e.delayMs / 1000).toFixed(1)} s (attempt ${e.attempt}; last: ${e.cause})`,
        fields: { event: e.type, attempt: e.attempt, delay_ms: e.delayMs, reason: e.cause },
      };
    case 'routes': {
      const fields = { event: e.type, routes: e.routes.map((r) => `${r.cidr}>${r.via}`).join(',') };
      if (e.refused === undefined || e.refused.length === 0) return { level: 'info', message: `LAN routes from the hub: ${describeRoutes(e.routes)}`, fields };
      return {
        level: 'warn',
        message: `LAN routes from the hub: ${describeRoutes(e.routes)}; not installed: ${e.refused.map((r) => `${r.cidr} via ${r.via} (${r.why})`).join(', ')}`,
        fields: { ...fields, refused: e.refused.map((r) => r.cidr).join(',') },
      };
    }
    case 'kernel-route':
      return describeKernelRoute(e);
    case 'direct-path':
      return {
        level: 'info',
        message: `path to ${e.peer}: ${e.closed === true ? `closed (${e.why})` : `${e.path} (${e.why})`}`,
        fields: { event: e.type, peer: e.peer, path: e.closed === true ? 'closed' : e.path, reason: e.why },
      };
    case 'drops':
      return { level: 'warn', message: `dropped ${describeDrops(e.drops)} at ${e.who}`, fields: dropFields(e.who, e.drops) };
  }
}

/** Warnings of one reason logged at once in a second before the others are only counted (the
 * count's line repeats the last one in full): a flood of one reason is one line per second. */
export const REPEATS_AT_ONCE = 1;

/** Events a flood of connections repeats without bound: their warnings are summarized per reason. */
type Repeatable = Extract<ServerEvent | ClientEvent, { readonly type: 'rejected' | 'left' | 'handshake-failed' | 'refused' }>;
const REPEATABLE: ReadonlySet<string> = new Set<Repeatable['type']>(['rejected', 'left', 'handshake-failed', 'refused']);

/** An event with its line, on the way to the log. */
interface Described<E> {
  readonly event: E;
  readonly line: LogLine;
}

const isRepeatedWarning = <E extends ServerEvent | ClientEvent>(d: Described<E>): d is Described<E & Repeatable> =>
  d.line.level === 'warn' && REPEATABLE.has(d.event.type);

/**
 * The line that counts the warnings of one reason held back in the last second, with the last of
 * them in full: `refused 512 more connections in the last second (ip-conflict); the last: refused
 * 10.0.0.2 from 192.0.2.9:4000: ip-conflict: ...`.
 */
export function describeHeld(e: Repeatable, count: number, last?: LogLine): LogLine {
  const more = `${count} more connection${count === 1 ? '' : 's'}`;
  const what =
    e.type === 'handshake-failed'
      ? `${more} failed their handshake`
      : e.type === 'left'
        ? `${more} ended before joining`
        : `refused ${more}`;
  return { level: 'warn', message: `${what} in the last second (${e.reason})${last === undefined ? '' : `; the last: ${last.message}`}`, fields: { event: e.type, reason: e.reason, repeated: count } };
}

/**
 * The log lines of a pipeline's events: one per event that `describe` names, plus drop summaries
 * (at most one per second per place, never one per packet). Warnings a connection flood repeats
 * (refusals, failed handshakes, connections that ended before joining) are logged at once for the
 * first REPEATS_AT_ONCE of a reason in a second, then counted: while they keep coming, one line per
 * second per reason says how many more there were, and shows the last of them in full.
 * Errors and completes with `events$`.
 */
export function logLines<E extends ServerEvent | ClientEvent>(events$: Observable<E>, describe: (e: E) => LogLine | undefined): Observable<LogLine> {
  return events$.pipe(
    connect((shared$) =>
      merge(
        shared$.pipe(
          filter((e) => e.type !== 'drops'),
          mergeMap((event): Described<E>[] => {
            const line = describe(event);
            return line === undefined ? [] : [{ event, line }];
          }),
          connect((described$) =>
            merge(
              described$.pipe(
                filter((d) => !isRepeatedWarning(d)),
                map((d) => d.line),
              ),
              described$.pipe(
                filter(isRepeatedWarning),
                summarizeRepeats((d) => `${d.event.type} ${d.event.reason}`, 1000, REPEATS_AT_ONCE),
                map((r) => (r.kind === 'event' ? r.event.line : describeHeld(r.last.event, r.count, r.last.line))),
              ),
            ),
          ),
        ),
        shared$.pipe(
          filter((e): e is E & DropsEvent => e.type === 'drops'),
          map((e) => ({ key: e.who, drops: e.drops })),
          summarizeDrops<string>(1000),
          map((s): LogLine => ({ level: 'warn', message: `dropped ${describeDrops(s.drops)} at ${s.key} in the last second`, fields: dropFields(s.key, s.drops) })),
        ),
      ),
    ),
  );
}
