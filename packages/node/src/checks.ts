/**
 * Checks shared by the validation of agent options, policies and requests, with undici's rules and messages.
 */
import * as undici from 'undici'

const { InvalidArgumentError } = undici.errors

/**
 * Whether the undici this package runs with is undici 8 (the major that exports `Dispatcher1Wrapper`), whose Agent
 * answers and validates some things differently from undici 7's.
 */
export const UNDICI_8 = 'Dispatcher1Wrapper' in undici

/** An HTTP token (RFC 9110): what a method, a header name or a `connection` option may be. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * `value` as a finite number ≥ 0 (a time in ms, a size), `fallback` when not given; anything else is undici's
 * `InvalidArgumentError('invalid <name>')`.
 */
export function nonNegative(name: string, value: unknown, fallback?: number): number {
  if (value == null && fallback !== undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(`invalid ${name}`)
  }
  return value
}
