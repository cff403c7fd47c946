/**
 * Header shapes. Request headers come in the shapes undici accepts (a flat `[name, value, …]` array, an
 * iterable of `[name, value]` pairs, or an object), walked here once for every reader. Response headers come
 * from the native side as a flat `name, value, …` list of latin1 strings (names as the server spelled them);
 * undici's two handler styles want them as an object keyed by lower-case names (repeated names as arrays) or
 * as raw Buffers.
 */
import type { IncomingHttpHeaders } from 'node:http'

/**
 * Calls `visit(context, name, value)` for each header of `headers` in any shape undici accepts, until it
 * returns true. Returns undici's message for a malformed shape (after visiting the headers before the fault),
 * or null.
 */
export function walkHeaders<C>(
  headers: object,
  visit: (context: C, name: string, value: unknown) => boolean | void,
  context: C
): string | null {
  if (Array.isArray(headers)) {
    if (headers.length % 2 !== 0) return 'headers array must be even'
    for (let i = 0; i < headers.length; i += 2) if (visit(context, String(headers[i]), headers[i + 1]) === true) return null
    return null
  }
  const iterator = (headers as { [Symbol.iterator]?: unknown })[Symbol.iterator]
  if (typeof iterator === 'function') {
    for (const pair of headers as Iterable<unknown>) {
      if (!Array.isArray(pair) || pair.length !== 2) return 'headers must be in key-value pair format'
      if (visit(context, String(pair[0]), pair[1]) === true) return null
    }
    return null
  }
  for (const key of Object.keys(headers)) if (visit(context, key, (headers as Record<string, unknown>)[key]) === true) return null
  return null
}

/** `{ name: value | value[] }` from `fields[start..]`, as undici's `parseHeaders` builds it. */
export function headersObject(fields: readonly string[] | undefined, start: number): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {}
  if (fields === undefined) return out
  for (let i = start; i + 1 < fields.length; i += 2) addHeader(out, fields[i], fields[i + 1])
  return out
}

/**
 * A START event's status text and headers object, read from its text (`\0`-separated: `fields` head fields,
 * the last of them the status text, then `name, value, …`) without a list of every field in between.
 */
export function parseHead(text: string, fields: number): { statusText: string; headers: IncomingHttpHeaders } {
  let at = 0
  for (let i = 1; i < fields; i++) at = text.indexOf('\0', at) + 1
  let end = text.indexOf('\0', at)
  if (end < 0) end = text.length
  const statusText = text.slice(at, end)
  const headers: Record<string, string | string[]> = {}
  at = end + 1
  for (let k = 0; at < text.length; k++) {
    // Where the last head had a name, this one most likely has the same: then it is neither cut out of the
    // text nor looked up.
    const last = lastNames[k]
    let split: number
    let name: NameEntry
    if (last !== undefined && text.charCodeAt(at + last.sent.length) === 0 && text.startsWith(last.sent, at)) {
      split = at + last.sent.length
      name = last
    } else {
      split = text.indexOf('\0', at)
      if (split < 0) break
      name = nameEntry(text.slice(at, split))
      if (k < MAX_LAST_NAMES) lastNames[k] = name
    }
    let next = text.indexOf('\0', split + 1)
    if (next < 0) next = text.length
    addLowerHeader(headers, name.lower, text.slice(split + 1, next))
    at = next + 1
  }
  return { statusText, headers }
}

/** A header name as a server sent it, and lower-cased. */
interface NameEntry {
  sent: string
  lower: string
}

/**
 * Header names by the name as a server sent it. Each response's names are new strings (cut out of its head's
 * text): lower-casing each and using it as a key, which has V8 look a new string up in its string table (in
 * `Object.hasOwn`, then in the store), showed in profiles. A cached name is the same string every time, a
 * property key already. Cleared when full: a server may send ever new names.
 */
const names = new Map<string, NameEntry>()
const MAX_NAMES = 1024
/** The names of the last head read, by position (see parseHead): servers send the same names in the same order. */
const lastNames: NameEntry[] = []
const MAX_LAST_NAMES = 64

function nameEntry(sent: string): NameEntry {
  let entry = names.get(sent)
  if (entry === undefined) {
    // A copy: a name cut out of a head's text would keep that whole text alive.
    const copy = Buffer.from(sent, 'latin1').toString('latin1')
    entry = { sent: copy, lower: copy.toLowerCase() }
    if (names.size >= MAX_NAMES) names.clear()
    names.set(copy, entry)
  }
  return entry
}

/**
 * Adds one header as undici's `parseHeaders` does: under its lower-case name (the native side keeps the
 * server's case for raw headers), a repeated name's values becoming an array.
 */
function addHeader(out: Record<string, string | string[]>, rawName: string, value: string): void {
  addLowerHeader(out, nameEntry(rawName).lower, value)
}

function addLowerHeader(out: Record<string, string | string[]>, name: string, value: string): void {
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

/** `[name, value, …]` as Buffers from `fields[start..]`, the shape legacy handlers receive. */
export function rawHeaders(fields: readonly string[] | undefined, start: number): Buffer[] {
  const out: Buffer[] = []
  if (fields === undefined) return out
  for (let i = start; i < fields.length; i++) out.push(Buffer.from(fields[i], 'latin1'))
  return out
}
