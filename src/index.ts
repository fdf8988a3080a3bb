// The programmatic API of lightweight-tunnel: pipelines, operators, drivers and config decoding.
export { formatIpv4, parseIpv4, type Ipv4Prefix } from '../operators/core/address.js';
// See docs/programmatic-api.md.

/** The hub pipeline: `(settings, ports) => Observable<ServerEvent>`. */
export { serverPipeline, type ServerPorts } from '../pipelines/server.js';
/** The client pipeline: `(settings, ports) => Observable<ClientEvent>`. */
export { clientPipeline, type ClientPorts } from '../pipelines/client.js';
/** Events, session end reasons and the errors the pipelines raise. */
export { SessionEnd, RejectedError, endReason, type ServerEvent, type ClientEvent, type DropsEvent, type SessionEndReason } from '../pipelines/events.js';
/** Port contracts that drivers implement and tests fake. */
export type { PacketBatch, PacketSink, TunPort, ConnectionPort, ListenerPort, ListenerEvent, DialerPort } from '../pipelines/ports.js';
/** Typed settings of both pipelines. */
export type { ServerSettings, ClientSettings, CommonSettings } from '../pipelines/settings.js';

/** Operators the pipelines are built from, for composing pipelines of your own. */
export { deframe, type DeframeOptions } from '../operators/deframe.js';
export { route, routeBatch, type RouteDecision } from '../operators/route.js';
export { isolate, isolateBatch } from '../operators/isolate.js';
export { learnSource } from '../operators/learnSource.js';
export { detectIdle, IdleError } from '../operators/detectIdle.js';
export { keepalive } from '../operators/keepalive.js';
export { boundedQueue, type BoundedQueueOptions } from '../operators/boundedQueue.js';
export { summarizeDrops, type DropReport } from '../operators/summarizeDrops.js';
export { reconnect, type ReconnectOptions, type RetryInfo } from '../operators/reconnect.js';
export type { DropReason, DropCounts, Inbound, Routed, RoutedBatch } from '../operators/core/packet.js';
/** The wire format. */
export { FrameType, encodeFrame, encodeFrames, HEADER_BYTES, MAX_BODY_COMPAT, MAX_PACKET_COMPAT, type Frame } from '../operators/core/wire/frames.js';
export { FrameDecoder, FrameError } from '../operators/core/wire/decoder.js';
export { PROTOCOL_VERSION, REJECT_REASONS, type RejectReason, type Hello, type Welcome, type Reject } from '../operators/core/wire/control.js';
export { isIpv4, ipv4Source, ipv4Destination } from '../operators/core/wire/ipv4.js';

/** Drivers: Node sockets and the TUN device as ports. */
export { makeNetListener, makeNetDialer, socketConnection, type NetListenerOptions, type NetDialerOptions } from './drivers/net.js';
export { tunPort } from './drivers/tun.js';
export { TunDevice, TunError, type TunOpenOptions } from './tun/index.js';

/** Config decoding (flags and JSON) into settings. */
export { parseCommandLine, decodeConfig, toServerSettings, toClientSettings, ConfigError, renderConfigErrors, type Config, type CliCommand } from './config/index.js';
/** Pipeline events as log lines. */
export { describeServerEvent, describeClientEvent, describeDrops, type LogLine } from './describe.js';
export { VERSION } from './version.js';
