// The hub's own view of its members, for the demo's "hub's view" table.

/** One member as the hub sees it. */
export interface HubMember {
  /** Tunnel address, e.g. 10.0.0.2. */
  readonly address: string;
  /** Where its connection comes from (underlay ip:port). */
  readonly remote: string;
  /** When it joined (ISO time from the log line), if known. */
  readonly since: string | undefined;
}

export interface HubView {
  /** Where the figures come from, said in the demo's output. */
  readonly source: string;
  readonly members: HubMember[];
  /** Packets the hub did not deliver, by reason (`not-ipv4`, `no-route`, ...). */
  readonly drops: Record<string, number>;
}

// ┌──────────────────────────────────────────────────────────────────────────────────────────────┐
// │ STATUS ENDPOINT (issue 5) -- replace `hubViewFromLog` here once the hub has `-status ADDR`:  │
// │  1. scripts/demo.ts starts the hub with `-status 127.0.0.1:9100` (see HUB_STATUS_FLAGS);     │
// │  2. `hubView` fetches GET /status from inside the hub's namespace (127.0.0.1 there is not    │
// │     reachable from the root namespace), e.g. `lan.runNode('hub', [BIN, 'status', '--json'])` │
// │     or a one-line fetch run with runNode, and maps its `members` to HubMember (plus bytes,  │
// │     packets, drops and RTT, which the table in demo.ts should then show);                   │
// │  3. the log parsing below stays as the fallback for hubs without a status endpoint.         │
// └──────────────────────────────────────────────────────────────────────────────────────────────┘

/**
 * The members the hub currently has, from its log lines (`member X joined from Y; ...` and
 * `member X (Y) left: ...`), in the order they joined.
 */
export function hubViewFromLog(lines: readonly string[]): HubView {
  const members = new Map<string, HubMember>();
  const drops: Record<string, number> = {};
  for (const line of lines) {
    const dropped = /\bdropped \d+ packets? \(([^)]*)\) at /.exec(line);
    if (dropped !== null) {
      for (const part of dropped[1]!.split(', ')) {
        const m = /^(\S+) (\d+)$/.exec(part);
        if (m !== null) drops[m[1]!] = (drops[m[1]!] ?? 0) + Number(m[2]);
      }
      continue;
    }
    const joined = /^(\S+)\s+INFO\s+member (\S+) joined from (\S+?)(?: \(|;|$)/.exec(line);
    if (joined !== null) {
      members.delete(joined[2]!);
      members.set(joined[2]!, { address: joined[2]!, remote: joined[3]!, since: joined[1] });
      continue;
    }
    const left = /\bmember (\S+) \((\S+)\) left:/.exec(line);
    if (left !== null && members.get(left[1]!)?.remote === left[2]) members.delete(left[1]!);
  }
  return { source: "the hub's log lines, until the status endpoint exists", members: [...members.values()], drops };
}
