// I/O helpers shared by the benches (bench/run.ts, bench/wan.ts): installing missing commands,
// what the CLI supports, a throwaway TLS certificate, and how many bytes went over the tunnel's
// TCP connection, and running a bench so that it always cleans up.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LabHost } from '../test/helpers/lab.js';
import { BIN } from '../test/helpers/vpn.js';

/** Whether `bin` is on PATH. */
export function have(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

/** Installs Debian packages for the commands that are missing (apt-get update first if needed); throws when that fails. */
export function ensureCommands(wanted: readonly { cmd: string; pkg: string }[], say: (msg: string) => void): void {
  const missing = wanted.filter((w) => !have(w.cmd));
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((m) => m.pkg))];
  say(`installing ${pkgs.join(', ')} (missing: ${missing.map((m) => m.cmd).join(', ')})`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): boolean =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], { stdio: ['ignore', 'inherit', 'inherit'], env }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update'], { stdio: ['ignore', 'inherit', 'inherit'], env });
    if (!install()) throw new Error(`could not install ${pkgs.join(', ')} with apt-get`);
  }
  const still = wanted.filter((w) => !have(w.cmd));
  if (still.length > 0) throw new Error(`still missing after installing: ${still.map((s) => s.cmd).join(', ')}`);
}

/**
 * The CLI the benches run: this tree's, or another build's `bin/lightweight-tunnel.js` named by
 * LWT_BENCH_CLI (to compare two builds on the same machine back to back).
 */
export const CLI: string = ((): string => {
  const other = process.env.LWT_BENCH_CLI;
  if (other === undefined || other === '') return BIN;
  const resolved = path.resolve(other);
  if (!fs.existsSync(resolved)) throw new Error(`LWT_BENCH_CLI: no such file: ${resolved}`);
  return resolved;
})();

let helpText: string | undefined;

/** The CLI's `--help` text (read once). */
export function cliHelp(): string {
  helpText ??= spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' }).stdout ?? '';
  return helpText;
}

/** Whether the CLI has `-transport auto|tcp|udp` (the UDP data path, issue 14). */
export function cliHasTransport(): boolean {
  return /(^|\s)-{1,2}transport\b/m.test(cliHelp());
}

/** The client flags that keep members relayed through the hub (no direct paths between them, issue 12): the figures "client→client via hub" measure the hub; none when the CLI predates direct paths. */
export function relayedFlags(): string[] {
  return /(^|\s)-{1,2}direct\b/m.test(cliHelp()) ? ['-direct=false'] : [];
}

/** The loopback address the benches give a member's `-status` when they read its peers' paths. */
export const STATUS_ADDR = '127.0.0.1:9100';

/**
 * The client flags of a bench's `direct` mode (issue 12): direct paths on (the caller adds
 * statusFlags(), to read the peers' paths from); or why the CLI cannot do it (no `-direct` or no `-status` flag).
 */
export function directFlags(): string[] | string {
  const help = cliHelp();
  if (!/(^|\s)-{1,2}direct\b/m.test(help)) return 'the CLI has no -direct flag (direct paths between members are not wired into it)';
  if (statusFlags().length === 0) return 'the CLI has no -status flag (the bench reads the peers\' paths from the status)';
  return ['-direct=true'];
}

/** `host`'s status document (its `-status` server at STATUS_ADDR), or why it could not be read. */
async function readStatus(host: LabHost): Promise<Record<string, unknown> | string> {
  const r = await host.exec(process.execPath, [CLI, 'status', STATUS_ADDR, '--json'], { timeoutMs: 5000 });
  if (r.code !== 0) return `no status (${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''})`;
  try {
    const doc: unknown = JSON.parse(r.stdout);
    return typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>) : `no status (not an object: ${r.stdout.trim().slice(0, 100)})`;
  } catch {
    return `no status (not JSON: ${r.stdout.trim().slice(0, 100)})`;
  }
}

/** The path `host`'s member shows for its peer `peer` (`direct 198.18.3.2:41641`, `relayed (probing)`), `none` without a pair, or why the status could not be read. */
export async function peerPath(host: LabHost, peer: string): Promise<string> {
  const doc = await readStatus(host);
  if (typeof doc === 'string') return doc;
  const peers = doc.peers as readonly { address: string; path: string }[] | undefined;
  return peers?.find((p) => p.address === peer)?.path ?? 'none';
}

/** All drops `host`'s tunnel counted since it started, by reason (its status' `drops`), or why they could not be read. */
export async function statusDrops(host: LabHost): Promise<Record<string, number> | string> {
  const doc = await readStatus(host);
  if (typeof doc === 'string') return doc;
  return (doc.drops as Record<string, number> | undefined) ?? {};
}

/** The `-status` flags of a bench's tunnel processes (each in its own namespace, so one loopback address serves all); none when the CLI has no -status. */
export function statusFlags(): string[] {
  return /(^|\s)-{1,2}status\b/m.test(cliHelp()) ? ['-status', STATUS_ADDR] : [];
}

/**
 * Polls the members' statuses until each shows a `direct …` path to its peer, up to `timeoutMs`;
 * undefined then, else what each showed last (the reason a direct figure is not measured). Each
 * poll first sends one ping from every member to its peer: traffic toward a peer is what makes a
 * member ask the hub for an introduction (and the hub offer one), and a pair refused while a
 * member's UDP path was still coming up is asked for again.
 */
export async function waitDirectPaths(members: readonly { name: string; host: LabHost; peer: string }[], timeoutMs: number): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await Promise.all(members.map((m) => m.host.exec('ping', ['-n', '-q', '-c', '1', '-W', '1', m.peer], { timeoutMs: 5000 })));
    const paths = await Promise.all(members.map((m) => peerPath(m.host, m.peer)));
    if (paths.every((p) => p.startsWith('direct '))) return undefined;
    if (Date.now() > deadline) {
      return `no direct path after ${timeoutMs / 1000} s: ${members.map((m, i) => `${m.name} shows ${m.peer}: ${paths[i]}`).join('; ')}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The flags that pick the transport `kind` on hub and clients: none when the CLI has no -transport and `kind` is tcp; undefined when udp is asked for and the CLI cannot do it. */
export function transportFlags(kind: 'tcp' | 'udp'): string[] | undefined {
  if (cliHasTransport()) return ['-transport', kind];
  return kind === 'tcp' ? [] : undefined;
}

/** A self-signed ECDSA P-256 certificate for the hub at `hubIp`, written into `dir`; the files, or why it could not be made. */
export function makeHubCert(dir: string, hubIp: string): { cert: string; key: string } | string {
  const cert = path.join(dir, 'hub.crt');
  const key = path.join(dir, 'hub.key');
  const r = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=lwt-bench-hub',
      '-addext', `subjectAltName=IP:${hubIp}`, '-keyout', key, '-out', cert],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) return `openssl could not make a certificate: ${(r.stderr ?? '').trim()}`;
  return { cert, key };
}

/**
 * Bytes sent plus received so far on `host`'s established TCP connections to `port` (`ss -ti`'s
 * bytes_sent and bytes_received): on a client, what its tunnel carried over TCP. The difference
 * across a transfer tells whether the data took the UDP path. NaN when ss cannot tell.
 */
export async function tcpBytesTo(host: LabHost, port: number): Promise<number> {
  const r = await host.exec('ss', ['-Htin', 'state', 'established', `( dport = :${port} )`], { timeoutMs: 5000 });
  if (r.code !== 0) return Number.NaN;
  let total = 0;
  for (const m of r.stdout.matchAll(/\bbytes_(?:sent|received):(\d+)/g)) total += Number(m[1]);
  return total;
}

/** What runBench drives: a run, and the two ways to clean up after it. */
export interface Disposable {
  run(): Promise<void>;
  dispose(): Promise<void>;
  /** Stops what the run started and removes its lab at once (from a signal handler). */
  disposeSync(): void;
}

/**
 * Runs `bench` and always disposes of it; SIGINT/SIGTERM/SIGHUP dispose of it synchronously and
 * exit 128 + the signal. Resolves with the run's failure (already said), or undefined.
 */
export async function runBench(bench: Disposable, say: (msg: string) => void): Promise<Error | undefined> {
  // Our own handlers: the lab installs its own only when nobody else listens.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      say(`${sig}: removing the lab and stopping everything this run started`);
      try {
        bench.disposeSync();
      } finally {
        process.exit(128 + (os.constants.signals[sig] ?? 2));
      }
    });
  }
  try {
    await bench.run();
    return undefined;
  } catch (err) {
    const failure = err as Error;
    say(`FAILED: ${failure.stack ?? failure.message}`);
    return failure;
  } finally {
    await bench.dispose();
  }
}

/** The options of a bench from the command line, or its exit code: 2 with the usage for bad options, 1 when not root. */
export function benchOptions<O>(name: string, parse: (args: string[]) => O, help: string): O | number {
  let o: O;
  try {
    o = parse(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${name}: ${(err as Error).message}\n${help}`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write(`${name}: needs root (network namespaces, TUN devices)\n`);
    return 1;
  }
  return o;
}

/** Writes the JSON document where `--json` said: '-' for stdout, a file, or nowhere. */
export function writeJsonDocument(doc: unknown, file: string | undefined, say: (msg: string) => void): void {
  const json = `${JSON.stringify(doc, null, 2)}\n`;
  if (file === '-') process.stdout.write(json);
  else if (file !== undefined) {
    fs.writeFileSync(file, json);
    say(`JSON written to ${file}`);
  }
}
