// The demo's virtual LAN: network namespaces on one bridge (the "internet"), long-running
// processes started detached so that they can outlive the demo (`--keep`), and a state file from
// which `--down` removes everything again.
//
// Why not test/helpers/lab.ts: a Lab ties its namespaces and processes to the process that made it
// (exit hooks dispose it, output goes through pipes to the owner), which is right for tests and
// wrong for `--keep`. Here processes write to log files, carry an environment mark, and every
// namespace and PID is written to the state file before anything else happens.
//
// Safety rules kept by this module:
// - nothing is configured in the root namespace: each veth pair is created inside the switch
//   namespace with its peer placed straight into the host namespace;
// - a namespace is recorded in the state file before it is created, a process right after it is
//   spawned, so an interrupted run can always be removed with `--down`;
// - a process is only ever signalled when its environment carries `LWT_DEMO_LAB=<this lab's id>`,
//   so a recycled PID or a shell somebody opened in a kept namespace is never touched.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findBinary } from '../../test/helpers/lab.js';

/** Namespace names are `lwtdemo-<id>-<host>`; distinct from the test labs' `lwt-<id>-<host>`. */
export const NS_PREFIX = 'lwtdemo';
/** Environment variable marking every process the demo starts (value: the lab id). */
export const ENV_MARK = 'LWT_DEMO_LAB';
const SWITCH = 'switch';
const BRIDGE = 'br0';
const UNDERLAY_IF = 'eth0';
const ID_RE = /^[a-z0-9]{4}$/;

// ---------------------------------------------------------------------------
// small system helpers

/** The `ip` binary (iproute2), or undefined when it is not installed. */
export const IP_BIN: string | undefined = findBinary('ip');

function ipBin(): string {
  if (IP_BIN === undefined) throw new Error('iproute2 (the `ip` command) is not installed');
  return IP_BIN;
}

/**
 * How long the demo waits for what must come: a member's log line, a status with the transfer in
 * it, a probe's run. Ample for a loaded machine; a process that exits ends its wait at once.
 */
export const WAIT_MS = 60_000;

/** Runs `ip ARGS`; rejects with ip's message on failure. */
function ip(args: readonly string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(ipBin(), args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Names of all network namespaces. */
export async function listNamespaces(): Promise<string[]> {
  if (IP_BIN === undefined) return [];
  const out = await ip(['netns', 'list']).catch(() => '');
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

async function namespacePids(ns: string): Promise<number[]> {
  const out = await ip(['netns', 'pids', ns]).catch(() => '');
  return out
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
}

/**
 * Whether `pid` is a live process started by lab `id` (its environment carries the mark). Zombies
 * and processes of anyone else answer false.
 */
export function isLabProcess(pid: number, id: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`${ENV_MARK}=${id}`);
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitGone(pids: readonly number[], id: string, ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  let left = pids.filter((p) => isLabProcess(p, id));
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(25);
    left = left.filter((p) => isLabProcess(p, id));
  }
  return left;
}

function signal(pids: readonly number[], sig: NodeJS.Signals, id: string): void {
  for (const pid of pids) {
    if (!isLabProcess(pid, id)) continue;
    try {
      process.kill(pid, sig);
    } catch {
      // exited meanwhile
    }
  }
}

function tail(file: string, lines = 15): string {
  try {
    const all = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    return all.slice(-lines).join('\n');
  } catch {
    return '(no output)';
  }
}

// ---------------------------------------------------------------------------
// state files

export interface HostRecord {
  readonly name: string;
  readonly ns: string;
  readonly underlay: string;
}

export interface ProcessRecord {
  readonly pid: number;
  readonly label: string;
  readonly host: string;
  readonly log: string;
}

/** Everything `--down` needs to remove a LAN, written to `<stateDir>/<id>.json`. */
export interface LanState {
  version: 1;
  id: string;
  createdAt: string;
  /** The demo process that built the LAN. */
  ownerPid: number;
  /** Set once a `--keep` run has finished: the LAN is meant to outlive its owner. */
  kept: boolean;
  subnet: string;
  /** Namespaces, in creation order (switch first); recorded before each is created. */
  namespaces: string[];
  hosts: HostRecord[];
  processes: ProcessRecord[];
  /** Per-process log files live here. */
  logDir: string;
}

/** Where state files and logs go: /run/lwt-demo when /run is writable, else $TMPDIR/lwt-demo. */
export function stateDirs(): string[] {
  const dirs: string[] = [];
  try {
    fs.accessSync('/run', fs.constants.W_OK);
    dirs.push('/run/lwt-demo');
  } catch {
    // no /run
  }
  dirs.push(path.join(os.tmpdir(), 'lwt-demo'));
  return dirs;
}

export function isLabId(s: string): boolean {
  return ID_RE.test(s);
}

function statePathIn(dir: string, id: string): string {
  return path.join(dir, `${id}.json`);
}

/** Reads the state of lab `id`, looking in every state directory. */
export function readState(id: string): { state: LanState; file: string } | undefined {
  if (!isLabId(id)) return undefined;
  for (const dir of stateDirs()) {
    const file = statePathIn(dir, id);
    try {
      return { state: JSON.parse(fs.readFileSync(file, 'utf8')) as LanState, file };
    } catch {
      // not there
    }
  }
  return undefined;
}

/** All recorded labs. */
export function listStates(): { state: LanState; file: string }[] {
  const found: { state: LanState; file: string }[] = [];
  for (const dir of stateDirs()) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      const m = /^([a-z0-9]{4})\.json$/.exec(n);
      if (m === null) continue;
      const r = readState(m[1]!);
      if (r !== undefined && r.file === statePathIn(dir, m[1]!)) found.push(r);
    }
  }
  return found;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the demo run that built this LAN is still running it (not kept, owner alive). */
export function ownerRunning(state: LanState): boolean {
  return !state.kept && state.ownerPid !== process.pid && pidAlive(state.ownerPid);
}

// ---------------------------------------------------------------------------
// teardown (from a state file, so that `--down` in another process works the same way)

export interface TeardownReport {
  /** Processes that exited on SIGTERM. */
  stopped: number;
  /** Processes that needed SIGKILL. */
  killed: number;
  /** Namespaces deleted. */
  namespaces: string[];
  /** Processes not started by the demo that still live in a deleted namespace (left alone). */
  foreign: { ns: string; pid: number; command: string }[];
}

/**
 * Stops every process of the LAN (SIGTERM, SIGKILL after 2.5 s), deletes its namespaces (hosts
 * first, the switch last), its logs and its state file. Idempotent.
 */
export async function teardownState(state: LanState, stateFile: string | undefined): Promise<TeardownReport> {
  const id = state.id;
  const existing = new Set(await listNamespaces());
  const namespaces = state.namespaces.filter((ns) => existing.has(ns));
  const candidates = new Set(state.processes.map((p) => p.pid));
  // Also anything the demo started that was not recorded yet (a probe in flight, say).
  for (const ns of namespaces) for (const pid of await namespacePids(ns)) candidates.add(pid);
  const ours = [...candidates].filter((p) => p !== process.pid && isLabProcess(p, id));

  signal(ours, 'SIGTERM', id);
  const stubborn = await waitGone(ours, id, 2500);
  signal(stubborn, 'SIGKILL', id);
  await waitGone(stubborn, id, 1000);

  const report: TeardownReport = { stopped: ours.length - stubborn.length, killed: stubborn.length, namespaces: [], foreign: [] };
  const order = [...namespaces.filter((ns) => !ns.endsWith(`-${SWITCH}`)), ...namespaces.filter((ns) => ns.endsWith(`-${SWITCH}`))];
  for (const ns of order) {
    for (const pid of await namespacePids(ns)) {
      if (pid === process.pid || isLabProcess(pid, id)) continue;
      let command = '?';
      try {
        command = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      } catch {
        // gone
      }
      report.foreign.push({ ns, pid, command });
    }
    try {
      await ip(['netns', 'del', ns]);
      report.namespaces.push(ns);
    } catch (err) {
      if ((await listNamespaces()).includes(ns)) throw err;
    }
  }
  fs.rmSync(state.logDir, { recursive: true, force: true });
  if (stateFile !== undefined) {
    fs.rmSync(stateFile, { force: true });
    try {
      fs.rmdirSync(path.dirname(stateFile)); // only when no other demo LAN is recorded there
    } catch {
      // not empty, or gone
    }
  }
  return report;
}

// ---------------------------------------------------------------------------
// the LAN

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** A long-running process of the LAN; its output goes to `log`. */
export class Daemon {
  private exitInfo: string | undefined;

  constructor(
    readonly pid: number,
    readonly label: string,
    readonly log: string,
    child: ChildProcess,
  ) {
    child.on('exit', (code, sig) => (this.exitInfo = sig !== null ? `signal ${sig}` : `code ${code}`));
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** The log's lines so far. */
  lines(): string[] {
    try {
      return fs.readFileSync(this.log, 'utf8').split('\n').filter((l) => l !== '');
    } catch {
      return [];
    }
  }

  /** Resolves with the first log line matching `re`; rejects (with the log's tail) on exit or after `timeoutMs`. */
  async waitFor(re: RegExp, timeoutMs = WAIT_MS): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines().find((l) => re.test(l));
      if (hit !== undefined) return hit;
      const why = !this.running ? `exited (${this.exitInfo})` : Date.now() >= deadline ? `printed nothing matching ${re} within ${timeoutMs} ms` : undefined;
      if (why !== undefined) throw new Error(`${this.label} (pid ${this.pid}) ${why}; its output ends with:\n${tail(this.log)}`);
      await sleep(30);
    }
  }
}

export class DemoLan {
  private closing: Promise<TeardownReport> | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly oneShots = new Set<ChildProcess>();

  private constructor(
    readonly state: LanState,
    readonly stateFile: string,
  ) {}

  get id(): string {
    return this.state.id;
  }

  /**
   * Picks a free lab id and writes the (still empty) state file; nothing exists in the system yet.
   * `build()` then creates the namespaces.
   */
  static async allocate(hostNames: readonly string[]): Promise<DemoLan> {
    const dir = stateDirs()[0]!;
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const existing = new Set(await listNamespaces());
    const taken = (id: string): boolean =>
      fs.existsSync(statePathIn(dir, id)) || [...existing].some((ns) => ns.startsWith(`${NS_PREFIX}-${id}-`));
    let id: string;
    do {
      id = Array.from({ length: 4 }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[randomInt(36)]).join('');
    } while (taken(id));
    const octet = randomInt(256);
    const state: LanState = {
      version: 1,
      id,
      createdAt: new Date().toISOString(),
      ownerPid: process.pid,
      kept: false,
      subnet: `172.31.${octet}.0/24`,
      namespaces: [],
      hosts: hostNames.map((name, i) => ({ name, ns: `${NS_PREFIX}-${id}-${name}`, underlay: `172.31.${octet}.${i + 1}` })),
      processes: [],
      logDir: path.join(dir, id),
    };
    fs.mkdirSync(state.logDir, { recursive: true });
    const lan = new DemoLan(state, statePathIn(dir, id));
    lan.save();
    return lan;
  }

  host(name: string): HostRecord {
    const h = this.state.hosts.find((x) => x.name === name);
    if (h === undefined) throw new Error(`no host ${name} in demo LAN ${this.id}`);
    return h;
  }

  /** Starts `node ARGV` detached inside `host`'s namespace, output to `<logDir>/<label>.log`. */
  spawnNode(host: string, label: string, argv: readonly string[]): Daemon {
    this.assertOpen();
    const h = this.host(host);
    const log = path.join(this.state.logDir, `${label}.log`);
    const fd = fs.openSync(log, 'a');
    let child: ChildProcess;
    try {
      child = spawn(ipBin(), ['netns', 'exec', h.ns, process.execPath, ...argv], {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: { ...process.env, [ENV_MARK]: this.id },
      });
    } finally {
      fs.closeSync(fd);
    }
    child.on('error', () => undefined);
    if (child.pid === undefined) throw new Error(`cannot start ${label} in ${h.ns}`);
    child.unref();
    // `ip netns exec` execs the command in place: this pid is node's.
    this.state.processes.push({ pid: child.pid, label, host, log });
    this.save();
    return new Daemon(child.pid, label, log, child);
  }

  /** Runs `node ARGV` to completion inside `host`'s namespace (killed after `timeoutMs`). */
  runNode(host: string, argv: readonly string[], timeoutMs: number): Promise<RunResult> {
    this.assertOpen();
    const h = this.host(host);
    return new Promise((resolve, reject) => {
      const child = spawn(ipBin(), ['netns', 'exec', h.ns, process.execPath, ...argv], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, [ENV_MARK]: this.id },
      });
      this.oneShots.add(child);
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        this.oneShots.delete(child);
        reject(err);
      });
      child.on('close', (code, sig) => {
        clearTimeout(timer);
        this.oneShots.delete(child);
        resolve({ code, signal: sig, stdout, stderr, timedOut });
      });
    });
  }

  /** Marks the LAN as meant to outlive this process (`--keep`). */
  keep(): void {
    this.state.kept = true;
    this.save();
  }

  /** Stops everything and deletes the namespaces, logs and state file. Safe to call repeatedly. */
  teardown(): Promise<TeardownReport> {
    this.closing ??= (async () => {
      // Let an `ip` command in flight finish, so that nothing it creates escapes the teardown.
      await Promise.allSettled([...this.inflight]);
      for (const c of this.oneShots) c.kill('SIGKILL');
      return teardownState(this.state, this.stateFile);
    })();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing !== undefined) throw new Error(`demo LAN ${this.id} is being removed`);
  }

  private save(): void {
    const tmp = `${this.stateFile}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(this.state, null, 2) + '\n');
    fs.renameSync(tmp, this.stateFile);
  }

  /** One step of the build; refused once teardown has begun. */
  private step(args: readonly string[]): Promise<string> {
    this.assertOpen();
    const p = ip(args);
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p)).catch(() => undefined);
    return p;
  }

  private async addNamespace(ns: string): Promise<void> {
    this.assertOpen();
    this.state.namespaces.push(ns); // recorded first: an interrupted run still knows about it
    this.save();
    await this.step(['netns', 'add', ns]);
  }

  /**
   * Creates the switch (a bridge) and one namespace per host, host i at 172.31.X.(i+1)/24 on its
   * `eth0`. On failure the caller tears down (everything made so far is in the state file).
   */
  async build(): Promise<void> {
    const sw = `${NS_PREFIX}-${this.id}-${SWITCH}`;
    await this.addNamespace(sw);
    await this.step(['-n', sw, 'link', 'set', 'lo', 'up']);
    await this.step(['-n', sw, 'link', 'add', BRIDGE, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    await this.step(['-n', sw, 'link', 'set', BRIDGE, 'up']);
    for (const [i, h] of this.state.hosts.entries()) {
      const port = `v-${h.name}`.length <= 15 ? `v-${h.name}` : `v-${i}`;
      await this.addNamespace(h.ns);
      await this.step(['-n', sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', UNDERLAY_IF, 'netns', h.ns]);
      await this.step(['-n', sw, 'link', 'set', port, 'master', BRIDGE]);
      await this.step(['-n', sw, 'link', 'set', port, 'up']);
      await this.step(['-n', h.ns, 'link', 'set', 'lo', 'up']);
      await this.step(['-n', h.ns, 'addr', 'add', `${h.underlay}/24`, 'dev', UNDERLAY_IF]);
      await this.step(['-n', h.ns, 'link', 'set', UNDERLAY_IF, 'up']);
    }
  }
}
