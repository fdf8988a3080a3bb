// End to end, security: the real CLI as hub and clients in network namespaces, real TLS with a
// throwaway PKI (openssl), tokens, client certificates, and a forging client (helpers/forge.ts)
// that skips the HELLO, guesses tokens and lies about its source address.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, type LabProcess } from './helpers/lab.js';
import { BIN, ECHO_PORT, HUB_TUNNEL, TEXT_LOGS, droppedAt, logTime, startClient, startHub } from './helpers/vpn.js';
import { DEADLINE_MS, SLACK_MS, sleep, waitUntil } from './helpers/wait.js';
import { createPki, type Pki } from './helpers/pki.js';
import { FORGE_SCRIPT } from './helpers/forge.js';

/** Short keepalive/timeout for every process, so that waiting for the dead is short. */
const TIMEOUT_S = 3;
const TIMING = ['-keepalive', '1', '-timeout', String(TIMEOUT_S)];
/** The UDP port forge.js listens on inside the tunnel. */
const SINK_PORT = 7001;
/** A line of a Node stack trace. */
const STACK_FRAME = '    at ';

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The log line without its timestamp: `ERROR message`. */
const untimed = (line: string): string => line.replace(/^\d{4}-\d\d-\d\dT\S+ /, '').replace(/ +/, ' ');
const allLines = (p: LabProcess): string[] => [...p.stdout, ...p.stderr];

async function newLab(t: ExecutionContext, hosts: string[]): Promise<Lab> {
  const lab = await Lab.create({ hosts });
  t.teardown(() => lab.dispose());
  return lab;
}

async function newPki(t: ExecutionContext, lab: Lab): Promise<Pki> {
  const pki = await createPki({ hubIp: lab.host('hub').ip });
  t.teardown(() => pki.dispose());
  return pki;
}

/** A temporary directory with `files` (name → content), removed in teardown. */
function tempFiles(t: ExecutionContext, files: Record<string, string>): Record<string, string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lwt-sec-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return Object.fromEntries(
    Object.entries(files).map(([name, content]) => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, content, { mode: 0o600 });
      return [name, p];
    }),
  );
}

const tlsHubFlags = (pki: Pki): string[] => ['-tls', '-tls-cert', pki.hub.cert, '-tls-key', pki.hub.key];

/** Runs the CLI in `host` with `args` (no waiting). */
function spawnCli(lab: Lab, host: string, args: readonly string[], label = host): LabProcess {
  return lab.host(host).spawn(process.execPath, [BIN, ...TEXT_LOGS, ...args], { label });
}

/** Runs forge.js `session` in `host` against the hub; resolves with its output lines. */
async function forge(lab: Lab, host: string, args: readonly string[], hub = 'hub'): Promise<string[]> {
  const r = await lab.host(host).exec(process.execPath, [FORGE_SCRIPT, 'session', '--hub', `${lab.host(hub).ip}:9000`, ...args]);
  if (r.code !== 0) throw new Error(`forge in ${host} failed (code ${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout.split('\n').filter((l) => l !== '');
}

/** Starts forge.js `listen-udp` in `host`; its `recv` lines are the datagrams that arrived. */
async function udpSink(lab: Lab, host: string): Promise<LabProcess> {
  const p = lab.host(host).spawnNode(FORGE_SCRIPT, ['listen-udp', String(SINK_PORT)], { label: `${host}:sink` });
  await p.waitForLine(/^ready udp/);
  return p;
}
const received = (sink: LabProcess): string[] => sink.stdout.filter((l) => l.startsWith('recv '));

function assertNoStackTrace(t: ExecutionContext, p: LabProcess): void {
  t.deepEqual(
    allLines(p).filter((l) => l.startsWith(STACK_FRAME)),
    [],
    `${p.label} printed a stack trace:\n${p.output()}`,
  );
}

// ---------------------------------------------------------------------------
// 1. TLS with a private CA

test('TLS hub: clients with -tls-ca (by IP, and by -tls-server-name) join and talk both ways; a client without -tls-ca is refused by verification', async (t) => {
  const lab = await newLab(t, ['hub', 'c1', 'c2', 'c3']);
  const pki = await newPki(t, lab);
  const hub = await startHub(lab, [...tlsHubFlags(pki), ...TIMING]);
  const trusting = ['-tls', '-tls-ca', pki.ca.cert, ...TIMING];
  const [, , c3] = await Promise.all([
    startClient(lab, 'c1', '10.0.0.2', trusting),
    startClient(lab, 'c2', '10.0.0.3', [...trusting, '-tls-server-name', 'hub.lan']),
    startClient(lab, 'c3', '10.0.0.4', ['-tls', ...TIMING], /reconnecting in/),
  ]);
  await hub.waitForLine(new RegExp(`member 10\\.0\\.0\\.2 joined from ${esc(lab.host('c1').ip)}:`));
  await hub.waitForLine(new RegExp(`member 10\\.0\\.0\\.3 joined from ${esc(lab.host('c2').ip)}:`));

  // The untrusting client: a verification failure with the hint, retried, never a member.
  await c3.waitForLine(/reconnecting in .*the hub's certificate is not signed by a CA this client trusts \(give the hub's CA with -tls-ca\)/);
  await hub.waitForLine(new RegExp(`connection from ${esc(lab.host('c3').ip)}:\\d+ failed its handshake: tls-error: `));
  t.true(c3.running, 'a verification failure is retried (the hub may get a new certificate)');

  await Promise.all(['hub', 'c1', 'c2'].map((h) => lab.startEchoServers(h, ECHO_PORT)));
  const [c1c2, c2c1, c1hub, hubc2] = await Promise.all([
    lab.canReach('c1', '10.0.0.3', ECHO_PORT),
    lab.canReach('c2', '10.0.0.2', ECHO_PORT),
    lab.canReach('c1', HUB_TUNNEL, ECHO_PORT, { proto: 'tcp' }),
    lab.canReach('hub', '10.0.0.3', ECHO_PORT),
  ]);
  t.true(c1c2, 'c1 → c2 over TLS');
  t.true(c2c1, 'c2 → c1 over TLS');
  t.true(c1hub, 'c1 → hub (TCP) over TLS');
  t.true(hubc2, 'hub → c2 over TLS');
  t.notRegex(hub.output(1000), /member 10\.0\.0\.4 joined/);
});

// ---------------------------------------------------------------------------
// 2. TLS on one side only

test('TLS on one side only: both mismatches are closed at once with a reason on both sides', async (t) => {
  const lab = await newLab(t, ['hub', 'hub2', 'c1', 'c2']);
  const pki = await newPki(t, lab);
  const [tlsHub, plainHub] = await Promise.all([startHub(lab, [...tlsHubFlags(pki), ...TIMING]), startHub(lab, TIMING, 'hub2')]);

  // A plaintext client against the TLS hub: the hub closes it at once, before the client's own
  // timeout could end the session (a loaded machine does not make that sooner).
  const c1 = await startClient(lab, 'c1', '10.0.0.2', TIMING, /disconnected from hub .*: closed/);
  const disconnected = c1.stderr.find((l) => /disconnected from hub .*: closed/.test(l))!;
  const connected = c1.stderr.slice(0, c1.stderr.indexOf(disconnected)).filter((l) => /connected to hub/.test(l)).at(-1)!;
  t.true(logTime(disconnected) - logTime(connected) < TIMEOUT_S * 1000, `closed quickly: ${connected} … ${disconnected}`);
  await tlsHub.waitForLine(
    new RegExp(`connection from ${esc(lab.host('c1').ip)}:\\d+ failed its handshake: not-tls: the client does not speak TLS \\(is it missing -tls\\?\\)`),
  );

  // A TLS client against the plaintext hub: closed at once for the frame it sent, not by the hub's timeout.
  const c2 = spawnCli(lab, 'c2', ['-m', 'client', '-r', `${lab.host('hub2').ip}:9000`, '-t', '10.0.0.3/24', '-tls', '-tls-ca', pki.ca.cert, ...TIMING]);
  const up = await c2.waitForLine(/TUN device tun0 up/);
  const failed = await c2.waitForLine(/reconnecting in .*the hub closed the connection during the TLS handshake \(does it run without -tls/);
  t.true(logTime(failed) - logTime(up) < TIMEOUT_S * 1000, `refused quickly: ${up} … ${failed}`);
  await plainHub.waitForLine(new RegExp(`${esc(lab.host('c2').ip)}:\\d+.*frame-error.*the peer speaks TLS but this side runs without it`));

  t.notRegex(tlsHub.output(1000), /joined/);
  t.notRegex(plainHub.output(1000), /joined/);
  t.false(allLines(c1).some((l) => /joined the virtual LAN/.test(l)));
  t.false(allLines(c2).some((l) => /joined the virtual LAN/.test(l)));
});

test('a plaintext hub logs the frame-error of a TLS client, saying that the peer speaks TLS', async (t) => {
  const lab = await newLab(t, ['hub', 'm']);
  const hub = await startHub(lab, TIMING);
  const out = await forge(lab, 'm', ['--tls', '--skip-verify', '--hello', '10.0.0.9', '--wait', '1000']);
  t.true(out.some((l) => /attempt 1 error/.test(l)), out.join('\n'));
  await hub.waitForLine(new RegExp(`${esc(lab.host('m').ip)}:\\d+.*frame-error.*the peer speaks TLS but this side runs without it`));
  t.pass();
});

// ---------------------------------------------------------------------------
// 3. Start-up failures

test('start-up failures (missing certificate, unreadable key, key of another certificate, CA files without certificates, a wrong tokens file) exit 1 with one clear line each and no stack trace', async (t) => {
  const lab = await newLab(t, ['hub']);
  const pki = await newPki(t, lab);
  const missing = path.join(pki.dir, 'missing.crt');
  const server = ['-m', 'server', '-l', '0.0.0.0:9000', '-t', '10.0.0.1/24', '-tls'];
  const files = tempFiles(t, {
    'twice.json': '{\n  "alice": {"token": "alice-secret-1"},\n  "alice": {"token": "alice-secret-2"}\n}\n',
    'empty.pem': '',
    'pins.json': JSON.stringify({ alice: { token: 'alice-secret-1', address: '10.0.0.1' }, bob: { token: 'bob-secret-22', adress: '10.0.0.3' } }),
  });
  const tlsFiles = ['-tls-cert', pki.hub.cert, '-tls-key', pki.hub.key];
  const cases: { name: string; proc: LabProcess; line: string | string[] }[] = [
    {
      name: 'missing certificate',
      proc: spawnCli(lab, 'hub', [...server, '-tls-cert', missing, '-tls-key', pki.hub.key], 'missing-cert'),
      line: `ERROR tls_cert_file: cannot read ${missing} (no such file)`,
    },
    {
      name: 'unreadable key',
      // Not root: the key (0600, root's) cannot be read; the certificate (0644) can.
      proc: lab
        .host('hub')
        .spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, ...TEXT_LOGS, ...server, '-tls-cert', pki.hub.cert, '-tls-key', pki.hub.key], { label: 'unreadable-key' }),
      line: `ERROR tls_key_file: cannot read ${pki.hub.key} (permission denied)`,
    },
    {
      name: 'key of another certificate',
      proc: spawnCli(lab, 'hub', [...server, '-tls-cert', pki.hub.cert, '-tls-key', pki.bob.key], 'mismatched-key'),
      line: 'ERROR TLS: the private key does not match the certificate (tls_key_file belongs to another certificate)',
    },
    {
      name: 'an empty client CA file on the hub',
      proc: spawnCli(lab, 'hub', [...server, ...tlsFiles, '-tls-client-ca', files['empty.pem']!], 'empty-client-ca'),
      line: `ERROR tls_client_ca_file: ${files['empty.pem']}: is empty; expected PEM certificates ("-----BEGIN CERTIFICATE-----" blocks)`,
    },
    {
      name: "a client whose -tls-ca is a key (it would retry forever)",
      proc: spawnCli(lab, 'hub', ['-m', 'client', '-r', '127.0.0.1:9000', '-t', '10.0.0.2/24', '-tls', '-tls-ca', pki.hub.key], 'key-as-ca'),
      line: `ERROR tls_ca_file: ${pki.hub.key}: holds a private key, not a certificate (was the key file given in its place?)`,
    },
    {
      name: 'a client listed twice in the tokens file',
      proc: spawnCli(lab, 'hub', [...server, ...tlsFiles, '-tokens-file', files['twice.json']!], 'tokens-twice'),
      line: `ERROR tokens_file: ${files['twice.json']}: duplicate key alice at position 44 (line 3, column 3): already given at line 2, column 3 (only one can count: remove or rename one)`,
    },
    {
      name: "a pin to the hub's address and a misspelt key in the tokens file",
      proc: spawnCli(lab, 'hub', [...server, ...tlsFiles, '-tokens-file', files['pins.json']!], 'tokens-pins'),
      line: [
        `ERROR tokens_file: ${files['pins.json']}: alice.address: 10.0.0.1 is the hub's own address (tunnel_addr 10.0.0.1/24)`,
        `ERROR tokens_file: ${files['pins.json']}: bob.adress: unknown key (did you mean "address"? the keys are token, address, routes)`,
      ],
    },
  ];
  for (const c of cases) {
    const exit = await c.proc.exited;
    t.is(exit.code, 1, `${c.name}: exit code\n${c.proc.output()}`);
    t.deepEqual(allLines(c.proc).map(untimed), typeof c.line === 'string' ? [c.line] : c.line, `${c.name}: output`);
    assertNoStackTrace(t, c.proc);
  }
  t.deepEqual(await lab.tunDevices('hub'), [], 'no TUN device was created');
});

test('fatal errors end the CLI with exit 1, one clear line and no stack trace: port in use, a client refused for good', async (t) => {
  const lab = await newLab(t, ['hub', 'c1']);
  const secret = tempFiles(t, { token: 'open-sesame-42\n' });
  await startHub(lab, ['-token-file', secret.token!, ...TIMING]);
  const second = spawnCli(lab, 'hub', ['-m', 'server', '-l', '0.0.0.0:9000', '-t', '10.0.0.1/24', ...TIMING], 'second-hub');
  const refused = await startClient(lab, 'c1', '10.0.0.2', ['-token', 'not-the-token', ...TIMING], /refused this client/);
  const [secondExit, refusedExit] = await Promise.all([second.exited, refused.exited]);
  t.is(secondExit.code, 1);
  t.true(
    allLines(second).map(untimed).includes('ERROR cannot listen on 0.0.0.0:9000: the address is already in use (is another hub running?)'),
    second.output(),
  );
  assertNoStackTrace(t, second);
  t.deepEqual(await lab.tunDevices('hub'), ['tun0'], "the second hub's TUN device is gone");
  t.is(refusedExit.code, 1);
  assertNoStackTrace(t, refused);
});

// ---------------------------------------------------------------------------
// 4. Network token

test('network token: the right token joins; wrong or no token is refused for good; a 0.0.1-era client is refused and forwards nothing; repeated failures are rate-limited', async (t) => {
  const lab = await newLab(t, ['hub', 'good', 'bad', 'none', 'old', 'att']);
  const secret = tempFiles(t, { token: 'open-sesame-42\n' });
  const hub = await startHub(lab, ['-token-file', secret.token!, ...TIMING]);
  const ip = (h: string): string => esc(lab.host(h).ip);
  const [good, bad, none] = await Promise.all([
    startClient(lab, 'good', '10.0.0.2', ['-token', 'open-sesame-42', ...TIMING]),
    startClient(lab, 'bad', '10.0.0.3', ['-token', 'open-sesame-43', ...TIMING], /refused this client/),
    startClient(lab, 'none', '10.0.0.4', TIMING, /refused this client/),
  ]);
  await hub.waitForLine(new RegExp(`member 10\\.0\\.0\\.2 joined from ${ip('good')}:`));

  await bad.waitForLine(/ERROR +the hub refused this client: auth-failed: wrong token/);
  await none.waitForLine(/ERROR +the hub refused this client: auth-failed: this hub requires a token/);
  t.is((await bad.exited).code, 1, 'a wrong token is fatal');
  t.is((await none.exited).code, 1, 'a missing token is fatal');
  await hub.waitForLine(new RegExp(`refused 10\\.0\\.0\\.3 from ${ip('bad')}:\\d+: auth-failed: wrong token`));
  await hub.waitForLine(new RegExp(`refused 10\\.0\\.0\\.4 from ${ip('none')}:\\d+: auth-failed: this hub requires a token`));

  // A 0.0.1-era client (DATA without HELLO) is refused, and its packets reach nobody. It stays until the
  // hub's REJECT and close (which end its linger at once).
  const sink = await udpSink(lab, 'good');
  const old = await forge(lab, 'old', ['--src', '10.0.0.7', '--dst', '10.0.0.2', '--count', '5', '--interval', '5', '--linger', String(DEADLINE_MS)]);
  t.true(old.some((l) => /reject auth-required: /.test(l)), old.join('\n'));
  await hub.waitForLine(new RegExp(`refused 10\\.0\\.0\\.7 from ${ip('old')}:\\d+: auth-required: this hub requires authentication`));

  // Guessing: the first wrong token is auth-failed, the quick retries are rate-limited, and so is
  // even the right token while the source is blocked; after the block the right token works.
  const guesses = await forge(lab, 'att', ['--hello', '10.0.0.9', '--attempts', '4', '--linger', '0', ...['guess-1', 'guess-2', 'guess-3', 'open-sesame-42'].flatMap((g) => ['--token', g])]);
  const answers = guesses.filter((l) => / reject /.test(l)).map((l) => l.replace(/^attempt \d+ reject ([a-z-]+):.*$/, '$1'));
  t.deepEqual(answers, ['auth-failed', 'rate-limited', 'rate-limited', 'rate-limited'], guesses.join('\n'));
  t.true(guesses.some((l) => /^attempt 4 reject rate-limited: 1 failed authentication\(s\) from /.test(l)), 'even the right token, while blocked');
  await hub.waitForLine(new RegExp(`refused 10\\.0\\.0\\.9 from ${ip('att')}:\\d+: auth-failed: wrong token`));
  // The hub logs the first refusal of a reason at once and counts the rest of each second in one
  // line (which repeats the last in full): three refusals in all.
  const rateLimited = new RegExp(`refused 10\\.0\\.0\\.9 from ${ip('att')}:\\d+: rate-limited: 1 failed authentication\\(s\\) from ${ip('att')}: try again in \\d+ s`);
  const limited = (): number =>
    allLines(hub)
      .filter((l) => rateLimited.test(l))
      .reduce((n, l) => n + Number(/refused (\d+) more connections? in the last second/.exec(l)?.[1] ?? 1), 0);
  await waitUntil(() => limited() >= 3, () => `three rate-limited refusals in the hub's log (${limited()} so far)`).catch(() => undefined);
  t.is(limited(), 3, hub.output());
  t.regex(hub.output(), /refused \d+ more connections? in the last second \(rate-limited\)/);
  // The block ends when the hub said it would.
  const retryAfterS = Number(/try again in (\d+) s/.exec(guesses.filter((l) => / reject rate-limited: /.test(l)).at(-1) ?? '')?.[1]);
  t.true(retryAfterS > 0, guesses.join('\n'));
  await sleep(retryAfterS * 1000);
  const later = await forge(lab, 'att', ['--hello', '10.0.0.9', '--token', 'open-sesame-42', '--linger', '0']);
  t.true(later.some((l) => /welcome /.test(l)), later.join('\n'));

  // The member was never disturbed and received none of the 0.0.1-era client's packets.
  await lab.startEchoServers('hub', ECHO_PORT);
  t.true(await lab.canReach('good', HUB_TUNNEL, ECHO_PORT));
  t.deepEqual(received(sink), []);
  t.true(good.running);
  t.notRegex(hub.output(1000), /member 10\.0\.0\.2 .* left/);
});

// ---------------------------------------------------------------------------
// 5. Per-client tokens

test('per-client tokens: alice joins as her pinned address, may not use another, replaces her own stale session at once; bob can never take her address', async (t) => {
  const lab = await newLab(t, ['hub', 'a1', 'a2', 'a3', 'b', 'bf']);
  const files = tempFiles(t, {
    'tokens.json': JSON.stringify({ alice: { token: 'alice-secret-1', address: '10.0.0.2' }, bob: { token: 'bob-secret-22' } }),
  });
  // A long timeout: a replacement within it cannot be the replacement of a silent member. Longer
  // than a2 may take to start, so the silent a1 is still a member when a2 arrives.
  const timeoutMs = 2 * DEADLINE_MS;
  const timing = ['-keepalive', '1', '-timeout', String(timeoutMs / 1000)];
  const hub = await startHub(lab, ['-tokens-file', files['tokens.json']!, ...timing]);
  const ip = (h: string): string => esc(lab.host(h).ip);
  const alice = ['-token', 'alice-secret-1', ...timing];

  const a1 = await startClient(lab, 'a1', '10.0.0.2', alice);
  await hub.waitForLine(new RegExp(`member 10\\.0\\.0\\.2 \\(alice\\) joined from ${ip('a1')}:`));

  const a3 = await startClient(lab, 'a3', '10.0.0.3', alice, /refused this client/);
  await a3.waitForLine(/the hub refused this client: address-not-allowed: client alice may only use 10\.0\.0\.2, not 10\.0\.0\.3/);
  t.is((await a3.exited).code, 1, 'address-not-allowed is fatal');
  await hub.waitForLine(new RegExp(`refused 10\\.0\\.0\\.3 from ${ip('a3')}:\\d+: address-not-allowed`));

  // alice's network changes: her old session goes silent (no FIN), a new process connects.
  await lab.blackhole('a1');
  a1.kill('SIGKILL');
  const a2 = await startClient(lab, 'a2', '10.0.0.2', alice);
  const replaced = await hub.waitForLine(
    new RegExp(`member 10\\.0\\.0\\.2 \\(${ip('a1')}:\\d+\\) left: replaced \\(alice reconnected from ${ip('a2')}:\\d+\\)`),
  );
  const rejoined = await hub.waitForLine(new RegExp(`member 10\\.0\\.0\\.2 \\(alice\\) joined from ${ip('a2')}:`));
  const connected = await a2.waitForLine(/connected to hub/);
  t.true(logTime(replaced) - logTime(connected) < SLACK_MS, `replaced at once, not after the ${timeoutMs / 1000} s timeout: ${connected} … ${replaced}`);
  t.true(logTime(rejoined) >= logTime(replaced));

  // bob (a valid identity) asks for alice's pinned address: refused for good, since it is reserved.
  const bob = await startClient(lab, 'b', '10.0.0.2', ['-token', 'bob-secret-22', ...timing], /refused this client/);
  await bob.waitForLine(/the hub refused this client: address-not-allowed: 10\.0\.0\.2 is reserved for client alice/);
  await hub.waitForLine(new RegExp(`refused 10\\.0\\.0\\.2 from ${ip('b')}:\\d+: address-not-allowed`));
  t.is((await bob.exited).code, 1, 'a reserved address cannot be had by waiting: the client stops');
  // bob's token itself is fine: he gets an address of his own.
  const own = await forge(lab, 'bf', ['--hello', '10.0.0.3', '--token', 'bob-secret-22', '--linger', '0']);
  t.true(own.some((l) => /welcome .*"address":"10\.0\.0\.3"/.test(l)), own.join('\n'));
  await hub.waitForLine(/member 10\.0\.0\.3 \(bob\) joined/);

  // alice (the second process) is still the member and works.
  await lab.startEchoServers('hub', ECHO_PORT);
  t.true(await lab.canReach('a2', HUB_TUNNEL, ECHO_PORT));
  t.false(allLines(hub).some((l) => new RegExp(`member 10\\.0\\.0\\.2 \\(${ip('a2')}:\\d+\\) left`).test(l)), hub.output());
});

test("a pinned address is alice's alone: bob cannot take it while she is offline, and she is not locked out", async (t) => {
  const lab = await newLab(t, ['hub', 'b', 'a']);
  const files = tempFiles(t, {
    'tokens.json': JSON.stringify({ alice: { token: 'alice-secret-1', address: '10.0.0.2' }, bob: { token: 'bob-secret-22' } }),
  });
  const hub = await startHub(lab, ['-tokens-file', files['tokens.json']!, ...TIMING]);
  // alice comes once the hub has refused bob, while his connection may still linger.
  const [bob, alice] = await Promise.all([
    forge(lab, 'b', ['--hello', '10.0.0.2', '--token', 'bob-secret-22', '--linger', '2000']),
    hub
      .waitForLine(new RegExp(`refused 10\\.0\\.0\\.2 from ${esc(lab.host('b').ip)}:\\d+: address-not-allowed`))
      .then(() => forge(lab, 'a', ['--hello', '10.0.0.2', '--token', 'alice-secret-1', '--linger', '0'])),
  ]);
  t.true(bob.some((l) => / reject /.test(l)), `bob: ${bob.join('\n')}`);
  t.true(alice.some((l) => / welcome /.test(l)), `alice: ${alice.join('\n')}`);
});

// ---------------------------------------------------------------------------
// 6. Mutual TLS

test('mutual TLS: a client certificate of the client CA joins under its CN; no certificate, or one of an unrelated CA, is refused in the handshake', async (t) => {
  const lab = await newLab(t, ['hub', 'alice', 'nocert', 'rogue']);
  const pki = await newPki(t, lab);
  const hub = await startHub(lab, [...tlsHubFlags(pki), '-tls-client-ca', pki.clientCa.cert, ...TIMING]);
  await hub.waitForLine(/TLS on, client certificates required/);
  const tlsClient = ['-tls', '-tls-ca', pki.ca.cert, ...TIMING];
  const ip = (h: string): string => esc(lab.host(h).ip);
  const [alice, nocert, rogue] = await Promise.all([
    startClient(lab, 'alice', '10.0.0.2', [...tlsClient, '-tls-client-cert', pki.alice.cert, '-tls-client-key', pki.alice.key]),
    startClient(lab, 'nocert', '10.0.0.4', tlsClient, /reconnecting in/),
    startClient(lab, 'rogue', '10.0.0.6', [...tlsClient, '-tls-client-cert', pki.rogueAlice.cert, '-tls-client-key', pki.rogueAlice.key], /reconnecting in/),
  ]);
  await hub.waitForLine(new RegExp(`member 10\\.0\\.0\\.2 \\(alice\\) joined from ${ip('alice')}:`));
  await hub.waitForLine(
    new RegExp(`connection from ${ip('nocert')}:\\d+ failed its handshake: tls-error: the client presented no certificate, and this hub requires one \\(-tls-client-ca\\)`),
  );
  await hub.waitForLine(new RegExp(`connection from ${ip('rogue')}:\\d+ failed its handshake: tls-error: `));
  // Each of them is refused again on its retry, and never becomes a member.
  await nocert.waitForLine(/reconnecting in .*attempt 2/);
  await rogue.waitForLine(/reconnecting in .*attempt 2/);
  const hubLog = hub.output(1000);
  t.notRegex(hubLog, /member 10\.0\.0\.4 /);
  t.notRegex(hubLog, /member 10\.0\.0\.6 /);
  t.false(allLines(nocert).some((l) => /joined the virtual LAN/.test(l)));
  t.false(allLines(rogue).some((l) => /joined the virtual LAN/.test(l)));

  await lab.startEchoServers('hub', ECHO_PORT);
  t.true(await lab.canReach('alice', HUB_TUNNEL, ECHO_PORT));
  t.true(alice.running);
});

// ---------------------------------------------------------------------------
// 7. Anti-spoofing

test('anti-spoofing: an authenticated member forging another source address gets nothing through and is counted as spoofed-source; its own address works', async (t) => {
  const lab = await newLab(t, ['hub', 'c1', 'c2', 'm']);
  const secret = tempFiles(t, { token: 'open-sesame-42\n' });
  const hub = await startHub(lab, ['-token-file', secret.token!, ...TIMING]);
  const member = ['-token', 'open-sesame-42', ...TIMING];
  await Promise.all([startClient(lab, 'c1', '10.0.0.2', member), startClient(lab, 'c2', '10.0.0.3', member)]);
  const sink = await udpSink(lab, 'c1');

  // One session as 10.0.0.5: ten packets to 10.0.0.2, alternately claiming to be 10.0.0.3 (a real
  // member) and 10.0.0.5 (itself).
  const out = await forge(lab, 'm', ['--hello', '10.0.0.5', '--token', 'open-sesame-42', '--src', '10.0.0.3,10.0.0.5', '--dst', '10.0.0.2', '--count', '10', '--interval', '20', '--linger', '1500']);
  t.true(out.some((l) => /welcome .*"address":"10\.0\.0\.5"/.test(l)), out.join('\n'));
  t.true(out.includes('attempt 1 sent 10'), out.join('\n'));
  await hub.waitForLine(/member 10\.0\.0\.5 joined/);

  await waitUntil(() => received(sink).length >= 5, () => `its own 5 packets at c1 (${received(sink).length} so far)`).catch(() => undefined);
  const got = received(sink);
  t.is(got.filter((l) => /^recv 10\.0\.0\.5:\d+ forge \d+ from 10\.0\.0\.5$/.test(l)).length, 5, `its own packets arrive:\n${got.join('\n')}`);
  t.deepEqual(
    got.filter((l) => !l.startsWith('recv 10.0.0.5:')),
    [],
    'no forged packet arrives',
  );
  // The drop summaries come once a second: five may take two lines.
  const spoofed = (): number => droppedAt(hub, '10.0.0.5', 'spoofed-source');
  await waitUntil(() => spoofed() >= 5, () => `five spoofed-source drops at 10.0.0.5 in the hub's log (${spoofed()} so far)`).catch(() => undefined);
  t.is(spoofed(), 5, hub.output());
});
