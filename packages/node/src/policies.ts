/**
 * Resilience policies run in the Rust core, per origin: `retry`, `circuitBreaker`, `rateLimit` (all off by
 * default). This module validates them with undici's error class and hands the core one document (within the
 * agent's options): the agent's policies plus, for each origin in `origins`, that origin's policies merged
 * over the agent's.
 */
import { errors } from 'undici'
import { TOKEN } from './checks'
import type { NativePolicies } from './native'
import { normalizeOrigin } from './request'
import { LARGEST_COUNT, LONGEST_WAIT_MS } from './limits'

const { InvalidArgumentError } = errors

/**
 * Retries inside the core, with undici `RetryHandler`'s option names and defaults. Only requests whose body
 * can be sent again (none, string, Buffer, Uint8Array) are retried, and never once the response head reached
 * JavaScript: the decision is made before.
 */
export interface RetryPolicy {
  /** Most retries after the first attempt (default 5). */
  maxRetries?: number
  /** Wait before the first retry, in ms (default 500). */
  minTimeout?: number
  /** Longest wait between attempts, in ms; also caps `Retry-After` (default 30 000). */
  maxTimeout?: number
  /** Each wait is the previous one times this (default 2). */
  timeoutFactor?: number
  /** Fraction (0–1) of each wait randomly taken off, so clients do not retry in lockstep (default 0). */
  jitter?: number
  /** Wait as long as the server's `Retry-After` asks (seconds or HTTP date; default true). */
  retryAfter?: boolean
  /** Methods retried (default `GET HEAD OPTIONS PUT DELETE TRACE`, the idempotent ones). */
  methods?: string[]
  /** Response statuses retried (default 429, 500, 502, 503, 504). */
  statusCodes?: number[]
  /**
   * Error codes retried (default `ECONNRESET ECONNREFUSED ENOTFOUND ENETDOWN ENETUNREACH EHOSTDOWN
   * EHOSTUNREACH EPIPE ETIMEDOUT UND_ERR_SOCKET`).
   */
  errorCodes?: string[]
}

/**
 * A circuit breaker per origin. Failures are errors (other than the request's own: aborted, invalid, body
 * source failed) and 5xx responses.
 */
export interface CircuitBreakerPolicy {
  /** Failure ratio (0–1) above which the circuit opens (default 0.5). */
  threshold?: number
  /** Outcomes the window must hold before the ratio counts (default 3). */
  minimumRequests?: number
  /** Rolling window, in ms (default 30 000). */
  window?: number
  /** Time the circuit stays open before probes go through, in ms (default 10 000). */
  halfOpenAfter?: number
  /** Probes let through while half-open; all must succeed to close (default 1). */
  halfOpenRequests?: number
}

/** A token bucket per origin. */
export interface RateLimitPolicy {
  /** Tokens added per second (default 100). */
  requestsPerSecond?: number
  /** Bucket size: requests that may go at once (default 10). */
  burst?: number
  /** Longest a request waits for its turn, in ms; beyond it the request fails with `RateLimitError` (default 10 000). */
  maxWait?: number
}

/** The policies of an agent or of one origin. `true` enables a policy with its defaults; `false` turns it off. */
export interface Policies {
  /** Send failed requests again with backoff, inside the core (see {@link RetryPolicy}). */
  retry?: RetryPolicy | boolean | null
  /** Fail fast with `CircuitOpenError` while an origin keeps failing (see {@link CircuitBreakerPolicy}). */
  circuitBreaker?: CircuitBreakerPolicy | boolean | null
  /** A token bucket per origin; requests beyond it wait or fail with `RateLimitError` (see {@link RateLimitPolicy}). */
  rateLimit?: RateLimitPolicy | boolean | null
}

/** Agent-level policies and per-origin overrides (`origins: { 'https://api.x': { retry: false } }`). */
export interface PolicyOptions extends Policies {
  /** Per origin (`scheme://host[:port]`): each policy given here replaces the agent's for that origin. */
  origins?: Record<string, Policies>
}

type Checked = Record<string, unknown>

/** Validated policies: an object (on), `null` (off) or `undefined` (not given: inherit). */
interface Validated {
  retry?: RetryPolicy | null
  circuitBreaker?: CircuitBreakerPolicy | null
  rateLimit?: RateLimitPolicy | null
}

/**
 * A number option: finite, within `[min, max]`, an integer when `integer`. Returned clamped to `ceiling` (a wait
 * to {@link LONGEST_WAIT_MS}, a count to the largest safe integer), so that no value overflows the core's
 * arithmetic; `undefined` when absent.
 */
function number(
  where: string,
  name: string,
  value: unknown,
  min: number,
  { max = Infinity, integer = false, ceiling = LARGEST_COUNT } = {}
): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new InvalidArgumentError(`invalid ${where}.${name}`)
  }
  return Math.min(value, ceiling)
}

const WAIT = { ceiling: LONGEST_WAIT_MS }
const COUNT = { integer: true }
const RATIO = { max: 1 }

function list<T>(where: string, name: string, value: unknown, item: (v: unknown) => boolean): T[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every(item)) throw new InvalidArgumentError(`invalid ${where}.${name}`)
  return value as T[]
}

function policy<T extends object>(where: string, value: T | boolean | null | undefined, check: (p: T) => T): T | null | undefined {
  if (value === undefined) return undefined
  if (value === null || value === false) return null
  if (value === true) return {} as T
  if (typeof value !== 'object') throw new InvalidArgumentError(`invalid ${where}`)
  return check(value)
}

function retry(where: string, value: Policies['retry']): RetryPolicy | null | undefined {
  return policy<RetryPolicy>(where, value, (r) => {
    if (r.retryAfter !== undefined && typeof r.retryAfter !== 'boolean') throw new InvalidArgumentError(`invalid ${where}.retryAfter`)
    return {
      maxRetries: number(where, 'maxRetries', r.maxRetries, 0, COUNT),
      minTimeout: number(where, 'minTimeout', r.minTimeout, 0, WAIT),
      maxTimeout: number(where, 'maxTimeout', r.maxTimeout, 0, WAIT),
      timeoutFactor: number(where, 'timeoutFactor', r.timeoutFactor, 1),
      jitter: number(where, 'jitter', r.jitter, 0, RATIO),
      retryAfter: r.retryAfter,
      methods: list<string>(where, 'methods', r.methods, (m) => typeof m === 'string' && TOKEN.test(m)),
      statusCodes: list<number>(where, 'statusCodes', r.statusCodes, (c) => Number.isInteger(c) && (c as number) >= 100 && (c as number) <= 999),
      errorCodes: list<string>(where, 'errorCodes', r.errorCodes, (c) => typeof c === 'string')
    }
  })
}

function circuitBreaker(where: string, value: Policies['circuitBreaker']): CircuitBreakerPolicy | null | undefined {
  return policy<CircuitBreakerPolicy>(where, value, (b) => ({
    threshold: number(where, 'threshold', b.threshold, 0, RATIO),
    minimumRequests: number(where, 'minimumRequests', b.minimumRequests, 1, COUNT),
    window: number(where, 'window', b.window, 1, WAIT),
    halfOpenAfter: number(where, 'halfOpenAfter', b.halfOpenAfter, 0, WAIT),
    halfOpenRequests: number(where, 'halfOpenRequests', b.halfOpenRequests, 1, COUNT)
  }))
}

/** The slowest rate a limiter refills at: one token per {@link LONGEST_WAIT_MS}. */
const SLOWEST_RATE = 1000 / LONGEST_WAIT_MS

function rateLimit(where: string, value: Policies['rateLimit']): RateLimitPolicy | null | undefined {
  return policy<RateLimitPolicy>(where, value, (l) => {
    const rate = number(where, 'requestsPerSecond', l.requestsPerSecond, Number.MIN_VALUE)
    return {
      requestsPerSecond: rate === undefined ? undefined : Math.max(rate, SLOWEST_RATE),
      burst: number(where, 'burst', l.burst, 1),
      maxWait: number(where, 'maxWait', l.maxWait, 0, WAIT)
    }
  })
}

/** Only the fields the core reads, with upper-cased methods. */
function resolved(p: Validated): Checked {
  const out: Checked = {}
  if (p.retry) out.retry = { ...p.retry, methods: p.retry.methods?.map((m) => m.toUpperCase()) }
  if (p.circuitBreaker) out.circuitBreaker = { ...p.circuitBreaker }
  if (p.rateLimit) out.rateLimit = { ...p.rateLimit }
  return out
}

function checked(where: string, p: Policies): Validated {
  if (p === null || typeof p !== 'object') throw new InvalidArgumentError(`invalid ${where}`)
  return {
    retry: retry(`${where}retry`, p.retry),
    circuitBreaker: circuitBreaker(`${where}circuitBreaker`, p.circuitBreaker),
    rateLimit: rateLimit(`${where}rateLimit`, p.rateLimit)
  }
}

/** Validates the policy options of an agent; returns the core's document, or `null` when no policy is on anywhere. */
export function nativePolicies(options: PolicyOptions): NativePolicies | null {
  const defaults = checked('', options)
  const origins: Record<string, Checked> = {}
  if (options.origins != null) {
    if (typeof options.origins !== 'object') throw new InvalidArgumentError('invalid origins')
    for (const [key, value] of Object.entries(options.origins)) {
      let origin: string
      try {
        // The same key requests are counted under (scheme://host[:port]); a path in the key is ignored.
        origin = normalizeOrigin(new URL(key).origin).origin
      } catch {
        throw new InvalidArgumentError(`invalid origins key ${JSON.stringify(key)}`)
      }
      const own = checked(`origins[${JSON.stringify(key)}].`, value)
      origins[origin] = resolved({
        retry: own.retry === undefined ? defaults.retry : own.retry,
        circuitBreaker: own.circuitBreaker === undefined ? defaults.circuitBreaker : own.circuitBreaker,
        rateLimit: own.rateLimit === undefined ? defaults.rateLimit : own.rateLimit
      })
    }
  }
  const top = resolved(defaults)
  const any = Object.keys(top).length > 0 || Object.values(origins).some((o) => Object.keys(o).length > 0)
  return any ? { ...top, origins } : null
}
