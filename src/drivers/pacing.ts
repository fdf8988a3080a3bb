// A cap on how fast a tunnel TCP connection paces while BBR is still in STARTUP and losing segments.
// BBR (Linux's default where this runs, and common elsewhere) leaves STARTUP when its bandwidth
// estimate stops growing over rounds that were *not* application-limited. A tunnel connection is
// application-limited by nature: it sends what the members' packets bring, and the kernel marks a
// round application-limited whenever it ran out of data to send. So BBR may stay in STARTUP for a
// whole transfer, pacing at 2.89 times the rate it measured: over a slower link that overshoot
// fills the bottleneck's queue until it drops, the receiver holds everything behind each hole, and
// a ping beside a bulk transfer waited +30 to +70 ms in about half the WAN rounds
// (docs/performance.md, "What stood where"). So: while the connection is in STARTUP and losing
// heavily (more than HEAVY_LOSS of what it sent since the last look had to be sent again: what an
// overflowing queue does, not the odd random loss), its pacing is capped at BBR's own bandwidth
// estimate (the best rate the path delivered over its last rounds; SO_MAX_PACING_RATE). A cap of
// 1.25 times that was measured first: BBR stayed in STARTUP under it (still application-limited)
// and kept losing; a cap on any loss pinned a link with 1% random loss at the rate of its first
// loss. The cap follows the estimate, is lifted once the connection is out of STARTUP, and also
// after QUIET_LOOKS looks without heavy loss (the path may have more to give; the next heavy loss
// caps it again). A connection that never loses heavily in STARTUP (any LAN) is never capped; other
// congestion controls are left alone.
import { udpBinding } from '../udp/native.js';

/** BBR's pacing gain is above this only in STARTUP (2.89; DRAIN 0.35, PROBE_BW 0.75–1.25). */
export const STARTUP_GAIN = 2;
/** The cap, as a multiple of BBR's bandwidth estimate (the rate the path delivered at its best over the last rounds). */
export const PACING_HEADROOM = 1;
/** Looks without heavy loss after which a cap is lifted (the path may have more to give): 10 windows, about 2 s. */
export const QUIET_LOOKS = 10;
/** The share of a window's bytes retransmitted that counts as heavy loss: an overflowing queue (STARTUP's overshoot lost 8–17% here), not 1% random loss per link. */
export const HEAVY_LOSS = 0.05;

/** What one look at a connection's congestion control found. */
export interface CongestionReading {
  /** Whether the control is BBR; when not, the other fields but `retransmitted` are 0. */
  readonly bbr: boolean;
  /** BBR's pacing gain (2.89 in STARTUP). */
  readonly pacingGain: number;
  /** BBR's bandwidth estimate, bytes per second. */
  readonly bytesPerSecond: number;
  /** Segments retransmitted since the connection began. */
  readonly retransmitted: number;
  /** The connection's sending segment size, bytes. */
  readonly mss: number;
}

/** The two calls StartupPacing makes on a connection's descriptor (the addon's, or a test's). */
export interface CongestionAccess {
  /** Reads the connection's congestion state; undefined when it cannot. */
  read(fd: number): CongestionReading | undefined;
  /** Caps the connection's pacing at `bytesPerSecond` (negative: no cap); false when it cannot. */
  cap(fd: number, bytesPerSecond: number): boolean;
}

const reading = new Float64Array(6);

/** The addon's CongestionAccess (TCP_INFO, TCP_CC_INFO, SO_MAX_PACING_RATE). */
export const kernelCongestion: CongestionAccess = {
  read(fd) {
    try {
      const bbr = udpBinding().tcpCongestion(fd, reading);
      return { bbr, pacingGain: reading[0] ?? 0, bytesPerSecond: reading[1] ?? 0, retransmitted: reading[3] ?? 0, mss: reading[5] ?? 0 };
    } catch {
      return undefined;
    }
  },
  cap(fd, bytesPerSecond) {
    try {
      udpBinding().setMaxPacingRate(fd, bytesPerSecond);
      return true;
    } catch {
      return false;
    }
  },
};

/**
 * One connection's STARTUP pacing cap. `look()` (called by UnsentLimit once per rate window of
 * writes) caps the pacing at PACING_HEADROOM × BBR's estimate when the connection is in STARTUP and
 * lost heavily since the last look, follows the estimate while it stays there (re-set when off by
 * more than an eighth), and lifts the cap once the connection is out of STARTUP or QUIET_LOOKS
 * looks passed without heavy loss.
 */
export class StartupPacing {
  /** The cap in force, bytes per second; undefined when there is none. */
  capped: number | undefined;
  /** How many times a cap was put on (for the tests and the curious). */
  caps = 0;
  private retransmitted = 0;
  private quiet = 0;

  constructor(
    private readonly fd: number,
    private readonly access: CongestionAccess = kernelCongestion,
  ) {}

  /** Looks at the connection, which was handed `sent` bytes since the last look; may cap or uncap its pacing. */
  look(sent: number): void {
    const r = this.access.read(this.fd);
    if (r === undefined) return;
    const lost = (r.retransmitted - this.retransmitted) * r.mss > HEAVY_LOSS * sent;
    this.retransmitted = r.retransmitted;
    this.quiet = lost ? 0 : this.quiet + 1;
    const startup = r.bbr && r.pacingGain > STARTUP_GAIN;
    if (!startup || this.quiet >= QUIET_LOOKS) {
      if (this.capped !== undefined && this.access.cap(this.fd, -1)) this.capped = undefined;
      return;
    }
    if (this.capped === undefined && !lost) return;
    const want = r.bytesPerSecond * PACING_HEADROOM;
    if (want <= 0) return;
    if (this.capped !== undefined && Math.abs(want - this.capped) * 8 <= this.capped) return;
    if (!this.access.cap(this.fd, want)) return;
    if (this.capped === undefined) this.caps += 1;
    this.capped = want;
  }
}
