/**
 * The error catalogue of the package: turns the core's error codes into undici's own error classes (from the
 * `undici` package itself, so `instanceof` and `code` work as they do with `undici.Agent`), OS codes into
 * Node-style system errors and TLS codes into the errors Node's `tls.connect` raises; defines the errors of
 * our own policies; and reports exceptions that have nowhere else to go.
 */
import { errors } from 'undici'
import { constants } from 'node:os'
import { socketInfo, type ConnectionSeen, type SocketCounters } from './connection-info'

/**
 * A request failed fast because its origin's circuit breaker is open (see the `circuitBreaker` option).
 * A subclass of undici's `UndiciError`; `code` is `UND_ERR_CIRCUIT_OPEN`.
 */
export class CircuitOpenError extends errors.UndiciError {
  constructor(message = 'Circuit breaker is open') {
    super(message)
    this.name = 'CircuitOpenError'
    this.code = 'UND_ERR_CIRCUIT_OPEN'
  }
}

/**
 * A request was refused by its origin's rate limiter: its wait for a turn would have exceeded `maxWait`
 * (see the `rateLimit` option). A subclass of undici's `UndiciError`; `code` is `UND_ERR_RATE_LIMITED`.
 */
export class RateLimitError extends errors.UndiciError {
  constructor(message = 'Rate limit exceeded') {
    super(message)
    this.name = 'RateLimitError'
    this.code = 'UND_ERR_RATE_LIMITED'
  }
}

/** A Node-style system error, as `net.connect` or `dns.lookup` would raise it. */
export interface SystemError extends Error {
  code: string
  errno?: number
  syscall?: string
  hostname?: string
}

/** Where a request was going, for Node-style messages (`connect ECONNREFUSED 127.0.0.1:80`). */
export interface Destination {
  hostname: string
  /** `host:port` */
  address: string
}

function systemError(code: string, message: string, destination: Destination): SystemError {
  // An established connection failing says which call failed (`read ECONNRESET`), as Node's socket does.
  const io = /^(read|write) /.exec(message)?.[1]
  const syscall = io ?? (code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'getaddrinfo' : 'connect')
  const text =
    io !== undefined
      ? `${io} ${code}`
      : syscall === 'getaddrinfo'
        ? `getaddrinfo ${code} ${destination.hostname}`
        : `connect ${code} ${destination.address}`
  const err = new Error(text) as SystemError
  err.code = code
  err.syscall = syscall
  const errno = (constants.errno as Record<string, number | undefined>)[code]
  if (errno !== undefined) err.errno = -errno
  if (syscall === 'getaddrinfo') err.hostname = destination.hostname
  return err
}

/*
 * TLS failures as Node reports them: a plain `Error` with OpenSSL's code (`DEPTH_ZERO_SELF_SIGNED_CERT`,
 * `CERT_HAS_EXPIRED`, …) or Node's own (`ERR_TLS_CERT_ALTNAME_INVALID`, with `reason` and `host`), or
 * `ERR_SSL_*` for a handshake the server broke off. undici hands these to the handler unchanged.
 */

/** OpenSSL verification codes the core reports (see packages/core/src/tls.rs). */
const CERTIFICATE_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_PURPOSE',
  'CERT_REJECTED'
])

const ALTNAME_PREFIX = "Hostname/IP does not match certificate's altnames: "

/** Whether `code` is a TLS failure's code. */
function isTlsCode(code: string): boolean {
  return CERTIFICATE_CODES.has(code) || code.startsWith('ERR_SSL_') || code === 'ERR_TLS_CERT_ALTNAME_INVALID'
}

export interface TlsError extends Error {
  code: string
  reason?: string
  host?: string
}

/**
 * Node 24 and later end the message of the two failures an unknown root CA causes with a hint (measured: 24.22,
 * 26.12; not 20.20, 22.23). Ours does the same on those Node lines, so that messages compare equal to undici's.
 */
const SYSTEM_CA_HINT = '; if the root CA is installed locally, try running Node.js with --use-system-ca'
const HINTED_CODES = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'])
const NODE_HINTS_SYSTEM_CA = Number(process.versions.node.split('.')[0]) >= 24

/** The error Node's `tls.connect` would have raised for `code`. */
function tlsError(code: string, message: string, hostname: string): TlsError {
  if (NODE_HINTS_SYSTEM_CA && HINTED_CODES.has(code) && !message.endsWith(SYSTEM_CA_HINT)) message += SYSTEM_CA_HINT
  const err = new Error(message) as TlsError
  err.code = code
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    err.reason = message.startsWith(ALTNAME_PREFIX) ? message.slice(ALTNAME_PREFIX.length) : message
    err.host = hostname
  }
  return err
}

/** The error a request ends with, for a code and message from the core. */
export function errorFromCore(
  code: string,
  message: string,
  destination: Destination,
  connection: ConnectionSeen | null = null,
  counters: SocketCounters | null = null
): Error {
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new errors.ConnectTimeoutError(message)
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new errors.HeadersTimeoutError(message)
    case 'UND_ERR_BODY_TIMEOUT':
      return new errors.BodyTimeoutError(message)
    case 'UND_ERR_HEADERS_OVERFLOW':
      return new errors.HeadersOverflowError(message)
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return new errors.ResponseExceededMaxSizeError(message)
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      return new errors.ResponseContentLengthMismatchError(message)
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
      return new errors.RequestContentLengthMismatchError(message)
    case 'UND_ERR_SOCKET': {
      // undici passes what it knows of the socket; here, what the response head told of its connection.
      const err = new errors.SocketError(message)
      if (connection !== null) err.socket = socketInfo(connection, counters)
      return err
    }
    case 'UND_ERR_ABORTED':
      return new errors.RequestAbortedError(message)
    case 'UND_ERR_INVALID_ARG':
      return new errors.InvalidArgumentError(message)
    case 'UND_ERR_NOT_SUPPORTED':
      return new errors.NotSupportedError(message)
    case 'UND_ERR_CIRCUIT_OPEN':
      return new CircuitOpenError(message)
    case 'UND_ERR_RATE_LIMITED':
      return new RateLimitError(message)
    default:
      if (isTlsCode(code)) return tlsError(code, message, destination.hostname)
      // undici 7 leaves HTTPParserError's code undefined (it looks llhttp's name up by number and finds none).
      if (code.startsWith('HPE_')) return new errors.HTTPParserError(message)
      if (/^E[A-Z0-9_]+$/.test(code)) return systemError(code, message, destination)
      return Object.assign(new errors.UndiciError(message), { code })
  }
}

/**
 * Reports an exception that has nowhere to go but the process (a handler's own exception from a final
 * callback, a listener's exception from one of the agent's events), as an uncaught exception, once: as undici
 * does, and without keeping the caller from going on with its work.
 */
export function reportUncaught(err: unknown): void {
  queueMicrotask(() => {
    throw err
  })
}
