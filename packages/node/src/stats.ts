/**
 * `agent.stats`: per-origin counts as undici's `Agent` reports them (a `PoolStats` per origin), from what the
 * core can count. The core sees requests, not sockets (reqwest's pool does not report its connections), so
 * `connected` and `free` are absent; see COMPATIBILITY.md.
 */
import { binding, type NativeAgent } from './native'

/** One origin's counts. */
export interface OriginStats {
  /** Requests waiting for a connection: for the `connections` cap, or behind the first HTTP/2 request. */
  pending: number
  /** Same as `pending` (undici's pools count requests queued in the pool separately; there is one queue here). */
  queued: number
  /** Requests sent and not finished yet. */
  running: number
  /** `pending + running`. */
  size: number
}

/** Stats of every origin the agent has requests for (or keeps HTTP/2 state about), keyed by origin. */
export function agentStats(native: NativeAgent): Record<string, OriginStats> {
  const flat = binding().agentStats(native)
  const out: Record<string, OriginStats> = {}
  for (let i = 0; i + 2 < flat.length; i += 3) {
    const pending = flat[i + 1] as number
    const running = flat[i + 2] as number
    out[flat[i] as string] = { pending, queued: pending, running, size: pending + running }
  }
  return out
}
