// The logger (pino underneath): JSON lines with structured fields, the text format, levels.
import test from 'ava';
import { describeClientEvent, describeServerEvent, type LogLine } from '../src/describe.js';
import { createLogger, resolveLogFormat, type Level, type LogFormat } from '../src/log.js';

/** A logger whose lines land in an array. */
const capture = (format: LogFormat, level: Level = 'info') => {
  const lines: string[] = [];
  const logger = createLogger({ format, level, write: (l) => void lines.push(l) });
  return { logger, lines };
};

const emit = (format: LogFormat, line: LogLine | undefined): string[] => {
  const { logger, lines } = capture(format);
  if (line === undefined) throw new Error('no log line');
  logger.log(line.level, line.message, line.fields);
  return lines;
};

const parsed = (lines: readonly string[]): Record<string, unknown>[] => lines.map((l) => JSON.parse(l) as Record<string, unknown>);

test('a JSON line is one object per line with level, time and msg', (t) => {
  const { logger, lines } = capture('json');
  logger.log('warn', 'something odd');
  t.is(lines.length, 1);
  t.true(lines[0]!.endsWith('\n'));
  t.is(lines[0]!.trim().split('\n').length, 1);
  const [o] = parsed(lines);
  t.is(o!.level, 'warn');
  t.is(o!.msg, 'something odd');
  t.false(Number.isNaN(Date.parse(String(o!.time))));
});

test('the join line names the member, its remote endpoint and its identity', (t) => {
  const [o] = parsed(
    emit('json', describeServerEvent({ type: 'joined', id: 3, remote: '192.0.2.7:50000', address: '10.0.0.2', via: 'hello', members: 1, identity: 'alice' })),
  );
  t.like(o, { level: 'info', event: 'joined', member: '10.0.0.2', remote: '192.0.2.7:50000', identity: 'alice' });
  t.regex(String(o!.msg), /member 10\.0\.0\.2 \(alice\) joined from 192\.0\.2\.7:50000/);
});

test('an unknown identity is left out of the JSON line', (t) => {
  const [o] = parsed(emit('json', describeServerEvent({ type: 'joined', id: 3, remote: '192.0.2.7:50000', address: '10.0.0.2', via: 'hello', members: 1 })));
  t.false('identity' in o!);
});

test('leave and refusal lines name the member and the reason', (t) => {
  const [left] = parsed(
    emit('json', describeServerEvent({ type: 'left', id: 3, remote: '192.0.2.7:50000', address: '10.0.0.2', reason: 'idle', detail: 'silent for 30 s', members: 0 })),
  );
  t.like(left, { level: 'info', event: 'left', member: '10.0.0.2', remote: '192.0.2.7:50000', reason: 'idle' });
  const [refused] = parsed(
    emit('json', describeServerEvent({ type: 'rejected', id: 4, remote: '192.0.2.8:50001', address: '10.0.0.2', reason: 'ip-conflict', message: '10.0.0.2 is in use' })),
  );
  t.like(refused, { level: 'warn', event: 'rejected', member: '10.0.0.2', remote: '192.0.2.8:50001', reason: 'ip-conflict' });
  const [client] = parsed(emit('json', describeClientEvent({ type: 'rejected', reason: 'max-clients', message: 'full' })));
  t.like(client, { level: 'error', reason: 'max-clients' });
});

test('a drop summary names the member, the reasons and the counts', (t) => {
  const [o] = parsed(emit('json', describeServerEvent({ type: 'drops', who: '10.0.0.3', drops: { isolation: 4, 'no-route': 1 } })));
  t.like(o, { level: 'warn', member: '10.0.0.3', reason: 'isolation,no-route', dropped: 5, drops: { isolation: 4, 'no-route': 1 } });
  const [tun] = parsed(emit('json', describeServerEvent({ type: 'drops', who: 'tun', drops: { 'queue-full': 2 } })));
  t.false('member' in tun!);
  t.like(tun, { at: 'tun', reason: 'queue-full' });
});

test('the text format is TIME LEVEL message, without the fields', (t) => {
  const lines = emit('text', describeServerEvent({ type: 'left', id: 3, remote: '192.0.2.7:50000', address: '10.0.0.2', reason: 'idle', detail: 'silent', members: 0 }));
  t.regex(lines[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  member 10\.0\.0\.2 \(192\.0\.2\.7:50000\) left: idle \(silent\); 0 members\n$/);
});

test('lines below the level are skipped, and the level can change while running', (t) => {
  const { logger, lines } = capture('text', 'warn');
  logger.log('debug', 'd');
  logger.log('info', 'i');
  logger.log('warn', 'w');
  logger.log('error', 'e');
  t.deepEqual(lines.map((l) => l.split(' ').slice(1).join(' ').replace(/ +/, ' ').trim()), ['WARN w', 'ERROR e']);
  logger.level = 'debug';
  t.is(logger.level, 'debug');
  logger.log('debug', 'now');
  t.regex(lines.at(-1)!, /DEBUG now/);
});

test('auto means text on a terminal and JSON lines otherwise', (t) => {
  t.is(resolveLogFormat('auto', true), 'text');
  t.is(resolveLogFormat('auto', false), 'json');
  t.is(resolveLogFormat('json', true), 'json');
  t.is(resolveLogFormat('text', false), 'text');
  t.is(createLogger({ format: 'auto', isTty: false, write: () => undefined }).format, 'json');
});

test('the seed signature createLogger(level, write) still works', (t) => {
  const lines: string[] = [];
  const logger = createLogger('error', (l) => void lines.push(l));
  logger.log('warn', 'no');
  logger.log('error', 'yes');
  t.is(lines.length, 1);
});
