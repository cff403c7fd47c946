/**
 * Agent options: undici's names, defaults and validation messages, reduced to what the native side reads.
 */
import { isIP } from 'node:net'
import { errors } from 'undici'
import type { NativeAgentOptions, NativeProxyOptions } from './native'
import { nonNegative } from './checks'
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
  /** Accepted: the resolver tries IPv6 and IPv4 addresses in turn (happy eyeballs) anyway. */
  autoSelectFamily?: boolean
  /** Accepted; see `autoSelectFamily`. */
  autoSelectFamilyAttemptTimeout?: number
  /**
   * Most connections per origin (default unlimited). Enforced as most requests in flight per origin: one per
   * HTTP/1.1 connection, 100 per HTTP/2 connection.
   */
  connections?: number | null
  /** Requests pipelined per connection (default 1). Accepted; see COMPATIBILITY.md. */
  pipelining?: number
}

/** Validates `options` as undici's Agent/Client constructors do and returns what the native side needs. */
export function nativeAgentOptions(options: AgentOptions): NativeAgentOptions {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('invalid options')
  const connectTimeout = options.connectTimeout ?? options.connect?.timeout
  if (options.maxHeaderSize != null && (!Number.isInteger(options.maxHeaderSize) || options.maxHeaderSize < 1)) {
    throw new InvalidArgumentError('invalid maxHeaderSize')
  }
  if (options.maxResponseSize != null && (!Number.isInteger(options.maxResponseSize) || options.maxResponseSize < -1)) {
    throw new InvalidArgumentError('maxResponseSize must be a positive number')
  }
  if (options.allowH2 != null && typeof options.allowH2 !== 'boolean') {
    throw new InvalidArgumentError('allowH2 must be a valid boolean value')
  }
  if (options.connections != null && (!Number.isFinite(options.connections) || options.connections <= 0)) {
    throw new InvalidArgumentError('invalid connections')
  }
  if (options.pipelining != null && (!Number.isInteger(options.pipelining) || options.pipelining < 0)) {
    throw new InvalidArgumentError('invalid pipelining')
  }
  const threshold = (options as { keepAliveTimeoutThreshold?: unknown }).keepAliveTimeoutThreshold
  if (threshold != null && (typeof threshold !== 'number' || !Number.isFinite(threshold))) {
    throw new InvalidArgumentError('invalid keepAliveTimeoutThreshold')
  }
  if (options.h2c != null && typeof options.h2c !== 'boolean') {
    throw new InvalidArgumentError('h2c must be a valid boolean value')
  }
  const connect = options.connect
  if (typeof connect === 'function') {
    throw new NotSupportedError('a connect function is not supported by reqwest-dispatcher: pass connect options')
  }
  if (connect != null && typeof connect !== 'object') throw new InvalidArgumentError('connect must be a function or an object')
  const localAddress = options.localAddress ?? connect?.localAddress
  if (localAddress != null && (typeof localAddress !== 'string' || isIP(localAddress) === 0)) {
    throw new InvalidArgumentError('localAddress must be valid string IP address')
  }
  const proxy = (options as { [kProxyOptions]?: NativeProxyOptions })[kProxyOptions] ?? null
  return {
    connectTimeout: nonNegative('connectTimeout', connectTimeout, 10e3),
    headersTimeout: nonNegative('headersTimeout', options.headersTimeout, 300e3),
    bodyTimeout: nonNegative('bodyTimeout', options.bodyTimeout, 300e3),
    keepAliveTimeout: nonNegative('keepAliveTimeout', options.keepAliveTimeout, 4e3),
    keepAliveMaxTimeout: nonNegative('keepAliveMaxTimeout', options.keepAliveMaxTimeout, 600e3),
    keepAliveTimeoutThreshold: Math.max(0, (threshold as number | undefined) ?? 2e3),
    maxResponseSize: options.maxResponseSize ?? -1,
    maxHeaderSize: options.maxHeaderSize ?? 16384,
    allowH2: options.allowH2 ?? false,
    h2c: options.h2c ?? false,
    connections: options.connections ?? 0,
    localAddress: localAddress ?? null,
    tls: nativeTlsOptions(connect),
    proxy,
    policies: nativePolicies(options)
  }
}
