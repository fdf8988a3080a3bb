// The UDP half of a session, shared by the hub and the client: a sealed-datagram channel (a port)
// run by the path's state machine (operators/udpPath.ts). While the path is up, the session's data
// goes over UDP; otherwise over its TCP connection, which always carries the control messages.
import { EMPTY, Observable, asyncScheduler, defer, filter, finalize, map, merge, mergeMap, of, share, tap, throwError, type SchedulerLike } from 'rxjs';
import { addDrop, type DropCounts, type PacketBatch } from '../operators/core/packet.js';
import { SuperPacket, segmentCount } from '../operators/core/wire/gso.js';
import { udpPath, type PathState } from '../operators/udpPath.js';
import { SessionEnd, type Transport } from './events.js';
import type { DatagramChannel, UdpEndpoint } from './ports.js';
import type { TransportMode } from './settings.js';

/** The path's timing: a silent peer is noticed within silence + keepalive (1.75 s: the fall back to TCP comes within 2 s). */
export const UDP_TIMING = { silenceMs: 1500, keepaliveMs: 250, probeMs: 5000, backoff: { initialMs: 1000, maxMs: 30_000 } } as const;

/** What a UDP link reports to its session. */
export type LinkEvent =
  /** Packets the peer sent over UDP (the receiver's to keep). */
  | { readonly kind: 'packets'; readonly packets: PacketBatch }
  /** What the channel or the link dropped. */
  | { readonly kind: 'drops'; readonly drops: DropCounts }
  /** The session's transport changed. */
  | { readonly kind: 'transport'; readonly transport: Transport; readonly why: string };

/** A session's UDP link: where its data goes while the path is up. */
export interface UdpLink {
  /** The path is up: data goes over UDP. */
  readonly up: boolean;
  /** How data travels now (for stats). */
  readonly transport: Transport;
  /** The largest plain packet a datagram carries (the path MTU less the overhead). */
  maxPacket(): number;
  /**
   * Sends packets over UDP while the path is up (the channel segments SuperPackets; the caller fitted the
   * rest to maxPacket(), anything larger is counted `too-big`): returns the drops (`queue-full`
   * for what the socket could not take), or undefined when the path is not up (send over TCP then).
   */
  send(packets: PacketBatch): { readonly drops: DropCounts | undefined } | undefined;
  /** Datagrams sent and received over the channel. */
  stats(): ReturnType<DatagramChannel['stats']>;
  /** The channel's endpoint of the peer (DatagramChannel.endpoint()): at the hub, where the member's datagrams come from. */
  endpoint(): UdpEndpoint | undefined;
  /**
   * The link's life: subscribe once. Emits arrivals, drops and transport changes; runs the path
   * (keepalives while probing or up, when nothing else went out lately). In mode `udp` it errors
   * with SessionEnd `udp-failed` when the path goes down; unsubscribing closes the channel.
   */
  readonly events$: Observable<LinkEvent>;
}

/** Builds a session's UDP link over `channel`. */
export function udpLink(channel: DatagramChannel, o: { readonly mode: Exclude<TransportMode, 'tcp'>; readonly scheduler?: SchedulerLike; readonly timing?: typeof UDP_TIMING }): UdpLink {
  const scheduler = o.scheduler ?? asyncScheduler;
  const timing = o.timing ?? UDP_TIMING;
  let state: PathState = 'probing';
  let everUp = false;
  let lastHeard = Number.NEGATIVE_INFINITY;
  let lastSent = Number.NEGATIVE_INFINITY;
  const hearsPeer = (): boolean => scheduler.now() - lastHeard < timing.silenceMs;
  const link: UdpLink = {
    get up() {
      return state === 'up';
    },
    get transport(): Transport {
      return state === 'up' ? 'udp' : everUp || state === 'down' ? 'tcp (udp blocked)' : 'tcp';
    },
    maxPacket: () => channel.maxPacket(),
    send(packets) {
      if (state !== 'up') return undefined;
      const max = channel.maxPacket();
      let out = packets;
      let drops: DropCounts | undefined;
      // The channel segments SuperPackets to max; a plain packet must fit as it is.
      const fits = (p: Uint8Array): boolean => (p instanceof SuperPacket ? segmentCount(p, max) > 0 : p.length <= max);
      if (!out.every(fits)) out = out.filter((p) => fits(p) || ((drops = addDrop(drops, 'too-big')), false));
      const sent = out.length === 0 ? 0 : channel.send(out, hearsPeer());
      if (sent > 0) lastSent = scheduler.now();
      // The socket's buffer is this path's queue: what it cannot take now is dropped, as a full queue drops.
      if (sent < out.length) drops = addDrop(drops, 'queue-full', out.length - sent);
      return { drops };
    },
    stats: () => channel.stats(),
    endpoint: () => channel.endpoint(),
    events$: defer(() => {
      const arrivals$ = channel.arrivals$.pipe(
        tap(() => (lastHeard = scheduler.now())),
        share(),
      );
      const path$ = arrivals$.pipe(
        udpPath({ ...timing, scheduler }),
        mergeMap((e): Observable<LinkEvent> => {
          if (e.kind === 'keepalive') {
            if (scheduler.now() - lastSent >= timing.keepaliveMs) {
              channel.keepalive(hearsPeer());
              lastSent = scheduler.now();
            }
            return EMPTY;
          }
          const was = link.transport;
          state = e.state;
          if (state === 'up') everUp = true;
          if (state === 'down' && o.mode === 'udp') return throwError(() => new SessionEnd('udp-failed', `the UDP path failed (${e.why}) and -transport udp allows no fall back`));
          return link.transport === was ? EMPTY : of<LinkEvent>({ kind: 'transport', transport: link.transport, why: e.why });
        }),
      );
      return merge(
        arrivals$.pipe(
          filter((a) => a.packets.length > 0),
          map((a): LinkEvent => ({ kind: 'packets', packets: a.packets })),
        ),
        path$,
        channel.drops$.pipe(map((drops): LinkEvent => ({ kind: 'drops', drops }))),
      ).pipe(finalize(() => channel.close()));
    }),
  };
  return link;
}

/** A session's data path: its UDP link while the path is up, else its TCP writer. */
export interface DataPath {
  /** The largest plain packet send() takes now (fit packets to it first: fitPackets). */
  maxPacket(): number;
  /** Sends packets to the peer; returns what the UDP link dropped (the TCP writer reports its own drops). */
  send(packets: PacketBatch): DropCounts | undefined;
}

/** The data path of a session whose TCP side is `tcp` (peer.send and its encoding) and whose UDP link, if any, is `link()`. */
export function dataPath(tcp: { send(packets: PacketBatch): void; readonly encoding: { readonly maxPacket: number } }, link: () => UdpLink | undefined): DataPath {
  return {
    maxPacket() {
      const l = link();
      return l?.up === true ? Math.min(tcp.encoding.maxPacket, l.maxPacket()) : tcp.encoding.maxPacket;
    },
    send(packets) {
      const sent = link()?.send(packets);
      if (sent !== undefined) return sent.drops;
      tcp.send(packets);
      return undefined;
    },
  };
}
