/**
 * The batch demultiplexer: native events arrive in batches (numbers, one text and the body bytes; layout in
 * `native/src/protocol.rs`) and each goes to the request it names (its {@link DispatchController}) or, for
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
  EVENT_DISCONNECT,
  EVENT_END,
  EVENT_ERROR,
  EVENT_FIELDS,
  EVENT_NONE,
  EVENT_START,
  EVENT_UPGRADE,
  FIELD_SEPARATOR,
  type DeliverFn
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

/**
 * Receives a batch of native events (the `deliver` function every native agent is made with): `numbers` holds
 * `EVENT_FIELDS` numbers per event (`count` events; the array is reused, so only those count), `text` the
 * strings of every event back to back, `data` the small body chunks, `buffers` the large ones.
 */
export const deliverBatch: DeliverFn = (numbers, count, text, data, buffers, agentId) => {
  const end = count * EVENT_FIELDS
  let i = 0
  // Where the text of event `i` starts: every event's piece is taken before it is delivered.
  let at = 0
  for (;;) {
    try {
      for (; i < end; i += EVENT_FIELDS) {
        const kind = numbers[i]
        const id = numbers[i + 1]
        const length = numbers[i + 4]
        const piece = length === 0 ? '' : text.slice(at, at + length)
        at += length
        if (kind === EVENT_START || kind === EVENT_UPGRADE) {
          inFlight.get(id)?.deliver(kind, numbers[i + 2], piece)
        } else if (kind === EVENT_DATA) {
          const controller = inFlight.get(id)
          if (controller === undefined) continue
          // An offset into the batch's Buffer, or (large chunks) −(index + 1) in `buffers`.
          const offset = numbers[i + 2]
          const chunk = offset >= 0 ? (data as Buffer).subarray(offset, offset + numbers[i + 3]) : (buffers as Buffer[])[-offset - 1]
          controller.deliver(kind, chunk, undefined)
        } else if (kind === EVENT_END) {
          inFlight.get(id)?.deliver(kind, piece, undefined)
        } else if (kind === EVENT_ERROR) {
          const split = piece.indexOf(FIELD_SEPARATOR)
          inFlight.get(id)?.deliver(kind, piece.slice(0, split), piece.slice(split + 1))
        } else if (
          kind === EVENT_CONNECT ||
          kind === EVENT_DISCONNECT ||
          kind === EVENT_CONNECTION_ERROR ||
          kind === EVENT_CIRCUIT ||
          kind === EVENT_CONNECTING
        ) {
          // `origin`, or `origin\0detail`.
          const split = piece.indexOf(FIELD_SEPARATOR)
          const origin = split < 0 ? piece : piece.slice(0, split)
          const detail = split < 0 ? undefined : piece.slice(split + 1)
          agents.get(id)?.deref()?.agentEvent(kind, origin, detail)
        } else if (kind !== EVENT_NONE) {
          inFlight.get(id)?.deliver(kind, numbers[i + 2], numbers[i + 3])
        }
      }
      break
    } catch (err) {
      // A listener (or a handler) threw while event `i` was delivered: report it, go on with the next one.
      reportUncaught(err)
      i += EVENT_FIELDS
    }
  }
  // One batch per turn of the event loop: if more wait, the next comes after timers and I/O had their turn.
  const host = agents.get(agentId)?.deref()
  if (host !== undefined && binding().agentDrainDone(host.native)) setImmediate(drainAgain, host)
}

function drainAgain(host: AgentHost): void {
  binding().agentDrain(host.native)
}
