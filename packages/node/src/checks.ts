/**
 * Checks shared by the validation of agent options, policies and requests, with undici's rules and messages.
 */
import { errors } from 'undici'

const { InvalidArgumentError } = errors

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
