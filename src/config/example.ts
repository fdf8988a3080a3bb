// Example config files (`-g FILE`) and the key table shared by --help and the docs.

import {
  ConfigFields,
  CONFIG_KEYS,
  DEFAULT_JSON,
  KEY_INFO,
  type Config,
  type ConfigJson,
  type ConfigKey,
  type KeyGroup,
} from './schema.js';

/** One row of the key table. */
export interface KeyDescription {
  /** The JSON key. */
  readonly key: ConfigKey;
  /** The flags as help shows them, e.g. "-l, --listen ADDR" or "-tls". */
  readonly flag: string;
  /** The default in JSON syntax, or a phrase when there is none. */
  readonly default: string;
  /** One sentence. */
  readonly meaning: string;
  /** Which mode reads the key. */
  readonly appliesTo: 'both' | 'server' | 'client';
  readonly group: KeyGroup;
}

/** The flags of a key as help shows them: the Go spelling with one dash, aliases with two. */
export const flagUsage = (key: ConfigKey): string => {
  const info = KEY_INFO[key];
  const names = info.flags.map((name, i) => (i === 0 ? `-${name}` : `--${name}`)).join(', ');
  return info.metavar === undefined ? names : `${names} ${info.metavar}`;
};

/** Every config key in table order with its flag, default and meaning. */
export const describeKeys = (): KeyDescription[] =>
  CONFIG_KEYS.map((key) => {
    const info = KEY_INFO[key];
    return {
      key,
      flag: flagUsage(key),
      default: info.defaultText ?? JSON.stringify(DEFAULT_JSON[key]),
      meaning: info.meaning,
      appliesTo: info.appliesTo,
      group: info.group,
    };
  });

/** A Config's JSON form: every key, except `tunnel_addr` for a client whose address the hub assigns. */
export type EncodedConfig = Omit<ConfigJson, 'tunnel_addr'> & { readonly tunnel_addr?: string };

/** A resolved Config back in its JSON form (`remote_addr` is "" when unset); decodes to the same Config. */
export const encodeConfig = (config: Config): EncodedConfig => {
  const json: Record<string, unknown> = {};
  const all = ConfigFields.encode(config) as Record<string, unknown>;
  for (const key of CONFIG_KEYS) json[key] = all[key];
  if (config.mode === 'client' && config.assign_address) delete json.tunnel_addr;
  return json as EncodedConfig;
};

const render = (json: ConfigJson, mode: 'server' | 'client'): string => {
  const picked: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    const info = KEY_INFO[key];
    if (info.appliesTo !== 'both' && info.appliesTo !== mode) continue;
    // JSON has no comments; the decoder ignores keys starting with "//", so each key gets one.
    picked[`// ${key}`] = `${info.meaning} Default: ${info.defaultText ?? JSON.stringify(DEFAULT_JSON[key])}.`;
    picked[key] = json[key];
  }
  return `${JSON.stringify(picked, null, 2)}\n`;
};

/**
 * The two files `-g FILE` writes: `server` to FILE, `client` to FILE.client. Each lists every key
 * its mode reads, at its default, each after a `"// key"` comment entry (meaning and default), so it
 * documents itself; each decodes without errors or warnings.
 * The client's `remote_addr` is a placeholder to replace with the server's address.
 */
export const exampleConfigs = (): { server: string; client: string } => ({
  server: render({ ...DEFAULT_JSON, mode: 'server' }, 'server'),
  client: render({ ...DEFAULT_JSON, mode: 'client', remote_addr: 'vpn.example.com:9000', tunnel_addr: '10.0.0.2/24' }, 'client'),
});
