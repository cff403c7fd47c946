/**
 * Turns the core's error codes into undici's own error classes (from the `undici` package itself, so
 * `instanceof` and `code` work as they do with `undici.Agent`), and OS codes into Node-style errors.
 */
import { errors } from 'undici'
import { constants } from 'node:os'
import { socketInfo, type ConnectionSeen } from './connection-info'
import { isTlsCode, tlsError } from './tls-errors'

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

/** The error a request ends with, for a code and message from the core. */
export function errorFromCore(code: string, message: string, destination: Destination, connection: ConnectionSeen | null = null): Error {
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
      if (connection !== null) err.socket = socketInfo(connection)
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
