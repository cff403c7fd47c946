/**
 * `Agent`: an undici `Dispatcher` whose requests run in the Rust core. `request`, `stream`, `pipeline` and
 * `compose` come from undici's `Dispatcher` base class; `dispatch`, `close` and `destroy` are implemented here.
 */
import { EventEmitter } from 'node:events'
import { Dispatcher, errors } from 'undici'
import { RequestController, type RequestHost } from './controller'
import { binding, EVENT_DATA, type NativeAgent } from './native'
import { nativeAgentOptions, type AgentOptions } from './options'
import { normalizeRequest } from './request'
import { agentStats, type OriginStats } from './stats'

const { ClientClosedError, ClientDestroyedError, InvalidArgumentError } = errors

/** Every request in flight in this process, by id: native events name their request by id. */
const inFlight = new Map<number, RequestController>()
let nextId = 1

/**
 * Receives a batch of native events (`[dataBuffer, kind, id, a, b, …]`) and hands each to its request. Body
 * chunks are views into the batch's one data Buffer.
 */
function deliverBatch(batch: unknown[]): void {
  const data = batch[0] as Buffer | undefined
  for (let i = 1; i < batch.length; i += 4) {
    const controller = inFlight.get(batch[i + 1] as number)
    if (controller === undefined) continue
    const kind = batch[i] as number
    if (kind === EVENT_DATA) {
      const offset = batch[i + 2] as number
      controller.deliver(kind, (data as Buffer).subarray(offset, offset + (batch[i + 3] as number)), undefined)
    } else {
      controller.deliver(kind, batch[i + 2], batch[i + 3])
    }
  }
}

type Callback = (err?: Error | null, data?: null) => void

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

  /** `limit`: requests per origin before `dispatch()` answers false (undici: connections × pipelining). */
  constructor(native: NativeAgent, limit: number, onDrain: (origin: string) => void) {
    this.native = native
    this.#limit = limit
    this.#onDrain = onDrain
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
    const native = binding().agentNew(nativeAgentOptions(options), deliverBatch)
    const limit = options.connections == null ? Infinity : options.connections * Math.max(1, options.pipelining ?? 1)
    // undici emits `drain` with the dispatchers involved as a second argument, beyond what its types declare.
    const emitDrain = (origin: string): boolean => EventEmitter.prototype.emit.call(this, 'drain', new URL(origin), [this])
    this.#host = new AgentHost(native, limit, emitDrain)
  }

  /** `true` once `close()` or `destroy()` was called: new requests are refused. */
  get closed(): boolean {
    return this.#closed
  }

  /** Requests pending and running per origin, as undici's `agent.stats` (see COMPATIBILITY.md). */
  get stats(): Record<string, OriginStats> {
    return agentStats(this.#host.native)
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
      return controller.start(normalizeRequest(opts))
    } catch (err) {
      controller.failBeforeStart(err as Error)
      return false
    }
  }

  /** Refuses new requests and resolves once those in flight have finished. */
  override close(): Promise<void>
  override close(callback: () => void): void
  override close(callback?: Callback | (() => void)): Promise<void> | void {
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

/**
 * Sets the number of tokio worker threads that run every agent's I/O. Takes effect only before the first
 * `Agent` is created; returns whether it did. Default: one per core, at most 2.
 */
export function setWorkerThreads(threads: number): boolean {
  if (!Number.isInteger(threads) || threads < 1) throw new InvalidArgumentError('invalid threads')
  return binding().setWorkerThreads(threads)
}
