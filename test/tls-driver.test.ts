// Contract tests of the TLS driver (src/drivers/tls.ts) over real loopback sockets, with a
// throwaway PKI made by openssl (helpers/pki.ts).
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { firstValueFrom } from 'rxjs';
import { TLS_CIPHERS, TlsSetupError, hubSecureContext, makeTlsDialer, makeTlsListener, pemCertificates, type TlsDialerOptions, type TlsListenerOptions } from '../src/drivers/tls.js';
import type { ConnectionPort } from '../pipelines/ports.js';
import { collect, listening, type Listening } from './helpers/listening.js';
import { createPki, type Pki } from './helpers/pki.js';
import { DEADLINE_MS, SLACK_MS, sleep } from './helpers/wait.js';

const LOOPBACK = '127.0.0.1';

let pki: Pki;
test.before(async () => {
  pki = await createPki({ hubIp: LOOPBACK, rsaHub: true });
});
test.after.always(() => pki?.dispose());

const pem = (file: string): string => pki.read(file);
const hubMaterial = (): Pick<TlsListenerOptions, 'cert' | 'key'> => ({ cert: pem(pki.hub.cert), key: pem(pki.hub.key) });

/** A TLS listener on loopback with `options`, on any free port. */
function listen(t: ExecutionContext, options: Omit<TlsListenerOptions, 'host' | 'port'>): Promise<Listening> {
  return listening(t, makeTlsListener({ host: LOOPBACK, port: 0, ...options }));
}


const dialer = (o: Partial<TlsDialerOptions> = {}): ReturnType<typeof makeTlsDialer> => makeTlsDialer({ connectTimeoutMs: DEADLINE_MS, skipVerify: false, ...o });

async function dial(t: ExecutionContext, port: number, o: Partial<TlsDialerOptions> = {}, host = LOOPBACK): Promise<ConnectionPort> {
  const conn = await firstValueFrom(dialer(o).dial(host, port));
  t.teardown(() => conn.close());
  return conn;
}

async function dialError(port: number, o: Partial<TlsDialerOptions> = {}, host = LOOPBACK): Promise<Error & { code?: string }> {
  try {
    const conn = await firstValueFrom(dialer(o).dial(host, port));
    conn.close();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('the dial succeeded');
}

/** A raw TLS client (for what the dialer does not expose); resolves once the handshake finished or failed. */
function rawTls(t: ExecutionContext, port: number, o: tls.ConnectionOptions): Promise<{ socket: tls.TLSSocket; error?: Error }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: LOOPBACK, port, ca: pem(pki.ca.cert), ...o });
    t.teardown(() => socket.destroy());
    socket.once('secureConnect', () => resolve({ socket }));
    socket.once('error', (error) => resolve({ socket, error }));
  });
}

// ---------------------------------------------------------------------------
// listener and dialer together

test('listener and dialer carry bytes both ways over TLS; without client certificates there is no peerIdentity', async (t) => {
  const hub = await listen(t, hubMaterial());
  const client = await dial(t, hub.port, { ca: pem(pki.ca.cert) });
  const { connection: server } = await hub.next('connection');
  t.is(server.peerIdentity, undefined);
  t.is(client.peerIdentity, undefined);
  t.regex(server.remote, /^127\.0\.0\.1:\d+$/);
  t.is(client.remote, `${LOOPBACK}:${hub.port}`);
  const atServer = collect(t, server);
  const atClient = collect(t, client);
  const up = Buffer.from('hello hub, from the client');
  const down = Buffer.alloc(100_000, 7); // many TLS records
  client.write(up);
  server.write(down);
  t.deepEqual(await atServer.waitFor(up.length), up);
  t.deepEqual(await atClient.waitFor(down.length), down);
  client.close();
  t.is(await atServer.ended, 'complete', 'a graceful close ends the peer stream');
});

test('TLS 1.3 is negotiated by default, 1.2 is accepted, 1.1 is refused', async (t) => {
  const hub = await listen(t, hubMaterial());
  const v13 = await rawTls(t, hub.port, {});
  t.is(v13.error, undefined);
  t.is(v13.socket.getProtocol(), 'TLSv1.3');
  const v12 = await rawTls(t, hub.port, { maxVersion: 'TLSv1.2' });
  t.is(v12.error, undefined);
  t.is(v12.socket.getProtocol(), 'TLSv1.2');
  await hub.next('connection');
  await hub.next('connection');
  const v11 = await rawTls(t, hub.port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
  t.truthy(v11.error, 'a TLS 1.1 client does not get through');
  const failed = await hub.next('handshake-failed');
  t.is(failed.reason, 'tls-error');
  t.deepEqual(hub.pending('connection'), []);
});

test('with a client CA, peerIdentity is the common name of the verified client certificate', async (t) => {
  const hub = await listen(t, { ...hubMaterial(), clientCa: pem(pki.clientCa.cert) });
  const [alice, bob] = await Promise.all([
    dial(t, hub.port, { ca: pem(pki.ca.cert), cert: pem(pki.alice.cert), key: pem(pki.alice.key) }),
    dial(t, hub.port, { ca: pem(pki.ca.cert), cert: pem(pki.bob.cert), key: pem(pki.bob.key) }),
  ]);
  const identities = [(await hub.next('connection')).connection.peerIdentity, (await hub.next('connection')).connection.peerIdentity].sort();
  t.deepEqual(identities, ['alice', 'bob']);
  t.is(alice.peerIdentity, undefined, "the dialer side does not claim the hub's identity");
  t.is(bob.peerIdentity, undefined);
});

// ---------------------------------------------------------------------------
// failed handshakes at the listener

test('a plaintext client gets handshake-failed not-tls, reported with its own address', async (t) => {
  const hub = await listen(t, hubMaterial());
  const socket = net.connect({ host: LOOPBACK, port: hub.port });
  t.teardown(() => socket.destroy());
  socket.on('error', () => undefined);
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const localPort = socket.localPort;
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  // What a plaintext client sends first: a HELLO frame.
  const hello = Buffer.from(JSON.stringify({ version: 1, address: '10.0.0.2' }));
  const frame = Buffer.alloc(5 + hello.length);
  frame.writeUInt32BE(hello.length + 1, 0);
  frame[4] = 0x10;
  hello.copy(frame, 5);
  socket.write(frame);
  const failed = await hub.next('handshake-failed');
  t.is(failed.reason, 'not-tls');
  t.regex(failed.detail, /does not speak TLS.*-tls/);
  t.is(failed.remote, `${LOOPBACK}:${localPort}`);
  await closed;
  t.deepEqual(hub.pending('connection'), []);
});

test('a client without a certificate gets handshake-failed tls-error when the hub requires one', async (t) => {
  const hub = await listen(t, { ...hubMaterial(), clientCa: pem(pki.clientCa.cert) });
  const { socket } = await rawTls(t, hub.port, {});
  socket.on('error', () => undefined);
  const failed = await hub.next('handshake-failed');
  t.is(failed.reason, 'tls-error');
  t.regex(failed.detail, /presented no certificate.*-tls-client-ca/);
  t.is(failed.remote, `${LOOPBACK}:${socket.localPort}`);
  t.deepEqual(hub.pending('connection'), []);
});

test('a client certificate of an unrelated CA is refused in the handshake', async (t) => {
  const hub = await listen(t, { ...hubMaterial(), clientCa: pem(pki.clientCa.cert) });
  const { socket } = await rawTls(t, hub.port, { cert: pem(pki.rogueAlice.cert), key: pem(pki.rogueAlice.key) });
  socket.on('error', () => undefined);
  const failed = await hub.next('handshake-failed');
  t.is(failed.reason, 'tls-error');
  await sleep(100);
  t.deepEqual(hub.pending('connection'), [], 'no connection for an impostor');
});

test('a refused client certificate is reported as not accepted, not as the client hanging up', async (t) => {
  const hub = await listen(t, { ...hubMaterial(), clientCa: pem(pki.clientCa.cert) });
  const { socket } = await rawTls(t, hub.port, { cert: pem(pki.rogueAlice.cert), key: pem(pki.rogueAlice.key) });
  socket.on('error', () => undefined);
  const failed = await hub.next('handshake-failed');
  t.is(failed.reason, 'tls-error');
  t.regex(failed.detail, /client certificate (was not accepted|is not signed by the hub's client CA)/);
  t.notRegex(failed.detail, /hung up/);
});

// ---------------------------------------------------------------------------
// dialer errors

test('dialer: a hub certificate of a CA it does not trust is refused with the -tls-ca hint', async (t) => {
  const hub = await listen(t, hubMaterial());
  const systemCas = await dialError(hub.port);
  t.regex(systemCas.message, /the hub's certificate is not signed by a CA this client trusts \(give the hub's CA with -tls-ca\)/);
  t.truthy(systemCas.code);
  const otherCa = await dialError(hub.port, { ca: pem(pki.rogueCa.cert) });
  t.regex(otherCa.message, /not signed by a CA this client trusts.*-tls-ca/);
  // And the reverse: an impostor hub (certificate for the same names from another CA).
  const impostor = await listen(t, { cert: pem(pki.rogueHub.cert), key: pem(pki.rogueHub.key) });
  const fooled = await dialError(impostor.port, { ca: pem(pki.ca.cert), serverName: 'hub.lan' });
  t.regex(fooled.message, /not signed by a CA this client trusts/);
});

test('dialer: a certificate without the expected name is refused with the -tls-server-name hint; the right name works', async (t) => {
  const hub = await listen(t, hubMaterial());
  const wrong = await dialError(hub.port, { ca: pem(pki.ca.cert), serverName: 'other.lan' });
  t.is(wrong.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  t.regex(wrong.message, /the hub's certificate does not carry the name dialed \(use -tls-server-name NAME\)/);
  // The certificate carries IP:127.0.0.1 and DNS:hub.lan: both are accepted.
  await dial(t, hub.port, { ca: pem(pki.ca.cert) });
  await dial(t, hub.port, { ca: pem(pki.ca.cert), serverName: 'hub.lan' });
  await hub.next('connection');
  await hub.next('connection');
  t.pass();
});

test('dialer: skipVerify connects to a hub it cannot verify', async (t) => {
  const hub = await listen(t, { cert: pem(pki.rogueHub.cert), key: pem(pki.rogueHub.key) });
  const conn = await dial(t, hub.port, { skipVerify: true });
  const { connection } = await hub.next('connection');
  const got = collect(t, connection);
  conn.write(Buffer.from('ok'));
  t.deepEqual(await got.waitFor(2), Buffer.from('ok'));
});

test('dialer: a plaintext hub is reported with the hint that it runs without -tls', async (t) => {
  // A hub without TLS reads the ClientHello as an oversize frame and closes.
  const quiet = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => s.destroy());
  });
  // A 0.0.1-era hub that speaks first (a KEEPALIVE frame): not a TLS record at all.
  const chatty = net.createServer((s) => {
    s.on('error', () => undefined);
    s.write(Buffer.from([0, 0, 0, 1, 2]));
  });
  const ports = await Promise.all(
    [quiet, chatty].map(
      (server) =>
        new Promise<number>((resolve) => {
          t.teardown(() => server.close());
          server.listen(0, LOOPBACK, () => resolve((server.address() as net.AddressInfo).port));
        }),
    ),
  );
  const closed = await dialError(ports[0]!, { ca: pem(pki.ca.cert) });
  t.regex(closed.message, /does it run without -tls/);
  const garbled = await dialError(ports[1]!, { ca: pem(pki.ca.cert) });
  t.regex(garbled.message, /: the hub does not speak TLS \(is it running without -tls\?\)$/);
});

test('dialer: a hub that never completes the handshake times out after connectTimeoutMs', async (t) => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => {
    s.on('error', () => undefined);
    sockets.push(s);
  });
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const port = await new Promise<number>((resolve) => silent.listen(0, LOOPBACK, () => resolve((silent.address() as net.AddressInfo).port)));
  const started = Date.now();
  const err = await dialError(port, { ca: pem(pki.ca.cert), connectTimeoutMs: 300 });
  const took = Date.now() - started;
  t.is(err.code, 'ETIMEDOUT');
  t.regex(err.message, /timed out after 0\.3 s/);
  t.true(took >= 250 && took < 300 + SLACK_MS, `took ${took} ms`);
});

// ---------------------------------------------------------------------------
// set-up

test('hubSecureContext: a key of another certificate, or a file that is not PEM, throws TlsSetupError with a clear message', (t) => {
  t.notThrows(() => hubSecureContext({ cert: pem(pki.hub.cert), key: pem(pki.hub.key) }));
  t.notThrows(() => hubSecureContext({ cert: pem(pki.hub.cert), key: pem(pki.hub.key), clientCa: pem(pki.clientCa.cert) }));
  const mismatch = t.throws(() => hubSecureContext({ cert: pem(pki.hub.cert), key: pem(pki.bob.key) }), { instanceOf: TlsSetupError });
  t.regex(mismatch?.message ?? '', /does not match/);
  t.is(mismatch?.message, 'the private key does not match the certificate (tls_key_file belongs to another certificate)');
  const garbage = t.throws(() => hubSecureContext({ cert: 'not a certificate', key: pem(pki.hub.key) }), { instanceOf: TlsSetupError });
  t.regex(garbage?.message ?? '', /not valid PEM/);
});

test('the listener fails on subscription with TlsSetupError for bad material, and with EADDRINUSE for a taken port', async (t) => {
  const bad = makeTlsListener({ host: LOOPBACK, port: 0, cert: pem(pki.hub.cert), key: pem(pki.alice.key) });
  const setup = await t.throwsAsync(firstValueFrom(bad.events$), { instanceOf: TlsSetupError });
  t.regex(setup?.message ?? '', /does not match/);
  const taken = await listen(t, hubMaterial());
  const second = makeTlsListener({ host: LOOPBACK, port: taken.port, ...hubMaterial() });
  const inUse = await t.throwsAsync(firstValueFrom(second.events$));
  t.is((inUse as Error & { code?: string }).code, 'EADDRINUSE');
});

// ---------------------------------------------------------------------------
// certificate files

test('pemCertificates returns every certificate of a PEM bundle, whatever else the file holds', (t) => {
  const bundle = `${pem(pki.ca.cert)}\n# comment lines and other PEM blocks are ignored\n${pem(pki.clientCa.cert)}${pem(pki.hub.key)}`;
  const certs = pemCertificates(bundle);
  t.deepEqual(
    certs.map((c) => c.subject),
    ['CN=lwt test hub CA', 'CN=lwt test client CA'],
  );
  t.is(pemCertificates(Buffer.from(pem(pki.hub.cert))).length, 1);
});

const refusesCertificates = test.macro({
  exec(t, contents: () => string | Buffer, expected: string | RegExp) {
    const err = t.throws(() => pemCertificates(contents()), { instanceOf: TlsSetupError });
    if (typeof expected === 'string') t.is(err?.message, expected);
    else t.regex(err?.message ?? '', expected);
  },
  title: (what: string | undefined) => `pemCertificates refuses ${what ?? ''}`,
});

const der = (): Buffer => new X509Certificate(pem(pki.ca.cert)).raw;
const corrupt = (text: string): string => text.replace(/\n[A-Za-z0-9+/]{20}/, '\n!!!!!!!!!!!!!!!!!!!!');

test('an empty file', refusesCertificates, () => '', 'is empty; expected PEM certificates ("-----BEGIN CERTIFICATE-----" blocks)');
test('a file of blank lines', refusesCertificates, () => '\n \r\n\t\n', 'is empty; expected PEM certificates ("-----BEGIN CERTIFICATE-----" blocks)');
test('garbage', refusesCertificates, () => 'this is not a certificate\n', 'holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line)');
test('a private key', refusesCertificates, () => pem(pki.hub.key), 'holds a private key, not a certificate (was the key file given in its place?)');
test(
  'other PEM blocks',
  refusesCertificates,
  () => '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
  'holds no certificate, only PEM blocks of type CERTIFICATE REQUEST',
);
test('a DER certificate', refusesCertificates, der, 'is a DER (binary) certificate; expected PEM (convert it: openssl x509 -inform der -in FILE -out FILE.pem)');
test('random bytes', refusesCertificates, () => Buffer.from([0x30, 0x82, 0xff, 0x00, 0x13, 0x37]), 'holds no PEM certificate (no "-----BEGIN CERTIFICATE-----" line)');
test('a certificate that does not parse', refusesCertificates, () => corrupt(pem(pki.ca.cert)), /^its certificate does not parse \(.+\)$/);
test('a bundle with one certificate that does not parse', refusesCertificates, () => pem(pki.ca.cert) + corrupt(pem(pki.clientCa.cert)), /^certificate 2 of 2 does not parse \(.+\)$/);
test('a truncated certificate', refusesCertificates, () => pem(pki.ca.cert).slice(0, 200), 'its certificate has no "-----END CERTIFICATE-----" line');
test('a certificate cut short before the next one', refusesCertificates, () => pem(pki.ca.cert).slice(0, 200) + pem(pki.clientCa.cert), 'certificate 1 of 2 has no "-----END CERTIFICATE-----" line');

test('makeTlsDialer throws TlsSetupError at once for a client key that does not match its certificate, or a certificate that is not PEM', (t) => {
  t.notThrows(() => dialer({ ca: pem(pki.ca.cert), cert: pem(pki.alice.cert), key: pem(pki.alice.key) }));
  const mismatch = t.throws(() => dialer({ cert: pem(pki.alice.cert), key: pem(pki.bob.key) }), { instanceOf: TlsSetupError });
  t.regex(mismatch?.message ?? '', /does not match/);
  const garbage = t.throws(() => dialer({ cert: 'not a certificate', key: pem(pki.alice.key) }), { instanceOf: TlsSetupError });
  t.regex(garbage?.message ?? '', /not valid PEM/);
});

// ---------------------------------------------------------------------------
// cipher suites

const rsaHubMaterial = (): Pick<TlsListenerOptions, 'cert' | 'key'> => ({ cert: pem(pki.hubRsa!.cert), key: pem(pki.hubRsa!.key) });

/** Connects as a TLS 1.2 client offering only `suite`: the suite agreed on, or the error. */
async function tls12With(t: ExecutionContext, port: number, suite: string): Promise<string | Error> {
  const { socket, error } = await rawTls(t, port, { maxVersion: 'TLSv1.2', ciphers: suite });
  if (error !== undefined) return error;
  t.is(socket.getProtocol(), 'TLSv1.2');
  return socket.getCipher().name;
}

test('TLS_CIPHERS: Node\'s TLS 1.3 suites, and for TLS 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305', (t) => {
  const suites = TLS_CIPHERS.split(':');
  t.deepEqual(
    suites.filter((s) => s.startsWith('TLS_')),
    tls.DEFAULT_CIPHERS.split(':').filter((s) => s.startsWith('TLS_')),
  );
  for (const s of suites.filter((s) => !s.startsWith('TLS_'))) t.regex(s, /^ECDHE-(RSA|ECDSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
  const known = tls.getCiphers().map((c) => c.toUpperCase());
  for (const s of suites) t.true(known.includes(s.toUpperCase()), `${s} is a suite this Node knows`);
});

test('hub with an RSA certificate: TLS 1.2 suites without forward secrecy or with CBC fail the handshake; ECDHE with AEAD and TLS 1.3 work', async (t) => {
  const hub = await listen(t, rsaHubMaterial());
  for (const refused of ['AES128-SHA', 'AES256-GCM-SHA384', 'ECDHE-RSA-AES128-SHA', 'ECDHE-RSA-AES128-SHA256']) {
    const got = await tls12With(t, hub.port, refused);
    t.true(got instanceof Error, `${refused} was agreed on`);
    t.is((await hub.next('handshake-failed')).reason, 'tls-error');
  }
  for (const accepted of ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305']) {
    t.is(await tls12With(t, hub.port, accepted), accepted);
    await hub.next('connection');
  }
  const v13 = await rawTls(t, hub.port, {});
  t.is(v13.error, undefined);
  t.is(v13.socket.getProtocol(), 'TLSv1.3');
  await hub.next('connection');
  t.deepEqual(hub.pending('connection'), []);
});

test('hub with an ECDSA certificate: ECDHE-ECDSA with AEAD works in TLS 1.2, with CBC it fails', async (t) => {
  const hub = await listen(t, hubMaterial());
  for (const refused of ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA384']) {
    t.true((await tls12With(t, hub.port, refused)) instanceof Error, `${refused} was agreed on`);
    t.is((await hub.next('handshake-failed')).reason, 'tls-error');
  }
  for (const accepted of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
    t.is(await tls12With(t, hub.port, accepted), accepted);
    await hub.next('connection');
  }
});

test('dialer: a TLS 1.2 server offering only suites without forward secrecy or with CBC is refused; ECDHE with AES-GCM works', async (t) => {
  const server = async (ciphers: string): Promise<number> => {
    const s = tls.createServer({ ...rsaHubMaterial(), maxVersion: 'TLSv1.2', ciphers }, (socket) => socket.on('error', () => undefined));
    s.on('tlsClientError', () => undefined);
    t.teardown(() => s.close());
    return new Promise((resolve) => s.listen(0, LOOPBACK, () => resolve((s.address() as net.AddressInfo).port)));
  };
  for (const refused of ['AES128-SHA', 'ECDHE-RSA-AES128-SHA']) {
    const err = await dialError(await server(refused), { ca: pem(pki.ca.cert) });
    t.regex(err.message, /handshake failure|no shared cipher|no cipher/i, `${refused}: ${err.message}`);
  }
  const conn = await dial(t, await server('ECDHE-RSA-AES128-GCM-SHA256'), { ca: pem(pki.ca.cert) });
  t.truthy(conn);
});

/** Runs `openssl` with `args` and no input; resolves with its exit code and output, or undefined when openssl is not installed. */
function openssl(args: readonly string[]): Promise<{ code: number; output: string } | undefined> {
  return new Promise((resolve) => {
    const child = execFile('openssl', args, { timeout: DEADLINE_MS }, (err, stdout, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') return resolve(undefined);
      resolve({ code: typeof err?.code === 'number' ? err.code : err ? 1 : 0, output: `${stdout}${stderr}` });
    });
    child.stdin?.end();
  });
}

test('openssl s_client -tls1_2 -cipher AES128-SHA fails against the hub; -cipher ECDHE-RSA-AES128-GCM-SHA256 succeeds', async (t) => {
  const hub = await listen(t, rsaHubMaterial());
  const sClient = (cipher: string): ReturnType<typeof openssl> =>
    openssl(['s_client', '-connect', `${LOOPBACK}:${hub.port}`, '-tls1_2', '-cipher', cipher, '-CAfile', pki.ca.cert, '-verify_return_error']);
  const weak = await sClient('AES128-SHA');
  if (weak === undefined) {
    t.log('openssl is not installed: the s_client check is skipped');
    t.pass();
    return;
  }
  t.not(weak.code, 0, weak.output);
  t.regex(weak.output, /handshake failure|alert/i);
  t.is((await hub.next('handshake-failed')).reason, 'tls-error');
  const strong = await sClient('ECDHE-RSA-AES128-GCM-SHA256');
  t.is(strong?.code, 0, strong?.output);
  t.regex(strong?.output ?? '', /Cipher is ECDHE-RSA-AES128-GCM-SHA256/);
});
