// Pure helpers of the benchmark: order statistics and parsers for the output of iperf3 and ping.

/** The median of `xs` (mean of the two middle values for an even count); NaN when empty. */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Paired figures `over[i]` / `under[i]` (measured in the same turn): the geometric mean of their ratios and how many exceed 1, over the pairs where both are finite and positive. */
export function pairedRatio(over: readonly number[], under: readonly number[]): { geomean: number; pairs: number; above: number } {
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(over.length, under.length); i++) {
    const [o, u] = [over[i]!, under[i]!];
    if (Number.isFinite(o) && Number.isFinite(u) && o > 0 && u > 0) ratios.push(o / u);
  }
  const geomean = ratios.length === 0 ? Number.NaN : Math.exp(ratios.reduce((sum, r) => sum + Math.log(r), 0) / ratios.length);
  return { geomean, pairs: ratios.length, above: ratios.filter((r) => r > 1).length };
}

/** Nearest-rank percentile `p` (0..100) of `xs`; NaN when empty. */
export function percentile(xs: readonly number[], p: number): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length, Math.max(1, rank)) - 1]!;
}

/** What one iperf3 run reported (client side, `-J`). */
export interface IperfResult {
  /** Receiver-side throughput in Mb/s (10^6 bits per second). */
  mbps: number;
  /** Sender-side throughput in Mb/s. */
  senderMbps: number;
  /** Bytes the receiver got. */
  bytes: number;
  /** TCP retransmissions of the sender (the inner connection's, through a tunnel). */
  retransmits: number | null;
  seconds: number;
}

interface IperfJsonSum {
  bytes?: number;
  bits_per_second?: number;
  retransmits?: number;
  seconds?: number;
}

/** Parses `iperf3 -J` output; throws with iperf3's own error message when the run failed. */
export function parseIperfJson(text: string): IperfResult {
  let doc: { error?: string; end?: { sum_sent?: IperfJsonSum; sum_received?: IperfJsonSum } };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    throw new Error(`iperf3 printed no JSON document: ${text.trim().slice(0, 300) || '(nothing)'}`);
  }
  if (doc.error !== undefined) throw new Error(`iperf3: ${doc.error}`);
  const sent = doc.end?.sum_sent;
  const recv = doc.end?.sum_received;
  if (recv?.bits_per_second === undefined || recv.bytes === undefined) throw new Error('iperf3: no end.sum_received in its report');
  return {
    mbps: recv.bits_per_second / 1e6,
    senderMbps: (sent?.bits_per_second ?? Number.NaN) / 1e6,
    bytes: recv.bytes,
    retransmits: sent?.retransmits ?? null,
    seconds: recv.seconds ?? sent?.seconds ?? Number.NaN,
  };
}

/** What one ping run reported. */
export interface PingResult {
  transmitted: number;
  received: number;
  /** Per-reply round-trip times in ms, in arrival order. */
  rttMs: number[];
  p50: number;
  p99: number;
  max: number;
}

const REPLY_RE = /icmp_seq=\d+ .*time[=<]([\d.]+) ms/;
const SUMMARY_RE = /(\d+) packets transmitted, (\d+) (?:packets )?received/;

/** Parses the output of iputils `ping -n` (per-reply lines and the summary). */
export function parsePing(text: string): PingResult {
  const rttMs: number[] = [];
  for (const line of text.split('\n')) {
    const m = REPLY_RE.exec(line);
    if (m !== null && !/DUP!/.test(line)) rttMs.push(Number(m[1]));
  }
  const s = SUMMARY_RE.exec(text);
  const transmitted = s !== null ? Number(s[1]) : rttMs.length;
  const received = s !== null ? Number(s[2]) : rttMs.length;
  return {
    transmitted,
    received,
    rttMs,
    p50: percentile(rttMs, 50),
    p99: percentile(rttMs, 99),
    max: rttMs.length > 0 ? Math.max(...rttMs) : Number.NaN,
  };
}

/** CPU time (user + system) and memory of a process, from /proc/PID/stat and /proc/PID/status text. */
export interface ProcSample {
  /** utime + stime in clock ticks. */
  cpuTicks: number;
  /** VmRSS in KiB. */
  rssKiB: number;
  /** VmHWM (peak RSS) in KiB. */
  hwmKiB: number;
}

/** utime + stime (fields 14 and 15) of a /proc/PID/stat line, in clock ticks. */
export function parseStatCpuTicks(stat: string): number {
  // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`cannot parse /proc stat line: ${stat.slice(0, 120)}`);
  return utime + stime;
}

/** A `Vm*:   1234 kB` field of /proc/PID/status in KiB; NaN when absent. */
export function parseStatusKiB(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m === null ? Number.NaN : Number(m[1]);
}

/** Formats a number with a sensible number of significant digits for the table. */
export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toString();
  if (a >= 100) return x.toFixed(Math.max(0, digits - 3));
  if (a >= 10) return x.toFixed(Math.max(0, digits - 2));
  if (a >= 1) return x.toFixed(Math.max(0, digits - 1));
  if (a === 0) return '0';
  return x.toPrecision(Math.max(1, digits - 1));
}
