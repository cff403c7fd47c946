/**
 * The controller of one request: undici's `DispatchController` (pause, resume, abort; hence the name, which
 * the core's `RequestController` — the native side's handle on a request in flight — does not share) and the
 * state machine that turns native events into handler callbacks, for both handler styles:
 * - controller style: `onRequestStart`, `onResponseStart`, `onResponseData`, `onResponseEnd`, `onResponseError`;
 * - legacy style (undici's `fetch` and Node's built-in `fetch` use it): `onConnect`, `onHeaders`, `onData`,
 *   `onComplete`, `onError`, where `false` from `onHeaders`/`onData` pauses until `resume()`.
 *
 * Guarantees, as undici gives them: callbacks come in order, exactly one of end or error closes a request, and
 * nothing is called after it. Events that arrive while paused wait here until `resume()`.
 *
 * A request that leaves HTTP (`upgrade`, `CONNECT`) and whose connection switched ends with
 * `onRequestUpgrade(controller, status, headers, socket)` (legacy: `onUpgrade(status, rawHeaders, socket)`)
 * instead; its connection's events go to the socket (socket.ts) from then on.
 */
import { errors } from 'undici'
import type { Dispatcher } from 'undici'
import { chunkBytes } from './body'
import { UNDICI_8 } from './checks'
import {
  channels,
  publishBodyChunkReceived,
  publishBodyChunkSent,
  publishBodySent,
  publishError,
  publishHeaders,
  publishSendHeaders,
  publishTrailers
} from './diagnostics'
import type { ConnectionSeen } from './connection-info'
import { errorFromCore, reportUncaught } from './errors'
import { headersObject, parseHead, rawHeaders } from './headers'
import {
  binding,
  BODY_BYTES,
  BODY_NONE,
  BODY_PULL_UNKNOWN_LENGTH,
  EVENT_CONNECTED,
  EVENT_DATA,
  EVENT_END,
  EVENT_ERROR,
  EVENT_PULL,
  EVENT_RETRY,
  EVENT_START,
  EVENT_UPGRADE,
  FIELD_SEPARATOR,
  HEAD_FIELDS,
  SWITCH_CONNECT,
  SWITCH_NONE,
  SWITCH_PROTOCOL,
  type NativeAgent
} from './native'
import type { NormalizedRequest } from './request'
import { UpgradedSocket, type SocketHost } from './socket'
import type { Submissions } from './submissions'

/** What a controller needs from the agent that started it (and its socket, should the request upgrade). */
export interface RequestHost extends SocketHost {
  readonly native: NativeAgent
  /** Sends `controller` to the native side with the other requests started in this tick. */
  send(controller: DispatchController): void
  /** Returns whether the agent can take more requests for this origin right now. */
  started(controller: DispatchController): boolean
  /** Whether a request just started waits for its connection before its start callback (see AgentHost). */
  gates(origin: string, switches: boolean): boolean
  /** A gated request's start callback ran and did not abort it: it may write itself. */
  proceed(id: number): void
  finished(controller: DispatchController): void
}

/** A legacy (undici ≤ 6 style) handler; undici 7 still calls dispatchers with it from `fetch`. */
interface LegacyHandler {
  onConnect?(abort: (err?: Error) => void, context?: unknown): void
  onResponseStarted?(): void
  onHeaders?(statusCode: number, headers: Buffer[], resume: () => void, statusText: string): boolean | void
  onData?(chunk: Buffer): boolean | void
  onComplete?(trailers: Buffer[] | null): void
  onUpgrade?(statusCode: number, headers: Buffer[], socket: UpgradedSocket): void
  onError?(err: Error): void
  onBodySent?(chunk: Uint8Array): void
  onRequestSent?(): void
}

type Handler = Dispatcher.DispatchHandler & LegacyHandler

const UNDECIDED = 0
const DONE = 2

export class DispatchController implements Dispatcher.DispatchController {
  readonly #handler: Handler
  readonly #legacy: boolean
  readonly #host: RequestHost
  readonly #id: number
  #request: NormalizedRequest | null = null
  /** The native side knows this request (dispatched, not yet ended or aborted there). */
  #dispatched = false
  /** Its start callback waits for its connection (the CONNECTED event): see AgentHost. */
  #gated = false
  #state = UNDECIDED
  #aborted = false
  #paused = false
  #reason: Error | null = null
  /** The upgraded socket while the handler's upgrade callback runs (an abort then closes it). */
  #upgrading: UpgradedSocket | null = null
  /** Events that arrived while paused: `kind, a, b` triples. */
  #backlog: unknown[] | null = null
  /** The START event's text (`remote\0local\0statusText\0name\0value…`), and its fields once split. */
  #headText: string | null = null
  #headerFields: string[] | undefined
  /** The START event's number: status + 1000 × HTTP version × 10. */
  #startCode = 0
  #trailerFields: string[] | undefined
  #bodySource: AsyncIterator<unknown> | null = null
  #bodyError: Error | null = null
  #requestSent = false
  /**
   * The context given to `onRequestStart`/`onConnect`. `retryCount` tells how many times the agent's retry
   * policy sent the request again; it changes while the request runs (the core retries before the response
   * head, so it is final by `onResponseStart`).
   */
  readonly context: { retryCount: number } = { retryCount: 0 }

  constructor(host: RequestHost, id: number, handler: Dispatcher.DispatchHandler) {
    this.#host = host
    this.#id = id
    this.#handler = handler as Handler
    this.#legacy = typeof handler.onRequestStart !== 'function'
  }

  get id(): number {
    return this.#id
  }

  /**
   * Refuses, as undici does, a handler that cannot take an upgraded socket: a legacy one without `onUpgrade`, and
   * (undici 8 checks it) a controller-style one without `onRequestUpgrade`.
   */
  assertUpgradable(): void {
    if (this.#legacy) {
      if (typeof this.#handler.onUpgrade !== 'function') throw new errors.InvalidArgumentError('invalid onUpgrade method')
    } else if (UNDICI_8 && typeof this.#handler.onRequestUpgrade !== 'function') {
      throw new errors.InvalidArgumentError('invalid onRequestUpgrade method')
    }
  }

  /** The origin this request goes to, once started. */
  get origin(): string {
    return this.#request?.origin ?? ''
  }

  get aborted(): boolean {
    return this.#aborted
  }

  get paused(): boolean {
    return this.#paused
  }

  get reason(): Error | null {
    return this.#reason
  }

  /** The response headers as raw Buffers (`name, value, …`), once they arrived. */
  get rawHeaders(): Buffer[] | null {
    const fields = this.#fields()
    return fields === undefined ? null : rawHeaders(fields, HEAD_FIELDS)
  }

  /** The START event's fields as a list, split on first use: controller-style handlers never need it. */
  #fields(): string[] | undefined {
    if (this.#headerFields === undefined && this.#headText !== null) this.#headerFields = this.#headText.split(FIELD_SEPARATOR)
    return this.#headerFields
  }

  /** The connection the response came over, once its head arrived. */
  #connection(): ConnectionSeen | null {
    const fields = this.#fields()
    if (fields === undefined) return null
    return { remote: fields[0], local: fields[1], version: (this.#startCode - (this.#startCode % 1000)) / 1000 }
  }

  /** The response trailers as raw Buffers, once the response ended. */
  get rawTrailers(): Buffer[] | null {
    return this.#state === DONE && !this.#aborted ? rawHeaders(this.#trailerFields, 0) : null
  }

  abort(reason?: Error): void {
    if (this.#aborted) return
    if (this.#upgrading !== null) {
      // Called from inside the upgrade callback: as undici, the request fails and the connection closes. Once
      // the callback returned, the socket is the caller's and an abort does nothing.
      this.#aborted = true
      this.#reason = reason ?? new errors.RequestAbortedError()
      this.#callError(this.#reason)
      this.#upgrading.destroy(new errors.InformationalError('aborted'))
      return
    }
    if (this.#state === DONE) return
    this.#aborted = true
    this.#reason = reason ?? new errors.RequestAbortedError()
    if (this.#dispatched) binding().requestAbort(this.#host.native, this.#id)
    this.#fail(this.#reason)
  }

  pause(): void {
    if (this.#state === DONE || this.#paused) return
    this.#paused = true
    if (this.#dispatched) binding().requestPause(this.#host.native, this.#id)
  }

  resume(): void {
    if (!this.#paused) return
    this.#paused = false
    if (this.#backlog !== null) {
      // Deliver held events on a later tick: resume() is often called from inside a stream's read().
      queueMicrotask(() => this.#flushBacklog())
    } else if (this.#dispatched && this.#state !== DONE) {
      binding().requestResume(this.#host.native, this.#id)
    }
  }

  /** Rejects the request before it started (invalid options, closed agent): only the error callback runs. */
  failBeforeStart(err: Error): void {
    this.#state = DONE
    this.#callError(err)
  }

  /**
   * Starts the request: `onRequestStart`/`onConnect`, then the native dispatch unless the handler aborted.
   * Returns `dispatch()`'s answer: false when the origin is saturated (wait for `drain`).
   */
  start(request: NormalizedRequest): boolean {
    this.#request = request
    const more = this.#host.started(this)
    this.#gated = this.#host.gates(request.origin, request.switchTo !== null)
    this.#host.send(this)
    return more
  }

  /**
   * Starts a request whose streamed body is small and of known length, to an origin whose retry policy
   * covers its method: the body is read first and sent as bytes, so the core can send it again. (`fetch()`
   * hands every body over as a stream.) Returns `dispatch()`'s answer at once; the request goes out once its
   * body is in.
   */
  startReplayable(request: NormalizedRequest, length: number): boolean {
    this.#request = request
    const more = this.#host.started(this)
    this.#gated = this.#host.gates(request.origin, request.switchTo !== null)
    void this.#readWholeBody(request, length)
    return more
  }

  async #readWholeBody(request: NormalizedRequest, length: number): Promise<void> {
    const body = request.body
    if (body.kind !== 'pull') return
    const chunks: Uint8Array[] = []
    let total = 0
    try {
      const source = body.source()
      for (;;) {
        const next = await source.next()
        if (next.done === true) break
        const chunk = chunkBytes(next.value)
        total += chunk.byteLength
        if (total > length) throw new errors.RequestContentLengthMismatchError()
        chunks.push(chunk)
        if (this.#state === DONE) {
          await source.return?.()
          return
        }
      }
      if (total !== length) throw new errors.RequestContentLengthMismatchError()
    } catch (err) {
      if (this.#state !== DONE) this.#fail(err as Error)
      return
    }
    if (this.#state === DONE) return
    this.#request = { ...request, body: { kind: 'bytes', bytes: Buffer.concat(chunks, total) } }
    this.#host.send(this)
  }

  /**
   * First step of sending (see AgentHost): `onRequestStart`/`onConnect`, which may abort or pause; a gated
   * request's come once it has its connection (#onConnected).
   */
  announceStart(): void {
    if (this.#gated) return
    this.#callStart()
  }

  /** A gated request has its connection: its start callback runs, then it proceeds unless that aborted it. */
  #onConnected(): void {
    if (!this.#gated) return
    this.#gated = false
    this.#callStart()
    if (!this.#aborted && this.#state !== DONE) this.#host.proceed(this.#id)
  }

  #callStart(): void {
    if (this.#state === DONE) return
    const handler = this.#handler
    try {
      if (this.#legacy) handler.onConnect?.((err?: Error) => this.abort(err), this.context)
      else handler.onRequestStart?.(this, this.context)
    } catch (err) {
      this.abort(err as Error)
    }
  }

  /** Second step: adds this request to the tick's submissions, unless it ended already. */
  appendDispatch(out: Submissions): void {
    if (this.#state === DONE) return
    const request = this.#request as NormalizedRequest
    const body = request.body
    let mode = BODY_NONE
    let bytes: Uint8Array | null = null
    if (body.kind === 'bytes') {
      mode = BODY_BYTES
      bytes = body.bytes
    } else if (body.kind === 'pull') {
      mode = body.length ?? BODY_PULL_UNKNOWN_LENGTH
    }
    const switchTo = request.switchTo
    const switchMode = switchTo === null ? SWITCH_NONE : request.method === 'CONNECT' ? SWITCH_CONNECT : SWITCH_PROTOCOL
    out.add(
      this.#id,
      request.method,
      request.url,
      request.headers,
      mode,
      bytes,
      request.headersTimeout,
      request.bodyTimeout,
      switchMode,
      switchTo ?? '',
      this.#gated
    )
    this.#dispatched = true
  }

  /** Third step, once the batch was handed over: a pause asked for before the request existed takes effect. */
  afterDispatch(): void {
    if (this.#dispatched && this.#paused && this.#state !== DONE) binding().requestPause(this.#host.native, this.#id)
  }

  /** One event from the native side. */
  deliver(kind: number, a: unknown, b: unknown): void {
    if (this.#state === DONE) return
    if (kind === EVENT_PULL) {
      this.#pullBody()
    } else if (kind === EVENT_RETRY) {
      this.context.retryCount = a as number
    } else if (kind === EVENT_CONNECTED) {
      this.#onConnected()
    } else if (kind === EVENT_UPGRADE) {
      // Never held back: from the switch on, the connection's events (paused or not) are the socket's.
      this.#onUpgrade(a as number, (b as string).split(FIELD_SEPARATOR))
    } else if (this.#paused || this.#backlog !== null) {
      ;(this.#backlog ??= []).push(kind, a, b)
    } else {
      this.#apply(kind, a, b)
    }
  }

  #flushBacklog(): void {
    const backlog = this.#backlog
    if (backlog === null || this.#paused) return
    let i = 0
    while (i < backlog.length && !this.#paused && this.#state !== DONE) {
      this.#apply(backlog[i] as number, backlog[i + 1], backlog[i + 2])
      i += 3
    }
    if (i >= backlog.length) {
      this.#backlog = null
      if (!this.#paused && this.#dispatched && this.#state !== DONE) binding().requestResume(this.#host.native, this.#id)
    } else {
      this.#backlog = backlog.slice(i)
    }
  }

  #apply(kind: number, a: unknown, b: unknown): void {
    switch (kind) {
      case EVENT_START:
        this.#onStart(a as number, b as string)
        break
      case EVENT_DATA:
        this.#onData(a as Buffer)
        break
      case EVENT_END:
        this.#onEnd(a === '' ? undefined : (a as string).split(FIELD_SEPARATOR))
        break
      case EVENT_ERROR:
        this.#onError(a as string, b as string)
        break
    }
  }

  /**
   * Legacy `onBodySent`/`onRequestSent` (and diagnostics' `bodyChunkSent`/`bodySent`): a known-size body counts
   * as sent once the response head arrives (hyper reports no earlier point); a pulled body chunk by chunk as the
   * core takes it (see #pullBody).
   */
  #announceSent(): void {
    if (this.#requestSent) return
    this.#requestSent = true
    const request = this.#request as NormalizedRequest
    const body = request.body
    const bytes = body.kind === 'bytes' && body.bytes.byteLength > 0 ? body.bytes : null
    if (bytes !== null && channels.bodyChunkSent.hasSubscribers) publishBodyChunkSent(this, request, bytes)
    if (channels.bodySent.hasSubscribers) publishBodySent(this, request)
    if (!this.#legacy) return
    if (bytes !== null) this.#handler.onBodySent?.(bytes)
    this.#handler.onRequestSent?.()
  }

  /** `code`: status + 1000 × HTTP version × 10; `head`: remote, local, status text, then the headers. */
  #onStart(code: number, head: string): void {
    this.#headText = head
    this.#startCode = code
    const status = code % 1000
    const handler = this.#handler
    const request = this.#request as NormalizedRequest
    try {
      if (channels.sendHeaders.hasSubscribers) publishSendHeaders(this, request, this.#host.native, this.#connection())
      if (request.body.kind !== 'pull') this.#announceSent()
      // The common case (a controller-style handler, no diagnostics subscriber) reads the headers object
      // straight from the text: no list of every field first.
      const fields = this.#legacy || channels.headers.hasSubscribers ? (this.#fields() as string[]) : null
      if (fields !== null && channels.headers.hasSubscribers) {
        publishHeaders(this, request, status, rawHeaders(fields, HEAD_FIELDS), fields[HEAD_FIELDS - 1])
      }
      // undici calls onResponseStarted on both handler styles, before the head: undici 8's fetch takes the
      // resource-timing entry's responseStart from it.
      handler.onResponseStarted?.()
      if (fields === null) {
        const { statusText, headers } = parseHead(head, HEAD_FIELDS)
        handler.onResponseStart?.(this, status, headers, statusText)
      } else if (this.#legacy) {
        const resume = (): void => this.resume()
        if (handler.onHeaders?.(status, rawHeaders(fields, HEAD_FIELDS), resume, fields[HEAD_FIELDS - 1]) === false) this.pause()
      } else {
        handler.onResponseStart?.(this, status, headersObject(fields, HEAD_FIELDS), fields[HEAD_FIELDS - 1])
      }
    } catch (err) {
      this.abort(err as Error)
    }
  }

  /**
   * The connection switched protocols: the request is over (as undici's, it announces its headers and empty
   * trailers to diagnostics) and the handler gets the connection as a socket.
   */
  #onUpgrade(code: number, fields: string[]): void {
    this.#headerFields = fields
    this.#startCode = code
    const status = code % 1000
    const request = this.#request as NormalizedRequest
    this.#finish()
    // Created once the request left the agent's books: from here on its id names the socket.
    const socket = new UpgradedSocket(this.#host, this.#id, fields[0], fields[1], request)
    try {
      if (channels.sendHeaders.hasSubscribers) publishSendHeaders(this, request, this.#host.native, this.#connection())
      if (request.body.kind !== 'pull') this.#announceSent()
      if (channels.headers.hasSubscribers) publishHeaders(this, request, status, rawHeaders(fields, HEAD_FIELDS), fields[2])
      if (channels.trailers.hasSubscribers) publishTrailers(this, request, [])
      this.#upgrading = socket
      if (this.#legacy) this.#handler.onUpgrade?.(status, rawHeaders(fields, HEAD_FIELDS), socket)
      else this.#handler.onRequestUpgrade?.(this, status, headersObject(fields, HEAD_FIELDS), socket)
    } catch (err) {
      // As undici: the handler hears of its own exception, and the connection closes.
      socket.destroy(err as Error)
      if (!this.#aborted) this.#callError(err as Error)
    } finally {
      this.#upgrading = null
    }
  }

  #onData(chunk: Buffer): void {
    if (channels.bodyChunkReceived.hasSubscribers) publishBodyChunkReceived(this, this.#request as NormalizedRequest, chunk)
    try {
      if (this.#legacy) {
        if (this.#handler.onData?.(chunk) === false) this.pause()
      } else {
        this.#handler.onResponseData?.(this, chunk)
      }
    } catch (err) {
      this.abort(err as Error)
    }
  }

  #onEnd(trailers: string[] | undefined): void {
    this.#trailerFields = trailers
    this.#finish()
    if (channels.trailers.hasSubscribers) publishTrailers(this, this.#request as NormalizedRequest, rawHeaders(trailers, 0))
    try {
      if (this.#legacy) this.#handler.onComplete?.(rawHeaders(trailers, 0))
      else this.#handler.onResponseEnd?.(this, headersObject(trailers, 0))
    } catch (err) {
      // As undici does: an exception from the end callback becomes the request's error (RetryHandler throws
      // there to ask for a retry).
      this.#callError(err as Error)
    }
  }

  /** `detail`: the message, then `\0bytesWritten\0bytesRead` when the failed connection's counters are known. */
  #onError(code: string, detail: string): void {
    const [message, written, read] = detail.split(FIELD_SEPARATOR)
    const counters = written === undefined ? null : { bytesWritten: Number(written), bytesRead: Number(read) }
    // These fail a request that was on a connection already: undici had announced its headers by then. A gated
    // request still waiting for its CONNECTED had none.
    if ((code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_SOCKET') && !this.#gated && channels.sendHeaders.hasSubscribers) {
      publishSendHeaders(this, this.#request as NormalizedRequest, this.#host.native, this.#connection())
    }
    const err =
      code === 'UND_ERR_REQUEST_BODY' && this.#bodyError !== null
        ? this.#bodyError
        : errorFromCore(code, message, this.#request ?? { hostname: '', address: '' }, this.#connection(), counters)
    this.#fail(err)
  }

  #fail(err: Error): void {
    this.#finish()
    this.#callError(err)
  }

  #callError(err: Error): void {
    // A request that never started (invalid options, closed agent) was never announced, as with undici.
    if (this.#request !== null && channels.error.hasSubscribers) publishError(this, this.#request, err)
    try {
      if (this.#legacy) {
        if (typeof this.#handler.onError !== 'function') throw err
        this.#handler.onError(err)
      } else {
        this.#handler.onResponseError?.(this, err)
      }
    } catch (thrown) {
      reportUncaught(thrown)
    }
  }

  #finish(): void {
    if (this.#state === DONE) return
    this.#state = DONE
    this.#backlog = null
    const source = this.#bodySource
    if (source !== null && typeof source.return === 'function') {
      // Stop reading the body source (destroys a Readable); its own errors no longer matter.
      source.return().catch(() => {})
    }
    if (this.#request !== null) this.#host.finished(this)
  }

  #pullBody(): void {
    const body = this.#request?.body
    if (!this.#dispatched || body === undefined || body.kind !== 'pull') return
    const native = this.#host.native
    const id = this.#id
    let source = this.#bodySource
    if (source === null) {
      if (channels.sendHeaders.hasSubscribers) publishSendHeaders(this, this.#request as NormalizedRequest, native)
      try {
        source = this.#bodySource = body.source()
      } catch (err) {
        this.#bodyFailed(err)
        return
      }
    }
    source.next().then(
      (result) => {
        if (this.#state === DONE) return
        if (result.done) {
          binding().requestPushBody(native, id, null)
          this.#announceSent()
        } else {
          const chunk = chunkBytes(result.value)
          binding().requestPushBody(native, id, chunk)
          if (channels.bodyChunkSent.hasSubscribers) publishBodyChunkSent(this, this.#request as NormalizedRequest, chunk)
          if (this.#legacy) this.#handler.onBodySent?.(chunk)
        }
      },
      (err: unknown) => this.#bodyFailed(err)
    ).catch((err: unknown) => this.#bodyFailed(err))
  }

  #bodyFailed(err: unknown): void {
    if (this.#state === DONE) return
    this.#bodyError = err instanceof Error ? err : new Error(String(err))
    binding().requestPushBody(this.#host.native, this.#id, this.#bodyError.message || 'request body failed')
  }
}
