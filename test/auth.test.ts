// Token and certificate authentication (src/auth.ts) and the tokens file.
import test from 'ava';
import { makeAuthenticator, parseTokensFile } from '../src/auth.js';
import { parseIpv4 } from '../operators/wire/ipv4.js';

const A2 = parseIpv4('10.0.0.2')!;
const A3 = parseIpv4('10.0.0.3')!;

test('a tokens file lists named clients with optional pinned addresses', (t) => {
  t.deepEqual(parseTokensFile('{"alice": {"token": "alice-secret", "address": "10.0.0.2"}, "bob": {"token": "bob-secret"}}', 't.json'), [
    { name: 'alice', token: 'alice-secret', address: A2 },
    { name: 'bob', token: 'bob-secret' },
  ]);
});

test('a bad tokens file is reported line by line', (t) => {
  t.deepEqual(parseTokensFile('{"a": {"token": "short"}, "b": {"token": "same-token"}, "c": {"token": "same-token", "address": "10.0.0.300"}}', 't.json'), [
    't.json: a.token: expected at least 8 characters',
    't.json: c.token: the same token as b; each client needs its own',
    't.json: c.address: expected an IPv4 address, got "10.0.0.300"',
  ]);
  t.deepEqual(parseTokensFile('{"a": ', 't.json').length, 1);
  t.regex((parseTokensFile('{"a": ', 't.json') as string[])[0]!, /^t\.json: invalid JSON/);
  t.deepEqual(parseTokensFile('{"a": {"secret": "x"}}', 't.json'), ['t.json: expected {"NAME": {"token": "SECRET", "address": "10.0.0.2", "routes": ["CIDR", ...]}, ...}']);
  t.deepEqual(parseTokensFile('{}', 't.json'), ['t.json: no clients listed']);
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

test('a tokens file entry may list the routes its client may announce', (t) => {
  t.deepEqual(parseTokensFile('{"bob": {"token": "bob-secret", "routes": ["192.168.10.0/24"]}}', 't.json'), [
    { name: 'bob', token: 'bob-secret', routes: [{ address: parseIpv4('192.168.10.0')!, prefix: 24 }] },
  ]);
  t.deepEqual(parseTokensFile('{"bob": {"token": "bob-secret", "routes": ["lan"]}}', 't.json'), ['t.json: bob.routes: expected CIDRs like "192.168.10.0/24", got "lan"']);
});
