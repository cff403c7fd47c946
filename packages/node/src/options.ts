/**
 * Agent options: undici's names, defaults and validation messages, reduced to what the native side reads.
 */
import { errors } from 'undici'
import type { NativeAgentOptions } from './native'

const { InvalidArgumentError } = errors

/** Options of {@link Agent}, as undici's `Agent.Options` names them. */
export interface AgentOptions {
  /** Time to wait for the response headers, in ms (default 300 000; 0 disables). */
  headersTimeout?: number
  /** Longest idle time between response body chunks, in ms (default 300 000; 0 disables). */
  bodyTimeout?: number
  /** Time to establish a connection, in ms (default 10 000). Same as `connect.timeout`. */
  connectTimeout?: number
  /** Connection options; only `timeout` is read today. */
  connect?: { timeout?: number | null }
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
  /** Most connections per origin (default unlimited). Accepted; see COMPATIBILITY.md. */
  connections?: number | null
  /** Requests pipelined per connection (default 1). Accepted; see COMPATIBILITY.md. */
  pipelining?: number
}

function nonNegative(name: string, value: unknown, fallback: number): number {
  if (value == null) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(`invalid ${name}`)
  }
  return value
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
  nonNegative('keepAliveMaxTimeout', options.keepAliveMaxTimeout, 600e3)
  return {
    connectTimeout: nonNegative('connectTimeout', connectTimeout, 10e3),
    headersTimeout: nonNegative('headersTimeout', options.headersTimeout, 300e3),
    bodyTimeout: nonNegative('bodyTimeout', options.bodyTimeout, 300e3),
    keepAliveTimeout: nonNegative('keepAliveTimeout', options.keepAliveTimeout, 4e3),
    maxResponseSize: options.maxResponseSize ?? -1,
    maxHeaderSize: options.maxHeaderSize ?? 16384,
    allowH2: options.allowH2 ?? false
  }
}
