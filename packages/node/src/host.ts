/**
 * The host of an agent's requests: the bookkeeping the public {@link Agent} keeps apart from its API, so that
 * each request's controller sees only what it needs ({@link RequestHost}). It counts requests in flight per
 * origin (undici's `dispatch()` answer and `drain` event), sends the requests started in one tick to the addon
 * together, keeps the process alive while requests are in flight, tells `close()` when the agent is idle, and
 * turns the agent's native connection and circuit events into diagnostics messages and the agent's events.
 *
 * It also decides which requests are gated. undici calls `onConnect`/`onRequestStart` once a socket is assigned
 * to the request, right before writing it. When a connection of the HTTP/1.1 engine is surely free for a request
 * (more connections open to its origin than its other requests in flight), one is assigned at once, so the
 * callback runs before the request is handed over, as today. Otherwise the request is gated: the core holds it
 * once it has a connection (opened, or freed by another request) and sends CONNECTED; the callback runs then,
 * and the request proceeds (or, aborted, is never written). Requests over HTTP/2 or through a proxy take
 * hyper-util's pool, which gives no such point: they are never gated (see COMPATIBILITY.md).
 *
 * Listener exceptions never corrupt this bookkeeping: counts are settled before any listener runs, and what a
 * `drain` listener or a `close()` callback throws is reported without keeping the others from running.
 */
import { errors } from 'undici'
import { inFlight } from './batch'
import type { DispatchController, RequestHost } from './controller'
import { publishConnection } from './diagnostics'
import { errorFromCore, reportUncaught } from './errors'
import {
  binding,
  EVENT_CIRCUIT,
  EVENT_CONNECT,
  EVENT_CONNECTING,
  EVENT_CONNECTION_ERROR,
  EVENT_DISCONNECT,
  FIELD_SEPARATOR,
  type NativeAgent
} from './native'
import { normalizeOrigin } from './request'
import { Submissions } from './submissions'

/** The state of an origin's circuit breaker, as `circuitStateChange` events report it. */
export type CircuitState = 'closed' | 'open' | 'half-open'

/** Where the agent's own events go (the public Agent, which emits them). */
export interface AgentListener {
  /** `connect`, `disconnect` or `connectionError` (by native event kind), with the error of the last two. */
  connection(kind: number, origin: string, error: Error | null): void
  circuit(origin: string, state: CircuitState): void
  drain(origin: string): void
}

/** How an agent's requests reach the network, as far as gating goes (see {@link AgentHost}). */
export interface Routes {
  /** The HTTP/1.1 engine serves the agent (no proxy, no h2c). */
  engine: boolean
  /** `https:` origins are offered HTTP/2 (through hyper-util), but for requests that switch protocols. */
  allowH2: boolean
}

export class AgentHost implements RequestHost {
  readonly native: NativeAgent
  readonly requests = new Set<DispatchController>()
  /** Requests in flight per origin, and whether `drain` is owed once it drops below the limit. */
  readonly #perOrigin = new Map<string, { running: number; needDrain: boolean }>()
  readonly #limit: number
  readonly #routes: Routes
  /** Connections open per origin, from the connection events. */
  readonly #open = new Map<string, number>()
  /** Origins whose circuit breaker is not closed, from the circuit events: their requests may be refused. */
  readonly #circuits = new Set<string>()
  /** Gated requests whose start callback ran, told to proceed at the end of the tick (`count` of them). */
  #proceeding = new Float64Array(64)
  #proceedCount = 0
  /** A microtask will send what this tick started or let proceed. */
  #flushing = false
  readonly #listener: AgentListener
  #onIdle: Array<() => void> = []
  /** Whether a microtask will settle `#active` once the requests of this job are over. */
  #settling = false
  /** Requests started in this tick, sent to the native side together at its end. */
  #toSend: DispatchController[] = []
  readonly #submissions = new Submissions()
  /** Upgraded sockets that keep the process alive (open and not `unref()`'d). */
  #heldSockets = 0
  /** Whether the native agent keeps the process alive: requests in flight or held sockets. */
  #active = false

  /** `limit`: requests per origin before `dispatch()` answers false (undici: connections × pipelining). */
  constructor(native: NativeAgent, limit: number, routes: Routes, listener: AgentListener) {
    this.native = native
    this.#limit = limit
    this.#routes = routes
    this.#listener = listener
  }

  /** A connection or circuit event of this agent, from the native side. */
  agentEvent(kind: number, origin: string, detail: string | undefined): void {
    if (kind === EVENT_CIRCUIT) {
      if (detail === 'closed') this.#circuits.delete(origin)
      else this.#circuits.add(origin)
      this.#listener.circuit(origin, detail as CircuitState)
      return
    }
    if (kind === EVENT_CONNECTING) {
      // undici has no event for it; diagnostics_channel has `beforeConnect`.
      publishConnection(this.native, kind, origin, null)
      return
    }
    if (kind === EVENT_CONNECT) {
      this.#open.set(origin, (this.#open.get(origin) ?? 0) + 1)
    } else if (kind === EVENT_DISCONNECT) {
      const open = (this.#open.get(origin) ?? 0) - 1
      if (open > 0) this.#open.set(origin, open)
      else this.#open.delete(origin)
    }
    let error: Error | null = null
    if (kind === EVENT_DISCONNECT) {
      // A connection that switched protocols left the agent, as undici reports it.
      error = detail === 'upgrade' ? new errors.InformationalError('upgrade') : new errors.SocketError('closed')
    } else if (kind === EVENT_CONNECTION_ERROR) {
      const text = detail ?? ''
      const separator = text.indexOf(FIELD_SEPARATOR)
      error = errorFromCore(text.slice(0, separator), text.slice(separator + 1), normalizeOrigin(origin))
    }
    publishConnection(this.native, kind, origin, error, kind === EVENT_CONNECT ? detail : undefined)
    this.#listener.connection(kind, origin, error)
  }

  send(controller: DispatchController): void {
    this.#toSend.push(controller)
    this.#schedule()
  }

  /**
   * Whether a request just started (counted in by {@link started}) to `origin` waits for its connection before
   * its start callback: unless a connection of the engine is surely free for it.
   */
  gates(origin: string, switches: boolean): boolean {
    // A circuit that is not closed may refuse the request before any connection: only `onError` then, as for
    // a connection that fails. (On the other paths too: the core passes the gate before sending there.)
    if (this.#circuits.size > 0 && this.#circuits.has(origin)) return true
    const routes = this.#routes
    if (!routes.engine) return false
    // With allowH2, `https:` requests go through hyper-util's pool, but for those that switch protocols, which
    // take the engine: their origin's open connections are not all the engine's, so these always wait.
    if (routes.allowH2 && origin.startsWith('https:')) return switches
    return (this.#open.get(origin) ?? 0) < (this.#perOrigin.get(origin)?.running ?? 0)
  }

  /** Gated request `id`'s start callback ran and did not abort it: it may write itself (sent with the tick's batch). */
  proceed(id: number): void {
    if (this.#proceedCount === this.#proceeding.length) {
      const grown = new Float64Array(this.#proceeding.length * 2)
      grown.set(this.#proceeding)
      this.#proceeding = grown
    }
    this.#proceeding[this.#proceedCount++] = id
    this.#schedule()
  }

  #schedule(): void {
    if (this.#flushing) return
    this.#flushing = true
    queueMicrotask(this.#flush)
  }

  /**
   * Sends the requests started in this tick: every start callback runs first (any may abort or pause), then
   * the survivors cross into the addon in one call; and lets the gated requests announced in it proceed, in
   * one more.
   */
  readonly #flush = (): void => {
    this.#flushing = false
    const count = this.#proceedCount
    if (count > 0) {
      this.#proceedCount = 0
      binding().requestsProceed(this.native, this.#proceeding, count)
    }
    const batch = this.#toSend
    if (batch.length === 0) return
    this.#toSend = []
    for (const controller of batch) controller.announceStart()
    const submissions = this.#submissions
    for (const controller of batch) controller.appendDispatch(submissions)
    if (submissions.count === 0) return
    try {
      binding().dispatchBatch(this.native, submissions.text, submissions.numbers, submissions.count, submissions.bodies)
    } finally {
      submissions.clear()
    }
    for (const controller of batch) controller.afterDispatch()
  }

  /** Counts `controller` in; returns false when its origin is now saturated (undici's `needDrain`). */
  started(controller: DispatchController): boolean {
    inFlight.set(controller.id, controller)
    this.requests.add(controller)
    // While requests are in flight the agent keeps the process alive; idle, it lets it exit.
    if (!this.#active) this.#updateActive()
    let count = this.#perOrigin.get(controller.origin)
    if (count === undefined) this.#perOrigin.set(controller.origin, (count = { running: 0, needDrain: false }))
    count.running++
    if (count.running >= this.#limit) count.needDrain = true
    return !count.needDrain
  }

  finished(controller: DispatchController): void {
    inFlight.delete(controller.id)
    if (!this.requests.delete(controller)) return
    let drained: string | null = null
    const count = this.#perOrigin.get(controller.origin)
    if (count !== undefined) {
      count.running--
      if (count.running === 0 && !count.needDrain) this.#perOrigin.delete(controller.origin)
      if (count.needDrain && count.running < this.#limit) {
        count.needDrain = false
        if (count.running === 0) this.#perOrigin.delete(controller.origin)
        drained = controller.origin
      }
    }
    let waiters: Array<() => void> | null = null
    if (this.requests.size === 0) {
      // Idle once this job is over: a callback that starts the next request right away (a client making one
      // call at a time) keeps the agent active without a round of native calls.
      if (!this.#settling) {
        this.#settling = true
        queueMicrotask(this.#settle)
      }
      waiters = this.#onIdle
      this.#onIdle = []
    }
    // Listeners and callbacks run last, each on its own: what one throws is reported and the rest still run.
    if (drained !== null) runReporting((origin) => this.#listener.drain(origin), drained)
    if (waiters !== null) for (const waiter of waiters) runReporting(waiter, undefined)
  }

  /** An upgraded socket starts (`true`) or stops (`false`) keeping the process alive. */
  hold(held: boolean): void {
    this.#heldSockets += held ? 1 : -1
    this.#updateActive()
  }

  readonly #settle = (): void => {
    this.#settling = false
    this.#updateActive()
  }

  #updateActive(): void {
    const active = this.requests.size > 0 || this.#heldSockets > 0
    if (active === this.#active) return
    this.#active = active
    binding().agentSetActive(this.native, active)
  }

  whenIdle(callback: () => void): void {
    if (this.requests.size === 0) queueMicrotask(callback)
    else this.#onIdle.push(callback)
  }
}

/** Calls `fn(arg)`; reports what it throws instead of passing it on. */
function runReporting<T>(fn: (arg: T) => void, arg: T): void {
  try {
    fn(arg)
  } catch (err) {
    reportUncaught(err)
  }
}
