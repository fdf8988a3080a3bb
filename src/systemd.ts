// systemd readiness (Type=notify): tells the service manager when the hub listens or the client
// has joined, and when it is stopping. Node has no unix datagram sockets, so the message is sent
// by `systemd-notify` (child_process) with `--pid` naming this process; the units set
// NotifyAccess=all so that systemd accepts it from a child. Best effort, never fatal.
import { execFile } from 'node:child_process';

/** Runs a command; calls `done` with an error when it could not run or failed. */
export type RunCommand = (file: string, args: readonly string[], done: (err: Error | null) => void) => void;

/** What the program tells the service manager. Every call does nothing outside systemd. */
export interface SystemdNotifier {
  /** The service is up (sent once; later calls do nothing). */
  ready(): void;
  /** The service is shutting down (sent once). */
  stopping(): void;
}

export interface SystemdNotifierOptions {
  /** Default process.env: notifications are sent only when NOTIFY_SOCKET is set. */
  readonly env?: NodeJS.ProcessEnv;
  /** Default process.pid: the MAINPID systemd is told about. */
  readonly pid?: number;
  /** Default execFile with a 5 s timeout. */
  readonly run?: RunCommand;
  /** Called with a one-line description when a notification could not be sent. */
  readonly onError?: (message: string) => void;
}

const defaultRun: RunCommand = (file, args, done) => {
  try {
    execFile(file, [...args], { timeout: 5000 }, (err) => done(err));
  } catch (err) {
    done(err as Error);
  }
};

/** A notifier for the service manager that started us; a no-op when NOTIFY_SOCKET is not set. */
export function makeSystemdNotifier(options: SystemdNotifierOptions = {}): SystemdNotifier {
  const env = options.env ?? process.env;
  const pid = options.pid ?? process.pid;
  const run = options.run ?? defaultRun;
  const enabled = (env.NOTIFY_SOCKET ?? '') !== '';
  const sent = new Set<string>();
  const send = (what: string, args: readonly string[]): void => {
    if (!enabled || sent.has(what)) return;
    sent.add(what);
    run('systemd-notify', [`--pid=${pid}`, ...args], (err) => {
      if (err !== null) options.onError?.(`systemd-notify ${what} failed: ${err.message.split('\n')[0] ?? ''}`);
    });
  };
  return {
    ready: () => send('ready', ['--ready']),
    stopping: () => send('stopping', ['STOPPING=1']),
  };
}
