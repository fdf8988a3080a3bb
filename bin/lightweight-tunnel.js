#!/usr/bin/env node
// The lightweight-tunnel command: see `lightweight-tunnel --help`.
import { run } from '../dist/src/cli.js';

process.exitCode = await run(process.argv.slice(2));
