/**
 * Network-namespace lab for end-to-end tests.
 *
 * A lab is a set of network namespaces: one per host plus a "switch" namespace
 * holding a Linux bridge (`br0`). Every host gets a veth (`eth0` inside the
 * host namespace, `v-<host>` on the bridge) with an underlay address from a
 * per-lab random 172.31.X.0/24 (host i gets 172.31.X.(i+1)).
 *
 * Nothing is ever configured in the root namespace: veth pairs are created
 * from inside the switch namespace with their peer placed straight into the
 * host namespace.
 *
 *   const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'] });
 *   t.teardown(() => lab.dispose());
 *   await lab.startEchoServers('hub', 7000);
 *   t.true(await lab.canReach('c1', 'hub', 7000));
 *
 * A host can sit behind a NAT router of its own (`nat: { c1: 'eim' }`): its `eth0` is then a veth
 * to router namespace `<host>-nat` (192.168.S.0/24, S its slot), and the router's `eth0` takes the
 * host's place on the bridge (and its public address, `publicAddress(host)`). The router forwards
 * and does nftables source NAT: `eim` keeps the inside port toward every destination, `symmetric`
 * draws a new port per destination; both drop what nobody inside asked for (test/helpers/nat.ts).
 *
 * Namespace names are `<prefix>-<labid>-<host>` (switch: `<prefix>-<labid>-switch`),
 * prefix defaults to `lwt`. A marker file in `$TMPDIR/lwt-labs/` records the
 * owning pid so that `scripts/lab-cleanup.ts` can tell leftovers of dead test
 * runs from labs that are still in use.
 */
import { spawn as spawnChild, execFileSync, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NAT_INSIDE_IF, NAT_KINDS, natRouterName, natRuleset, privateSegment, type NatInfo, type NatKind } from './nat.js';
import type { PingSample, ProbeResult } from './probe.js';
import { DEADLINE_MS, sleep } from './wait.js';

export type { PingSample, ProbeResult } from './probe.js';
export type { NatInfo, NatKind } from './nat.js';

/** Absolute path of the compiled probe program (dist/test/helpers/probe.js). */
export const PROBE_SCRIPT: string = fileURLToPath(new URL('./probe.js', import.meta.url));
export const DEFAULT_PREFIX = 'lwt';
/** Interface name of every host's underlay link. */
export const UNDERLAY_IF = 'eth0';
const BRIDGE_IF = 'br0';
const SWITCH_NAME = 'switch';
const MARKER_DIR = path.join(os.tmpdir(), 'lwt-labs');
/** How long a process's pipes may stay open after it exited (a grandchild holding them) before its output counts as complete. */
const STDIO_GRACE_MS = 2000;
const DEBUG = process.env.LWT_LAB_DEBUG === '1';

// ---------------------------------------------------------------------------
// binaries

/** The absolute path of an executable on PATH (or the usual sbin/bin folders), or undefined. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/**
 * The absolute path of a system program (the sbin/bin folders only, never PATH): under npm scripts
 * PATH starts with node_modules/.bin, where ava's @vercel/nft puts a `nft` that is not nftables.
 */
export function systemBinary(name: string): string | undefined {
  for (const dir of ['/usr/sbin', '/sbin', '/usr/bin', '/bin']) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/** nftables' `nft` (see systemBinary), or undefined when nftables is not installed. */
export const NFT_BIN: string | undefined = systemBinary('nft');

const IP_BIN = findBinary('ip') ?? 'ip';
const TC_BIN = findBinary('tc');
const BRIDGE_BIN = findBinary('bridge');

// ---------------------------------------------------------------------------
// low-level command running

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when `timeoutMs` elapsed and the command was killed. */
  timedOut: boolean;
}

export interface ExecOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to stdin, which is then closed. */
  input?: string | Buffer;
  /** Kill (SIGKILL) after this long; default DEADLINE_MS. */
  timeoutMs?: number;
  /** Reject when the exit code is not 0. */
  check?: boolean;
}

const MAX_EXEC_OUTPUT = 16 * 1024 * 1024;

function runCommand(
  file: string,
  args: readonly string[],
  opts: ExecOptions = {},
  track?: (c: ChildProcess) => () => void,
): Promise<ExecResult> {
  return new Promise<ExecResult>((resolve, reject) => {
    const child = spawnChild(file, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const untrack = track?.(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      if (stdout.length < MAX_EXEC_OUTPUT) stdout += d;
    });
    child.stderr!.on('data', (d: string) => {
      if (stderr.length < MAX_EXEC_OUTPUT) stderr += d;
    });
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(opts.input);
    }
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? DEADLINE_MS);
    let settled = false;
    child.on('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      untrack?.();
      reject(new Error(`cannot run ${file}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      untrack?.();
      const res: ExecResult = { code, signal, stdout, stderr, timedOut };
      if (opts.check && code !== 0) {
        reject(new Error(`${[file, ...args].join(' ')} failed (code ${code}, signal ${signal}): ${stderr.trim()}`));
      } else {
        resolve(res);
      }
    });
  });
}

/** Runs `ip ARGS` in the root namespace context (used only for `netns` and `-n NS` commands). */
async function ip(args: readonly string[]): Promise<ExecResult> {
  return runCommand(IP_BIN, args, { check: true, timeoutMs: DEADLINE_MS });
}

function ipSync(args: readonly string[]): string {
  return execFileSync(IP_BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Names of all network namespaces (`ip netns list`). */
export function listNamespacesSync(): string[] {
  let out: string;
  try {
    out = ipSync(['netns', 'list']);
  } catch {
    return [];
  }
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

/** PIDs of processes living in namespace `ns` (`ip netns pids`). */
function nsPidsSync(ns: string): number[] {
  try {
    return ipSync(['netns', 'pids', ns])
      .split(/\s+/)
      .filter((s) => /^\d+$/.test(s))
      .map(Number)
      .filter((p) => p !== process.pid);
  } catch {
    return [];
  }
}

/** Kills everything inside `ns` and deletes it; best effort, synchronous. */
function destroyNamespaceSync(ns: string): void {
  for (const pid of nsPidsSync(ns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  try {
    execFileSync(IP_BIN, ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
  } catch {
    // already gone
  }
}

// ---------------------------------------------------------------------------
// LabProcess

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  error?: Error;
}

export type LineStream = 'stdout' | 'stderr' | 'any';

export interface WaitForLineOptions {
  /** Which stream to watch; default 'any'. */
  stream?: LineStream;
  /**
   * Only lines printed after `mark()` returned this (default: every line, including those captured
   * before the call). Take the mark before causing what the line reports, so that a fast answer is
   * not missed.
   */
  after?: number;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Lines kept per stream (oldest dropped first); default 2000. */
  maxLines?: number;
  /** 'pipe' to be able to `write()` to the process; default 'ignore'. */
  stdin?: 'pipe' | 'ignore';
  /** Label used in error messages and debug output. */
  label?: string;
  /** Mirror output lines to this process's stderr (also enabled by LWT_LAB_DEBUG=1). */
  echo?: boolean;
}

interface Waiter {
  re: RegExp;
  stream: LineStream;
  resolve: (line: string) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

interface LoggedLine {
  stream: 'stdout' | 'stderr';
  line: string;
  /** Its number among all lines the process printed (see LabProcess.mark). */
  seq: number;
}

function toRegExp(re: RegExp | string): RegExp {
  return typeof re === 'string' ? new RegExp(re.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : re;
}

function testRe(re: RegExp, line: string): boolean {
  re.lastIndex = 0;
  return re.test(line);
}

/** A process started inside a lab namespace. Output is captured line by line. */
export class LabProcess {
  readonly pid: number | undefined;
  /** Most recent stdout lines (bounded by `maxLines`). */
  readonly stdout: string[] = [];
  /** Most recent stderr lines (bounded by `maxLines`). */
  readonly stderr: string[] = [];
  /**
   * Resolves (never rejects) once the process has exited and its output is captured (both pipes
   * closed), so `stdout`, `stderr` and `output()` then hold every line it printed.
   */
  readonly exited: Promise<ProcessExit>;
  readonly label: string;
  private exitInfo: ProcessExit | undefined;
  private closed = false;
  private readonly log: LoggedLine[] = [];
  private lines = 0;
  private readonly waiters = new Set<Waiter>();
  private readonly maxLines: number;
  private readonly echo: boolean;
  private resolveExited!: (e: ProcessExit) => void;

  constructor(
    readonly child: ChildProcess,
    label: string,
    opts: SpawnOptions = {},
  ) {
    this.pid = child.pid;
    this.label = label;
    this.maxLines = opts.maxLines ?? 2000;
    this.echo = opts.echo ?? DEBUG;
    this.exited = new Promise<ProcessExit>((r) => (this.resolveExited = r));
    this.attach('stdout');
    this.attach('stderr');
    child.stdin?.on('error', () => undefined);
    child.on('exit', (code, signal) => {
      this.finishExit({ code, signal });
      // The pipes close right after the exit, unless a grandchild holds them open: that must not
      // keep waiters hanging. The check runs after an I/O poll (setImmediate), so that output
      // already in the pipes is read first, however late a loaded machine runs this timer.
      setTimeout(() => setImmediate(() => this.onClosed()), STDIO_GRACE_MS).unref();
    });
    child.on('close', () => this.onClosed());
    child.on('error', (error) => {
      if (this.exitInfo === undefined && child.exitCode === null && child.signalCode === null) {
        this.finishExit({ code: null, signal: null, error });
        this.onClosed();
      }
    });
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Exit status once known. */
  get exitStatus(): ProcessExit | undefined {
    return this.exitInfo;
  }

  /** Recent output, both streams interleaved, stderr lines marked. */
  output(lastLines = 200): string {
    return this.log
      .slice(-lastLines)
      .map((l) => (l.stream === 'stderr' ? `[err] ${l.line}` : l.line))
      .join('\n');
  }

  /**
   * Resolves with the first line matching `re` (by default including lines
   * already captured). Rejects with the collected output when the process
   * exits without producing a match, or when `timeoutMs` elapses (default
   * DEADLINE_MS: only a hang takes that long).
   */
  waitForLine(re: RegExp | string, timeoutMs = DEADLINE_MS, opts: WaitForLineOptions = {}): Promise<string> {
    const rx = toRegExp(re);
    const stream = opts.stream ?? 'any';
    const after = opts.after ?? 0;
    for (const l of this.log) {
      if (l.seq > after && (stream === 'any' || l.stream === stream) && testRe(rx, l.line)) return Promise.resolve(l.line);
    }
    if (this.closed) {
      return Promise.reject(this.failure(`exited (${this.describeExit()}) without printing a line matching ${rx}`));
    }
    return new Promise<string>((resolve, reject) => {
      const waiter: Waiter = {
        re: rx,
        stream,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(this.failure(`no line matching ${rx} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /** How many lines the process has printed so far: a mark for `waitForLine(re, ms, { after })`. */
  mark(): number {
    return this.lines;
  }

  /** Sends a signal if still running; returns whether a signal was sent. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (!this.running || this.pid === undefined) return false;
    try {
      return this.child.kill(signal);
    } catch {
      return false;
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit status. */
  async stop(graceMs = 2000): Promise<ProcessExit> {
    if (!this.running) return this.exited;
    this.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) this.kill('SIGKILL');
    return this.exited;
  }

  /** Writes to stdin (spawn with `stdin: 'pipe'`). */
  write(data: string | Buffer): boolean {
    if (this.child.stdin === null) throw new Error(`${this.label}: spawned without stdin: 'pipe'`);
    return this.child.stdin.write(data);
  }

  private attach(stream: 'stdout' | 'stderr'): void {
    const src = this.child[stream];
    if (src === null) return;
    src.setEncoding('utf8');
    let partial = '';
    src.on('data', (chunk: string) => {
      partial += chunk;
      let idx: number;
      while ((idx = partial.indexOf('\n')) >= 0) {
        this.onLine(stream, partial.slice(0, idx).replace(/\r$/, ''));
        partial = partial.slice(idx + 1);
      }
      if (partial.length > 1024 * 1024) {
        this.onLine(stream, partial);
        partial = '';
      }
    });
    src.on('end', () => {
      if (partial !== '') this.onLine(stream, partial);
      partial = '';
    });
  }

  private onLine(stream: 'stdout' | 'stderr', line: string): void {
    const arr = this[stream];
    arr.push(line);
    if (arr.length > this.maxLines) arr.splice(0, arr.length - this.maxLines);
    this.log.push({ stream, line, seq: ++this.lines });
    if (this.log.length > 2 * this.maxLines) this.log.splice(0, this.log.length - 2 * this.maxLines);
    if (this.echo) process.stderr.write(`[${this.label}${stream === 'stderr' ? ' err' : ''}] ${line}\n`);
    for (const w of this.waiters) {
      if ((w.stream === 'any' || w.stream === stream) && testRe(w.re, line)) {
        clearTimeout(w.timer);
        this.waiters.delete(w);
        w.resolve(line);
      }
    }
  }

  private finishExit(e: ProcessExit): void {
    if (this.exitInfo !== undefined) return;
    this.exitInfo = e;
  }

  private onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.resolveExited(this.exitInfo ?? { code: this.child.exitCode, signal: this.child.signalCode });
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(this.failure(`exited (${this.describeExit()}) without printing a line matching ${w.re}`));
    }
    this.waiters.clear();
  }

  private describeExit(): string {
    const e = this.exitInfo;
    if (e === undefined) return 'unknown status';
    if (e.error) return `spawn error: ${e.error.message}`;
    return e.signal !== null ? `signal ${e.signal}` : `code ${e.code}`;
  }

  private failure(what: string): Error {
    const out = this.output(100);
    return new Error(`${this.label} (pid ${this.pid}): ${what}\n--- output ---\n${out === '' ? '(none)' : out}`);
  }
}

// ---------------------------------------------------------------------------
// hosts

export interface LabHost {
  readonly name: string;
  /** Network namespace name. */
  readonly ns: string;
  /** Underlay IPv4 address (on `eth0`). */
  readonly ip: string;
  /** Underlay interface name inside the namespace (`eth0`). */
  readonly ifname: string;
  /** Runs a command to completion inside the namespace (does not reject on non-zero exit unless `check`). */
  exec(cmd: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts a long-running command inside the namespace. */
  spawn(cmd: string, args?: readonly string[], opts?: SpawnOptions): LabProcess;
  /** `spawn(process.execPath, [script, ...args])`. */
  spawnNode(script: string, args?: readonly string[], opts?: SpawnOptions): LabProcess;
}

export interface ImpairOptions {
  delayMs?: number;
  jitterMs?: number;
  lossPct?: number;
  rateKbit?: number;
}

export interface ProbeOptions {
  timeoutMs?: number;
  /** Datagrams to send (udp only); default 1. */
  count?: number;
}

export interface ReachOptions {
  /**
   * Overall time budget; default DEADLINE_MS (a reply ends the wait at once). A check that must
   * NOT get a reply gives the window it watches for one.
   */
  timeoutMs?: number;
  /** Probe protocol; default 'udp'. */
  proto?: 'udp' | 'tcp';
}

export interface LabOptions {
  hosts: readonly string[];
  /** Namespace name prefix; default 'lwt'. */
  prefix?: string;
  /** Third octet X of the underlay 172.31.X.0/24; random by default. */
  subnetOctet?: number;
  /**
   * Hosts (of `hosts`) each behind a NAT router of its own, by kind (test/helpers/nat.ts). The
   * router is a host too, named `<host>-nat`, listed after `hosts`. Needs nftables.
   */
  nat?: Readonly<Record<string, NatKind>>;
}

interface Marker {
  pid: number;
  prefix: string;
  id: string;
  namespaces: string[];
  createdAt: string;
}

const liveLabs = new Set<Lab>();
let hooksInstalled = false;

function installProcessHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const lab of liveLabs) lab.disposeSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Only take over signals nobody else handles, so default behaviour
    // (terminate) is preserved after cleaning up.
    if (process.listenerCount(sig) > 0) continue;
    const handler = (): void => {
      for (const lab of liveLabs) lab.disposeSync();
      process.removeListener(sig, handler);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

function randomLabId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let id = '';
  for (let i = 0; i < 4; i++) id += alphabet[randomInt(alphabet.length)];
  return id;
}

function markerPath(prefix: string, id: string): string {
  return path.join(MARKER_DIR, `${prefix}-${id}.json`);
}

class Host implements LabHost {
  readonly ifname = UNDERLAY_IF;
  constructor(
    private readonly lab: Lab,
    readonly name: string,
    readonly ns: string,
    readonly ip: string,
    readonly bridgePort: string,
  ) {}

  exec(cmd: string, args: readonly string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    return this.lab.execIn(this.ns, cmd, args, opts);
  }

  spawn(cmd: string, args: readonly string[] = [], opts: SpawnOptions = {}): LabProcess {
    return this.lab.spawnIn(this.ns, `${this.name}:${path.basename(cmd)}`, cmd, args, opts);
  }

  spawnNode(script: string, args: readonly string[] = [], opts: SpawnOptions = {}): LabProcess {
    return this.lab.spawnIn(
      this.ns,
      opts.label ?? `${this.name}:${path.basename(script)}`,
      process.execPath,
      [script, ...args],
      opts,
    );
  }
}

export class Lab {
  /** Random lab id (4 chars of [a-z0-9]). */
  readonly id: string;
  readonly prefix: string;
  /** Underlay subnet, e.g. '172.31.17.0/24'. */
  readonly subnet: string;
  /** Namespace holding the bridge. */
  readonly switchNs: string;
  /** Whether `tc` exists (impair/clearImpairment are no-ops without it). */
  readonly tcAvailable: boolean = TC_BIN !== undefined;
  private readonly hostMap = new Map<string, Host>();
  private readonly natMap = new Map<string, NatInfo>();
  private readonly created: string[] = [];
  private readonly procs = new Set<LabProcess>();
  private readonly rawChildren = new Set<ChildProcess>();
  private readonly allProcs: LabProcess[] = [];
  private disposing: Promise<void> | undefined;
  private disposedFlag = false;

  private constructor(prefix: string, id: string, octet: number) {
    this.prefix = prefix;
    this.id = id;
    this.subnet = `172.31.${octet}.0/24`;
    this.switchNs = `${prefix}-${id}-${SWITCH_NAME}`;
  }

  /** Whether labs can be created here (root + iproute2). */
  static supported(): { ok: boolean; reason?: string } {
    if (process.platform !== 'linux') return { ok: false, reason: 'not linux' };
    if (process.getuid?.() !== 0) return { ok: false, reason: 'not running as root' };
    if (findBinary('ip') === undefined) return { ok: false, reason: 'iproute2 `ip` not found' };
    return { ok: true };
  }

  static async create(opts: LabOptions): Promise<Lab> {
    const sup = Lab.supported();
    if (!sup.ok) throw new Error(`Lab unavailable: ${sup.reason}`);
    const prefix = opts.prefix ?? DEFAULT_PREFIX;
    if (!/^[a-z0-9][a-z0-9_-]{0,15}$/i.test(prefix)) throw new Error(`bad lab prefix ${JSON.stringify(prefix)}`);
    const names = [...opts.hosts];
    if (names.length === 0 || names.length > 250) throw new Error('a lab needs 1..250 hosts');
    const seen = new Set<string>();
    for (const n of names) {
      if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$/.test(n)) throw new Error(`bad host name ${JSON.stringify(n)}`);
      if (n === SWITCH_NAME) throw new Error(`host name "${SWITCH_NAME}" is reserved`);
      if (seen.has(n)) throw new Error(`duplicate host name ${n}`);
      seen.add(n);
    }
    const nat = new Map(Object.entries(opts.nat ?? {}));
    for (const [n, kind] of nat) {
      if (!seen.has(n)) throw new Error(`nat: ${JSON.stringify(n)} is not a host of the lab`);
      if (!NAT_KINDS.includes(kind)) throw new Error(`nat: bad kind ${JSON.stringify(kind)} for ${n}`);
      if (seen.has(natRouterName(n))) throw new Error(`nat: host name ${natRouterName(n)} is taken by ${n}'s router`);
    }
    if (nat.size > 0 && NFT_BIN === undefined) throw new Error('a lab with NAT routers needs nftables (.ci/run installs it)');
    const allNames = [...names, ...[...nat.keys()].map(natRouterName)];
    let octet = opts.subnetOctet;
    if (octet === undefined) {
      const used = new Set([...liveLabs].map((l) => l.subnet));
      do octet = randomInt(256);
      while (used.has(`172.31.${octet}.0/24`) && used.size < 256);
    } else if (!Number.isInteger(octet) || octet < 0 || octet > 255) {
      throw new Error(`bad subnetOctet ${octet}`);
    }

    installProcessHooks();
    const existing = new Set(listNamespacesSync());
    let lab: Lab | undefined;
    for (let attempt = 0; attempt < 20 && lab === undefined; attempt++) {
      const id = randomLabId();
      if (allNames.some((n) => existing.has(`${prefix}-${id}-${n}`)) || existing.has(`${prefix}-${id}-${SWITCH_NAME}`)) {
        continue;
      }
      const candidate = new Lab(prefix, id, octet);
      try {
        await candidate.addNamespace(candidate.switchNs);
        lab = candidate;
      } catch (err) {
        if (!/exists/i.test((err as Error).message)) throw err;
      }
    }
    if (lab === undefined) throw new Error('could not allocate a lab id');
    try {
      await lab.build(names, nat);
    } catch (err) {
      await lab.dispose();
      throw err;
    }
    return lab;
  }

  /** All namespaces of this lab (hosts and switch). */
  get namespaces(): string[] {
    return [...this.created];
  }

  /** Host names in creation order (NAT routers after the hosts). */
  get hostNames(): string[] {
    return [...this.hostMap.keys()];
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  /** Every process started with spawn (including exited ones). */
  get processes(): readonly LabProcess[] {
    return this.allProcs;
  }

  host(name: string): LabHost {
    const h = this.hostMap.get(name);
    if (h === undefined) throw new Error(`lab ${this.id} has no host ${JSON.stringify(name)}`);
    return h;
  }

  hosts(): LabHost[] {
    return [...this.hostMap.values()];
  }

  /** Resolves a host name of this lab to its underlay IP (a NAT'd host's private one); anything else is returned as is. */
  address(hostOrIp: string): string {
    return this.hostMap.get(hostOrIp)?.ip ?? hostOrIp;
  }

  /** Where the bridge sees `host` come from: its NAT router's address, or its own. */
  publicAddress(host: string): string {
    return this.natMap.get(host)?.publicIp ?? this.hostImpl(host).ip;
  }

  /** `host`'s NAT router, or undefined when it sits on the bridge itself. */
  natOf(host: string): NatInfo | undefined {
    this.hostImpl(host);
    return this.natMap.get(host);
  }

  /** The packets and bytes of named counter `name` of nftables table `FAMILY TABLE` (e.g. `inet lwtcount`) in `host`'s namespace. */
  async nftCounter(host: string, table: string, name: string): Promise<{ packets: number; bytes: number }> {
    if (NFT_BIN === undefined) throw new Error('nftables is not installed (.ci/run installs it)');
    const r = await this.hostImpl(host).exec(NFT_BIN, ['-j', 'list', 'counter', ...table.split(' '), name], { timeoutMs: DEADLINE_MS, check: true });
    const doc = JSON.parse(r.stdout) as { nftables: readonly { counter?: { name: string; packets: number; bytes: number } }[] };
    const c = doc.nftables.find((e) => e.counter?.name === name)?.counter;
    if (c === undefined) throw new Error(`no counter ${name} in ${table} of ${host}: ${r.stdout}`);
    return { packets: c.packets, bytes: c.bytes };
  }

  // -- links ---------------------------------------------------------------

  /** Whether interface `ifname` exists in `host`'s namespace. */
  async linkExists(host: string, ifname: string): Promise<boolean> {
    const h = this.hostImpl(host);
    const r = await runCommand(IP_BIN, ['-n', h.ns, 'link', 'show', 'dev', ifname], { timeoutMs: DEADLINE_MS });
    return r.code === 0;
  }

  /** Names of the TUN interfaces in `host`'s namespace. */
  async tunDevices(host: string): Promise<string[]> {
    const h = this.hostImpl(host);
    const r = await ip(['-n', h.ns, '-o', 'link', 'show', 'type', 'tun']);
    return parseLinkNames(r.stdout);
  }

  /** Names of all interfaces in `host`'s namespace. */
  async links(host: string): Promise<string[]> {
    const h = this.hostImpl(host);
    const r = await ip(['-n', h.ns, '-o', 'link', 'show']);
    return parseLinkNames(r.stdout);
  }

  /** Takes the host's underlay link down (`ip link set eth0 down` inside the host). */
  async cut(host: string): Promise<void> {
    const h = this.hostImpl(host);
    await ip(['-n', h.ns, 'link', 'set', UNDERLAY_IF, 'down']);
  }

  /**
   * Silently drops all of the host's underlay traffic at the switch while its
   * link stays up (no carrier loss, no local send errors).
   */
  async blackhole(host: string): Promise<void> {
    const h = this.hostImpl(host);
    if (BRIDGE_BIN !== undefined) {
      const r = await runCommand(BRIDGE_BIN, ['-n', this.switchNs, 'link', 'set', 'dev', h.bridgePort, 'state', '0'], {
        timeoutMs: DEADLINE_MS,
      });
      if (r.code === 0) return;
    }
    // Fallback: take the switch-side end down (the host sees carrier loss).
    await ip(['-n', this.switchNs, 'link', 'set', h.bridgePort, 'down']);
  }

  /** Undoes `cut` and `blackhole` (does not touch tc impairments). */
  async restore(host: string): Promise<void> {
    const h = this.hostImpl(host);
    await ip(['-n', h.ns, 'link', 'set', UNDERLAY_IF, 'up']);
    await ip(['-n', this.switchNs, 'link', 'set', h.bridgePort, 'up']);
    if (BRIDGE_BIN !== undefined) {
      await runCommand(BRIDGE_BIN, ['-n', this.switchNs, 'link', 'set', 'dev', h.bridgePort, 'state', '3'], {
        timeoutMs: DEADLINE_MS,
      });
    }
  }

  /**
   * Applies egress impairment on the host's underlay link with tc. Delay,
   * jitter and loss need the netem qdisc; a pure rate limit uses tbf.
   * Returns false (and changes nothing) when tc or the qdisc is unavailable.
   */
  async impair(host: string, o: ImpairOptions): Promise<boolean> {
    if (TC_BIN === undefined) return false;
    const h = this.hostImpl(host);
    let qdisc: string[];
    if (o.delayMs !== undefined || o.jitterMs !== undefined || o.lossPct !== undefined) {
      qdisc = ['netem'];
      if (o.delayMs !== undefined || o.jitterMs !== undefined) {
        qdisc.push('delay', `${o.delayMs ?? 0}ms`);
        if (o.jitterMs !== undefined) qdisc.push(`${o.jitterMs}ms`);
      }
      if (o.lossPct !== undefined) qdisc.push('loss', `${o.lossPct}%`);
      if (o.rateKbit !== undefined) qdisc.push('rate', `${o.rateKbit}kbit`);
    } else if (o.rateKbit !== undefined) {
      const burst = Math.max(4096, Math.ceil(o.rateKbit * 1.25));
      qdisc = ['tbf', 'rate', `${o.rateKbit}kbit`, 'burst', `${burst}`, 'latency', '400ms'];
    } else {
      return this.clearImpairment(host);
    }
    const r = await runCommand(TC_BIN, ['-n', h.ns, 'qdisc', 'replace', 'dev', UNDERLAY_IF, 'root', ...qdisc], {
      timeoutMs: DEADLINE_MS,
    });
    return r.code === 0;
  }

  /** Removes any impairment set by `impair`; false if tc is unavailable. */
  async clearImpairment(host: string): Promise<boolean> {
    if (TC_BIN === undefined) return false;
    const h = this.hostImpl(host);
    await runCommand(TC_BIN, ['-n', h.ns, 'qdisc', 'del', 'dev', UNDERLAY_IF, 'root'], { timeoutMs: DEADLINE_MS });
    return true;
  }

  // -- probes --------------------------------------------------------------

  /**
   * Starts a UDP and TCP echo server on `port` (0.0.0.0) in `host` -- one
   * probe process serving both -- and waits until both sockets are bound.
   */
  async startEchoServers(host: string, port: number): Promise<LabProcess> {
    const h = this.hostImpl(host);
    const p = h.spawnNode(PROBE_SCRIPT, ['echo-server', String(port)], { label: `${host}:echo:${port}` });
    await Promise.all([p.waitForLine(/^ready udp/), p.waitForLine(/^ready tcp/)]);
    return p;
  }

  /** Runs one UDP probe (`count` datagrams) from `from` to `to` (host name or IP). */
  async probeUdp(from: string, to: string, port: number, o: ProbeOptions = {}): Promise<ProbeResult> {
    const count = o.count ?? 1;
    const timeoutMs = o.timeoutMs ?? 1000;
    return this.runProbe(from, ['udp', this.address(to), String(port), String(count), String(timeoutMs)], {
      proto: 'udp',
      host: this.address(to),
      port,
      budgetMs: count * timeoutMs,
    });
  }

  /**
   * Starts pinging `to`:`port` (an echo server, see startEchoServers) from `from` over UDP, one
   * datagram every `intervalMs`, until `stop()` or the lab's disposal. `samples()` are the
   * datagrams so far: each with its round trip, or none when it was lost (no echo within `timeoutMs`).
   */
  startPinger(from: string, to: string, port: number, intervalMs = 100, timeoutMs = 1000): { samples(): PingSample[]; stop(): Promise<void> } {
    const p = this.hostImpl(from).spawnNode(PROBE_SCRIPT, ['udp-ping', this.address(to), String(port), String(intervalMs), String(timeoutMs)], {
      label: `${from}:ping:${to}`,
      maxLines: 1_000_000,
    });
    return {
      samples: () => p.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as PingSample),
      stop: async () => void (await p.stop()),
    };
  }

  /** Runs one TCP echo probe from `from` to `to` (host name or IP). */
  async probeTcp(from: string, to: string, port: number, o: ProbeOptions = {}): Promise<ProbeResult> {
    const timeoutMs = o.timeoutMs ?? 2000;
    return this.runProbe(from, ['tcp', this.address(to), String(port), String(timeoutMs)], {
      proto: 'tcp',
      host: this.address(to),
      port,
      budgetMs: timeoutMs,
    });
  }

  /**
   * Whether `from` gets an echo from `to`:`port` within `timeoutMs` (default
   * DEADLINE_MS), retrying probes until the budget is spent.
   */
  async canReach(from: string, to: string, port: number, o: ReachOptions = {}): Promise<boolean> {
    return (await this.reach(from, to, port, o)).ok;
  }

  /** Polls until `from` reaches `to`:`port`; rejects after `timeoutMs` (default DEADLINE_MS). */
  async waitReachable(
    from: string,
    to: string,
    port: number,
    timeoutMs = DEADLINE_MS,
    o: { proto?: 'udp' | 'tcp' } = {},
  ): Promise<void> {
    const r = await this.reach(from, to, port, { timeoutMs, proto: o.proto ?? 'udp' });
    if (!r.ok) {
      throw new Error(
        `${from} could not reach ${this.address(to)}:${port} (${o.proto ?? 'udp'}) within ${timeoutMs} ms: ${r.error ?? 'no reply'}`,
      );
    }
  }

  // -- processes -----------------------------------------------------------

  /** @internal used by hosts */
  async execIn(ns: string, cmd: string, args: readonly string[], opts: ExecOptions): Promise<ExecResult> {
    this.assertLive();
    return runCommand(IP_BIN, ['netns', 'exec', ns, cmd, ...args], opts, (c) => {
      this.rawChildren.add(c);
      return () => this.rawChildren.delete(c);
    });
  }

  /** @internal used by hosts */
  spawnIn(ns: string, label: string, cmd: string, args: readonly string[], opts: SpawnOptions): LabProcess {
    this.assertLive();
    // `ip netns exec` execs the command in place, so the child pid is the command's pid.
    const child = spawnChild(IP_BIN, ['netns', 'exec', ns, cmd, ...args], {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
    });
    const proc = new LabProcess(child, opts.label ?? label, opts);
    this.procs.add(proc);
    this.allProcs.push(proc);
    void proc.exited.then(() => this.procs.delete(proc));
    return proc;
  }

  // -- teardown ------------------------------------------------------------

  /**
   * Kills every process the lab started (SIGTERM, SIGKILL after 2 s) and
   * deletes all its namespaces. Idempotent; safe to call concurrently.
   */
  dispose(): Promise<void> {
    this.disposing ??= this.doDispose();
    return this.disposing;
  }

  /** Synchronous best-effort variant of dispose (used from process 'exit'). */
  disposeSync(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    for (const p of this.procs) p.kill('SIGKILL');
    for (const c of this.rawChildren) {
      try {
        c.kill('SIGKILL');
      } catch {
        // gone
      }
    }
    for (const ns of this.created) destroyNamespaceSync(ns);
    this.removeMarker();
    liveLabs.delete(this);
  }

  // -- internals -----------------------------------------------------------

  private async doDispose(): Promise<void> {
    if (this.disposedFlag) return;
    await Promise.all([...this.procs].map((p) => p.stop(2000)));
    for (const c of this.rawChildren) c.kill('SIGKILL');
    // Anything else still living in our namespaces (e.g. grandchildren).
    const stragglers = this.created.flatMap((ns) => nsPidsSync(ns));
    for (const pid of stragglers) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    // Hosts first, the switch last.
    const order = [...this.created].reverse();
    for (const ns of order) {
      const r = await runCommand(IP_BIN, ['netns', 'del', ns], { timeoutMs: DEADLINE_MS });
      if (r.code !== 0 && listNamespacesSync().includes(ns)) destroyNamespaceSync(ns);
    }
    this.disposedFlag = true;
    this.removeMarker();
    liveLabs.delete(this);
  }

  private assertLive(): void {
    if (this.disposedFlag || this.disposing !== undefined) throw new Error(`lab ${this.id} is disposed`);
  }

  private hostImpl(name: string): Host {
    this.host(name);
    return this.hostMap.get(name)!;
  }

  private async addNamespace(ns: string): Promise<void> {
    await ip(['netns', 'add', ns]);
    this.created.push(ns);
    if (this.created.length === 1) {
      liveLabs.add(this);
    }
    this.writeMarker();
  }

  private async build(names: string[], nat: ReadonlyMap<string, NatKind>): Promise<void> {
    const sw = this.switchNs;
    await ip(['-n', sw, 'link', 'set', 'lo', 'up']);
    await ip(['-n', sw, 'link', 'add', BRIDGE_IF, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    await ip(['-n', sw, 'link', 'set', BRIDGE_IF, 'up']);
    const base = this.subnet.split('.').slice(0, 3).join('.');
    const settled = await Promise.allSettled(
      names.map(async (name, i) => {
        const kind = nat.get(name);
        // On the bridge: the host itself, or its NAT router in its place.
        const outside = kind === undefined ? name : natRouterName(name);
        const ns = `${this.prefix}-${this.id}-${outside}`;
        const port = `v-${outside}`.length <= 15 ? `v-${outside}` : `v${i}`;
        const onBridge = new Host(this, outside, ns, `${base}.${i + 1}`, port);
        await this.addNamespace(ns);
        this.hostMap.set(outside, onBridge);
        await ip(['-n', sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', UNDERLAY_IF, 'netns', ns]);
        await ip(['-n', sw, 'link', 'set', port, 'master', BRIDGE_IF]);
        await ip(['-n', sw, 'link', 'set', port, 'up']);
        await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
        await ip(['-n', ns, 'addr', 'add', `${onBridge.ip}/24`, 'dev', UNDERLAY_IF]);
        await ip(['-n', ns, 'link', 'set', UNDERLAY_IF, 'up']);
        if (kind !== undefined) await this.buildNatted(name, kind, onBridge, i + 1);
      }),
    );
    // Wait for every host's setup to settle before failing, so that a rollback
    // cannot race a namespace that is still being created.
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    // Keep creation order stable regardless of how the parallel setup interleaved: hosts, then routers.
    const ordered = [...names, ...names.filter((n) => nat.has(n)).map(natRouterName)].map((n) => [n, this.hostMap.get(n)!] as const);
    this.hostMap.clear();
    for (const [n, h] of ordered) this.hostMap.set(n, h);
  }

  /** Host `name` on a private segment behind `router` (already on the bridge): links, addresses, forwarding, the ruleset of `kind`. */
  private async buildNatted(name: string, kind: NatKind, router: Host, slot: number): Promise<void> {
    const ns = `${this.prefix}-${this.id}-${name}`;
    const seg = privateSegment(slot);
    // The host's bridge port is its router's: blackhole/restore act where its traffic enters the bridge.
    const host = new Host(this, name, ns, seg.host, router.bridgePort);
    await this.addNamespace(ns);
    this.hostMap.set(name, host);
    await ip(['-n', router.ns, 'link', 'add', NAT_INSIDE_IF, 'type', 'veth', 'peer', 'name', UNDERLAY_IF, 'netns', ns]);
    await ip(['-n', router.ns, 'addr', 'add', `${seg.gateway}/${seg.prefix}`, 'dev', NAT_INSIDE_IF]);
    await ip(['-n', router.ns, 'link', 'set', NAT_INSIDE_IF, 'up']);
    await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    await ip(['-n', ns, 'addr', 'add', `${seg.host}/${seg.prefix}`, 'dev', UNDERLAY_IF]);
    await ip(['-n', ns, 'link', 'set', UNDERLAY_IF, 'up']);
    await ip(['-n', ns, 'route', 'add', 'default', 'via', seg.gateway]);
    // The router's own namespace only (every namespace has its own net.ipv4 settings).
    await router.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'], { check: true });
    await router.exec(NFT_BIN!, ['-f', '-'], { input: natRuleset(kind), check: true });
    this.natMap.set(name, { kind, router: router.name, publicIp: router.ip, privateIp: seg.host, gateway: seg.gateway });
  }

  private writeMarker(): void {
    const m: Marker = {
      pid: process.pid,
      prefix: this.prefix,
      id: this.id,
      namespaces: this.created,
      createdAt: new Date().toISOString(),
    };
    try {
      fs.mkdirSync(MARKER_DIR, { recursive: true });
      fs.writeFileSync(markerPath(this.prefix, this.id), JSON.stringify(m));
    } catch {
      // markers are advisory
    }
  }

  private removeMarker(): void {
    try {
      fs.rmSync(markerPath(this.prefix, this.id), { force: true });
    } catch {
      // ignore
    }
  }

  private async runProbe(
    from: string,
    args: string[],
    meta: { proto: 'udp' | 'tcp'; host: string; port: number; budgetMs: number },
  ): Promise<ProbeResult> {
    const h = this.hostImpl(from);
    // The budget counts from the first datagram; a node process may take long to get there.
    const r = await h.exec(process.execPath, [PROBE_SCRIPT, ...args], { timeoutMs: meta.budgetMs + DEADLINE_MS });
    const line = r.stdout
      .split('\n')
      .reverse()
      .find((l) => l.startsWith('{'));
    if (line !== undefined) {
      try {
        return JSON.parse(line) as ProbeResult;
      } catch {
        // fall through
      }
    }
    return {
      ok: false,
      proto: meta.proto,
      host: meta.host,
      port: meta.port,
      sent: 0,
      received: 0,
      rttMs: [],
      error: `probe failed (code ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
    };
  }

  private async reach(from: string, to: string, port: number, o: ReachOptions): Promise<ProbeResult> {
    const budget = o.timeoutMs ?? DEADLINE_MS;
    const proto = o.proto ?? 'udp';
    const deadline = Date.now() + budget;
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - Date.now();
      // Short at first (a first datagram may race a fresh route), then longer: on a loaded machine
      // an echo through the tunnel's processes may take seconds.
      const attemptMs = Math.max(100, Math.min(500 * 2 ** Math.min(attempt, 3), remaining));
      const r =
        proto === 'udp'
          ? await this.probeUdp(from, to, port, { timeoutMs: attemptMs })
          : await this.probeTcp(from, to, port, { timeoutMs: attemptMs });
      if (r.ok) return r;
      const left = deadline - Date.now();
      if (left <= 0) return r;
      // Fast failures (refused, unreachable): don't spin.
      await sleep(Math.min(100, left));
      if (Date.now() >= deadline) return r;
    }
  }
}

function parseLinkNames(out: string): string[] {
  return out
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined);
}

// ---------------------------------------------------------------------------
// leftovers

export interface CleanupOptions {
  /** Namespace prefix; default 'lwt'. */
  prefix?: string;
  /** Also remove labs whose owning process is still alive. */
  force?: boolean;
  /** Only report what would be removed. */
  dryRun?: boolean;
}

export interface CleanupReport {
  removed: string[];
  /** Namespaces left alone because their lab's owner process is alive. */
  skipped: string[];
}

/**
 * Removes namespaces named `<prefix>-<labid>-<host>` left behind by labs whose
 * owning process is gone (or all of them with `force`). Processes inside those
 * namespaces are killed first.
 */
export function cleanupLabs(opts: CleanupOptions = {}): CleanupReport {
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  const re = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-([a-z0-9]+)-.+$`);
  const groups = new Map<string, string[]>();
  for (const ns of listNamespacesSync()) {
    const m = re.exec(ns);
    if (m === null) continue;
    const id = m[1]!;
    groups.set(id, [...(groups.get(id) ?? []), ns]);
  }
  const report: CleanupReport = { removed: [], skipped: [] };
  for (const [id, nss] of groups) {
    let owner: number | undefined;
    try {
      owner = (JSON.parse(fs.readFileSync(markerPath(prefix, id), 'utf8')) as Marker).pid;
    } catch {
      owner = undefined;
    }
    const ownerAlive = owner !== undefined && owner !== process.pid && pidAlive(owner);
    const ownedByUs = [...liveLabs].some((l) => l.prefix === prefix && l.id === id);
    if ((ownerAlive || ownedByUs) && !opts.force) {
      report.skipped.push(...nss);
      continue;
    }
    if (!opts.dryRun) {
      // host namespaces before the switch
      for (const ns of [...nss].sort((a, b) => Number(a.endsWith(`-${SWITCH_NAME}`)) - Number(b.endsWith(`-${SWITCH_NAME}`)))) {
        destroyNamespaceSync(ns);
      }
      try {
        fs.rmSync(markerPath(prefix, id), { force: true });
      } catch {
        // ignore
      }
    }
    report.removed.push(...nss);
  }
  return report;
}
