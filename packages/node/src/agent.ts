/**
 * `Agent`: an undici `Dispatcher` whose requests run in the Rust core. `request`, `stream`, `pipeline` and
 * `compose` come from undici's `Dispatcher` base class; `dispatch`, `close` and `destroy` are implemented here.
 * Its bookkeeping lives in its {@link AgentHost} (host.ts); native events reach it through the batch
 * demultiplexer (batch.ts); each request is a {@link DispatchController} (controller.ts).
 */
import { EventEmitter } from 'node:events'
import { Dispatcher, errors } from 'undici'
import { deliverBatch, newAgentId, routeAgent } from './batch'
import { DispatchController } from './controller'
import { channels, publishCreate, registerAgent } from './diagnostics'
import { AgentHost, type CircuitState } from './host'
import { binding, EVENT_CONNECT, EVENT_DISCONNECT } from './native'
import { nativeAgentOptions, type AgentOptions, type WebSocketOptions } from './options'
import { normalizeOrigin, normalizeRequest } from './request'
import { agentStats, type OriginStats } from './stats'
import { nonNegative, UNDICI_8 } from './checks'

export type { CircuitState } from './host'

const { ClientClosedError, ClientDestroyedError, InvalidArgumentError } = errors

/** What `compose()` returns. */
type ComposedDispatcher = ReturnType<Dispatcher['compose']>

/** The agent each dispatcher composed from one was made from. */
const composedAgents = new WeakMap<object, Agent>()

/**
 * What `dispatch()` answers when the agent itself refuses a request (opts not an object, agent closed or destroyed,
 * invalid origin; the error callback has run): `false` from undici 7's Agent, `true` from undici 8's, which stopped answering
 * `false` where no `drain` will follow. (A request that cannot be built is answered `true` by both.)
 */
const REFUSED_DISPATCH_ANSWER = UNDICI_8

/** Whether undici's Agent accepts `origin`: it checks the origin itself, before any client sees the request. */
function acceptsOrigin(origin: unknown): boolean {
  try {
    normalizeOrigin(origin)
    return true
  } catch {
    return false
  }
}

/**
 * Largest streamed body of known length read up front so that the retry policy can send it again (larger ones,
 * and those of unknown length, stay streamed and are sent once).
 */
const REPLAYABLE_BODY_BYTES = 1024 * 1024

/** The id of the next request, in this process: native events name their request by it. */
let nextId = 1

type Callback = (err?: Error | null, data?: null) => void

/** Options of {@link Agent.close}. */
export interface CloseOptions {
  /**
   * Longest wait for requests in flight, in ms. When it passes, the agent is destroyed: what is still in
   * flight fails with `ClientDestroyedError`.
   */
  timeout?: number
}

/**
 * An undici-compatible `Agent` backed by reqwest/hyper/tokio.
 *
 * ```js
 * import { Agent } from 'reqwest-dispatcher'
 * import { setGlobalDispatcher } from 'undici'
 * setGlobalDispatcher(new Agent())
 * ```
 */
export class Agent extends Dispatcher {
  readonly #host: AgentHost
  readonly #webSocket: WebSocketOptions
  #closed = false
  #destroyed = false

  constructor(options: AgentOptions = {}) {
    super()
    const agentId = newAgentId()
    const nativeOptions = nativeAgentOptions(options)
    this.#webSocket = { ...options.webSocket }
    const native = binding().agentNew(JSON.stringify(nativeOptions), deliverBatch, agentId)
    registerAgent(native, nativeOptions)
    const limit = options.connections ? options.connections * Math.max(1, options.pipelining ?? 1) : Infinity
    const emit = (name: string, ...args: unknown[]): boolean => EventEmitter.prototype.emit.call(this, name, ...args)
    const routes = { engine: nativeOptions.proxy === null && !nativeOptions.h2c, allowH2: nativeOptions.allowH2 }
    this.#host = new AgentHost(native, limit, routes, {
      // undici's arguments: (origin URL, [dispatchers]) for connect; plus the error for disconnect/connectionError.
      connection: (kind, origin, error) => {
        const name = kind === EVENT_CONNECT ? 'connect' : kind === EVENT_DISCONNECT ? 'disconnect' : 'connectionError'
        if (this.listenerCount(name) === 0) return
        if (error === null) emit(name, new URL(origin), [this])
        else emit(name, new URL(origin), [this], error)
      },
      // Not an undici event: `circuitStateChange(origin URL, state, [agent])`.
      circuit: (origin, state) => emit('circuitStateChange', new URL(origin), state, [this]),
      // undici emits `drain` with the dispatchers involved as a second argument, beyond what its types declare.
      drain: (origin) => emit('drain', new URL(origin), [this])
    })
    routeAgent(agentId, this.#host, this)
  }

  /**
   * Every origin's counters in Prometheus' text exposition format (version 0.0.4), ready to serve on
   * `/metrics`: requests by origin, method and status class, duration histogram, body bytes, requests in
   * flight, open connections, retries, circuit state and trips, rate limiter waits and rejections. All names
   * start with `reqwest_dispatcher_`. Counted in the core, at no JavaScript cost per request; empty once the
   * agent is closed.
   */
  metrics(): string {
    return binding().agentMetrics(this.#host.native, false)
  }

  /** The same counters as {@link Agent.metrics}, as `{ [family]: { type, help, samples: [{ name, labels, value }] } }`. */
  metricsJSON(): Record<string, MetricFamily> {
    return JSON.parse(binding().agentMetrics(this.#host.native, true)) as Record<string, MetricFamily>
  }

  /** `true` once `close()` or `destroy()` was called: new requests are refused. */
  get closed(): boolean {
    return this.#closed
  }

  /** Requests pending and running per origin, as undici's `agent.stats` (see COMPATIBILITY.md). */
  get stats(): Record<string, OriginStats> {
    return agentStats(this.#host.native)
  }

  /** The limits undici's `WebSocket` applies to connections over this agent (the `webSocket` option). */
  get webSocketOptions(): Required<WebSocketOptions> {
    return {
      maxFragments: this.#webSocket.maxFragments ?? 131072,
      maxPayloadSize: this.#webSocket.maxPayloadSize ?? 128 * 1024 * 1024
    }
  }

  /** `true` once `destroy()` was called. */
  get destroyed(): boolean {
    return this.#destroyed
  }

  /**
   * Starts a request. Errors in `opts` and calls on a closed agent reach the handler's error callback,
   * as with undici; returns whether more requests may be dispatched now.
   */
  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (!handler || typeof handler !== 'object') throw new InvalidArgumentError('handler must be an object')
    const controller = new DispatchController(this.#host, nextId++, handler)
    let refusedByAgent = true
    try {
      if (!opts || typeof opts !== 'object') throw new InvalidArgumentError('opts must be an object.')
      if (this.#destroyed) throw new ClientDestroyedError()
      if (this.#closed) throw new ClientClosedError()
      refusedByAgent = false
      // diagnostics_channel: announced before anything is sent, so that subscribers can add headers.
      const raw = channels.create.hasSubscribers ? [] : null
      const request = normalizeRequest(opts, raw)
      if (request.switchTo !== null) controller.assertUpgradable()
      if (raw !== null) publishCreate(controller, request, opts, raw)
      const body = request.body
      if (
        body.kind === 'pull' &&
        body.length !== null &&
        body.length <= REPLAYABLE_BODY_BYTES &&
        binding().agentRetries(this.#host.native, request.origin, request.method)
      ) {
        return controller.startReplayable(request, body.length)
      }
      return controller.start(request)
    } catch (err) {
      controller.failBeforeStart(err as Error)
      return refusedByAgent || !acceptsOrigin(opts.origin) ? REFUSED_DISPATCH_ANSWER : true
    }
  }

  /**
   * undici's `compose()`: a dispatcher whose `dispatch` runs through `interceptors` first. undici hands out the
   * other members of a Proxy over this agent unbound, so `composed.close()` would run with the Proxy as `this`,
   * which holds none of the agent's private state; here every method runs on the agent itself.
   */
  override compose(interceptors: Dispatcher.DispatcherComposeInterceptor[]): ComposedDispatcher
  override compose(...interceptors: Dispatcher.DispatcherComposeInterceptor[]): ComposedDispatcher
  override compose(...args: unknown[]): ComposedDispatcher {
    // `this` is the agent, or a dispatcher composed from it when compositions are chained (their `compose` runs
    // with the composition as `this`, so that its interceptors stay in the chain).
    const agent = composedAgents.get(this) ?? this
    const composed = (super.compose as (...a: unknown[]) => ComposedDispatcher)(...args)
    const bound = new Proxy(composed, {
      get: (target, key) => {
        const value: unknown = Reflect.get(target, key)
        return typeof value === 'function' && key !== 'dispatch' && key !== 'compose' ? value.bind(agent) : value
      }
    })
    composedAgents.set(bound, agent)
    return bound
  }

  /**
   * Refuses new requests and resolves once those in flight have finished. With `{ timeout }`, waits at most
   * that long, then destroys the agent (what is left in flight fails with `ClientDestroyedError`).
   */
  override close(): Promise<void>
  override close(options: CloseOptions): Promise<void>
  override close(callback: () => void): void
  override close(callback?: Callback | (() => void) | CloseOptions): Promise<void> | void {
    if (callback !== undefined && callback !== null && typeof callback === 'object') {
      return this.#closeWithin(callback)
    }
    if (callback === undefined) {
      return new Promise((resolve, reject) => this.close((err?: Error | null) => (err ? reject(err) : resolve())))
    }
    if (typeof callback !== 'function') throw new InvalidArgumentError('invalid callback')
    const done = callback as Callback
    if (this.#destroyed) {
      queueMicrotask(() => done(new ClientDestroyedError(), null))
      return
    }
    this.#closed = true
    // As with undici, a closed agent is destroyed once its last request finished.
    this.#host.whenIdle(() => {
      this.#destroyed = true
      binding().agentClose(this.#host.native)
      done(null, null)
    })
  }

  async #closeWithin(options: CloseOptions): Promise<void> {
    const timeout = options.timeout === undefined ? undefined : nonNegative('close timeout', options.timeout)
    const closed = this.close()
    if (timeout === undefined) return closed
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), timeout)
    })
    try {
      if ((await Promise.race([closed, deadline])) === 'late') await this.destroy()
    } finally {
      clearTimeout(timer)
    }
  }

  /** Fails every request in flight with `err` (default `ClientDestroyedError`) and refuses new ones. */
  override destroy(): Promise<void>
  override destroy(err: Error | null): Promise<void>
  override destroy(callback: () => void): void
  override destroy(err: Error | null, callback: () => void): void
  override destroy(errOrCallback?: Error | null | (() => void), callback?: () => void): Promise<void> | void {
    let err: Error | null | undefined
    let done: (() => void) | undefined = callback
    if (typeof errOrCallback === 'function') done = errOrCallback
    else err = errOrCallback
    if (done === undefined) {
      return new Promise((resolve) => this.destroy(err ?? null, resolve))
    }
    if (typeof done !== 'function') throw new InvalidArgumentError('invalid callback')
    this.#closed = true
    this.#destroyed = true
    const reason = err ?? new ClientDestroyedError()
    for (const controller of [...this.#host.requests]) controller.abort(reason)
    binding().agentClose(this.#host.native)
    this.#host.whenIdle(done)
  }
}

/** The listener of `circuitStateChange`: an origin's circuit breaker changed state. */
export type CircuitStateListener = (origin: URL, state: CircuitState, targets: Dispatcher[]) => void

/** The agent's events: undici's Dispatcher events plus `circuitStateChange`. */
export interface AgentEvents {
  /** A connection to `origin` was established (one per connection; `targets` is `[agent]`). */
  connect: (origin: URL, targets: readonly Dispatcher[]) => void
  /** A connection to `origin` closed; `error` says why (`SocketError`, or `ClientDestroyedError` on `destroy()`). */
  disconnect: (origin: URL, targets: readonly Dispatcher[], error: errors.UndiciError) => void
  /** A connection to `origin` could not be established (refused, DNS, TLS, connect timeout). */
  connectionError: (origin: URL, targets: readonly Dispatcher[], error: errors.UndiciError) => void
  /** `origin` can take requests again after `dispatch()` returned `false` for it. */
  drain: (origin: URL) => void
  /** An origin's circuit breaker changed state (see the `circuitBreaker` option). */
  circuitStateChange: CircuitStateListener
}

// Declaration merging: the listener methods know the agent's own event as well as undici's.
export interface Agent {
  /** Adds `callback` for `eventName` (EventEmitter's `on`, typed for {@link AgentEvents}). */
  on<E extends keyof AgentEvents>(eventName: E, callback: AgentEvents[E]): this
  /** Adds `callback` for the next `eventName` only. */
  once<E extends keyof AgentEvents>(eventName: E, callback: AgentEvents[E]): this
  /** Removes `callback` from `eventName`. */
  off<E extends keyof AgentEvents>(eventName: E, callback: AgentEvents[E]): this
  /** Same as {@link Agent.on}. */
  addListener<E extends keyof AgentEvents>(eventName: E, callback: AgentEvents[E]): this
  /** Same as {@link Agent.off}. */
  removeListener<E extends keyof AgentEvents>(eventName: E, callback: AgentEvents[E]): this
}

/** One metric family of {@link Agent.metricsJSON}. */
export interface MetricFamily {
  /** The Prometheus metric type. */
  type: 'counter' | 'gauge' | 'histogram'
  /** The family's `# HELP` text. */
  help: string
  /** One entry per label set (histograms: one per bucket, plus `_sum` and `_count`). */
  samples: Array<{
    /** The sample's metric name (a histogram's carry `_bucket`, `_sum` or `_count`). */
    name: string
    /** `origin`, `method`, `status_class`, `le`, … as in the text exposition. */
    labels: Record<string, string>
    /** The sample's value. */
    value: number
  }>
}

/** Most worker threads {@link setWorkerThreads} accepts (the core's bound). */
const MAX_WORKER_THREADS = 256

/**
 * Sets the number of tokio worker threads that run every agent's I/O. Takes effect only before the first
 * `Agent` is created; returns whether it did. Default: `REQWEST_DISPATCHER_WORKER_THREADS`, else one per core minus
 * one (left to the JavaScript thread), at least 1, at most 2. `threads` must be an integer from 1 to 256.
 */
export function setWorkerThreads(threads: number): boolean {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_WORKER_THREADS) {
    throw new InvalidArgumentError('invalid threads')
  }
  return binding().setWorkerThreads(threads)
}
