/**
 * Response header shapes. The native side hands headers over as a flat `name, value, …` list of latin1
 * strings (names as the server spelled them); undici's two handler styles want them as an object keyed by
 * lower-case names (repeated names as arrays) or as raw Buffers.
 */
import type { IncomingHttpHeaders } from 'node:http'

/** `{ name: value | value[] }` from `fields[start..]`, as undici's `parseHeaders` builds it. */
export function headersObject(fields: readonly string[] | undefined, start: number): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {}
  if (fields === undefined) return out
  for (let i = start; i + 1 < fields.length; i += 2) {
    const name = fields[i].toLowerCase()
    const value = fields[i + 1]
    const existing = Object.hasOwn(out, name) ? out[name] : undefined
    if (existing === undefined) {
      if (name === '__proto__') {
        Object.defineProperty(out, name, { value, enumerable: true, configurable: true, writable: true })
      } else {
        out[name] = value
      }
    } else if (typeof existing === 'string') {
      out[name] = [existing, value]
    } else {
      existing.push(value)
    }
  }
  return out
}

/** `[name, value, …]` as Buffers from `fields[start..]`, the shape legacy handlers receive. */
export function rawHeaders(fields: readonly string[] | undefined, start: number): Buffer[] {
  const out: Buffer[] = []
  if (fields === undefined) return out
  for (let i = start; i < fields.length; i++) out.push(Buffer.from(fields[i], 'latin1'))
  return out
}
