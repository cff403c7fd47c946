/**
 * Validation and normalization of one dispatch's options, with undici's rules and messages: what reaches the
 * native side is a method, an absolute URL, a flat list of header strings and a prepared body.
 */
import { stringify as stringifyQuery, type ParsedUrlQueryInput } from 'node:querystring'
import { errors } from 'undici'
import type { Dispatcher } from 'undici'
import { isBodyShape, prepareBody, type PreparedBody } from './body'
import { nonNegative, TOKEN } from './checks'
import { walkHeaders } from './headers'
import { waitMs } from './limits'
import { FIELD_SEPARATOR } from './native'

const { InvalidArgumentError, NotSupportedError } = errors

/** A request ready for the native side. */
export interface NormalizedRequest {
  method: string
  url: string
  /** `scheme://host[:port]`, the key requests are counted under per origin. */
  origin: string
  hostname: string
  /** `host:port` of the origin, for Node-style error messages. */
  address: string
  /** `name\0value\0…`, as the native side takes them. */
  headers: string
  body: PreparedBody
  /** -1 = agent default, 0 = disabled, otherwise milliseconds. */
  headersTimeout: number
  bodyTimeout: number
  /**
   * How the request leaves HTTP: the protocol of an upgrade (`upgrade` option), or for `CONNECT` its request
   * target (the path as given); `null` for every other request.
   */
  switchTo: string | null
}

/** Options undici's Request validates besides the typed DispatchOptions fields. */
interface DispatchOptionsSeen {
  upgrade?: unknown
  reset?: unknown
  expectContinue?: unknown
  throwOnError?: unknown
  maxRedirections?: unknown
  typeOfService?: unknown
}

// A header value may hold tab, visible ASCII and obs-text only: no NUL, CR, LF or other controls (as undici).
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/
const INVALID_PATH = /[^\u0021-\u00ff]/
const METHODS_WITH_PAYLOAD = new Set(['POST', 'PUT', 'PATCH', 'QUERY', 'PROPFIND', 'PROPPATCH'])
/** Methods whose bodies undici does not hold to a declared content-length. */
const METHODS_WITHOUT_LENGTH_CHECK = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT'])

/**
 * One header's values as undici's `processHeader` coerces them: strings are checked, `null` is empty, other
 * primitives are written as a template literal writes them (a Symbol throws a TypeError, as with undici), and
 * objects (Buffers included) are refused — in an array too. `singleValue` for a value that is no array,
 * `listedValues` for an array.
 */
function singleValue(name: string, value: unknown): string {
  return value === null ? '' : checkedValue(name, value)
}

function listedValues(name: string, value: unknown[]): string[] {
  return value.map((item: unknown) => {
    if (item === null) return ''
    if (typeof item === 'object') throw new InvalidArgumentError(`invalid ${name} header`)
    return checkedValue(name, item)
  })
}

function checkedValue(name: string, value: unknown): string {
  const text = typeof value === 'string' ? value : `${value as string}`
  if (INVALID_VALUE.test(text)) throw new InvalidArgumentError(`invalid ${name} header`)
  return text
}

export interface HeaderState {
  /**
   * The fields to send, `name\0value\0…`: built as a string, not a list joined at the end (its array and the
   * join showed in profiles; the concatenations are flattened once, with the rest of the tick's text, when the
   * batch crosses into the addon).
   */
  fields: string
  host: boolean
  contentLength: number | null
  contentType: boolean
  /** `connection: close` was asked for (header or `reset: true`). */
  reset: boolean
  /** The caller's headers as given (`name, value | value[]`, original case), when diagnostics want them. */
  raw: unknown[] | null
}

/** Adds one header, with undici's checks in undici's order (value shape, name, values, then the name's rules). */
function addHeader(state: HeaderState, key: string, value: unknown): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    throw new InvalidArgumentError(`invalid ${key} header`)
  }
  if (value === undefined) return
  const lower = key.toLowerCase()
  if (!TOKEN.test(lower)) throw new InvalidArgumentError('invalid header key')
  // Only these take one value; an array is refused even when it holds one.
  const single = !Array.isArray(value)
  // A single value (most headers) gets no list of its own.
  const first = single ? singleValue(key, value) : ''
  const values = single ? null : listedValues(key, value as unknown[])
  if (state.raw !== null) state.raw.push(key, values ?? first)
  if (lower === 'host') {
    if (state.host) throw new InvalidArgumentError('duplicate host header')
    if (!single) throw new InvalidArgumentError('invalid host header')
    state.host = true
  } else if (lower === 'content-type') {
    state.contentType = true
  } else if (lower === 'content-length') {
    if (state.contentLength !== null) throw new InvalidArgumentError('duplicate content-length header')
    if (!single || !/^[0-9]+$/.test(first)) throw new InvalidArgumentError('invalid content-length header')
    state.contentLength = parseInt(first, 10)
    return
  } else if (lower === 'transfer-encoding' || lower === 'keep-alive' || lower === 'upgrade') {
    throw new InvalidArgumentError(`invalid ${lower} header`)
  } else if (lower === 'connection') {
    if (!single) throw new InvalidArgumentError('invalid connection header')
    const tokens = first.toLowerCase().split(',').map((t) => t.trim())
    for (const token of tokens) {
      if (!TOKEN.test(token)) throw new InvalidArgumentError('invalid connection header')
    }
    // The pool manages reuse itself; only `close` means something to it (hyper drops it on HTTP/2).
    if (tokens.includes('close')) state.reset = true
    return
  } else if (lower === 'expect') {
    throw new NotSupportedError('expect header not supported')
  }
  // Names go on the wire as the caller spelled them, as undici writes them.
  if (values === null) addField(state, key, first)
  else for (const v of values) addField(state, key, v)
}

/** Appends `name: value` to the fields to send. */
function addField(state: HeaderState, name: string, value: string): void {
  state.fields = state.fields === '' ? name + FIELD_SEPARATOR + value : state.fields + FIELD_SEPARATOR + name + FIELD_SEPARATOR + value
}

function collectHeaders(headers: unknown, state: HeaderState): void {
  if (headers == null) return
  if (typeof headers !== 'object') throw new InvalidArgumentError('headers must be an object or an array')
  const malformed = walkHeaders(headers, addHeader, state)
  if (malformed !== null) throw new InvalidArgumentError(malformed)
}

/** A per-request timeout: -1 when not given (the agent's), else undici's check, clamped for the core. */
function timeoutOption(name: string, value: unknown): number {
  return value == null ? -1 : waitMs(nonNegative(name, value))
}

/**
 * `query` appended as undici does: `node:querystring` encoding (a space is `%20`; what is not an object encodes
 * to nothing), never onto an existing query.
 */
function serializeQuery(path: string, query: unknown): string {
  if (!query) return path
  if (path.includes('?') || path.includes('#')) {
    throw new Error('Query params cannot be passed when url already contains "?" or "#".')
  }
  const text = stringifyQuery(query as ParsedUrlQueryInput)
  return text === '' ? path : `${path}?${text}`
}

/** What a request needs of its origin. */
interface ParsedOrigin {
  origin: string
  hostname: string
  address: string
}

/** Parsed origins by their text: a service talks to few origins, and parsing a URL per request showed in profiles. */
const origins = new Map<string, ParsedOrigin>()
const MAX_CACHED_ORIGINS = 1024

/** `origin` (string or URL) parsed and checked as undici does, cached by its text. */
export function normalizeOrigin(origin: unknown): ParsedOrigin {
  if (typeof origin !== 'string' && !(origin instanceof URL)) {
    throw new InvalidArgumentError('invalid origin')
  }
  const text = String(origin)
  const cached = origins.get(text)
  if (cached !== undefined) return cached
  // A string that is no URL throws the URL parser's own TypeError (ERR_INVALID_URL), as with undici.
  const url = new URL(text)
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError('Invalid URL protocol: the URL must start with `http:` or `https:`.')
  }
  // undici's parseOrigin: an origin names a server, nothing more.
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') throw new InvalidArgumentError('invalid url')
  const parsed = {
    origin: url.origin,
    hostname: url.hostname,
    address: `${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`
  }
  if (origins.size >= MAX_CACHED_ORIGINS) origins.clear()
  origins.set(text, parsed)
  return parsed
}

/**
 * The target to send for an absolute-URL `path`. undici writes such a path as given in the request line and
 * sends it to `origin`; hyper's client writes only origin-form targets, so a path naming `origin` itself is sent
 * as its origin-form equivalent (RFC 9112 §3.2.2: the same request) and one naming another origin is refused.
 * Either way the request, and any credentials in its headers, go to `origin` or nowhere: the path never routes.
 * The rest of the path is kept as written (no dot-segment resolution, no re-encoding).
 */
function originFormTarget(path: string, origin: ParsedOrigin): string {
  const authority = path.indexOf('//') + 2
  let end = authority
  while (end < path.length && path[end] !== '/' && path[end] !== '?' && path[end] !== '#') end++
  let named: string | null = null
  try {
    named = new URL(path.slice(0, end)).origin
  } catch {
    // An unparsable authority names no origin.
  }
  if (named !== origin.origin) {
    throw new NotSupportedError(
      'an absolute URL as path is sent only to its own origin by reqwest-dispatcher (see COMPATIBILITY.md)'
    )
  }
  const rest = path.slice(end)
  return rest[0] === '/' ? rest : `/${rest}`
}

/**
 * Checks one header added after normalization (diagnostics_channel's `request.addHeader`) by the same rules;
 * `host` and `contentLength` tell what the request has already. Returns the fields to send, what they implied
 * and, in `raw`, the header as undici's `Request#headers` would hold it.
 */
export function checkAddedHeader(
  key: string,
  value: unknown,
  host: boolean,
  contentLength: number | null
): HeaderState & { raw: unknown[] } {
  const state: HeaderState & { raw: unknown[] } = {
    fields: '',
    host,
    contentLength,
    contentType: false,
    reset: false,
    raw: []
  }
  addHeader(state, key, value)
  return state
}

/**
 * Validates `opts` as undici does; throws undici's `InvalidArgumentError` (or `NotSupportedError`). When `raw`
 * is given, the caller's headers are collected there as given (for diagnostics_channel's `request.headers`).
 */
export function normalizeRequest(opts: Dispatcher.DispatchOptions, raw: unknown[] | null = null): NormalizedRequest {
  // undici's checks in undici's order (its Agent, its Pool's parseOrigin, then its Request), so that with several
  // bad options the same one is reported.
  if (!opts.origin || (typeof opts.origin !== 'string' && !(opts.origin instanceof URL))) {
    throw new InvalidArgumentError('opts.origin must be a non-empty string or URL.')
  }
  const origin = normalizeOrigin(opts.origin)
  const { path, method } = opts
  if (typeof path !== 'string') throw new InvalidArgumentError('path must be a string')
  const absolute = path.startsWith('http://') || path.startsWith('https://')
  // A CONNECT's path is its request target (`host:port`), written as given.
  if (path[0] !== '/' && !absolute && method !== 'CONNECT') {
    throw new InvalidArgumentError('path must be an absolute URL or start with a slash')
  }
  if (INVALID_PATH.test(path)) throw new InvalidArgumentError('invalid request path')
  if (typeof method !== 'string') throw new InvalidArgumentError('method must be a string')
  if (!TOKEN.test(method)) throw new InvalidArgumentError('invalid request method')
  const extra = opts as DispatchOptionsSeen
  if (extra.upgrade && typeof extra.upgrade !== 'string') throw new InvalidArgumentError('upgrade must be a string')
  if (extra.upgrade && INVALID_VALUE.test(extra.upgrade as string)) throw new InvalidArgumentError('invalid upgrade header')
  const headersTimeout = timeoutOption('headersTimeout', opts.headersTimeout)
  const bodyTimeout = timeoutOption('bodyTimeout', opts.bodyTimeout)
  if (extra.reset != null && typeof extra.reset !== 'boolean') throw new InvalidArgumentError('invalid reset')
  if (extra.expectContinue != null && typeof extra.expectContinue !== 'boolean') {
    throw new InvalidArgumentError('invalid expectContinue')
  }
  // undici 7 moved both to interceptors (responseError, redirect) and rejects them here.
  if (extra.throwOnError != null) throw new InvalidArgumentError('invalid throwOnError')
  if (extra.maxRedirections != null && extra.maxRedirections !== 0) {
    throw new InvalidArgumentError('maxRedirections is not supported, use the redirect interceptor')
  }
  const tos = extra.typeOfService
  if (tos != null && (!Number.isInteger(tos) || (tos as number) < 0 || (tos as number) > 255)) {
    throw new InvalidArgumentError('typeOfService must be an integer between 0 and 255')
  }
  const connect = method === 'CONNECT'
  const switchTo = connect ? path : extra.upgrade ? (extra.upgrade as string) : null
  if (!isBodyShape(opts.body)) {
    throw new InvalidArgumentError('body must be a string, a Buffer, a Readable stream, an iterable, or an async iterable')
  }
  const target = connect ? '/' : serializeQuery(absolute ? originFormTarget(path, origin) : path, opts.query)

  const state: HeaderState = { fields: '', host: false, contentLength: null, contentType: false, reset: false, raw }
  collectHeaders(opts.headers, state)
  if (extra.reset === true) state.reset = true
  if (state.reset) addField(state, 'connection', 'close')

  const body = prepareBody(opts.body, state.contentLength, METHODS_WITH_PAYLOAD.has(method), !METHODS_WITHOUT_LENGTH_CHECK.has(method))
  if (body.kind === 'pull' && body.length !== null) addField(state, 'content-length', String(body.length))
  if (body.kind === 'pull' && body.contentType !== undefined && !state.contentType) {
    addField(state, 'content-type', body.contentType)
  }
  // hyper omits content-length for an empty body; undici sends `content-length: 0` when a payload is expected.
  if (body.kind === 'bytes' && body.bytes.byteLength === 0) addField(state, 'content-length', '0')

  return {
    method,
    url: origin.origin + target,
    origin: origin.origin,
    hostname: origin.hostname,
    address: origin.address,
    headers: state.fields,
    body,
    headersTimeout,
    bodyTimeout,
    switchTo
  }
}
