// Loading the project's own native addons (build/Release/*.node, built by `node-gyp rebuild` at
// install time from binding.gyp).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Path of addon `name` (e.g. 'lwt_tun'): the package root is the nearest ancestor holding
 * package.json (src/ and dist/src/ both work); the first one that also holds the built addon wins. */
export function findAddon(name: string): string {
  const relative = path.join('build', 'Release', `${name}.node`);
  let dir = path.dirname(fileURLToPath(import.meta.url));
  let firstRoot: string | undefined;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) {
      firstRoot ??= dir;
      const candidate = path.join(dir, relative);
      if (fs.existsSync(candidate)) return candidate;
    }
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return path.join(firstRoot ?? process.cwd(), relative);
}

/** Loads addon `name`; `failed(file, err)` builds the error to throw when it cannot be loaded. */
export function loadAddon<T>(name: string, failed: (file: string, err: unknown) => Error): T {
  const file = findAddon(name);
  try {
    return createRequire(import.meta.url)(file) as T;
  } catch (err) {
    throw failed(file, err);
  }
}
