// BBR's two weak spots on a tunnel's TCP connection, and what this driver does about them.
//
// 1. STARTUP overshoot. BBR (Linux's default where this runs, and common elsewhere) leaves STARTUP
// when its bandwidth estimate stops growing over rounds that were *not* application-limited. A
// tunnel connection is application-limited by nature: it sends what the members' packets bring,
// and the kernel marks a round application-limited whenever it ran out of data. So BBR may stay in
// STARTUP for a whole transfer, pacing at 2.89 times the rate it measured: over a slower link that
// overshoot fills the bottleneck's queue until it drops, the receiver holds everything behind each
// hole, and a ping beside a bulk transfer waited +30 to +70 ms in about half the WAN rounds
// (docs/performance.md, "What stood where"). So: while the connection is in STARTUP and losing to
// an overflowing queue (more than HEAVY_LOSS of what it sent since the last look had to be sent
// again, HEAVY_LOSS_SEGMENTS segments at least, while its smoothed RTT stands QUEUED_MIN_US and a
// sixteenth of its minimum above that minimum: a queue, not random loss nor a lost ping on an idle
// connection), its pacing is capped at BBR's own bandwidth estimate (SO_MAX_PACING_RATE). A cap of
// 1.25 times that was measured first: BBR stayed in STARTUP under it and kept losing; a cap on any
// loss pinned a link with random loss at the rate of its first loss, and one at a window's random
// loss (3% per link) held a transfer at the rate BBR had measured while idle. The cap follows the
// estimate, is lifted once the connection is out of STARTUP, and also after QUIET_LOOKS looks
// without heavy loss (the path may have more to give; the next heavy loss caps it again). Other
// congestion controls are left alone.
//
// 2. Slow regrowth. Out of STARTUP, BBR grows its estimate by at most a quarter per cycle of eight
// round trips, and a tunnel connection's estimate falls while it is idle or after a timeout (a
// lossy idle phase of pings left it at 0.6 Mbit/s). The next transfer then crawled back: 5-9
// Mbit/s over a bulk phase at 1% loss on the emulated WAN where a fresh connection had 115. So a
// connection carrying a transfer (RESTART_MIN_BYTES in the window at least) whose estimate fell
// below RESTART_BELOW of the best it reached since it (re)started is put back in STARTUP
// (restartCongestion: the kernel re-initialises a control switched away and back), at most once
// per RESTART_GAP_LOOKS looks; its best is then measured afresh, so a path that really became
// slower is restarted once, not over and over.
import { udpBinding } from '../udp/native.js';

/** BBR's pacing gain is above this only in STARTUP (2.89; DRAIN 0.35, PROBE_BW 0.75–1.25). */
export const STARTUP_GAIN = 2;
/** The cap, as a multiple of BBR's bandwidth estimate (the rate the path delivered at its best over the last rounds). */
export const PACING_HEADROOM = 1;
/** Looks without heavy loss after which a cap is lifted (the path may have more to give): 10 windows, about 2 s. */
export const QUIET_LOOKS = 10;
/** The share of a window's bytes retransmitted that counts as heavy loss: an overflowing queue (STARTUP's overshoot lost 8–17% here), not 1% random loss per link. */
export const HEAVY_LOSS = 0.05;
/**
 * The fewest segments retransmitted in a window that count as heavy loss: a lost ping on an idle
 * connection is a fifth of its window's bytes, and capping it then held the next transfer at a
 * ping's rate (BBR found that "full bandwidth" under the cap and left STARTUP).
 */
export const HEAVY_LOSS_SEGMENTS = 4;
/** The least queueing delay (smoothed RTT over the minimum, µs) that makes heavy loss an overflowing queue's; a sixteenth of the minimum RTT when that is more. */
export const QUEUED_MIN_US = 2000;

/** The share of its best estimate since it (re)started below which a BBR connection carrying a transfer out of STARTUP is restarted. */
export const RESTART_BELOW = 0.25;
/** Looks that pass after a restart before the next one may be made (about 2 s of writes). */
export const RESTART_GAP_LOOKS = 10;
/** The fewest bytes handed to a connection in a window for a restart: a transfer, not pings and keepalives (64 KiB per 200 ms, 2.6 Mbit/s). */
export const RESTART_MIN_BYTES = 64 * 1024;

/** What one look at a connection's congestion control found. */
export interface CongestionReading {
  /** Whether the control is BBR; when not, the BBR fields (gain, estimate, minimum RTT) are 0. */
  readonly bbr: boolean;
  /** BBR's pacing gain (2.89 in STARTUP). */
  readonly pacingGain: number;
  /** BBR's bandwidth estimate, bytes per second. */
  readonly bytesPerSecond: number;
  /** Segments retransmitted since the connection began. */
  readonly retransmitted: number;
  /** BBR's minimum RTT, µs (0 for another control). */
  readonly minRttUs: number;
  /** The connection's smoothed RTT, µs. */
  readonly srttUs: number;
  /** The connection's sending segment size, bytes. */
  readonly mss: number;
}

/** The three calls StartupPacing makes on a connection's descriptor (the addon's, or a test's). */
export interface CongestionAccess {
  /** Reads the connection's congestion state; undefined when it cannot. */
  read(fd: number): CongestionReading | undefined;
  /** Caps the connection's pacing at `bytesPerSecond` (negative: no cap); false when it cannot. */
  cap(fd: number, bytesPerSecond: number): boolean;
  /** Starts the connection's congestion control afresh (BBR back in STARTUP); false when it cannot. */
  restart(fd: number): boolean;
}

const reading = new Float64Array(6);

/** The addon's CongestionAccess (TCP_INFO, TCP_CC_INFO, SO_MAX_PACING_RATE, TCP_CONGESTION switched to reno and back). */
export const kernelCongestion: CongestionAccess = {
  read(fd) {
    try {
      const bbr = udpBinding().tcpCongestion(fd, reading);
      return {
        bbr,
        pacingGain: reading[0] ?? 0,
        bytesPerSecond: reading[1] ?? 0,
        minRttUs: reading[2] ?? 0,
        retransmitted: reading[3] ?? 0,
        srttUs: reading[4] ?? 0,
        mss: reading[5] ?? 0,
      };
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
  restart(fd) {
    try {
      return udpBinding().restartCongestion(fd);
    } catch {
      return false;
    }
  },
};

/**
 * One connection's STARTUP pacing cap and restarts. `look()` (called by UnsentLimit once per rate
 * window of writes) caps the pacing at PACING_HEADROOM × BBR's estimate when the connection is in
 * STARTUP and lost heavily to a queue since the last look, follows the estimate while it stays
 * there (re-set when off by more than an eighth), and lifts the cap once the connection is out of
 * STARTUP or QUIET_LOOKS looks passed without heavy loss; and it restarts BBR (back into STARTUP)
 * when the connection carries a transfer out of STARTUP with an estimate below RESTART_BELOW of
 * its best since the last restart, RESTART_GAP_LOOKS looks apart at least.
 */
export class StartupPacing {
  /** The cap in force, bytes per second; undefined when there is none. */
  capped: number | undefined;
  /** How many times a cap was put on (for the tests and the curious). */
  caps = 0;
  /** How many times BBR was restarted. */
  restarts = 0;
  private retransmitted = 0;
  private quiet = 0;
  /** BBR's best estimate since the connection began or was last restarted, bytes per second. */
  private best = 0;
  private sinceRestart = RESTART_GAP_LOOKS;

  constructor(
    private readonly fd: number,
    private readonly access: CongestionAccess = kernelCongestion,
  ) {}

  /** Looks at the connection, which was handed `sent` bytes since the last look; may cap or uncap its pacing, or restart BBR. */
  look(sent: number): void {
    const r = this.access.read(this.fd);
    if (r === undefined) return;
    const again = r.retransmitted - this.retransmitted;
    this.retransmitted = r.retransmitted;
    const queued = r.srttUs - r.minRttUs >= Math.max(QUEUED_MIN_US, r.minRttUs / 16);
    const lost = again >= HEAVY_LOSS_SEGMENTS && again * r.mss > HEAVY_LOSS * sent && queued;
    this.quiet = lost ? 0 : this.quiet + 1;
    const startup = r.bbr && r.pacingGain > STARTUP_GAIN;
    this.sinceRestart += 1;
    if (r.bbr) this.best = Math.max(this.best, r.bytesPerSecond);
    if (r.bbr && !startup && sent >= RESTART_MIN_BYTES && r.bytesPerSecond < RESTART_BELOW * this.best && this.sinceRestart >= RESTART_GAP_LOOKS) {
      // A cap left from STARTUP goes first: the restarted STARTUP starts uncapped.
      if (this.uncapped() && this.access.restart(this.fd)) {
        this.restarts += 1;
        this.best = 0;
        this.sinceRestart = 0;
        this.quiet = 0;
        return;
      }
    }
    if (!startup || this.quiet >= QUIET_LOOKS) {
      this.uncapped();
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

  /** Lifts the cap in force, if any; true when none is left. */
  private uncapped(): boolean {
    if (this.capped !== undefined && this.access.cap(this.fd, -1)) this.capped = undefined;
    return this.capped === undefined;
  }
}
