/**
 * undici's `diagnostics_channel` messages, published for our requests and connections so that whatever listens
 * to undici (OpenTelemetry's undici instrumentation, APM agents, undici's own `NODE_DEBUG=undici` log) sees
 * them as it sees undici's. Channel names and message shapes are undici 7's (`lib/core/diagnostics.js`); what
 * our transport cannot tell is written down in COMPATIBILITY.md.
 *
 * Cost: every publishing site first reads `channel.hasSubscribers`, and nothing else happens unless it is true.
 * A message's `request` is a {@link DiagnosticsRequest}, made once per request when the first message needs it.
 */
import { channel } from 'node:diagnostics_channel'
import { isIP } from 'node:net'
import type { Dispatcher } from 'undici'
import { EVENT_CONNECT, EVENT_CONNECTING, EVENT_CONNECTION_ERROR, FIELD_SEPARATOR, type NativeAgent, type NativeAgentOptions } from './native'
import { checkAddedHeader, type NormalizedRequest } from './request'
import { splitAddress, type ConnectionSeen } from './connection-info'

/** The channels, by undici's names for them. */
export const channels = {
  beforeConnect: channel('undici:client:beforeConnect'),
  connected: channel('undici:client:connected'),
  connectError: channel('undici:client:connectError'),
  sendHeaders: channel('undici:client:sendHeaders'),
  create: channel('undici:request:create'),
  bodySent: channel('undici:request:bodySent'),
  bodyChunkSent: channel('undici:request:bodyChunkSent'),
  bodyChunkReceived: channel('undici:request:bodyChunkReceived'),
  headers: channel('undici:request:headers'),
  trailers: channel('undici:request:trailers'),
  error: channel('undici:request:error')
}

/** What a message needs to know of the agent that carries a request. */
interface AgentTraits {
  /** Connections go to a proxy, not to the origin. */
  proxied: boolean
  allowH2: boolean
  h2c: boolean
  servername: string | null
  localAddress: string | null
}

const traitsOf = new WeakMap<NativeAgent, AgentTraits>()

/** Called once per agent, with the options its native side was made with. */
export function registerAgent(native: NativeAgent, options: NativeAgentOptions): void {
  traitsOf.set(native, {
    proxied: options.proxy != null,
    allowH2: options.allowH2,
    h2c: options.h2c === true,
    servername: options.tls?.servername ?? null,
    localAddress: options.localAddress ?? null
  })
}

const NO_TRAITS: AgentTraits = { proxied: false, allowH2: false, h2c: false, servername: null, localAddress: null }

/**
 * What undici's messages carry as `socket` (a `net.Socket` or `tls.TLSSocket` there). Our connections live in
 * the Rust core, so this is a description of the connection a request goes over, with the fields of a socket
 * that tracing reads. Values the JS layer cannot know are `undefined`: the peer's address when the origin names
 * a host (the address it resolved to stays in the core), the peer behind a proxy, and the ALPN protocol of a
 * TLS connection that offered both `h2` and `http/1.1` (`allowH2`).
 */
export class DiagnosticsSocket {
  /** The peer's IP address. */
  readonly remoteAddress: string | undefined
  /** The peer's port. */
  readonly remotePort: number | undefined
  /** `IPv4` or `IPv6`, as `net.Socket#remoteFamily`. */
  readonly remoteFamily: 'IPv4' | 'IPv6' | undefined
  /** As on a `tls.TLSSocket`: `h2` or `http/1.1`; `undefined` on cleartext HTTP/1.1 (a `net.Socket` has none). */
  readonly alpnProtocol: string | undefined
  /** `true` for TLS connections, as `tls.TLSSocket#encrypted`. */
  readonly encrypted: boolean

  /** `seen`: the connection a response came over, when its head arrived already (exact peer and version). */
  constructor(origin: URL, traits: AgentTraits, seen: ConnectionSeen | null = null) {
    this.encrypted = origin.protocol === 'https:'
    const peer = seen === null ? undefined : splitAddress(seen.remote)
    if (peer !== undefined && peer.address !== undefined) {
      this.remoteAddress = peer.address
      this.remotePort = peer.port
      this.remoteFamily = peer.family
      this.alpnProtocol = seen?.version === 20 ? 'h2' : this.encrypted ? 'http/1.1' : undefined
      return
    }
    const hostname = bareHostname(origin)
    const family = traits.proxied ? 0 : isIP(hostname)
    this.remoteAddress = family !== 0 ? hostname : undefined
    this.remotePort = traits.proxied ? undefined : portOf(origin)
    this.remoteFamily = family === 0 ? undefined : family === 6 ? 'IPv6' : 'IPv4'
    this.alpnProtocol = seen !== null && seen.version === 20 ? 'h2' : protocolOf(origin, traits)
  }
}

function bareHostname(url: URL): string {
  const name = url.hostname
  return name.startsWith('[') ? name.slice(1, -1) : name
}

function portOf(url: URL): number {
  return url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
}

/** The ALPN protocol a connection to `origin` negotiates, when the agent's options decide it alone. */
function protocolOf(origin: URL, traits: AgentTraits): string | undefined {
  if (traits.h2c) return 'h2'
  if (origin.protocol !== 'https:') return undefined
  return traits.allowH2 ? undefined : 'http/1.1'
}

/** undici's `version` of a connection (`h1` or `h2`), when the agent's options decide it. */
function versionOf(origin: URL, traits: AgentTraits): 'h1' | 'h2' | undefined {
  if (traits.h2c) return 'h2'
  return origin.protocol === 'https:' && traits.allowH2 ? undefined : 'h1'
}

const kHeadersSent = Symbol('sendHeaders published')

/**
 * The `request` of undici's messages: the fields of undici's own `Request` (`lib/core/request.js`) that
 * subscribers read, and `addHeader(name, value)`, which adds a header to what is sent while the request has not
 * been handed to the core yet (it is, at the latest, at the end of the tick that dispatched it; `create`
 * subscribers always run before).
 */
export class DiagnosticsRequest {
  /** `scheme://host[:port]` the request goes to. */
  readonly origin: string
  /** `http:` or `https:`. */
  readonly protocol: string
  /** The request method, upper-case as sent. */
  readonly method: string
  /** The request target, query included. */
  readonly path: string
  /** `name, value, …` as the caller gave them (a value may be an array), without host, content-length, connection. */
  readonly headers: Array<string | string[]>
  /** The body as given (bytes, or the stream / iterable the core pulls from); `null` when there is none. */
  readonly body: unknown
  /** The host header, if the caller set one. */
  host: string | null = null
  /** The content-length header's value, if the caller set one. */
  contentLength: number | null = null
  /** The content-type header's value, if the caller set one. */
  contentType: string | null = null
  /** `true` when the connection is not reused after this request (`reset` option or `connection: close`). */
  reset: boolean | null
  /** The `idempotent` option (default: GET and HEAD are). */
  readonly idempotent: boolean
  /** The `blocking` option (default: all but HEAD). */
  readonly blocking: boolean
  /** Always `null`: upgrades are not supported (COMPATIBILITY.md). */
  readonly upgrade: null = null
  /** The `expectContinue` option. */
  readonly expectContinue: boolean
  /** The TLS server name: the `servername` option, else the host header's name when it is not an IP address. */
  readonly servername: string | null
  /** The `headersTimeout` option of this request, if given. */
  readonly headersTimeout: number | undefined
  /** The `bodyTimeout` option of this request, if given. */
  readonly bodyTimeout: number | undefined
  /** The `typeOfService` option of this request, if given. */
  readonly typeOfService: number | undefined
  /** undici's abort function; not offered here (abort through the dispatch controller). */
  readonly abort: null = null
  /** The response ended (`trailers` was published). */
  completed = false
  /** The request failed (`error` was published). */
  aborted = false
  readonly #wire: NormalizedRequest;
  /** @internal whether `sendHeaders` was published. */
  [kHeadersSent] = false

  constructor(request: NormalizedRequest, opts: Dispatcher.DispatchOptions | null, raw: unknown[] | null) {
    this.#wire = request
    this.origin = request.origin
    this.protocol = request.url.startsWith('https:') ? 'https:' : 'http:'
    this.method = request.method
    this.path = request.url.slice(request.origin.length)
    const given = opts as (Dispatcher.DispatchOptions & OptionsSeen) | null
    this.reset = given?.reset ?? null
    this.idempotent = given?.idempotent ?? (this.method === 'HEAD' || this.method === 'GET')
    this.blocking = given?.blocking ?? this.method !== 'HEAD'
    this.expectContinue = given?.expectContinue ?? false
    this.headersTimeout = given?.headersTimeout ?? undefined
    this.bodyTimeout = given?.bodyTimeout ?? undefined
    this.typeOfService = given?.typeOfService ?? undefined
    const body = request.body
    if (body.kind === 'bytes') this.body = body.bytes.byteLength > 0 ? body.bytes : null
    else this.body = body.kind === 'pull' ? (given?.body ?? null) : null
    this.headers = []
    // Without the caller's own list (no `create` subscriber when the request started), the fields as sent.
    const fields = raw ?? fieldsOf(request.headers)
    for (let i = 0; i < fields.length; i += 2) this.#record(fields[i] as string, fields[i + 1] as string | string[])
    this.servername = given?.servername || serverNameOf(this.host) || null
  }

  /** Adds a header to the request, with undici's checks; returns the request, as undici's does. */
  addHeader(name: string, value: unknown): this {
    const checked = checkAddedHeader(String(name), value, this.host !== null, this.contentLength)
    let added = checked.fields
    if (checked.reset && this.reset !== true) {
      added = (added === '' ? '' : added + FIELD_SEPARATOR) + 'connection' + FIELD_SEPARATOR + 'close'
    }
    if (added !== '') {
      const wire = this.#wire
      wire.headers = (wire.headers === '' ? '' : wire.headers + FIELD_SEPARATOR) + added
    }
    if (checked.raw.length === 2) this.#record(checked.raw[0] as string, checked.raw[1] as string | string[])
    return this
  }

  /** Files one header where undici's `Request` keeps it. */
  #record(name: string, value: string | string[]): void {
    switch (name.toLowerCase()) {
      case 'host':
        this.host = value as string
        return
      case 'content-length':
        // Recorded only: the body itself decides the content-length the core sends.
        this.contentLength = parseInt(value as string, 10)
        return
      case 'connection':
        if (typeof value === 'string' && value.toLowerCase().split(',').some((t) => t.trim() === 'close')) this.reset = true
        return
      case 'content-type':
        this.contentType ??= value as string
    }
    this.headers.push(name, value)
  }

  /** @internal The request head, as undici formats it for `undici:client:sendHeaders`. */
  head(traits: AgentTraits): string {
    const host = this.host ?? new URL(this.origin).host
    const fields = fieldsOf(this.#wire.headers)
    let text: string
    if (traits.h2c) {
      text = `:authority: ${host}\r\n:method: ${this.method}\r\n:path: ${this.path}\r\n:scheme: ${this.protocol.slice(0, -1)}\r\n`
    } else {
      // As undici writes it: host, then keep-alive or close, then the caller's fields (content-length and
      // transfer-encoding follow the published text).
      text = `${this.method} ${this.path} HTTP/1.1\r\nhost: ${host}\r\nconnection: ${this.reset === true ? 'close' : 'keep-alive'}\r\n`
    }
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const name = fields[i].toLowerCase()
      if (name === 'host' || name === 'connection' || (name === 'content-length' && !traits.h2c)) continue
      text += `${fields[i]}: ${fields[i + 1]}\r\n`
    }
    return text
  }
}

/** Dispatch options undici's Request reads besides the typed ones. */
interface OptionsSeen {
  reset?: boolean
  expectContinue?: boolean
  typeOfService?: number
  servername?: string
}

function fieldsOf(headers: string): string[] {
  return headers === '' ? [] : headers.split(FIELD_SEPARATOR)
}

/** undici's rule: the host header's name; '' when it is an IP address, null without a host header. */
function serverNameOf(host: string | null): string | null {
  if (host === null) return null
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.split(':')[0]
  return isIP(name) !== 0 ? '' : name
}

/** Each request's message object, made on first need. */
const requests = new WeakMap<object, DiagnosticsRequest>()

/** Anything that stands for one request: its controller. */
type RequestKey = object

function requestOf(key: RequestKey, request: NormalizedRequest): DiagnosticsRequest {
  let found = requests.get(key)
  if (found === undefined) {
    found = new DiagnosticsRequest(request, null, null)
    requests.set(key, found)
  }
  return found
}

/**
 * `undici:request:create`, once a request passed validation and before anything is sent: subscribers may add
 * headers. Call only when `channels.create.hasSubscribers`; `raw` holds the caller's headers as given.
 */
export function publishCreate(key: RequestKey, request: NormalizedRequest, opts: Dispatcher.DispatchOptions, raw: unknown[]): void {
  const message = new DiagnosticsRequest(request, opts, raw)
  requests.set(key, message)
  channels.create.publish({ request: message })
}

/**
 * `undici:client:sendHeaders`, once per request, when the core has the request on a connection: when it asks
 * for the first chunk of a streamed body, else when the response head arrives (hyper reports no earlier point).
 */
export function publishSendHeaders(key: RequestKey, request: NormalizedRequest, native: NativeAgent, seen: ConnectionSeen | null = null): void {
  const message = requestOf(key, request)
  if (message[kHeadersSent]) return
  message[kHeadersSent] = true
  const traits = traitsOf.get(native) ?? NO_TRAITS
  const socket = new DiagnosticsSocket(new URL(request.origin), traits, seen)
  channels.sendHeaders.publish({ request: message, headers: message.head(traits), socket })
}

export function publishBodyChunkSent(key: RequestKey, request: NormalizedRequest, chunk: Uint8Array): void {
  channels.bodyChunkSent.publish({ request: requestOf(key, request), chunk })
}

export function publishBodySent(key: RequestKey, request: NormalizedRequest): void {
  channels.bodySent.publish({ request: requestOf(key, request) })
}

/** `undici:request:headers`: `headers` are the raw `name, value, …` Buffers legacy handlers receive. */
export function publishHeaders(
  key: RequestKey,
  request: NormalizedRequest,
  statusCode: number,
  headers: Buffer[],
  statusText: string
): void {
  channels.headers.publish({ request: requestOf(key, request), response: { statusCode, headers, statusText } })
}

export function publishBodyChunkReceived(key: RequestKey, request: NormalizedRequest, chunk: Buffer): void {
  channels.bodyChunkReceived.publish({ request: requestOf(key, request), chunk })
}

/** `undici:request:trailers`, when the response ended; `trailers` as raw Buffers (`[]` without trailers). */
export function publishTrailers(key: RequestKey, request: NormalizedRequest, trailers: Buffer[]): void {
  const message = requestOf(key, request)
  message.completed = true
  channels.trailers.publish({ request: message, trailers })
}

export function publishError(key: RequestKey, request: NormalizedRequest, error: Error): void {
  const message = requestOf(key, request)
  message.aborted = true
  channels.error.publish({ request: message, error })
}

/** `connectParams` of undici's client messages, for a connection to `origin`. */
function connectParams(origin: URL, traits: AgentTraits, version: 'h1' | 'h2' | undefined): Record<string, unknown> {
  return {
    host: origin.host,
    hostname: bareHostname(origin),
    protocol: origin.protocol,
    port: origin.port,
    version,
    servername: traits.servername,
    localAddress: traits.localAddress
  }
}

/**
 * The `undici:client:*` connection messages, from the core's connection events: `beforeConnect` when a
 * connection starts, `connected` (with the peer address and the protocol ALPN chose) or `connectError` when it
 * is up or has failed. `connector` is `undefined` (connections are made by the core, not a function).
 * `detail` (CONNECT only) is `remote\0h1|h2`.
 */
export function publishConnection(native: NativeAgent, kind: number, origin: string, error: Error | null, detail?: string): void {
  if (kind === EVENT_CONNECTING) {
    if (!channels.beforeConnect.hasSubscribers) return
    const traits = traitsOf.get(native) ?? NO_TRAITS
    channels.beforeConnect.publish({ connectParams: connectParams(new URL(origin), traits, undefined), connector: undefined })
    return
  }
  const outcome = kind === EVENT_CONNECT ? channels.connected : kind === EVENT_CONNECTION_ERROR ? channels.connectError : null
  if (outcome === null || !outcome.hasSubscribers) return
  const traits = traitsOf.get(native) ?? NO_TRAITS
  const url = new URL(origin)
  if (kind === EVENT_CONNECT) {
    const [remote, protocol] = detail === undefined ? [] : detail.split(FIELD_SEPARATOR)
    const seen = remote === undefined ? null : { remote, local: '', version: protocol === 'h2' ? 20 : 11 }
    const version = seen === null ? versionOf(url, traits) : protocol === 'h2' ? 'h2' : 'h1'
    const socket = new DiagnosticsSocket(url, traits, seen)
    outcome.publish({ connectParams: connectParams(url, traits, version), connector: undefined, socket })
  } else {
    outcome.publish({ connectParams: connectParams(url, traits, undefined), connector: undefined, error })
  }
}
