// End to end, with the real CLI in network namespaces: a TLS hub with -tls-workers 1 (the TLS
// listener in a worker thread) carries traffic between two clients, with client certificates.
import test from 'ava';
import { Lab } from './helpers/lab.js';
import { ECHO_PORT, HUB_TUNNEL, startClient, startHub } from './helpers/vpn.js';
import { createPki } from './helpers/pki.js';

const TIMING = ['-keepalive', '1', '-timeout', '3'];
const BULK_PORT = 7100;
const BULK_BYTES = 8 * 1024 * 1024;

/** A TCP server that prints `got N SHA256` once a connection ends. */
const SINK = `const net=require('node:net'),c=require('node:crypto');net.createServer(s=>{const h=c.createHash('sha256');let n=0;s.on('data',d=>{n+=d.length;h.update(d)});s.on('end',()=>{console.log('got '+n+' '+h.digest('hex'));s.end()})}).listen(${BULK_PORT},'0.0.0.0',()=>console.log('ready'))`;
/** Sends BULK_BYTES of a fixed pattern to argv[1] and prints its SHA256. */
const SOURCE = `const net=require('node:net'),c=require('node:crypto');const b=Buffer.alloc(${BULK_BYTES});for(let i=0;i<b.length;i++)b[i]=(i*7+(i>>10))&255;console.log('sent '+b.length+' '+c.createHash('sha256').update(b).digest('hex'));const s=net.connect(${BULK_PORT},process.argv[1],()=>s.end(b));s.on('close',()=>process.exit(0));`;

test('TLS hub with -tls-workers 1: two clients with certificates join, talk to each other and the hub, and 8 MiB cross intact', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'] });
  t.teardown(() => lab.dispose());
  const pki = await createPki({ hubIp: lab.host('hub').ip });
  t.teardown(() => pki.dispose());
  const hub = await startHub(lab, ['-tls', '-tls-cert', pki.hub.cert, '-tls-key', pki.hub.key, '-tls-client-ca', pki.clientCa.cert, '-tls-workers', '1', ...TIMING]);
  await hub.waitForLine(/TLS on, client certificates required, in a worker thread/);
  const client = (name: 'alice' | 'bob'): string[] => ['-tls', '-tls-ca', pki.ca.cert, '-tls-client-cert', pki[name].cert, '-tls-client-key', pki[name].key, ...TIMING];
  await Promise.all([startClient(lab, 'c1', '10.0.0.2', client('alice')), startClient(lab, 'c2', '10.0.0.3', client('bob'))]);
  await hub.waitForLine(/member 10\.0\.0\.2 \(alice\) joined/);
  await hub.waitForLine(/member 10\.0\.0\.3 \(bob\) joined/);

  await Promise.all(['hub', 'c1', 'c2'].map((h) => lab.startEchoServers(h, ECHO_PORT)));
  const [c1c2, c2c1, c1hub, hubc2] = await Promise.all([
    lab.canReach('c1', '10.0.0.3', ECHO_PORT),
    lab.canReach('c2', '10.0.0.2', ECHO_PORT),
    lab.canReach('c1', HUB_TUNNEL, ECHO_PORT, { proto: 'tcp' }),
    lab.canReach('hub', '10.0.0.3', ECHO_PORT),
  ]);
  t.true(c1c2, 'c1 → c2');
  t.true(c2c1, 'c2 → c1');
  t.true(c1hub, 'c1 → hub (TCP)');
  t.true(hubc2, 'hub → c2');

  const sink = lab.host('c2').spawn(process.execPath, ['-e', SINK], { label: 'c2:sink' });
  await sink.waitForLine(/^ready/);
  const sent = await lab.host('c1').exec(process.execPath, ['-e', SOURCE, '10.0.0.3']);
  t.is(sent.code, 0, sent.stderr);
  const line = await sink.waitForLine(/^got /);
  t.is(line.replace(/^got/, 'sent').trim(), sent.stdout.trim().split('\n')[0], 'every byte arrives, in order');
  t.true(hub.running);
});
