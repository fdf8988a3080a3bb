// The settings the pipeline scenario tests start from: a hub at 10.0.0.1/24 and a client at
// 10.0.0.2/24 with the CLI's defaults, and small queues (tests override what they exercise).
import type { ClientSettings, ServerSettings } from '../../pipelines/settings.js';
import { parseIpv4 } from '../../operators/core/address.js';

/** A hub with the defaults and queues of `queue` packets. */
export function hubSettings(queue: number, overrides: Partial<ServerSettings> = {}): ServerSettings {
  return {
    tunnel: { address: parseIpv4('10.0.0.1')!, prefix: 24 },
    mtu: 1400,
    keepaliveMs: 10_000,
    timeoutMs: 30_000,
    sendQueueSize: queue,
    recvQueueSize: queue,
    clientIsolation: false,
    maxClients: 100,
    multiClient: true,
    helloTimeoutMs: 5_000,
    ...overrides,
  };
}

/** A client of hub.test:9000 with the defaults and queues of `queue` packets. */
export function clientSettings(queue: number, overrides: Partial<ClientSettings> = {}): ClientSettings {
  return {
    tunnel: { address: parseIpv4('10.0.0.2')!, prefix: 24 },
    mtu: 1400,
    keepaliveMs: 10_000,
    timeoutMs: 30_000,
    sendQueueSize: queue,
    recvQueueSize: queue,
    remotes: [{ host: 'hub.test', port: 9000 }],
    backoff: { initialMs: 1_000, maxMs: 30_000 },
    ...overrides,
  };
}
