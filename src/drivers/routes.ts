// Driver: kernel routes through this side's TUN device, with `ip route replace|del CIDR dev TUN`.
// One command at a time, each bounded by a timeout, always working towards the latest requested
// set; outcomes are events, never errors, and nothing here throws at the pipeline.
import { execFile } from 'node:child_process';
import { Subject } from 'rxjs';
import type { KernelRouteEvent, RoutesPort } from '../../pipelines/ports.js';
import { formatPrefix, type Ipv4Prefix } from '../../operators/core/address.js';

/** How long one `ip route` command may take before it is killed and reported as failed. */
export const ROUTE_COMMAND_TIMEOUT_MS = 5000;

/** Runs one command; resolves with undefined on success or the error text. */
export type RunCommand = (file: string, args: readonly string[], timeoutMs: number) => Promise<string | undefined>;

const runIp: RunCommand = (file, args, timeoutMs) =>
  new Promise((resolve) => {
    execFile(file, [...args], { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, _stdout, stderr) => {
      if (err === null) return resolve(undefined);
      const text = stderr.toString().trim();
      resolve(text !== '' ? text : (err as { killed?: boolean }).killed === true ? `timed out after ${timeoutMs} ms` : err.message);
    });
  });

/** Options of makeRoutesDriver. */
export interface RoutesDriverOptions {
  /** The TUN device's name (routes go `dev DEVICE`). */
  readonly device: string;
  /** The `ip` binary; default "ip" (found on PATH). */
  readonly ip?: string;
  readonly timeoutMs?: number;
  /** Replaces running `ip` (tests). */
  readonly run?: RunCommand;
}

/**
 * A RoutesPort over `ip route`. Removals run before additions; an addition that fails is not
 * retried until the next `set` (so a refusing kernel is reported once, not in a loop); a removal
 * that fails still forgets the route (the device going away removes it anyway).
 */
export function makeRoutesDriver(options: RoutesDriverOptions): RoutesPort {
  const ip = options.ip ?? 'ip';
  const timeoutMs = options.timeoutMs ?? ROUTE_COMMAND_TIMEOUT_MS;
  const run = options.run ?? runIp;
  const events$ = new Subject<KernelRouteEvent>();
  /** What should be routed (latest set) and what is (as far as this driver did it). */
  let wanted = new Set<string>();
  const installed = new Set<string>();
  /** Additions that failed for the current set. */
  let failed = new Set<string>();
  let busy = false;

  const step = async (): Promise<void> => {
    for (;;) {
      const remove = [...installed].find((c) => !wanted.has(c));
      const add = remove === undefined ? [...wanted].find((c) => !installed.has(c) && !failed.has(c)) : undefined;
      const cidr = remove ?? add;
      if (cidr === undefined) {
        // In the same tick as the check, so a `set` from now on starts a new run.
        busy = false;
        return;
      }
      const action = remove !== undefined ? 'remove' : 'add';
      const error = await run(ip, ['route', action === 'add' ? 'replace' : 'del', cidr, 'dev', options.device], timeoutMs).catch((e: unknown) =>
        e instanceof Error ? e.message : String(e),
      );
      if (action === 'remove') installed.delete(cidr);
      else if (error === undefined) installed.add(cidr);
      else failed.add(cidr);
      events$.next(error === undefined ? { type: 'kernel-route', action, cidr, ok: true } : { type: 'kernel-route', action, cidr, ok: false, detail: error });
    }
  };

  return {
    set(prefixes: readonly Ipv4Prefix[]) {
      wanted = new Set(prefixes.map(formatPrefix));
      failed = new Set();
      if (busy) return;
      busy = true;
      void step();
    },
    events$: events$.asObservable(),
  };
}

/**
 * Makes the subnet's broadcast address of `address/prefix` a local broadcast on the TUN device
 * (`ip route replace broadcast BRD dev DEVICE table local scope link src ADDRESS`): a TUN device is
 * point-to-point, so the kernel gives it no broadcast address and would not deliver a directed
 * broadcast (10.0.0.255) that the hub replicates to local sockets. The route goes with the device.
 * Resolves with undefined or the error text (never rejects).
 */
export function addBroadcastRoute(device: string, address: number, prefix: number, run: RunCommand = runIp, ip = 'ip'): Promise<string | undefined> {
  if (prefix >= 31) return Promise.resolve(undefined);
  const broadcast = (address | (0xffffffff >>> prefix)) >>> 0;
  const text = (a: number): string => formatPrefix({ address: a, prefix: 32 }).replace(/\/32$/, '');
  return run(ip, ['route', 'replace', 'broadcast', text(broadcast), 'dev', device, 'table', 'local', 'proto', 'kernel', 'scope', 'link', 'src', text(address)], ROUTE_COMMAND_TIMEOUT_MS).catch((e: unknown) =>
    e instanceof Error ? e.message : String(e),
  );
}
