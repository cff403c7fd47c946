/**
 * `Agent`: an undici `Dispatcher` whose requests run in the Rust core. `request`, `stream`, `pipeline` and
 * `compose` come from undici's `Dispatcher` base class; `dispatch`, `close` and `destroy` are implemented here.
 */
import { EventEmitter } from 'node:events'
import { Dispatcher, errors } from 'undici'
import { RequestController, type RequestHost } from './controller'
import { channels, publishConnection, publishCreate, registerAgent } from './diagnostics'
import { errorFromCore } from './errors'
import {
  binding,
  EVENT_CIRCUIT,
  EVENT_CONNECT,
  EVENT_CONNECTING,
  EVENT_CONNECTION_ERROR,
  EVENT_DATA,
  EVENT_DISCONNECT,
  type NativeAgent
} from './native'
import { nativeAgentOptions, type AgentOptions } from './options'
import { normalizeOrigin, normalizeRequest, type NormalizedRequest } from './request'
import { agentStats, type OriginStats } from './stats'

const { ClientClosedError, ClientDestroyedError, InvalidArgumentError } = errors

/**
 * Largest streamed body of known length read up front so that the retry policy can send it again (larger ones,
 * and those of unknown length, stay streamed and are sent once).
 */
const REPLAYABLE_BODY_BYTES = 1024 * 1024

/** Every request in flight in this process, by id: native events name their request by id. */
const inFlight = new Map<number, RequestController>()
let nextId = 1

/** Agents by id, for their connection events; weak, so that an agent nobody uses can be collected. */
const agents = new Map<number, WeakRef<AgentHost>>()
const forgetAgent = new FinalizationRegistry<number>((id) => agents.delete(id))
let nextAgentId = 1

/**
 * Receives a batch of native events (`[dataBuffer, agentId, kind, id, a, b, …]`) and hands each to its request
 * (or, for connection events, to its agent). Body chunks are views into the batch's one data Buffer, or large
 * chunks Buffers of their own.
 */
function deliverBatch(batch: unknown[]): void {
  const data = batch[0] as Buffer | undefined
  try {
    deliverEvents(batch, data)
  } finally {
    // One batch per turn of the event loop: if more wait, the next comes after timers and I/O had their turn.
    const host = agents.get(batch[1] as number)?.deref()
    if (host !== undefined && binding().agentDrainDone(host.native)) setImmediate(drainAgain, host)
  }
}

function drainAgain(host: AgentHost): void {
  binding().agentDrain(host.native)
}

function deliverEvents(batch: unknown[], data: Buffer | undefined): void {
  for (let i = 2; i < batch.length; i += 4) {
    const kind = batch[i] as number
    if (
      kind === EVENT_CONNECT ||
      kind === EVENT_DISCONNECT ||
      kind === EVENT_CONNECTION_ERROR ||
      kind === EVENT_CIRCUIT ||
      kind === EVENT_CONNECTING
    ) {
      agents.get(batch[i + 1] as number)?.deref()?.agentEvent(kind, batch[i + 2] as string, batch[i + 3] as string | undefined)
      continue
    }
    const controller = inFlight.get(batch[i + 1] as number)
    if (controller === undefined) continue
    if (kind === EVENT_DATA) {
      // An offset into the batch's Buffer, or (large chunks) a Buffer of the chunk's own.
      const at = batch[i + 2] as number | Buffer
      const chunk = typeof at === 'number' ? (data as Buffer).subarray(at, at + (batch[i + 3] as number)) : at
      controller.deliver(kind, chunk, undefined)
    } else {
      controller.deliver(kind, batch[i + 2], batch[i + 3])
    }
  }
}

type Callback = (err?: Error | null, data?: null) => void

/** The state of an origin's circuit breaker, as `circuitStateChange` events report it. */
export type CircuitState = 'closed' | 'open' | 'half-open'

/** Options of {@link Agent.close}. */
export interface CloseOptions {
  /**
   * Longest wait for requests in flight, in ms. When it passes, the agent is destroyed: what is still in
   * flight fails with `ClientDestroyedError`.
   */
  timeout?: number
}

/** The agent's bookkeeping, kept apart from the public class so controllers see only what they need. */
class AgentHost implements RequestHost {
  readonly native: NativeAgent
  readonly requests = new Set<RequestController>()
  /** Requests in flight per origin, and whether `drain` is owed once it drops below the limit. */
  readonly #perOrigin = new Map<string, { running: number; needDrain: boolean }>()
  readonly #limit: number
  readonly #onDrain: (origin: string) => void
  #onIdle: Array<() => void> = []
  /** Requests started in this tick, sent to the native side together at its end. */
  #toSend: RequestController[] = []

  /** Open connections per origin, from the transport's connection events. */
  readonly connected = new Map<string, number>()
  #onConnection: ((kind: number, origin: string, error: Error | null) => void) | null = null
  #onCircuit: ((origin: string, state: CircuitState) => void) | null = null

  /** `limit`: requests per origin before `dispatch()` answers false (undici: connections × pipelining). */
  constructor(native: NativeAgent, limit: number, onDrain: (origin: string) => void) {
    this.native = native
    this.#limit = limit
    this.#onDrain = onDrain
  }

  /** Where connection and circuit events go (the Agent, which emits them). */
  listen(
    onConnection: (kind: number, origin: string, error: Error | null) => void,
    onCircuit: (origin: string, state: CircuitState) => void
  ): void {
    this.#onConnection = onConnection
    this.#onCircuit = onCircuit
  }

  agentEvent(kind: number, origin: string, detail: string | undefined): void {
    if (kind === EVENT_CIRCUIT) {
      this.#onCircuit?.(origin, detail as CircuitState)
      return
    }
    if (kind === EVENT_CONNECTING) {
      // undici has no event for it; diagnostics_channel has `beforeConnect`.
      publishConnection(this.native, kind, origin, null)
      return
    }
    const open = this.connected.get(origin) ?? 0
    let error: Error | null = null
    if (kind === EVENT_CONNECT) {
      this.connected.set(origin, open + 1)
    } else if (kind === EVENT_DISCONNECT) {
      if (open <= 1) this.connected.delete(origin)
      else this.connected.set(origin, open - 1)
      error = new errors.SocketError('closed')
    } else if (kind === EVENT_CONNECTION_ERROR) {
      const separator = (detail ?? '').indexOf('\0')
      error = errorFromCore((detail ?? '').slice(0, separator), (detail ?? '').slice(separator + 1), normalizeOrigin(origin))
    }
    publishConnection(this.native, kind, origin, error, kind === EVENT_CONNECT ? detail : undefined)
    this.#onConnection?.(kind, origin, error)
  }

  send(controller: RequestController): void {
    if (this.#toSend.push(controller) === 1) queueMicrotask(this.#flush)
  }

  /**
   * Sends the requests started in this tick: every start callback runs first (any may abort or pause), then
   * the survivors cross into the addon in one call.
   */
  readonly #flush = (): void => {
    const batch = this.#toSend
    this.#toSend = []
    for (const controller of batch) controller.announceStart()
    const fields: unknown[] = []
    const sent: RequestController[] = []
    for (const controller of batch) if (controller.appendDispatch(fields)) sent.push(controller)
    if (sent.length === 0) return
    binding().dispatchBatch(this.native, fields)
    for (const controller of sent) controller.afterDispatch()
  }

  /** Counts `controller` in; returns false when its origin is now saturated (undici's `needDrain`). */
  started(controller: RequestController): boolean {
    inFlight.set(controller.id, controller)
    this.requests.add(controller)
    // While requests are in flight the agent keeps the process alive; idle, it lets it exit.
    if (this.requests.size === 1) binding().agentSetActive(this.native, true)
    let count = this.#perOrigin.get(controller.origin)
    if (count === undefined) this.#perOrigin.set(controller.origin, (count = { running: 0, needDrain: false }))
    count.running++
    if (count.running >= this.#limit) count.needDrain = true
    return !count.needDrain
  }

  finished(controller: RequestController): void {
    inFlight.delete(controller.id)
    if (!this.requests.delete(controller)) return
    const count = this.#perOrigin.get(controller.origin)
    if (count !== undefined) {
      count.running--
      if (count.running === 0 && !count.needDrain) this.#perOrigin.delete(controller.origin)
      if (count.needDrain && count.running < this.#limit) {
        count.needDrain = false
        if (count.running === 0) this.#perOrigin.delete(controller.origin)
        this.#onDrain(controller.origin)
      }
    }
    if (this.requests.size === 0) {
      binding().agentSetActive(this.native, false)
      const waiters = this.#onIdle
      this.#onIdle = []
      for (const waiter of waiters) waiter()
    }
  }

  whenIdle(callback: () => void): void {
    if (this.requests.size === 0) queueMicrotask(callback)
    else this.#onIdle.push(callback)
  }
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
  #closed = false
  #destroyed = false

  constructor(options: AgentOptions = {}) {
    super()
    const agentId = nextAgentId++
    const nativeOptions = nativeAgentOptions(options)
    const native = binding().agentNew(nativeOptions, deliverBatch, agentId)
    registerAgent(native, nativeOptions)
    const limit = options.connections == null ? Infinity : options.connections * Math.max(1, options.pipelining ?? 1)
    // undici emits `drain` with the dispatchers involved as a second argument, beyond what its types declare.
    const emitDrain = (origin: string): boolean => EventEmitter.prototype.emit.call(this, 'drain', new URL(origin), [this])
    this.#host = new AgentHost(native, limit, emitDrain)
    agents.set(agentId, new WeakRef(this.#host))
    forgetAgent.register(this, agentId)
    // undici's arguments: (origin URL, [dispatchers]) for connect; plus the error for disconnect/connectionError.
    this.#host.listen(
      (kind, origin, error) => {
        const name = kind === EVENT_CONNECT ? 'connect' : kind === EVENT_DISCONNECT ? 'disconnect' : 'connectionError'
        if (this.listenerCount(name) === 0) return
        const args: unknown[] = [new URL(origin), [this]]
        if (error !== null) args.push(error)
        EventEmitter.prototype.emit.call(this, name, ...args)
      },
      // Not an undici event: `circuitStateChange(origin URL, state, [agent])`.
      (origin, state) => EventEmitter.prototype.emit.call(this, 'circuitStateChange', new URL(origin), state, [this])
    )
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
    return agentStats(this.#host.native, this.#host.connected)
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
    const controller = new RequestController(this.#host, nextId++, handler)
    try {
      if (!opts || typeof opts !== 'object') throw new InvalidArgumentError('opts must be an object.')
      if (this.#destroyed) throw new ClientDestroyedError()
      if (this.#closed) throw new ClientClosedError()
      let request: NormalizedRequest
      if (!channels.create.hasSubscribers) {
        request = normalizeRequest(opts)
      } else {
        // diagnostics_channel: announced before anything is sent, so that subscribers can add headers.
        const raw: unknown[] = []
        request = normalizeRequest(opts, raw)
        publishCreate(controller, request, opts, raw)
      }
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
      return false
    }
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
    const timeout = options.timeout
    if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout >= 0))) {
      throw new InvalidArgumentError('invalid close timeout')
    }
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
  connect: (origin: URL, targets: readonly Dispatcher[]) => void
  disconnect: (origin: URL, targets: readonly Dispatcher[], error: errors.UndiciError) => void
  connectionError: (origin: URL, targets: readonly Dispatcher[], error: errors.UndiciError) => void
  drain: (origin: URL) => void
  circuitStateChange: CircuitStateListener
}

// Declaration merging: the listener methods know the agent's own event as well as undici's.
export interface Agent {
  on<E extends keyof AgentEvents>(eventName: E, callback: AgentEvents[E]): this
  once<E extends keyof AgentEvents>(eventName: E, callback: AgentEvents[E]): this
  off<E extends keyof AgentEvents>(eventName: E, callback: AgentEvents[E]): this
  addListener<E extends keyof AgentEvents>(eventName: E, callback: AgentEvents[E]): this
  removeListener<E extends keyof AgentEvents>(eventName: E, callback: AgentEvents[E]): this
}

/** One metric family of {@link Agent.metricsJSON}. */
export interface MetricFamily {
  type: 'counter' | 'gauge' | 'histogram'
  help: string
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>
}

/**
 * Sets the number of tokio worker threads that run every agent's I/O. Takes effect only before the first
 * `Agent` is created; returns whether it did. Default: `REQWEST_DISPATCHER_WORKER_THREADS`, else one per core minus
 * one (left to the JavaScript thread), at least 1, at most 2.
 */
export function setWorkerThreads(threads: number): boolean {
  if (!Number.isInteger(threads) || threads < 1) throw new InvalidArgumentError('invalid threads')
  return binding().setWorkerThreads(threads)
}
