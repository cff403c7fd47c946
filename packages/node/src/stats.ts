/**
 * `agent.stats`: per-origin counts as undici's `Agent` reports them (a `PoolStats` per origin), from what the
 * core can count: requests from the core's admission layer, connections from the transport's connection
 * events; see COMPATIBILITY.md.
 */
import { binding, type NativeAgent } from './native'

/** One origin's counts. */
export interface OriginStats {
  /** Connections open to the origin (direct transport; through a proxy this stays 0). */
  connected: number
  /** Open connections without a running request (`connected - running`, at least 0). */
  free: number
  /** Requests waiting for a connection: for the `connections` cap, or behind the first HTTP/2 request. */
  pending: number
  /** Same as `pending` (undici's pools count requests queued in the pool separately; there is one queue here). */
  queued: number
  /** Requests sent and not finished yet. */
  running: number
  /** `pending + running`. */
  size: number
}

/**
 * Stats of every origin the agent has requests for, open connections to, or keeps HTTP/2 state about, keyed
 * by origin. `connected` counts what the transport reported opened and not yet closed.
 */
export function agentStats(native: NativeAgent, connected: ReadonlyMap<string, number>): Record<string, OriginStats> {
  const flat = binding().agentStats(native)
  const out: Record<string, OriginStats> = {}
  const entry = (origin: string, pending: number, running: number): OriginStats => {
    const open = connected.get(origin) ?? 0
    // An HTTP/1.1 connection is busy while a request runs on it; what is left is free.
    return { connected: open, free: Math.max(0, open - running), pending, queued: pending, running, size: pending + running }
  }
  for (let i = 0; i + 2 < flat.length; i += 3) {
    out[flat[i] as string] = entry(flat[i] as string, flat[i + 1] as number, flat[i + 2] as number)
  }
  for (const origin of connected.keys()) out[origin] ??= entry(origin, 0, 0)
  return out
}
