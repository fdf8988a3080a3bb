// The package version, read once from package.json.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The package root (the folder holding package.json), from this compiled file's place in dist/src. */
export const PACKAGE_ROOT: string = fileURLToPath(new URL('../../', import.meta.url));

/** This program's version. */
export const VERSION: string = (JSON.parse(readFileSync(`${PACKAGE_ROOT}package.json`, 'utf8')) as { version: string }).version;
