// Driver: TLS listener and dialer. TLS 1.2 at least (1.3 preferred: Node negotiates the highest
// both sides offer), and TLS 1.2 only with forward-secret AEAD suites (TLS_CIPHERS); the client
// verifies the hub's certificate unless told to skip.
import { X509Certificate } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Observable } from 'rxjs';
import { isAddress } from '../../operators/core/address.js';
import type { ConnectionPort, DialerPort, HandshakeFailure, ListenerEvent, ListenerPort } from '../../pipelines/ports.js';
import { SOCKET_HIGH_WATER_MARK, admitPending, dialSocket, listen, remoteOf, socketConnection } from './net.js';
import { PendingConnections, type PendingLimits, type RefusedEvent } from './pending.js';

/** A TLS handshake that takes longer fails. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * The cipher suites of the hub and the dialer. TLS 1.3: Node's defaults, unchanged (they must be in
 * the list, or Node caps the context at TLS 1.2). TLS 1.2: only ECDHE key exchange with AEAD
 * ciphers. Node's default list also takes static-RSA suites such as AES128-SHA, whose recorded
 * traffic anyone who later obtains the hub's key can decrypt (no forward secrecy), and CBC suites.
 */
export const TLS_CIPHERS = [
  ...tls.DEFAULT_CIPHERS.split(':').filter((suite) => suite.startsWith('TLS_')),
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Where a TLS hub listens, its PEM material and its caps. */
export interface TlsListenerOptions {
  readonly host: string;
  readonly port: number;
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** When set, clients must present a certificate signed by one of these CAs (mutual TLS). */
  readonly clientCa?: string | Buffer;
  /** Caps on connections not admitted yet; DEFAULT_PENDING_LIMITS when absent. */
  readonly pending?: PendingLimits;
}

/** Builds (and so checks) the hub's secure context: throws TlsSetupError with a clear message. */
export function hubSecureContext(options: Pick<TlsListenerOptions, 'cert' | 'key' | 'clientCa'>): tls.SecureContext {
  return secureContext({ cert: options.cert, key: options.key, ca: options.clientCa, minVersion: 'TLSv1.2', ciphers: TLS_CIPHERS });
}

function secureContext(options: tls.SecureContextOptions): tls.SecureContext {
  try {
    return tls.createSecureContext(options);
  } catch (err) {
    throw new TlsSetupError(explainSetupError(err));
  }
}

/** A TLS configuration that cannot work (unreadable PEM, key not matching the certificate, ...). */
export class TlsSetupError extends Error {
  override readonly name = 'TlsSetupError';
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----/g;
const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?(?:-----END CERTIFICATE-----|(?=-----BEGIN )|$)/g;
const CERTIFICATE_END = '-----END CERTIFICATE-----';

/**
 * The certificates of a PEM file (a CA bundle, a certificate with its chain); throws TlsSetupError
 * with what the file holds instead ("is empty", "holds a private key, not a certificate", ...)
 * unless it has at least one CERTIFICATE block and every one parses. Node skips what it cannot
 * read in a CA file without a word, so a hub would start and refuse every client, and a client
 * would retry forever: this check makes such a file a start-up error.
 */
export function pemCertificates(contents: string | Buffer): X509Certificate[] {
  const bytes = typeof contents === 'string' ? Buffer.from(contents, 'utf8') : contents;
  const text = bytes.toString('latin1');
  const blocks = text.match(CERTIFICATE_BLOCK) ?? [];
  if (blocks.length === 0) {
    if (text.trim() === '') throw new TlsSetupError('is empty; expected PEM certificates ("-----BEGIN CERTIFICATE-----" blocks)');
    if (bytes[0] === 0x30 && parses(bytes)) {
      throw new TlsSetupError('is a DER (binary) certificate; expected PEM (convert it: openssl x509 -inform der -in FILE -out FILE.pem)');
    }
    const kinds = [...new Set([...text.matchAll(PEM_BLOCK)].map((m) => m[1] ?? ''))];
    if (kinds.some((k) => k.endsWith('PRIVATE KEY'))) throw new TlsSetupError('holds a private key, not a certificate (was the key file given in its place?)');
    if (kinds.length > 0) throw new TlsSetupError(`holds no certificate, only PEM blocks of type ${kinds.join(', ')}`);
    throw new TlsSetupError('holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line)');
  }
  return blocks.map((block, i) => {
    const which = blocks.length === 1 ? 'its certificate' : `certificate ${i + 1} of ${blocks.length}`;
    if (!block.endsWith(CERTIFICATE_END)) throw new TlsSetupError(`${which} has no "${CERTIFICATE_END}" line`);
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new TlsSetupError(`${which} does not parse (${(err as Error).message})`);
    }
  });
}

const parses = (der: Buffer): boolean => {
  try {
    new X509Certificate(der);
    return true;
  } catch {
    return false;
  }
};

function explainSetupError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const msg = e.message ?? String(err);
  if (/key values mismatch/i.test(msg)) return 'the private key does not match the certificate (tls_key_file belongs to another certificate)';
  if (/no start line|bad base64|PEM/i.test(msg)) return `a TLS file is not valid PEM (${msg})`;
  return msg;
}

/** What a hub's TLS server reports: verified connections, failed handshakes and refused connections. */
export interface HubServerHandlers {
  /** A connection whose handshake (and client certificate, when required) passed; it stays pending until `admitted` runs or it closes. */
  connection(socket: tls.TLSSocket, peerIdentity: string | undefined, admitted: () => void): void;
  /** A connection that never completed the TLS handshake (its socket is already destroyed). */
  handshakeFailed(remote: string, reason: HandshakeFailure, detail: string): void;
  /** A connection closed at accept, before any TLS, because it would exceed a cap of `pending`. */
  refused(e: RefusedEvent): void;
}

/**
 * The hub's server (not listening yet): a TCP server that counts each accepted connection in
 * `pending` (destroying those over a cap before any TLS) and hands the others to a TLS server: TLS
 * 1.2 at least with TLS_CIPHERS, client certificates checked against `clientCa` when set, failed handshakes
 * classified. Shared by makeTlsListener and the TLS worker thread (tls-worker-thread.ts), so both
 * accept, count and refuse exactly the same clients.
 */
export function createHubServer(options: Omit<TlsListenerOptions, 'host' | 'port' | 'pending'>, on: HubServerHandlers, pending: PendingConnections): net.Server {
  // tls.createServer builds its own context from these (it ignores a `secureContext` option).
  const server = tls.createServer({
    cert: options.cert,
    key: options.key,
    ...(options.clientCa === undefined ? {} : { ca: options.clientCa }),
    minVersion: 'TLSv1.2',
    ciphers: TLS_CIPHERS,
    requestCert: options.clientCa !== undefined,
    // Client certificates are checked in 'secureConnection' below, where the reason is known;
    // with rejectUnauthorized Node resets the socket and the reason is lost.
    rejectUnauthorized: false,
    handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
  });
  // What the TLS socket lost (a failed handshake's address) or cannot carry, by its TCP socket.
  const accepted = new WeakMap<object, { readonly remote: string; readonly release: () => void }>();
  const rawOf = (socket: tls.TLSSocket): object | undefined => (socket as unknown as { _parent?: object })._parent;
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    const raw = rawOf(socket);
    const release = (raw && accepted.get(raw)?.release) ?? (() => undefined);
    if (options.clientCa !== undefined && !socket.authorized) {
      const remote = remoteOf(socket);
      const why = socket.authorizationError;
      const presented = Object.keys(socket.getPeerCertificate()).length > 0;
      socket.destroy();
      const detail = !presented
        ? 'the client presented no certificate, and this hub requires one (-tls-client-ca)'
        : /UNABLE_TO_GET_ISSUER_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to (get|verify)|self.signed|SELF_SIGNED/i.test(String(why))
          ? `the client certificate is not signed by the hub's client CA (${String(why)})`
          : `the client certificate was not accepted (${String(why)})`;
      on.handshakeFailed(remote, 'tls-error', detail);
      return;
    }
    on.connection(socket, options.clientCa !== undefined ? commonName(socket.getPeerCertificate()) : undefined, release);
  });
  server.on('tlsClientError', (err: Error & { code?: string }, socket: tls.TLSSocket) => {
    const raw = rawOf(socket);
    const remote = (raw && accepted.get(raw)?.remote) ?? remoteOf(socket);
    socket.destroy();
    const { reason, detail } = classifyHandshakeError(err);
    on.handshakeFailed(remote, reason, detail);
  });
  // The listening socket is plain TCP: a connection over a cap never reaches TLS.
  const front = net.createServer({ noDelay: true, highWaterMark: SOCKET_HIGH_WATER_MARK });
  front.on('connection', (raw: net.Socket) => {
    const release = admitPending(pending, raw, on.refused);
    if (release === undefined) return;
    raw.once('close', release);
    accepted.set(raw, { remote: remoteOf(raw), release });
    server.emit('connection', raw);
  });
  return front;
}

/**
 * A TLS listener. Like makeNetListener (pending connections counted from the TCP accept, those over
 * `options.pending` refused before any TLS), plus `handshake-failed` events for connections that
 * never complete the TLS handshake: plaintext clients (`not-tls`), bad or missing client
 * certificates (`tls-error`), and handshakes slower than TLS_HANDSHAKE_TIMEOUT_MS. Verified client
 * certificates give the connection a `peerIdentity` (the certificate's common name).
 */
export function makeTlsListener(options: TlsListenerOptions): ListenerPort {
  const pending = new PendingConnections(options.pending);
  return {
    pending: () => pending.count,
    events$: new Observable<ListenerEvent>((subscriber) => {
      let nextId = 1;
      hubSecureContext(options); // fails early with a clear TlsSetupError
      const server = createHubServer(
        options,
        {
          connection: (socket, cn, admitted) => {
            const connection = socketConnection(socket, nextId++, undefined, admitted);
            subscriber.next({ type: 'connection', connection: cn === undefined ? connection : withIdentity(connection, cn) });
          },
          handshakeFailed: (remote, reason, detail) => subscriber.next({ type: 'handshake-failed', remote, reason, detail }),
          refused: (e) => subscriber.next(e),
        },
        pending,
      );
      return listen(server, options, subscriber);
    }),
  };
}

function withIdentity(connection: ConnectionPort, peerIdentity: string): ConnectionPort {
  return Object.defineProperties(Object.create(connection) as ConnectionPort, {
    peerIdentity: { value: peerIdentity, enumerable: true },
  });
}

function commonName(cert: tls.PeerCertificate): string | undefined {
  const cn = cert.subject?.CN as string | string[] | undefined;
  return Array.isArray(cn) ? cn[0] : cn;
}

/** Maps a handshake failure to a reason and a sentence that says what is wrong. */
export function classifyHandshakeError(err: Error & { code?: string }): { reason: HandshakeFailure; detail: string } {
  const code = err.code ?? '';
  const msg = err.message;
  if (/timed out|TIMEOUT/i.test(msg) || code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
    return { reason: 'handshake-timeout', detail: `TLS handshake not finished within ${TLS_HANDSHAKE_TIMEOUT_MS / 1000} s` };
  }
  if (/wrong version number|http request|unknown protocol|packet length too long|record layer failure/i.test(msg)) {
    return { reason: 'not-tls', detail: 'the client does not speak TLS (is it missing -tls?)' };
  }
  if (/peer did not return a certificate|certificate required/i.test(msg)) {
    return { reason: 'tls-error', detail: 'the client presented no certificate, and this hub requires one (-tls-client-ca)' };
  }
  if (/socket hang up|ECONNRESET/i.test(msg)) {
    return { reason: 'tls-error', detail: "the client hung up during the TLS handshake (it may not trust this hub's certificate: see its log)" };
  }
  if (/certificate|unknown ca|verify/i.test(msg)) {
    return { reason: 'tls-error', detail: `the client certificate was not accepted (${msg.trim()})` };
  }
  return { reason: 'tls-error', detail: msg.trim() || code };
}

/** What a TLS client needs. */
export interface TlsDialerOptions {
  readonly connectTimeoutMs: number;
  /** CAs to verify the hub against; the system's CAs when undefined. */
  readonly ca?: string | Buffer;
  /** The name the hub's certificate must carry; the dialed host when undefined. */
  readonly serverName?: string;
  /** Accept any certificate (tests only). */
  readonly skipVerify: boolean;
  /** Client certificate and key for hubs that require one. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

/**
 * Outgoing TLS connections; the host name is resolved on every dial, the handshake is bounded by
 * connectTimeoutMs. Throws TlsSetupError at once for a client certificate or key that cannot work
 * (rather than failing every dial, which a client would retry forever).
 */
export function makeTlsDialer(options: TlsDialerOptions): DialerPort {
  secureContext({ ca: options.ca, cert: options.cert, key: options.key, minVersion: 'TLSv1.2', ciphers: TLS_CIPHERS });
  let nextId = 1;
  return {
    dial: (host, port, name) => {
      const isIp = isAddress(host);
      // The name the certificate must carry: -tls-server-name, else the name the address came from, else the host dialed.
      const expected = options.serverName ?? name;
      return dialSocket(
        (reads) =>
          tls.connect({
            host,
            port,
            // The decrypted stream is read into the process's shared buffer (see sharedReads).
            ...(reads === undefined ? {} : { onread: reads.onread }),
            servername: expected ?? (isIp ? undefined : host),
            ca: options.ca,
            cert: options.cert,
            key: options.key,
            rejectUnauthorized: !options.skipVerify,
            minVersion: 'TLSv1.2',
            ciphers: TLS_CIPHERS,
            // Node asserts when this option is present but undefined, so it is only set when needed.
            ...(expected !== undefined && isIp
              ? { checkServerIdentity: (_h: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(expected, cert) }
              : {}),
          }),
        'secureConnect',
        { label: `${name === undefined ? '' : `${name} `}${host}:${port} (TLS)`, timeoutMs: options.connectTimeoutMs, nextId: () => nextId++, explain: explainDialError, sharedReads: true },
      );
    },
  };
}

function explainDialError(err: Error & { code?: string }): Error {
  const msg = err.message;
  let hint: string | undefined;
  if (/wrong version number|packet length too long|unknown protocol/i.test(msg)) hint = 'the hub does not speak TLS (is it running without -tls?)';
  else if (/socket disconnected before secure TLS connection|ECONNRESET/i.test(msg) && err.code !== 'ECONNREFUSED') hint = 'the hub closed the connection during the TLS handshake (does it run without -tls, or require a client certificate?)';
  else if (err.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || err.code === 'SELF_SIGNED_CERT_IN_CHAIN' || err.code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || /self.signed|unable to (get|verify)/i.test(msg))
    hint = "the hub's certificate is not signed by a CA this client trusts (give the hub's CA with -tls-ca)";
  else if (err.code === 'ERR_TLS_CERT_ALTNAME_INVALID') hint = "the hub's certificate does not carry the name dialed (use -tls-server-name NAME)";
  else if (err.code === 'CERT_HAS_EXPIRED') hint = "the hub's certificate has expired";
  if (hint === undefined) return err;
  return Object.assign(new Error(`${msg}: ${hint}`), { code: err.code });
}
