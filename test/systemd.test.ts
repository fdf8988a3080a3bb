// systemd readiness through systemd-notify, only under a service manager.
import test from 'ava';
import { makeSystemdNotifier, type RunCommand } from '../src/systemd.js';

const recorder = (fail = false) => {
  const calls: string[][] = [];
  const run: RunCommand = (file, args, done) => {
    calls.push([file, ...args]);
    done(fail ? new Error('spawn systemd-notify ENOENT') : null);
  };
  return { calls, run };
};

test('without NOTIFY_SOCKET nothing is sent', (t) => {
  const { calls, run } = recorder();
  const n = makeSystemdNotifier({ env: {}, pid: 42, run });
  n.ready();
  n.stopping();
  t.deepEqual(calls, []);
});

test('under systemd, READY is sent once with our pid, then STOPPING', (t) => {
  const { calls, run } = recorder();
  const n = makeSystemdNotifier({ env: { NOTIFY_SOCKET: '/run/systemd/notify' }, pid: 42, run });
  n.ready();
  n.ready();
  n.stopping();
  n.stopping();
  t.deepEqual(calls, [
    ['systemd-notify', '--pid=42', '--ready'],
    ['systemd-notify', '--pid=42', 'STOPPING=1'],
  ]);
});

test('a failing systemd-notify is reported, never thrown', (t) => {
  const { run } = recorder(true);
  const errors: string[] = [];
  const n = makeSystemdNotifier({ env: { NOTIFY_SOCKET: '@notify' }, pid: 1, run, onError: (m) => void errors.push(m) });
  t.notThrows(() => n.ready());
  t.deepEqual(errors, ['systemd-notify ready failed: spawn systemd-notify ENOENT']);
});
