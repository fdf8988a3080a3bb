// learnSource (operators/learnSource.ts): a 0.0.1-era peer's address from its first IPv4 packet.
import test from 'ava';
import { learnSource } from '../operators/learnSource.js';
import type { Inbound } from '../operators/core/packet.js';
import { FrameType } from '../operators/core/wire/frames.js';
import { bytes, ipv4Packet, marbles } from './helpers/marbles.js';
import { parseIpv4 } from '../operators/core/address.js';

const from2 = ipv4Packet('10.0.0.2', '10.0.0.1');
const from3 = ipv4Packet('10.0.0.3', '10.0.0.1');
const fromHigh = ipv4Packet('192.168.7.200', '10.0.0.1');
const v6 = Uint8Array.from({ length: 40 }, (_, i) => (i === 0 ? 0x60 : 0));
const runt = from3.subarray(0, 19);

const values = {
  a: { kind: 'data', packets: [from2] },
  b: { kind: 'data', packets: [from3] },
  h: { kind: 'control', type: FrameType.Hello, payload: bytes(0x7b, 0x7d) },
  k: { kind: 'control', type: FrameType.Keepalive, payload: bytes() },
  n: { kind: 'data', packets: [v6, runt] },
  m: { kind: 'data', packets: [runt, fromHigh, from2] },
  l: { kind: 'learned', address: parseIpv4('10.0.0.2')! },
  L: { kind: 'learned', address: parseIpv4('192.168.7.200')! },
} satisfies Record<string, Inbound>;

test('the first data item is preceded by the learned source address; later ones are not', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const items = cold('-a----b-a-|', values);
    const out = '       -(la)-b-a-|';
    expectObservable(items.pipe(learnSource())).toBe(out, values);
  });
});

test('after a HELLO nothing is learned', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const items = cold('-h-a-b-|', values);
    const out = '       -h-a-b-|';
    expectObservable(items.pipe(learnSource())).toBe(out, values);
  });
});

test('other control frames before the first data do not stop learning', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const items = cold('-k-a----|', values);
    const out = '       -k-(la)-|';
    expectObservable(items.pipe(learnSource())).toBe(out, values);
  });
});

test('packets that are not IPv4 are skipped when learning', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const items = cold('-n-m----a-|', values);
    const out = '       -n-(Lm)-a-|';
    expectObservable(items.pipe(learnSource())).toBe(out, values);
  });
});

test('a HELLO after learning changes nothing', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const items = cold('-a----h-b-|', values);
    const out = '       -(la)-h-b-|';
    expectObservable(items.pipe(learnSource())).toBe(out, values);
  });
});

test('each subscription learns on its own', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const items = cold('-a----a-|', values);
    const learned = items.pipe(learnSource());
    const out = '       -(la)-a-|';
    expectObservable(learned).toBe(out, values);
    expectObservable(learned).toBe(out, values);
  });
});

test('errors and completion are mirrored', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    const err = new Error('reset');
    const items = cold('-k-#', values, err);
    const out = '       -k-#';
    expectObservable(items.pipe(learnSource())).toBe(out, values, err);
  });
});
