// The hub's own view of its members, for the demo's "hub's view" section: the hub's status endpoint
// (`-status ADDR`), read with `lightweight-tunnel status --json` from inside the hub's namespace
// (the endpoint listens on the namespace's loopback, which the root namespace cannot reach).
import type { StatusSnapshot } from '../../pipelines/status.js';
import { BIN } from '../../test/helpers/vpn.js';
import { WAIT_MS, type DemoLan } from './lan.js';

/** Where the demo hub's status endpoint listens, inside the hub's namespace. */
export const HUB_STATUS_ADDR = '127.0.0.1:9100';

/** The hub's /status document, fetched by the real `status` command run in `host`'s namespace. */
export async function fetchHubStatus(lan: DemoLan, host: string, addr = HUB_STATUS_ADDR): Promise<StatusSnapshot> {
  const r = await lan.runNode(host, [BIN, 'status', '--json', addr], WAIT_MS);
  const body = r.stdout.trim();
  if (r.code !== 0 || !body.startsWith('{')) {
    throw new Error(`lightweight-tunnel status ${addr} in ${lan.host(host).ns} failed: ${r.stderr.trim() || body || (r.timedOut ? 'timed out' : `exit ${r.code}`)}`);
  }
  return JSON.parse(body) as StatusSnapshot;
}

/**
 * The hub's status once its counters include `bytes` from `from` to `to` (the pipelines refresh the
 * counters about once a second), or the last one fetched when `timeoutMs` runs out first.
 */
export async function hubStatusAfter(
  lan: DemoLan,
  host: string,
  flow: { from: string; to: string; bytes: number },
  timeoutMs = WAIT_MS,
): Promise<StatusSnapshot> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const snap = await fetchHubStatus(lan, host);
    const rx = snap.members.find((m) => m.address === flow.from)?.rx.bytes ?? 0;
    const tx = snap.members.find((m) => m.address === flow.to)?.tx.bytes ?? 0;
    if ((rx >= flow.bytes && tx >= flow.bytes) || Date.now() >= deadline) return snap;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
