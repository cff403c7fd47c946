/**
 * The native addon's surface, typed. Everything here is implemented in `native/src` (Rust, Neon) and only
 * marshals: HTTP behaviour lives in the core crate, the undici contract in the TypeScript layer.
 */
import { loadAddon } from './load'

/** Opaque handle on a native agent (a Neon `JsBox`). */
export interface NativeAgent {
  readonly __nativeAgent: never
}

/**
 * Agent options as the native side reads them, sent as one JSON document (`native/src/options.rs`); times in
 * milliseconds, 0 disables a timeout.
 */
export interface NativeAgentOptions {
  connectTimeout: number
  headersTimeout: number
  bodyTimeout: number
  keepAliveTimeout: number
  /** Longest idle time a server's `Keep-Alive: timeout=` hint may grant (undici's `keepAliveMaxTimeout`). */
  keepAliveMaxTimeout?: number
  /** Taken off the server's hint (undici's `keepAliveTimeoutThreshold`). */
  keepAliveTimeoutThreshold?: number
  maxResponseSize: number
  maxHeaderSize: number
  allowH2: boolean
  /** HTTP/2 on every connection (prior knowledge on cleartext ones). */
  h2c?: boolean
  /** Most connections per origin; 0 = unlimited. */
  connections?: number
  /** IP address outgoing connections bind to. */
  localAddress?: string | null
  /** Happy eyeballs: ms each connection attempt gets before the next address is tried; 0 = off (in turn). */
  autoSelectFamilyAttemptTimeout?: number
  tls?: NativeTlsOptions | null
  proxy?: NativeProxyOptions | null
  /** Retry, circuit breaker and rate limit (see src/policies.ts); absent = none. */
  policies?: NativePolicies | null
}

/** Validated policies: the agent's, and each listed origin's merged over them (mirrors `Policies` in the core). */
export type NativePolicies = Record<string, unknown> & { origins: Record<string, Record<string, unknown>> }

/** TLS settings (mirrors `TlsOptions` in the core); certificates and keys as PEM, keys unencrypted. */
export interface NativeTlsOptions {
  ca: string | null
  extraCa: string | null
  cert: string | null
  key: string | null
  rejectUnauthorized: boolean
  servername: string | null
}

/** Proxy settings (mirrors `ProxyOptions` in the core). */
export interface NativeProxyOptions {
  http: string | null
  https: string | null
  noProxy: string | null
  /** `name, value, …` sent to the proxy. */
  headers: string[]
  tls: NativeTlsOptions | null
}

/**
 * The wire protocol, as the addon exports it (`native/src/protocol.rs` defines it, with the layout of every
 * array that crosses the boundary).
 */
export interface Protocol {
  fieldSeparator: string
  eventFields: string[]
  headFields: string[]
  requestFields: string[]
  statsFields: string[]
  events: Record<
    | 'NONE'
    | 'START'
    | 'DATA'
    | 'END'
    | 'ERROR'
    | 'PULL'
    | 'CONNECT'
    | 'DISCONNECT'
    | 'CONNECTION_ERROR'
    | 'RETRY'
    | 'CIRCUIT'
    | 'CONNECTING'
    | 'UPGRADE'
    | 'READ_END'
    | 'WRITTEN'
    | 'CONNECTED',
    number
  >
  bodyModes: Record<'NONE' | 'PULL_UNKNOWN_LENGTH' | 'BYTES', number>
  switches: Record<'NONE' | 'PROTOCOL' | 'CONNECT', number>
}

/** Receives batches of events, in the layout of {@link Protocol} (see `deliverBatch` in batch.ts). */
export type DeliverFn = (
  numbers: Float64Array,
  count: number,
  text: string,
  data: Buffer | undefined,
  buffers: Buffer[] | undefined,
  agentId: number
) => void

export interface NativeBinding {
  readonly protocol: Protocol
  /**
   * `options` is the JSON of {@link NativeAgentOptions}; `agentId` names the agent in its connection events
   * (`deliver` is shared by all agents).
   */
  agentNew(options: string, deliver: DeliverFn, agentId: number): NativeAgent
  agentSetActive(agent: NativeAgent, active: boolean): void
  agentClose(agent: NativeAgent): void
  /** JS processed a batch: whether more events wait (then call `agentDrain` on a later turn). */
  agentDrainDone(agent: NativeAgent): boolean
  /** Delivers the next batch of waiting events. */
  agentDrain(agent: NativeAgent): void
  /** `statsFields` per origin with requests, open connections or known state. */
  agentStats(agent: NativeAgent): Array<string | number>
  /** Every origin's counters: Prometheus text, or JSON text when `json`. */
  agentMetrics(agent: NativeAgent, json: boolean): string
  /** Whether the origin's retry policy covers `method`. */
  agentRetries(agent: NativeAgent, origin: string, method: string): boolean
  setWorkerThreads(threads: number): boolean
  /**
   * Starts `count` requests: `requestFields` numbers per request in `numbers`, their method, URL, headers and
   * switch target (see `switches`) back to back in `text`, the bodies given as bytes in `bodies` (see
   * `Submissions`). A request that leaves HTTP then takes writes through `upgradeWrite`.
   */
  dispatchBatch(agent: NativeAgent, text: string, numbers: Float64Array, count: number, bodies: Uint8Array[] | null): void
  requestAbort(agent: NativeAgent, id: number): void
  requestsProceed(agent: NativeAgent, ids: Float64Array, count: number): void
  requestPause(agent: NativeAgent, id: number): void
  requestResume(agent: NativeAgent, id: number): void
  requestPushBody(agent: NativeAgent, id: number, chunk: Uint8Array | string | null): void
  /** One write onto a request's upgraded connection (WRITTEN reports its completion); `null` ends it. */
  upgradeWrite(agent: NativeAgent, id: number, chunks: Uint8Array[] | null): void
}

/*
 * The protocol's values, read from the addon when it loads (see readProtocol). Every use comes after an agent
 * exists, hence after the load.
 */
/** Separates fields in head, trailer and request header strings. */
export let FIELD_SEPARATOR = '\0'
/** Numbers per event in a batch. */
export let EVENT_FIELDS = 0
/** An event that could not be encoded (its request, if any, got an ERROR instead). */
export let EVENT_NONE = 0
export let EVENT_START = 0
export let EVENT_DATA = 0
export let EVENT_END = 0
export let EVENT_ERROR = 0
export let EVENT_PULL = 0
/**
 * Connection events: `id` is the agent's, `a` the origin, `b` for CONNECT `remote\0h1|h2` (remote `ip:port`, empty
 * when unknown), for CONNECTION_ERROR `code\0message`.
 */
export let EVENT_CONNECT = 0
export let EVENT_DISCONNECT = 0
export let EVENT_CONNECTION_ERROR = 0
/** The retry policy sends a request again: `a` = retry number, from 1. */
export let EVENT_RETRY = 0
/** A circuit breaker changed state: `id` is the agent's, `a` the origin, `b` the state. */
export let EVENT_CIRCUIT = 0
/** A connection is being made (diagnostics' `beforeConnect`): `id` is the agent's, `a` the origin. */
export let EVENT_CONNECTING = 0
/**
 * A request's connection switched protocols (`a`, `b` as START); its upgraded connection's events follow: DATA,
 * READ_END (the server ended its direction), WRITTEN (one `upgradeWrite` completed), ERROR.
 */
export let EVENT_UPGRADE = 0
export let EVENT_READ_END = 0
export let EVENT_WRITTEN = 0
/**
 * A gated request has its connection (see `gated` in `dispatchBatch`): its start callback runs now, then
 * `requestsProceed` lets it write itself, or `requestAbort` drops it unwritten.
 */
export let EVENT_CONNECTED = 0
/** `bodyMode` values besides a non-negative pulled length. */
export let BODY_NONE = 0
export let BODY_PULL_UNKNOWN_LENGTH = 0
export let BODY_BYTES = 0
/** Fields of a START event's `b` before the header pairs. */
export let HEAD_FIELDS = 0
/** Values per origin in `agentStats`. */
export let STATS_FIELDS = 0
/** Numbers per request in `dispatchBatch`. */
export let REQUEST_FIELDS = 0
/** `switch` values: how a request leaves HTTP (an upgrade to a protocol, a CONNECT), or not at all. */
export let SWITCH_NONE = 0
export let SWITCH_PROTOCOL = 0
export let SWITCH_CONNECT = 0

/**
 * The layouts this module's readers and writers are written for: a batch has these numbers per event
 * (batch.ts); a dispatch these numbers per request (submissions.ts); stats these per
 * origin (stats.ts). An addon with another layout is refused at load.
 */
const LAYOUT = {
  eventFields: ['kind', 'id', 'a', 'b', 'text'],
  headFields: ['remote', 'local', 'statusText'],
  requestFields: ['id', 'methodLength', 'urlLength', 'headersLength', 'bodyMode', 'headersTimeout', 'bodyTimeout', 'switch', 'switchLength', 'gated'],
  statsFields: ['origin', 'pending', 'running', 'connected']
}

function readProtocol(protocol: Protocol | undefined, file: string): void {
  const layout = protocol === undefined ? undefined : { eventFields: protocol.eventFields, headFields: protocol.headFields, requestFields: protocol.requestFields, statsFields: protocol.statsFields }
  if (JSON.stringify(layout) !== JSON.stringify(LAYOUT)) {
    throw new Error(
      `reqwest-dispatcher: the native addon (${file}) speaks another protocol than this JavaScript: a platform ` +
        'package of another version, or a stale local build. Reinstall reqwest-dispatcher, or rebuild with `npm run build`.'
    )
  }
  const events = protocol!.events
  FIELD_SEPARATOR = protocol!.fieldSeparator
  EVENT_FIELDS = protocol!.eventFields.length
  EVENT_NONE = events.NONE
  EVENT_START = events.START
  EVENT_DATA = events.DATA
  EVENT_END = events.END
  EVENT_ERROR = events.ERROR
  EVENT_PULL = events.PULL
  EVENT_CONNECT = events.CONNECT
  EVENT_DISCONNECT = events.DISCONNECT
  EVENT_CONNECTION_ERROR = events.CONNECTION_ERROR
  EVENT_RETRY = events.RETRY
  EVENT_CIRCUIT = events.CIRCUIT
  EVENT_CONNECTING = events.CONNECTING
  EVENT_UPGRADE = events.UPGRADE
  EVENT_READ_END = events.READ_END
  EVENT_WRITTEN = events.WRITTEN
  EVENT_CONNECTED = events.CONNECTED
  BODY_NONE = protocol!.bodyModes.NONE
  BODY_PULL_UNKNOWN_LENGTH = protocol!.bodyModes.PULL_UNKNOWN_LENGTH
  BODY_BYTES = protocol!.bodyModes.BYTES
  HEAD_FIELDS = protocol!.headFields.length
  STATS_FIELDS = protocol!.statsFields.length
  REQUEST_FIELDS = protocol!.requestFields.length
  SWITCH_NONE = protocol!.switches.NONE
  SWITCH_PROTOCOL = protocol!.switches.PROTOCOL
  SWITCH_CONNECT = protocol!.switches.CONNECT
}

let loaded: NativeBinding | undefined

/**
 * The addon, loaded on first use (the prebuilt platform package, else a local build: see `load.ts`) so that a
 * missing addon fails with a message when the first Agent is made rather than at import.
 */
export function binding(): NativeBinding {
  if (loaded === undefined) {
    const { addon, file } = loadAddon<NativeBinding>()
    readProtocol(addon.protocol, file)
    loaded = addon
  }
  return loaded
}
