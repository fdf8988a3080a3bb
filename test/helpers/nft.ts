// nftables from tests, inside the lab's namespaces only.
import type { ExecutionContext } from 'ava';
import { NFT_BIN, type Lab, type LabProcess } from './lab.js';
import { DEADLINE_MS } from './wait.js';

/**
 * An `nft -i` kept running in a namespace: a command takes effect without a process start (which
 * alone can take half a second on a loaded machine), so when it did is known to a few ms.
 */
export class NftShell {
  private constructor(private readonly p: LabProcess) {}

  /** Starts `nft -i` in `host`'s namespace with an empty table `inet lwtsync` to list after each command. */
  static async start(t: ExecutionContext, lab: Lab, host: string): Promise<NftShell> {
    if (NFT_BIN === undefined) throw new Error('nftables is not installed (.ci/run installs it)');
    const shell = new NftShell(lab.host(host).spawn(NFT_BIN, ['-i'], { stdin: 'pipe', label: `${host}:nft` }));
    await shell.run(t, 'add table inet lwtsync');
    return shell;
  }

  /** Runs one line (one transaction); resolves with the clock when it was written and when nft had done it. */
  async run(t: ExecutionContext, line: string): Promise<{ readonly before: number; readonly after: number }> {
    const errors = this.p.stderr.length;
    const done = this.p.waitForLine(/^table inet lwtsync \{/, DEADLINE_MS, { after: this.p.mark() });
    const before = Date.now();
    this.p.write(`${line}\nlist table inet lwtsync\n`);
    await done;
    const after = Date.now();
    if (this.p.stderr.length > errors) t.fail(`nft refused ${line}:\n${this.p.stderr.slice(errors).join('\n')}`);
    return { before, after };
  }
}
