// A three-member etcd cluster for tests (Debian's etcd-server, which .ci/run installs): a lab
// (test/helpers/lab.ts) whose hosts etcd1..etcd3 each run one member on their underlay address,
// plus any hosts the test wants beside them (hubs, a driver). Data directories live under a
// temporary directory; the lab kills every process it started (by PID) and removes its namespaces,
// and the directory is removed, when the test ends, also when it fails.
import type { ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, findBinary, type LabHost, type LabProcess } from './lab.js';
import { DEADLINE_MS, waitUntil } from './wait.js';

/** The etcd binaries, when installed. */
export const ETCD_BIN = findBinary('etcd');
export const ETCDCTL_BIN = findBinary('etcdctl');

/** One member of the cluster. */
export interface EtcdMember {
  readonly name: string;
  readonly host: LabHost;
  /** Its client URL, `http://<underlay ip>:2379`. */
  readonly clientUrl: string;
  proc: LabProcess;
}

/** A running cluster in its lab. */
export interface EtcdLab {
  readonly lab: Lab;
  readonly members: readonly EtcdMember[];
  /** Every member's client URL, in order (what `-etcd` takes, comma-separated). */
  readonly endpoints: readonly string[];
  /** The member that leads now (asked with etcdctl from `from`). */
  leader(from: LabHost): Promise<EtcdMember>;
  /** SIGKILLs a member (by its PID). */
  kill(member: EtcdMember): Promise<void>;
}

const MEMBERS = ['etcd1', 'etcd2', 'etcd3'] as const;

/** Starts the cluster in a new lab with `extraHosts` beside it and waits until every member is healthy; torn down when `t` ends. */
export async function startEtcdLab(t: ExecutionContext, extraHosts: readonly string[] = []): Promise<EtcdLab> {
  if (ETCD_BIN === undefined || ETCDCTL_BIN === undefined) throw new Error('etcd is not installed (apt-get install etcd-server etcd-client; .ci/run does)');
  const lab = await Lab.create({ hosts: [...MEMBERS, ...extraHosts], prefix: 'lwte' });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'lwt-etcd-'));
  t.teardown(async () => {
    await lab.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const hosts = MEMBERS.map((name) => lab.host(name));
  const initialCluster = hosts.map((h) => `${h.name}=http://${h.ip}:2380`).join(',');
  const spawn = (h: LabHost): LabProcess =>
    h.spawn(ETCD_BIN, [
      '--name', h.name,
      '--data-dir', path.join(dataDir, h.name),
      '--listen-client-urls', `http://${h.ip}:2379`,
      '--advertise-client-urls', `http://${h.ip}:2379`,
      '--listen-peer-urls', `http://${h.ip}:2380`,
      '--initial-advertise-peer-urls', `http://${h.ip}:2380`,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', `lwt-${lab.id}`,
      '--log-level', 'warn',
    ]);
  const members: EtcdMember[] = hosts.map((h) => ({ name: h.name, host: h, clientUrl: `http://${h.ip}:2379`, proc: spawn(h) }));
  const endpoints = members.map((m) => m.clientUrl);
  const ctl = (from: LabHost, args: readonly string[]) => from.exec(ETCDCTL_BIN, ['--endpoints', endpoints.join(','), '--dial-timeout', '2s', '--command-timeout', '3s', ...args], { timeoutMs: DEADLINE_MS });
  await waitUntil(async () => {
    for (const m of members) if (!m.proc.running) throw new Error(`${m.name} exited:\n${m.proc.output()}`);
    return (await ctl(hosts[0]!, ['endpoint', 'health'])).code === 0;
  }, 'every etcd member healthy');
  return {
    lab,
    members,
    endpoints,
    async leader(from) {
      const out = await ctl(from, ['endpoint', 'status', '--write-out', 'json']);
      const statuses = JSON.parse(out.stdout) as { Endpoint: string; Status: { header: { member_id: number }; leader: number } }[];
      const lead = statuses.find((s) => s.Status.header.member_id === s.Status.leader);
      const member = members.find((m) => m.clientUrl === lead?.Endpoint);
      if (member === undefined) throw new Error(`no leader among ${out.stdout}`);
      return member;
    },
    async kill(member) {
      member.proc.kill('SIGKILL');
      await member.proc.exited;
    },
  };
}
