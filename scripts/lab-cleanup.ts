/**
 * Removes network namespaces left behind by test labs (test/helpers/lab.ts).
 *
 *   node dist/scripts/lab-cleanup.js [--prefix lwt] [--force] [--dry-run]
 *
 * By default only labs whose owning test process is gone are removed; labs of
 * test runs still in progress are skipped unless --force is given.
 */
import { cleanupLabs, DEFAULT_PREFIX } from '../test/helpers/lab.js';

function main(argv: string[]): number {
  let prefix = DEFAULT_PREFIX;
  let force = false;
  let dryRun = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--prefix' && argv[i + 1] !== undefined) prefix = argv[++i]!;
    else if (a?.startsWith('--prefix=')) prefix = a.slice('--prefix='.length);
    else if (a === '--force') force = true;
    else if (a === '--dry-run' || a === '-n') dryRun = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: lab-cleanup [--prefix lwt] [--force] [--dry-run]\n');
      return 0;
    } else {
      process.stderr.write(`lab-cleanup: unknown argument ${a}\n`);
      return 2;
    }
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('lab-cleanup: must run as root\n');
    return 1;
  }
  const report = cleanupLabs({ prefix, force, dryRun });
  for (const ns of report.removed) process.stdout.write(`${dryRun ? 'would remove' : 'removed'} ${ns}\n`);
  for (const ns of report.skipped) process.stdout.write(`skipped ${ns} (owner process alive; use --force)\n`);
  if (report.removed.length === 0 && report.skipped.length === 0) {
    process.stdout.write(`no lab namespaces with prefix ${prefix}-\n`);
  }
  return 0;
}

process.exitCode = main(process.argv.slice(2));
