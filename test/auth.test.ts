// Token and certificate authentication (src/auth.ts) and the tokens file.
import test from 'ava';
import { isLeft, right } from 'fp-ts/lib/Either.js';
import { makeAuthenticator, makeTrunkAuthenticator, parseTokensFile, type ClientToken } from '../src/auth.js';
import { parseIpv4 } from '../operators/core/address.js';

const A2 = parseIpv4('10.0.0.2')!;
const A3 = parseIpv4('10.0.0.3')!;

const HUB = { address: parseIpv4('10.0.0.1')!, prefix: 24 };
const tokens = (text: string): readonly ClientToken[] | string[] => {
  const parsed = parseTokensFile(text, 't.json', HUB);
  return isLeft(parsed) ? parsed.left : parsed.right;
};

test('a tokens file lists named clients with optional pinned addresses', (t) => {
  t.deepEqual(tokens('{"alice": {"token": "alice-secret", "address": "10.0.0.2"}, "bob": {"token": "bob-secret"}}'), [
    { name: 'alice', token: 'alice-secret', address: A2 },
    { name: 'bob', token: 'bob-secret' },
  ]);
});

test('a bad tokens file is reported line by line, naming the file, the client and the key', (t) => {
  t.deepEqual(tokens('{"a": {"token": "short"}, "b": {"token": "same-token"}, "c": {"token": "same-token", "address": "10.0.0.300"}}'), [
    'tokens_file: t.json: a.token: expected at least 8 characters, got 5',
    'tokens_file: t.json: c.token: the same token as b; each client needs its own',
    'tokens_file: t.json: c.address: expected an IPv4 address like 10.0.0.2, got "10.0.0.300"',
  ]);
  t.deepEqual(tokens('{"a": '), ['tokens_file: t.json: invalid JSON at position 6 (line 1, column 7): unexpected end of input']);
  t.deepEqual(tokens('{}'), ['tokens_file: t.json: no clients listed']);
});

test('a client listed twice is refused (JSON.parse would silently keep only the second)', (t) => {
  const text = '{\n  "alice": {"token": "alice-secret-1"},\n  "alice": {"token": "alice-secret-2"}\n}';
  t.deepEqual(tokens(text), [
    'tokens_file: t.json: duplicate key alice at position 44 (line 3, column 3): already given at line 2, column 3 (only one can count: remove or rename one)',
  ]);
  t.deepEqual(tokens('{"alice": {"token": "alice-secret-1", "address": "10.0.0.2", "token": "alice-secret-2"}}'), [
    'tokens_file: t.json: duplicate key alice.token at position 61 (line 1, column 62): already given at line 1, column 12 (only one can count: remove or rename one)',
  ]);
});

const refusesPin = test.macro({
  exec(t, address: string, expected: string) {
    t.deepEqual(tokens(`{"ok": {"token": "ok-secret-1"}, "alice": {"token": "alice-secret", "address": "${address}"}}`), [`tokens_file: t.json: alice.address: ${expected}`]);
  },
  title: (_, address: string) => `a pin to ${address} is refused for a hub on 10.0.0.1/24`,
});

test(refusesPin, '10.0.0.1', "10.0.0.1 is the hub's own address (tunnel_addr 10.0.0.1/24)");
test(refusesPin, '10.0.1.2', "10.0.1.2 is outside the hub's network 10.0.0.0/24 (tunnel_addr 10.0.0.1/24)");
test(refusesPin, '10.0.0.0', '10.0.0.0 is the network or broadcast address of 10.0.0.0/24 (tunnel_addr 10.0.0.1/24)');
test(refusesPin, '10.0.0.255', '10.0.0.255 is the network or broadcast address of 10.0.0.0/24 (tunnel_addr 10.0.0.1/24)');

test('pins are judged against the hub\'s own network: 10.0.1.2 is fine for a hub on 10.0.0.1/16', (t) => {
  const parsed = parseTokensFile('{"alice": {"token": "alice-secret", "address": "10.0.1.2"}}', 't.json', { address: parseIpv4('10.0.0.1')!, prefix: 16 });
  t.deepEqual(parsed, right([{ name: 'alice', token: 'alice-secret', address: parseIpv4('10.0.1.2')! }]));
});

test('two clients pinned to one address are refused', (t) => {
  t.deepEqual(tokens('{"alice": {"token": "alice-secret", "address": "10.0.0.2"}, "bob": {"token": "bob-secret", "address": "10.0.0.2"}}'), [
    'tokens_file: t.json: bob.address: 10.0.0.2 is already pinned to alice; an address belongs to one client',
  ]);
});

test('an unknown key in an entry is refused with the known keys (a misspelt "address" would silently pin nothing)', (t) => {
  t.deepEqual(tokens('{"alice": {"token": "alice-secret", "adress": "10.0.0.2"}}'), [
    'tokens_file: t.json: alice.adress: unknown key (did you mean "address"? the keys are token, address, routes)',
  ]);
  t.deepEqual(tokens('{"alice": {"token": "alice-secret", "colour": "blue"}}'), ['tokens_file: t.json: alice.colour: unknown key (the keys are token, address, routes)']);
  t.deepEqual(tokens('{"alice": {"secret": "alice-secret"}}'), [
    'tokens_file: t.json: alice.secret: unknown key (the keys are token, address, routes)',
    'tokens_file: t.json: alice.token: missing (each client needs a secret of at least 8 characters)',
  ]);
});

test('a tokens file of another shape is refused without echoing what may be a secret', (t) => {
  t.deepEqual(tokens('["alice-secret"]'), ['tokens_file: t.json: expected {"NAME": {"token": "SECRET", "address": "10.0.0.2", "routes": ["CIDR", ...]}, ...}, got an array']);
  t.deepEqual(tokens('"alice-secret"'), ['tokens_file: t.json: expected {"NAME": {"token": "SECRET", "address": "10.0.0.2", "routes": ["CIDR", ...]}, ...}, got a string']);
  t.deepEqual(tokens('{"alice": "alice-secret", "bob": null}'), [
    'tokens_file: t.json: alice: expected {"token": "SECRET", "address": "10.0.0.2", "routes": ["CIDR", ...]}, got a string',
    'tokens_file: t.json: bob: expected {"token": "SECRET", "address": "10.0.0.2", "routes": ["CIDR", ...]}, got null',
  ]);
  t.deepEqual(tokens('{"alice": {"token": 12345678}}'), ['tokens_file: t.json: alice.token: expected a string of at least 8 characters, got a number']);
  t.deepEqual(tokens('{"my laptop": {"token": "x"}}'), ['tokens_file: t.json: "my laptop".token: expected at least 8 characters, got 1']);
});

test('the authenticator requires everything the policy names', (t) => {
  const both = makeAuthenticator({ requireClientCert: true, networkToken: 'network-secret' });
  t.like(both.authenticate({ token: 'network-secret', peerIdentity: undefined, address: A2 }), { ok: false, reason: 'auth-failed' });
  t.like(both.authenticate({ token: undefined, peerIdentity: 'carol', address: A2 }), { ok: false, reason: 'auth-failed' });
  t.deepEqual(both.authenticate({ token: 'network-secret', peerIdentity: 'carol', address: A2 }), { ok: true, identity: 'carol', exclusive: true, source: 'certificate' });
  const tokens = makeAuthenticator({ requireClientCert: false, clients: [{ name: 'alice', token: 'alice-secret', address: A2 }] });
  t.deepEqual(tokens.authenticate({ token: 'alice-secret', peerIdentity: undefined, address: A2 }), { ok: true, identity: 'alice', exclusive: true, source: 'token', pinned: A2 });
  t.like(tokens.authenticate({ token: 'alice-secret', peerIdentity: undefined, address: A3 }), { ok: false, reason: 'address-not-allowed' });
  t.like(tokens.authenticate({ token: 'alice-secreT', peerIdentity: undefined, address: A2 }), { ok: false, reason: 'auth-failed', detail: 'wrong token' });
  t.like(tokens.authenticate({ token: '', peerIdentity: undefined, address: A2 }), { ok: false, reason: 'auth-failed' });
  const network = makeAuthenticator({ requireClientCert: false, networkToken: 'network-secret' });
  t.deepEqual(network.authenticate({ token: 'network-secret', peerIdentity: undefined, address: A3 }), { ok: true, identity: undefined, exclusive: false });
});

test('an address pinned to one client is reserved for it, even while it is offline', (t) => {
  const auth = makeAuthenticator({
    requireClientCert: false,
    networkToken: 'network-secret',
    clients: [
      { name: 'alice', token: 'alice-secret', address: A2 },
      { name: 'bob', token: 'bob-secret' },
    ],
  });
  t.deepEqual(auth.authenticate({ token: 'bob-secret', peerIdentity: undefined, address: A2 }), {
    ok: false,
    reason: 'address-not-allowed',
    detail: '10.0.0.2 is reserved for client alice',
  });
  t.like(auth.authenticate({ token: 'network-secret', peerIdentity: undefined, address: A2 }), { ok: false, reason: 'address-not-allowed' });
  t.like(auth.authenticate({ token: 'bob-secret', peerIdentity: undefined, address: A3 }), { ok: true, identity: 'bob' });
});

test('a client asking to be assigned an address passes without a pin check and learns its pin; pins are listed as reserved', (t) => {
  const auth = makeAuthenticator({
    requireClientCert: false,
    clients: [
      { name: 'alice', token: 'alice-secret', address: A2 },
      { name: 'bob', token: 'bob-secret', routes: [{ address: parseIpv4('192.168.10.0')!, prefix: 24 }] },
    ],
  });
  t.deepEqual(auth.authenticate({ token: 'alice-secret', peerIdentity: undefined, address: undefined }), { ok: true, identity: 'alice', exclusive: true, source: 'token', pinned: A2 });
  t.deepEqual(auth.authenticate({ token: 'bob-secret', peerIdentity: undefined, address: undefined }), {
    ok: true,
    identity: 'bob',
    exclusive: true,
    source: 'token',
    routes: [{ address: parseIpv4('192.168.10.0')!, prefix: 24 }],
  });
  t.deepEqual([...(auth.reserved ?? [])], [[A2, 'alice']]);
});

test('a tokens file entry may list the routes its client may announce: network prefixes, as the routes config key takes them', (t) => {
  t.deepEqual(tokens('{"bob": {"token": "bob-secret", "routes": ["192.168.10.0/24"]}}'), [
    { name: 'bob', token: 'bob-secret', routes: [{ address: parseIpv4('192.168.10.0')!, prefix: 24 }] },
  ]);
  t.deepEqual(tokens('{"bob": {"token": "bob-secret", "routes": ["lan"]}}'), [
    'tokens_file: t.json: bob.routes: expected CIDRs like "192.168.10.0/24", separated by commas ("lan" is not one), got ["lan"]',
  ]);
  t.deepEqual(tokens('{"bob": {"token": "bob-secret", "routes": ["192.168.10.0/24", "192.168.20.1/24"]}}'), [
    'tokens_file: t.json: bob.routes: expected network prefixes without host bits (192.168.20.1/24 is 192.168.20.0/24), got ["192.168.10.0/24","192.168.20.1/24"]',
  ]);
  t.deepEqual(tokens('{"bob": {"token": "bob-secret", "routes": 5}}'), ['tokens_file: t.json: bob.routes: expected CIDRs like "192.168.10.0/24", separated by commas, got 5']);
});

test('trunks: the cluster token passes, a wrong or missing one does not; a verified certificate must name the hub too, and never stands in for the token', (t) => {
  const byToken = makeTrunkAuthenticator({ token: 'the-cluster-secret-1' });
  t.is(byToken.token, 'the-cluster-secret-1');
  t.is(byToken.check('a', 'the-cluster-secret-1', undefined), undefined);
  t.is(byToken.check('a', 'the-cluster-secret-2', undefined), 'wrong cluster token');
  t.is(byToken.check('a', 'the-cluster-secret-1x', 'a'), 'wrong cluster token', 'a certificate does not make up for the token');
  t.is(byToken.check('a', undefined, 'a'), 'no cluster token');
  t.is(byToken.check('a', '', undefined), 'no cluster token');
  t.is(byToken.check('a', 'the-cluster-secret-1', 'a'), undefined, 'over mutual TLS: the token and a certificate naming the hub');
  t.is(byToken.check('a', 'the-cluster-secret-1', 'b'), 'its certificate names "b", not the hub a');
  t.is(byToken.check('a', 'the-cluster-secret-1', 'alice'), 'its certificate names "alice", not the hub a', "a member's certificate with the token is not a hub's");
});
