/**
 * The native addon's surface, typed. Everything here is implemented in `native/src` (Rust, Neon) and only
 * marshals: HTTP behaviour lives in the core crate, the undici contract in the TypeScript layer.
 */
import { join } from 'node:path'

/** Opaque handle on a native agent (a Neon `JsBox`). */
export interface NativeAgent {
  readonly __nativeAgent: never
}

/** Agent options as the native side reads them; times in milliseconds, 0 disables a timeout. */
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
  tls?: NativeTlsOptions | null
  proxy?: NativeProxyOptions | null
  /** Retry, circuit breaker and rate limit as JSON (see src/policies.ts); absent = none. */
  policies?: string | null
}

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
 * Receives batches of events: `[dataBuffer, agentId, kind, id, a, b, kind, id, a, b, …]`. `dataBuffer` holds the
 * body bytes of the batch's small DATA events (`a` = offset, `b` = length); a large chunk comes as its own Buffer in `a`; see `native/src/events.rs`.
 */
export type DeliverFn = (batch: unknown[]) => void

export interface NativeBinding {
  /** `agentId` names the agent in its connection events (`deliver` is shared by all agents). */
  agentNew(options: NativeAgentOptions, deliver: DeliverFn, agentId: number): NativeAgent
  agentSetActive(agent: NativeAgent, active: boolean): void
  agentClose(agent: NativeAgent): void
  /** JS processed a batch: whether more events wait (then call `agentDrain` on a later turn). */
  agentDrainDone(agent: NativeAgent): boolean
  /** Delivers the next batch of waiting events. */
  agentDrain(agent: NativeAgent): void
  /** `[origin, pending, running, …]` for every origin with requests or known state. */
  agentStats(agent: NativeAgent): Array<string | number>
  /** Every origin's counters: Prometheus text, or JSON text when `json`. */
  agentMetrics(agent: NativeAgent, json: boolean): string
  /** Whether the origin's retry policy covers `method`. */
  agentRetries(agent: NativeAgent, origin: string, method: string): boolean
  setWorkerThreads(threads: number): boolean
  /**
   * Starts requests: a flat array of `id, method, url, headers, bodyMode, body, headersTimeout, bodyTimeout`
   * per request. `headers` is `name\0value\0…`; `bodyMode` is BODY_NONE, BODY_BYTES (bytes in `body`),
   * BODY_PULL_UNKNOWN_LENGTH or a non-negative pulled length.
   */
  dispatchBatch(agent: NativeAgent, requests: unknown[]): void
  requestAbort(agent: NativeAgent, id: number): void
  requestPause(agent: NativeAgent, id: number): void
  requestResume(agent: NativeAgent, id: number): void
  requestPushBody(agent: NativeAgent, id: number, chunk: Uint8Array | string | null): void
}

/** Separates fields in head, trailer and request header strings. */
export const FIELD_SEPARATOR = '\0'

/** Event kinds (mirrors `native/src/events.rs`). */
export const EVENT_START = 1
export const EVENT_DATA = 2
export const EVENT_END = 3
export const EVENT_ERROR = 4
export const EVENT_PULL = 5
/**
 * Connection events: `id` is the agent's, `a` the origin, `b` for CONNECT `remote\0h1|h2` (remote `ip:port`, empty
 * when unknown), for CONNECTION_ERROR `code\0message`.
 */
export const EVENT_CONNECT = 6
export const EVENT_DISCONNECT = 7
export const EVENT_CONNECTION_ERROR = 8
/** The retry policy sends a request again: `a` = retry number, from 1. */
export const EVENT_RETRY = 9
/** A circuit breaker changed state: `id` is the agent's, `a` the origin, `b` the state. */
export const EVENT_CIRCUIT = 10
/** A connection is being made (diagnostics' `beforeConnect`): `id` is the agent's, `a` the origin. */
export const EVENT_CONNECTING = 11

/** `bodyMode` values besides a non-negative pulled length (mirrors `native/src/dispatch.rs`). */
export const BODY_NONE = -1
export const BODY_PULL_UNKNOWN_LENGTH = -2
export const BODY_BYTES = -3

let loaded: NativeBinding | undefined

/** The addon, loaded on first use so that a missing build fails with a message rather than at import. */
export function binding(): NativeBinding {
  if (loaded === undefined) {
    const file = join(__dirname, '..', 'index.node')
    try {
      loaded = require(file) as NativeBinding
    } catch (cause) {
      throw new Error(
        `reqwest-dispatcher: the native addon (${file}) could not be loaded. ` +
          'Build it with `npm run build` (needs a Rust toolchain: https://rustup.rs).',
        { cause }
      )
    }
  }
  return loaded
}
