// logLines (src/describe.ts): a connection flood's warnings are summarized per reason, in virtual time.
import test, { type ExecutionContext } from 'ava';
import { Subject } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import type { ClientEvent, ServerEvent } from '../pipelines/events.js';
import { REPEATS_AT_ONCE, describeClientEvent, describeServerEvent, logLines, type LogLine } from '../src/describe.js';

/** Runs `feed` in virtual time (it schedules events on `emit`) and returns the log lines with their times, until `untilMs`. */
function run<E extends ServerEvent | ClientEvent>(
  t: ExecutionContext,
  describe: (e: E) => LogLine | undefined,
  feed: (emit: (atMs: number, e: E) => void) => void,
  untilMs = 10_000,
): Array<{ at: number; level: string; message: string }> {
  const scheduler = new TestScheduler((a, b) => t.deepEqual(a, b));
  const out: Array<{ at: number; level: string; message: string }> = [];
  scheduler.run(() => {
    const events$ = new Subject<E>();
    feed((at, e) => scheduler.schedule(() => events$.next(e), at));
    const sub = logLines(events$, describe).subscribe((l) => out.push({ at: scheduler.now(), level: l.level, message: l.message }));
    scheduler.schedule(() => sub.unsubscribe(), untilMs);
  });
  return out;
}

const refused = (i: number): ServerEvent => ({
  type: 'refused',
  remote: `192.0.2.9:${10_000 + (i % 50_000)}`,
  reason: 'pending-source-limit',
  detail: '64 connections from 192.0.2.9 are already waiting to be admitted (max_pending_per_source 64)',
});
const rejected = (i: number): Extract<ServerEvent, { type: 'rejected' }> => ({ type: 'rejected', id: i, remote: `192.0.2.7:${40_000 + i}`, address: '10.0.0.2', reason: 'ip-conflict', message: '10.0.0.2 is in use by 192.0.2.2:5000 (last heard 1 s ago)' });
const leftBeforeJoining = (i: number, reason: 'frame-error' | 'closed'): ServerEvent => ({ type: 'left', id: i, remote: `192.0.2.8:${30_000 + i}`, address: undefined, reason, detail: 'x', members: 0 });

test('one refused connection is logged at once, with its detail', (t) => {
  const lines = run(t, describeServerEvent, (emit) => emit(5, refused(0)));
  t.deepEqual(lines, [{ at: 5, level: 'warn', message: 'refused a connection from 192.0.2.9:10000: pending-source-limit: 64 connections from 192.0.2.9 are already waiting to be admitted (max_pending_per_source 64)' }]);
});

test('10,000 refused connections in one second give two lines: the first, and the count of the others with the last in full', (t) => {
  const lines = run(t, describeServerEvent, (emit) => {
    for (let i = 0; i < 10_000; i++) emit(Math.floor(i / 10), refused(i));
  });
  t.is(REPEATS_AT_ONCE, 1);
  t.deepEqual(
    lines.map((l) => `${l.at} ${l.message.replace(/: pending-source-limit: .*/, '')}`),
    ['0 refused a connection from 192.0.2.9:10000', '1000 refused 9999 more connections in the last second (pending-source-limit); the last: refused a connection from 192.0.2.9:19999'],
  );
});

test('a flood lasting three seconds gives one line per second per reason after the first; each reason has its own', (t) => {
  const lines = run(t, describeServerEvent, (emit) => {
    for (let ms = 0; ms < 3000; ms++) {
      emit(ms, rejected(ms));
      emit(ms, leftBeforeJoining(ms, 'frame-error'));
    }
  });
  t.deepEqual(
    lines.map((l) => `${l.at} ${l.message.replace(/ from .*/, ' from …')}`),
    [
      '0 refused 10.0.0.2 from …',
      '0 connection #0 from …',
      // (the events at 1000 and 2000 come before the window's end at that same virtual time)
      '1000 refused 1000 more connections in the last second (ip-conflict); the last: refused 10.0.0.2 from …',
      '1000 1000 more connections ended before joining in the last second (frame-error); the last: connection #1000 from …',
      '2000 refused 1000 more connections in the last second (ip-conflict); the last: refused 10.0.0.2 from …',
      '2000 1000 more connections ended before joining in the last second (frame-error); the last: connection #2000 from …',
      '3000 refused 999 more connections in the last second (ip-conflict); the last: refused 10.0.0.2 from …',
      '3000 999 more connections ended before joining in the last second (frame-error); the last: connection #2999 from …',
    ],
  );
});

test('a second refusal of one reason within the second comes in the count line, in full', (t) => {
  const lines = run(t, describeServerEvent, (emit) => {
    emit(1, { ...rejected(1), remote: '192.0.2.3:4000', reason: 'auth-failed', message: 'wrong token' });
    emit(2, { ...rejected(2), remote: '192.0.2.4:4000', reason: 'auth-failed', message: 'this hub requires a token' });
  });
  t.deepEqual(
    lines.map((l) => l.message),
    [
      'refused 10.0.0.2 from 192.0.2.3:4000: auth-failed: wrong token',
      'refused 1 more connection in the last second (auth-failed); the last: refused 10.0.0.2 from 192.0.2.4:4000: auth-failed: this hub requires a token',
    ],
  );
});

test('a quiet reason is logged at once again; other lines pass untouched and in order', (t) => {
  const lines = run(t, describeServerEvent, (emit) => {
    emit(1, refused(1));
    emit(2, { type: 'joined', id: 7, remote: '192.0.2.2:5000', address: '10.0.0.2', via: 'hello', members: 1 });
    emit(3, leftBeforeJoining(3, 'closed'));
    emit(3, leftBeforeJoining(4, 'closed'));
    emit(5000, refused(2));
  });
  t.deepEqual(
    lines.map((l) => `${l.at} ${l.level} ${l.message.slice(0, 41)}`),
    [
      '1 warn refused a connection from 192.0.2.9:10001',
      '2 info member 10.0.0.2 joined from 192.0.2.2:500',
      '3 debug connection #3 from 192.0.2.8:30003 ended ',
      '3 debug connection #4 from 192.0.2.8:30004 ended ',
      '5000 warn refused a connection from 192.0.2.9:10002',
    ],
  );
});

test("a client's refusals (errors, at most one per reconnect) are never summarized", (t) => {
  const lines = run(t, describeClientEvent, (emit) => {
    for (let i = 0; i < 3; i++) emit(i, { type: 'rejected', reason: 'ip-conflict', message: 'in use' });
  });
  t.is(lines.length, 3);
});
