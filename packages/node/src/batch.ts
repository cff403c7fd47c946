/**
 * The batch demultiplexer: native events arrive in batches (`[dataBuffer, agentId, kind, id, a, b, …]`, layout
 * in `native/src/protocol.rs`) and each goes to the request it names (its {@link DispatchController}) or, for
 * connection and circuit events, to its agent (its {@link AgentHost}). Body chunks are views into the batch's
 * one data Buffer, or large chunks Buffers of their own.
 *
 * One exception never stalls other requests: whatever a listener or handler throws while one event is
 * delivered, the rest of the batch is delivered, the exception is reported once (as an uncaught exception),
 * and the addon hears that the batch is done, so delivery goes on.
 */
import { reportUncaught } from './errors'
import type { AgentHost } from './host'
import {
  binding,
  EVENT_CIRCUIT,
  EVENT_CONNECT,
  EVENT_CONNECTING,
  EVENT_CONNECTION_ERROR,
  EVENT_DATA,
  EVENT_DISCONNECT
} from './native'

/** Where a request's native events go: its controller, or (after an upgrade) its socket. */
export interface EventReceiver {
  deliver(kind: number, a: unknown, b: unknown): void
}

/**
 * Every request in flight in this process, by id (native events name their request by id): its
 * {@link DispatchController}, or the socket of an upgraded request.
 */
export const inFlight = new Map<number, EventReceiver>()

/** Agents by id, for their batches and connection events; weak, so that an agent nobody uses can be collected. */
const agents = new Map<number, WeakRef<AgentHost>>()
const forgetAgent = new FinalizationRegistry<number>((id) => agents.delete(id))
let lastAgentId = 0

/** Reserves the id a new agent's native side names it by. */
export function newAgentId(): number {
  return ++lastAgentId
}

/** Routes the batches and events of agent `id` to `host`, for as long as `owner` (the public Agent) lives. */
export function routeAgent(id: number, host: AgentHost, owner: object): void {
  agents.set(id, new WeakRef(host))
  forgetAgent.register(owner, id)
}

/** Receives a batch of native events (the `deliver` function every native agent is made with). */
export function deliverBatch(batch: unknown[]): void {
  const data = batch[0] as Buffer | undefined
  let i = 2
  for (;;) {
    try {
      for (; i < batch.length; i += 4) {
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
      break
    } catch (err) {
      // A listener (or a handler) threw while event `i` was delivered: report it, go on with the next one.
      reportUncaught(err)
      i += 4
    }
  }
  // One batch per turn of the event loop: if more wait, the next comes after timers and I/O had their turn.
  const host = agents.get(batch[1] as number)?.deref()
  if (host !== undefined && binding().agentDrainDone(host.native)) setImmediate(drainAgain, host)
}

function drainAgain(host: AgentHost): void {
  binding().agentDrain(host.native)
}
