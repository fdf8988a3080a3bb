// Which TCP congestion control a tunnel connection uses. A tunnel connection carries other
// connections' packets: it is application-limited most of the time (it sends what arrives, and
// arrivals come at the inner senders' rate). Linux's BBR leaves its STARTUP phase only after three
// round trips that were not application-limited, so on a tunnel connection it stays in STARTUP,
// pacing at 2.89× its bandwidth estimate with a window of 2.89× the path's BDP: over a WAN with a
// shallow bottleneck queue (`npm run bench:wan`) a fifth of its packets were lost there, and every
// loss held the packets behind it (a ping among them) for another round trip. CUBIC has no such
// phase and grows its window only while it is window-limited, so the queue forms above the kernel,
// in the session's timed queue (docs/performance.md, "Queues").
import type * as net from 'node:net';
import { udpBinding } from '../udp/native.js';
import { tcpFd } from './unsent.js';

/** The congestion control every tunnel TCP connection asks for (both ends, plain and TLS). */
export const TUNNEL_CONGESTION_CONTROL = 'cubic';

/**
 * Sets the congestion control of the TCP connection under `socket` (plain or TLS) to `name`;
 * returns the one it uses afterwards, or undefined when that cannot be known (no descriptor, no
 * addon). A refusal (no such algorithm, or a restricted one without CAP_NET_ADMIN) leaves the
 * system's default and returns undefined.
 */
export function useCongestionControl(socket: net.Socket, name: string = TUNNEL_CONGESTION_CONTROL): string | undefined {
  const fd = tcpFd(socket);
  if (fd === undefined) return undefined;
  try {
    return udpBinding().setTcpCongestion(fd, name);
  } catch {
    return undefined;
  }
}
