// Starting the real CLI inside lab namespaces, for end-to-end tests.
import { fileURLToPath } from 'node:url';
import type { StatusSnapshot } from '../../pipelines/status.js';
import type { Lab, LabProcess } from './lab.js';

/** The CLI entry point. */
export const BIN: string = fileURLToPath(new URL('../../../bin/lightweight-tunnel.js', import.meta.url));
/** The hub's tunnel address in every e2e lab. */
export const HUB_TUNNEL = '10.0.0.1';
/** The port echo servers listen on inside the tunnel. */
export const ECHO_PORT = 7000;

/**
 * The tests match the text log format; piped output would otherwise be JSON lines (-log-format
 * auto). A later `-log-format` in `extra` wins.
 */
export const TEXT_LOGS: readonly string[] = ['-log-format', 'text'];

/** Starts a hub on host `host` (default 'hub') with extra flags; resolves once it listens. */
export async function startHub(lab: Lab, extra: readonly string[] = [], host = 'hub'): Promise<LabProcess> {
  const p = lab.host(host).spawn('node', [BIN, ...TEXT_LOGS, '-m', 'server', '-l', '0.0.0.0:9000', '-t', `${HUB_TUNNEL}/24`, ...extra], { label: `${host}(hub)` });
  await p.waitForLine(/listening on/);
  return p;
}

/** Starts a client on `host` with tunnel address `address`; resolves once the line `until` appears (default: joined). */
export async function startClient(
  lab: Lab,
  host: string,
  address: string,
  extra: readonly string[] = [],
  until: RegExp | undefined = /joined the virtual LAN as/,
): Promise<LabProcess> {
  const hubIp = lab.host('hub').ip;
  const p = lab.host(host).spawn('node', [BIN, ...TEXT_LOGS, '-m', 'client', '-r', `${hubIp}:9000`, '-t', `${address}/24`, ...extra], { label: `${host}(client)` });
  if (until !== undefined) await p.waitForLine(until);
  return p;
}

/** `lightweight-tunnel status ADDR --json` run in `host`: the snapshot of the process serving -status on ADDR there. */
export async function statusOf(lab: Lab, host: string, addr: string): Promise<StatusSnapshot> {
  const r = await lab.host(host).exec(process.execPath, [BIN, 'status', addr, '--json']);
  if (r.code !== 0) throw new Error(`status ${addr} in ${host} failed (code ${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as StatusSnapshot;
}

/** `s` as a literal in a RegExp. */
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The packets `p` has logged as dropped for `reason` at `who` (a member's address, `hub` or `tun`),
 * summed over its drop summaries: they come at most once a second, so one burst may take several.
 */
export function droppedAt(p: LabProcess, who: string, reason: string): number {
  const line = new RegExp(` dropped \\d+ packets? \\(.*\\) at ${esc(who)}( in the last second)?$`);
  const count = new RegExp(`[(, ]${esc(reason)} (\\d+)[,)]`);
  return [...p.stderr, ...p.stdout].filter((l) => line.test(l)).reduce((sum, l) => sum + Number(count.exec(l)?.[1] ?? 0), 0);
}

/** The time a text log line was written (its leading ISO timestamp), in ms: the program's clock, not the test's. */
export function logTime(line: string): number {
  const ms = Date.parse(line.split(' ')[0]!);
  if (Number.isNaN(ms)) throw new Error(`not a timestamped log line: ${line}`);
  return ms;
}

/**
 * When a reconnecting client makes its next attempt, by its own last `reconnecting in N s` line
 * (undefined if it printed none): a restarted hub gets the client back by then, not sooner.
 */
export function nextAttemptAt(client: LabProcess): number | undefined {
  const line = [...client.stderr, ...client.stdout].filter((l) => / reconnecting in /.test(l)).at(-1);
  if (line === undefined) return undefined;
  return logTime(line) + Number(/ reconnecting in ([\d.]+) s/.exec(line)![1]) * 1000;
}

/** Sends SIGINT and resolves with the exit status. */
export async function interrupt(p: LabProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  p.kill('SIGINT');
  return p.exited;
}
