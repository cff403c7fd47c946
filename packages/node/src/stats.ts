/**
 * `agent.stats`: per-origin counts as undici's `Agent` reports them (a `PoolStats` per origin), from what the
 * core counts: requests in its request slots, connections its transport reported open; see COMPATIBILITY.md.
 */
import { binding, STATS_FIELDS, type NativeAgent } from './native'

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
 * by origin.
 */
export function agentStats(native: NativeAgent): Record<string, OriginStats> {
  const flat = binding().agentStats(native)
  const out: Record<string, OriginStats> = {}
  for (let i = 0; i + STATS_FIELDS <= flat.length; i += STATS_FIELDS) {
    const pending = flat[i + 1] as number
    const running = flat[i + 2] as number
    const connected = flat[i + 3] as number
    // An HTTP/1.1 connection is busy while a request runs on it; what is left is free.
    out[flat[i] as string] = { connected, free: Math.max(0, connected - running), pending, queued: pending, running, size: pending + running }
  }
  return out
}
