/**
 * Agent options: undici's names, defaults and validation messages, reduced to what the native side reads.
 */
import { getDefaultAutoSelectFamily, getDefaultAutoSelectFamilyAttemptTimeout, isIP } from 'node:net'
import { errors } from 'undici'
import { UNDICI_8 } from './checks'
import { LARGEST_COUNT, waitMs } from './limits'
import type { NativeAgentOptions, NativeProxyOptions } from './native'
import { nativePolicies, type PolicyOptions } from './policies'
import { nativeTlsOptions, type TlsConnectOptions } from './tls-options'

const { InvalidArgumentError, NotSupportedError } = errors

/** Where a `ProxyAgent`/`EnvHttpProxyAgent` puts its proxy settings among the options it passes to `Agent`. */
export const kProxyOptions: unique symbol = Symbol('reqwest-dispatcher proxy options')

/** undici's `connect` option: socket and TLS settings for every connection of the agent. */
export interface ConnectOptions extends TlsConnectOptions {
  /** Same as `connectTimeout`. */
  timeout?: number | null
  /** Local IP address connections bind to (same as `localAddress`). */
  localAddress?: string
  /** Same as the agent's `autoSelectFamily`, which it overrides. */
  autoSelectFamily?: boolean
  /** Same as the agent's `autoSelectFamilyAttemptTimeout`, which it overrides. */
  autoSelectFamilyAttemptTimeout?: number
}

/**
 * Options of {@link Agent}, as undici's `Agent.Options` names them, plus the resilience policies run in the
 * core (`retry`, `circuitBreaker`, `rateLimit`, per origin through `origins`; see {@link PolicyOptions}).
 */
export interface AgentOptions extends PolicyOptions {
  /** Time to wait for the response headers, in ms (default 300 000; 0 disables). */
  headersTimeout?: number
  /** Longest idle time between response body chunks, in ms (default 300 000; 0 disables). */
  bodyTimeout?: number
  /** Time to establish a connection, in ms (default 10 000). Same as `connect.timeout`. */
  connectTimeout?: number
  /**
   * Socket and TLS options of every connection (`timeout`, `ca`, `cert`, `key`, `passphrase`, `rejectUnauthorized`,
   * `servername`, `localAddress`), as undici passes them to `tls.connect`. A connector function is not supported.
   */
  connect?: ConnectOptions
  /** How long an idle connection is kept for reuse, in ms (default 4 000). */
  keepAliveTimeout?: number
  /** Upper bound for a server-suggested keep-alive, in ms (default 600 000). Accepted; see COMPATIBILITY.md. */
  keepAliveMaxTimeout?: number
  /** Largest response body accepted, in bytes (default -1: unlimited). */
  maxResponseSize?: number
  /** Largest response header section accepted, in bytes (default 16 384). */
  maxHeaderSize?: number
  /** Offer HTTP/2 through ALPN on TLS connections (default false, as undici 7). */
  allowH2?: boolean
  /**
   * Speak HTTP/2 on every connection: by prior knowledge on `http:` origins (h2c, what undici's `H2CClient`
   * does) and as the only ALPN protocol on `https:` ones. Not an undici option (default false).
   */
  h2c?: boolean
  /** Local IP address connections bind to. */
  localAddress?: string
  /**
   * Happy eyeballs, as Node's `net.connect` does it for undici (default: `net.getDefaultAutoSelectFamily()`, on):
   * a host's IPv6 and IPv4 addresses are tried alternately, the next one as soon as an attempt fails or has not
   * connected within `autoSelectFamilyAttemptTimeout`. Off: one address after another, each until it fails.
   */
  autoSelectFamily?: boolean
  /**
   * Time given to each connection attempt before the next address is tried, in ms (default
   * `net.getDefaultAutoSelectFamilyAttemptTimeout()`, 250; at least 10). Used when `autoSelectFamily` is given.
   */
  autoSelectFamilyAttemptTimeout?: number
  /**
   * Most connections per origin (default unlimited). Enforced as most requests in flight per origin: one per
   * HTTP/1.1 connection, 100 per HTTP/2 connection.
   */
  connections?: number | null
  /** Requests pipelined per connection (default 1). Accepted; see COMPATIBILITY.md. */
  pipelining?: number
  /**
   * Limits of undici's `WebSocket` over this agent, which reads them from `agent.webSocketOptions`:
   * `maxFragments` (default 131 072) and `maxPayloadSize` (default 128 MiB; 0 disables either).
   */
  webSocket?: WebSocketOptions
}

/** undici's `WebSocketOptions`. */
export interface WebSocketOptions {
  /** Most fragments of one message (default 131 072; 0: no limit). */
  maxFragments?: number
  /** Largest message payload in bytes, compressed or not (default 128 MiB; 0: no limit). */
  maxPayloadSize?: number
}

/** Checks `value` (when given) with undici's rule `ok` and message; returns it, or `fallback` when absent. */
function checked(value: unknown, fallback: number, ok: (n: number) => boolean, message: string): number {
  if (value == null) return fallback
  if (typeof value !== 'number' || !ok(value)) throw new InvalidArgumentError(message)
  return value
}

const finiteAtLeastZero = (n: number): boolean => Number.isFinite(n) && n >= 0
const finiteAboveZero = (n: number): boolean => Number.isFinite(n) && n > 0
const integerAtLeastZero = (n: number): boolean => Number.isInteger(n) && n >= 0

/** A Node validation error (`ERR_INVALID_ARG_TYPE`, `ERR_OUT_OF_RANGE`), worded as Node's own validators word it. */
function nodeArgumentError(code: string, message: string, Class: typeof TypeError | typeof RangeError): Error {
  return Object.assign(new Class(message), { code })
}

/**
 * The happy-eyeballs attempt timeout in ms, 0 when off: undici hands `autoSelectFamily` and its timeout to
 * `net.connect` only when `autoSelectFamily` is a boolean, `connect` overrides both, and Node fills in its
 * defaults, checks the types, takes at least 10 ms, and connects to one address only when `localAddress` is set.
 * Node checks when connecting: here the agent refuses the options at once, with Node's errors.
 */
function attemptTimeout(options: AgentOptions, connect: ConnectOptions | null | undefined): number {
  const given: { autoSelectFamily?: unknown; autoSelectFamilyAttemptTimeout?: unknown } = {}
  if (typeof options.autoSelectFamily === 'boolean') {
    given.autoSelectFamily = options.autoSelectFamily
    given.autoSelectFamilyAttemptTimeout = options.autoSelectFamilyAttemptTimeout
  }
  for (const name of ['autoSelectFamily', 'autoSelectFamilyAttemptTimeout'] as const) {
    if (connect != null && Object.hasOwn(connect, name)) given[name] = connect[name]
  }
  let enabled = given.autoSelectFamily
  if (enabled == null) {
    enabled = getDefaultAutoSelectFamily()
  } else if (typeof enabled !== 'boolean') {
    throw nodeArgumentError('ERR_INVALID_ARG_TYPE', `The "options.autoSelectFamily" property must be of type boolean. Received ${describeType(enabled)}`, TypeError)
  }
  let timeout = given.autoSelectFamilyAttemptTimeout
  if (timeout == null) {
    timeout = getDefaultAutoSelectFamilyAttemptTimeout()
  } else {
    const name = '"options.autoSelectFamilyAttemptTimeout"'
    if (typeof timeout !== 'number') {
      throw nodeArgumentError('ERR_INVALID_ARG_TYPE', `The ${name} property must be of type number. Received ${describeType(timeout)}`, TypeError)
    }
    if (!Number.isInteger(timeout)) {
      throw nodeArgumentError('ERR_OUT_OF_RANGE', `The value of ${name} is out of range. It must be an integer. Received ${timeout}`, RangeError)
    }
    if (timeout < 1 || timeout > 2 ** 31 - 1) {
      throw nodeArgumentError('ERR_OUT_OF_RANGE', `The value of ${name} is out of range. It must be >= 1 && <= 2147483647. Received ${timeout}`, RangeError)
    }
  }
  const localAddress = options.localAddress ?? connect?.localAddress
  return enabled && localAddress == null ? Math.max(10, timeout as number) : 0
}

/** How Node's `ERR_INVALID_ARG_TYPE` describes a value of the wrong type. */
function describeType(value: unknown): string {
  if (typeof value === 'function') return `function ${value.name}`
  if (typeof value === 'object') return value === null ? 'null' : `an instance of ${value.constructor?.name ?? 'Object'}`
  const shown = typeof value === 'string' ? `'${value.length > 28 ? `${value.slice(0, 25)}...` : value}'` : String(value)
  return `type ${typeof value} (${shown})`
}

/** Options undici's Client refuses by name, with the replacement it names, in the order it checks them. */
const RENAMED: Record<string, string> = {
  keepAlive: 'unsupported keepAlive, use pipelining=0 instead',
  socketTimeout: 'unsupported socketTimeout, use headersTimeout & bodyTimeout instead',
  requestTimeout: 'unsupported requestTimeout, use headersTimeout & bodyTimeout instead',
  idleTimeout: 'unsupported idleTimeout, use keepAliveTimeout instead',
  maxKeepAliveTimeout: 'unsupported maxKeepAliveTimeout, use keepAliveMaxTimeout instead'
}

/**
 * `options` as undici's pools see them: undici hands its options to each origin's pool through a JSON clone,
 * which turns NaN and ±Infinity into `null`, so such a value means the default there (`maxOrigins` is read
 * before the clone).
 */
function asCloned(options: AgentOptions): AgentOptions {
  let copy: Record<string, unknown> | null = null
  for (const [key, value] of Object.entries(options)) {
    if (typeof value === 'number' && !Number.isFinite(value) && key !== 'maxOrigins') {
      copy ??= { ...options }
      delete copy[key]
    }
  }
  return (copy ?? options) as AgentOptions
}

/**
 * Validates `options` as undici's Agent, Pool and Client constructors do, check by check in their order (so that
 * with several bad options the same one is reported), and returns what the native side needs.
 */
export function nativeAgentOptions(given: AgentOptions): NativeAgentOptions {
  if (given === null || typeof given !== 'object') throw new InvalidArgumentError('invalid options')
  const o = given as Record<string, unknown>
  // undici's Agent, before it clones its options.
  if (o.factory !== undefined && typeof o.factory !== 'function') throw new InvalidArgumentError('factory must be a function.')
  const connect = given.connect
  if (connect != null && typeof connect !== 'function' && typeof connect !== 'object') {
    throw new InvalidArgumentError('connect must be a function or an object')
  }
  if (typeof connect === 'function') {
    throw new NotSupportedError('a connect function is not supported by reqwest-dispatcher: pass connect options')
  }
  if (o.maxOrigins !== undefined && (typeof o.maxOrigins !== 'number' || Number.isNaN(o.maxOrigins) || o.maxOrigins <= 0)) {
    throw new InvalidArgumentError('maxOrigins must be a number greater than 0')
  }
  const options = asCloned(given)
  const c = options as Record<string, unknown>
  // undici's Pool: 0 (or none) means no cap.
  const connections = checked(options.connections, 0, finiteAtLeastZero, 'invalid connections')
  // undici's Client.
  for (const [name, message] of Object.entries(RENAMED)) {
    if (c[name] !== undefined) throw new InvalidArgumentError(message)
  }
  const maxHeaderSize = checked(options.maxHeaderSize, 16384, (n) => Number.isInteger(n) && n >= 1, 'invalid maxHeaderSize')
  if (c.socketPath != null && typeof c.socketPath !== 'string') throw new InvalidArgumentError('invalid socketPath')
  const keepAliveTimeout = checked(options.keepAliveTimeout, 4e3, finiteAboveZero, 'invalid keepAliveTimeout')
  const keepAliveMaxTimeout = checked(options.keepAliveMaxTimeout, 600e3, finiteAboveZero, 'invalid keepAliveMaxTimeout')
  const threshold = checked(c.keepAliveTimeoutThreshold, 2e3, Number.isFinite, 'invalid keepAliveTimeoutThreshold')
  const headersTimeout = checked(options.headersTimeout, 300e3, integerAtLeastZero, 'headersTimeout must be a positive integer or zero')
  const bodyTimeout = checked(options.bodyTimeout, 300e3, integerAtLeastZero, 'bodyTimeout must be a positive integer or zero')
  checked(c.maxRequestsPerClient, 0, integerAtLeastZero, 'maxRequestsPerClient must be a positive number')
  const localAddress = options.localAddress ?? connect?.localAddress
  if (localAddress != null && (typeof localAddress !== 'string' || isIP(localAddress) === 0)) {
    throw new InvalidArgumentError('localAddress must be valid string IP address')
  }
  const maxResponseSize = checked(
    options.maxResponseSize,
    -1,
    (n) => Number.isInteger(n) && n >= -1,
    'maxResponseSize must be a positive number'
  )
  if (options.allowH2 != null && typeof options.allowH2 !== 'boolean') {
    throw new InvalidArgumentError('allowH2 must be a valid boolean value')
  }
  // undici 8 checks the HTTP/2 settings only when HTTP/2 may be used (allowH2 not false); undici 7 always.
  if (!UNDICI_8 || options.allowH2 !== false) {
    if (c.maxConcurrentStreams != null && (typeof c.maxConcurrentStreams !== 'number' || c.maxConcurrentStreams < 1)) {
      throw new InvalidArgumentError('maxConcurrentStreams must be a positive integer, greater than 0')
    }
    for (const name of ['initialWindowSize', 'connectionWindowSize']) {
      checked(c[name], 0, (n) => Number.isInteger(n) && n >= 1, `${name} must be a positive integer, greater than 0`)
    }
    checked(c.pingInterval, 0, integerAtLeastZero, 'pingInterval must be a positive integer, greater or equal to 0')
  }
  // Ours: undici's Agent does not check these.
  if (options.h2c != null && typeof options.h2c !== 'boolean') {
    throw new InvalidArgumentError('h2c must be a valid boolean value')
  }
  const connectTimeout = checked(
    options.connectTimeout ?? (Number.isFinite(connect?.timeout) ? connect?.timeout : undefined),
    10e3,
    finiteAtLeastZero,
    'invalid connectTimeout'
  )
  if (options.pipelining != null && (!Number.isInteger(options.pipelining) || options.pipelining < 0)) {
    throw new InvalidArgumentError('invalid pipelining')
  }
  const proxy = (options as { [kProxyOptions]?: NativeProxyOptions })[kProxyOptions] ?? null
  return {
    connectTimeout: waitMs(connectTimeout),
    headersTimeout: waitMs(headersTimeout),
    bodyTimeout: waitMs(bodyTimeout),
    keepAliveTimeout: waitMs(keepAliveTimeout),
    keepAliveMaxTimeout: waitMs(keepAliveMaxTimeout),
    keepAliveTimeoutThreshold: waitMs(Math.max(0, threshold)),
    maxResponseSize: Math.min(maxResponseSize, LARGEST_COUNT),
    maxHeaderSize: Math.min(maxHeaderSize, LARGEST_COUNT),
    allowH2: options.allowH2 ?? false,
    h2c: options.h2c ?? false,
    connections: Math.min(connections, LARGEST_COUNT),
    localAddress: localAddress ?? null,
    autoSelectFamilyAttemptTimeout: attemptTimeout(options, connect),
    tls: nativeTlsOptions(connect),
    proxy,
    policies: nativePolicies(options)
  }
}
