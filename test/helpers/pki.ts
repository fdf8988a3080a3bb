/**
 * A throwaway PKI for TLS tests, made with the `openssl` command in a temporary directory.
 *
 *   const pki = await createPki({ hubIp: lab.host('hub').ip });
 *   t.teardown(() => pki.dispose());
 *   startHub(lab, ['-tls', '-tls-cert', pki.hub.cert, '-tls-key', pki.hub.key]);
 *
 * What it holds (all keys EC P-256 with a named curve, PEM; certificates valid for two days):
 * - `ca`: the CA that signed the hub's certificate (what clients pass to -tls-ca);
 * - `hub`: the hub's certificate, CN hub.lan, subjectAltName IP:<hubIp> and DNS:hub.lan;
 * - `clientCa`: the CA of client certificates (what the hub passes to -tls-client-ca);
 * - `alice`, `bob`: client certificates with CN alice and bob, signed by `clientCa`;
 * - `rogueCa`: a second, unrelated CA, and `rogueAlice`: a client certificate with CN alice that
 *   it signed (an impostor), plus `rogueHub`: a hub certificate for the same names signed by it;
 * - with `clusterHubs` ({name: ip}), `clusterHub(name)`: a certificate per hub of a cluster signed by
 *   `ca`, CN the hub's name, subjectAltName IP:<ip>, for server and client authentication (the
 *   trunks' mutual TLS), and with `clusterClients` (names), `clusterClient(name)`: client
 *   certificates signed by `ca` too (members of hubs whose -tls-client-ca is `ca`);
 * - with `rsaHub: true`, `hubRsa`: the hub's certificate again with an RSA 2048 key (signed by `ca`),
 *   for tests of the RSA cipher suites.
 *
 * The directory is world-readable and so are the certificates; keys are 0600, so a process that
 * is not root cannot read them (used to test an unreadable key).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEADLINE_MS } from './wait.js';

/** Paths of a certificate and its private key. */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

export interface Pki {
  /** The temporary directory holding everything. */
  readonly dir: string;
  readonly ca: CertFiles;
  readonly hub: CertFiles;
  readonly clientCa: CertFiles;
  readonly alice: CertFiles;
  readonly bob: CertFiles;
  readonly rogueCa: CertFiles;
  readonly rogueAlice: CertFiles;
  readonly rogueHub: CertFiles;
  /** A cluster hub's certificate (options.clusterHubs), or a cluster member's (options.clusterClients). */
  clusterHub(name: string): CertFiles;
  clusterClient(name: string): CertFiles;
  /** The hub's certificate with an RSA key, when asked for with `rsaHub`. */
  readonly hubRsa: CertFiles | undefined;
  /** Reads a file of the PKI as text. */
  read(file: string): string;
  /** Removes the directory (idempotent). */
  dispose(): void;
}

export interface PkiOptions {
  /** The hub's underlay address, put in its certificate as IP subjectAltName. */
  readonly hubIp: string;
  /** The hub's DNS name (subjectAltName DNS and CN); default hub.lan. */
  readonly hubName?: string;
  /** Also make `hubRsa` (RSA key generation is slow, so only tests of RSA suites ask for it). */
  readonly rsaHub?: boolean;
  /** Hubs of a cluster to make certificates for: name → underlay IPv4 address. */
  readonly clusterHubs?: Readonly<Record<string, string>>;
  /** Members of such hubs to make client certificates for (signed by `ca`). */
  readonly clusterClients?: readonly string[];
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-pkeyopt', 'ec_param_enc:named_curve', '-nodes'];
const RSA_KEY = ['-newkey', 'rsa:2048', '-nodes'];

function openssl(args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: DEADLINE_MS, env: { ...process.env, OPENSSL_CONF: path.join(cwd, 'openssl.cnf') } }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
  });
}

/** Generates the PKI; rejects (after removing the directory) if openssl fails. */
export async function createPki(options: PkiOptions): Promise<Pki> {
  const hubName = options.hubName ?? 'hub.lan';
  if (!/^[\d.]+$/.test(options.hubIp)) throw new Error(`createPki: hubIp must be an IPv4 address, got ${options.hubIp}`);
  if (!/^[a-z0-9.-]+$/i.test(hubName)) throw new Error(`createPki: bad hub name ${hubName}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lwt-pki-'));
  let disposed = false;
  const dispose = (): void => {
    if (disposed) return;
    disposed = true;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    fs.chmodSync(dir, 0o755);
    fs.writeFileSync(
      path.join(dir, 'openssl.cnf'),
      [
        '[req]',
        'distinguished_name = dn',
        'prompt = no',
        '[dn]',
        'CN = placeholder',
        '[v3_ca]',
        'basicConstraints = critical,CA:TRUE',
        'keyUsage = critical,keyCertSign,cRLSign',
        'subjectKeyIdentifier = hash',
        '[v3_server]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature',
        'extendedKeyUsage = serverAuth',
        'subjectAltName = @alt',
        // An RSA server certificate usually allows key encipherment too (static-RSA key exchange),
        // so that a refused static-RSA suite is refused by the cipher list, not by the certificate.
        '[v3_server_rsa]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage = serverAuth',
        'subjectAltName = @alt',
        '[alt]',
        `IP.1 = ${options.hubIp}`,
        `DNS.1 = ${hubName}`,
        '[v3_client]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature',
        'extendedKeyUsage = clientAuth',
        ...Object.entries(options.clusterHubs ?? {}).flatMap(([name, ip]) => [
          `[v3_hub_${name}]`,
          'basicConstraints = critical,CA:FALSE',
          'keyUsage = critical,digitalSignature',
          'extendedKeyUsage = serverAuth,clientAuth',
          `subjectAltName = IP:${ip},DNS:${name}`,
        ]),
        '',
      ].join('\n'),
    );
    const files = (name: string): CertFiles => ({ cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) });
    const makeCa = (name: string, cn: string): Promise<void> =>
      openssl(['req', '-x509', '-config', 'openssl.cnf', '-extensions', 'v3_ca', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${cn}`], dir);
    const makeLeaf = async (name: string, cn: string, ca: string, ext: string, key = EC_KEY): Promise<void> => {
      await openssl(['req', '-new', '-config', 'openssl.cnf', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
      await openssl(
        ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-extfile', 'openssl.cnf', '-extensions', ext, '-out', `${name}.crt`],
        dir,
      );
    };
    await Promise.all([makeCa('ca', 'lwt test hub CA'), makeCa('client-ca', 'lwt test client CA'), makeCa('rogue-ca', 'lwt unrelated CA')]);
    await Promise.all([
      makeLeaf('hub', hubName, 'ca', 'v3_server'),
      makeLeaf('alice', 'alice', 'client-ca', 'v3_client'),
      makeLeaf('bob', 'bob', 'client-ca', 'v3_client'),
      makeLeaf('rogue-alice', 'alice', 'rogue-ca', 'v3_client'),
      makeLeaf('rogue-hub', hubName, 'rogue-ca', 'v3_server'),
      ...(options.rsaHub === true ? [makeLeaf('hub-rsa', hubName, 'ca', 'v3_server_rsa', RSA_KEY)] : []),
      ...Object.keys(options.clusterHubs ?? {}).map((name) => makeLeaf(`cluster-hub-${name}`, name, 'ca', `v3_hub_${name}`)),
      ...(options.clusterClients ?? []).map((name) => makeLeaf(`cluster-client-${name}`, name, 'ca', 'v3_client')),
    ]);
    for (const f of fs.readdirSync(dir)) {
      const p = path.join(dir, f);
      if (f.endsWith('.csr')) fs.rmSync(p);
      else fs.chmodSync(p, f.endsWith('.key') ? 0o600 : 0o644);
    }
    return {
      dir,
      ca: files('ca'),
      hub: files('hub'),
      clientCa: files('client-ca'),
      alice: files('alice'),
      bob: files('bob'),
      rogueCa: files('rogue-ca'),
      rogueAlice: files('rogue-alice'),
      rogueHub: files('rogue-hub'),
      hubRsa: options.rsaHub === true ? files('hub-rsa') : undefined,
      clusterHub: (name) => files(`cluster-hub-${name}`),
      clusterClient: (name) => files(`cluster-client-${name}`),
      read: (file) => fs.readFileSync(path.isAbsolute(file) ? file : path.join(dir, file), 'utf8'),
      dispose,
    };
  } catch (err) {
    dispose();
    throw err;
  }
}
