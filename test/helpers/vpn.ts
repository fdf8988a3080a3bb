// Starting the real CLI inside lab namespaces, for end-to-end tests.
import { fileURLToPath } from 'node:url';
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
  await p.waitForLine(/listening on/, 10_000);
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
  if (until !== undefined) await p.waitForLine(until, 10_000);
  return p;
}

/** Sends SIGINT and resolves with the exit status. */
export async function interrupt(p: LabProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  p.kill('SIGINT');
  return p.exited;
}
