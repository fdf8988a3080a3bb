// What the end-to-end tests of direct paths (issue 12, docs/direct.md) share: reading members' and
// peers' entries of the status, waiting for a status condition, counting a member's UDP datagrams
// to and from another host's underlay address, and the clock of a text log line.
import type { MemberSnapshot, PeerSnapshot, StatusSnapshot } from '../../pipelines/status.js';
import { NFT_BIN, type Lab, type LabProcess } from './lab.js';
import { statusOf } from './vpn.js';
import { DEADLINE_MS, waitUntil } from './wait.js';

/** Where every process of these tests serves its status, each in its own namespace. */
export const STATUS = '127.0.0.1:9100';

/** A path that is direct, as the status says it. */
export const DIRECT = /^direct \d+\.\d+\.\d+\.\d+:\d+$/;

/** The hub's entry of member `address`, if any. */
export const memberOf = (s: StatusSnapshot, address: string): MemberSnapshot | undefined => s.members.find((m) => m.address === address);

/** A client's entry of peer `address`, if any. */
export const peerOf = (s: StatusSnapshot, address: string): PeerSnapshot | undefined => s.peers.find((p) => p.address === address);

/** Polls `host`'s status until `ok` holds; resolves with that snapshot (says what it saw last when it gives up). */
export async function waitStatus(lab: Lab, host: string, what: string, ok: (s: StatusSnapshot) => boolean): Promise<StatusSnapshot> {
  let seen: StatusSnapshot | undefined;
  await waitUntil(
    async () => {
      seen = await statusOf(lab, host, STATUS);
      return ok(seen);
    },
    () => `${host}: ${what} (last seen: members ${JSON.stringify(seen?.members.map((m) => [m.address, m.transport]))}, peers ${JSON.stringify(seen?.peers)}, pairs ${JSON.stringify(seen?.pairs)})`,
    DEADLINE_MS,
    200,
  );
  return seen!;
}

/** The time a text log line was written (its leading ISO timestamp), in ms. */
export const logTime = (line: string): number => Date.parse(line.split(' ')[0]!);

/** The first line `p` logged after `mark` (LabProcess.mark) matching `re`, with its time. */
export async function lineAfter(p: LabProcess, re: RegExp, mark: number): Promise<{ readonly line: string; readonly at: number }> {
  const line = await p.waitForLine(re, DEADLINE_MS, { after: mark });
  return { line, at: logTime(line) };
}

/**
 * Counts, in `host`'s namespace, the UDP datagrams it sends to and receives from underlay address
 * `peerIp` (table `inet NAME`, counter `between`); resolves with a reader of the counter. Loaded before
 * the members start, it sees every direct datagram between the two.
 */
export async function countUdpWith(lab: Lab, host: string, name: string, peerIp: string): Promise<() => Promise<{ packets: number; bytes: number }>> {
  if (NFT_BIN === undefined) throw new Error('nftables is not installed (.ci/run installs it)');
  const ruleset = `table inet ${name} {
  counter between {}
  chain in { type filter hook input priority -1; policy accept; ip saddr ${peerIp} meta l4proto udp counter name between; }
  chain out { type filter hook output priority -1; policy accept; ip daddr ${peerIp} meta l4proto udp counter name between; }
}
`;
  await lab.host(host).exec(NFT_BIN, ['-f', '-'], { input: ruleset, check: true, timeoutMs: DEADLINE_MS });
  return () => lab.nftCounter(host, `inet ${name}`, 'between');
}
