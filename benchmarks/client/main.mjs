/**
 * Entry point of one client process. The runner forks it with a JSON config (which client, which scenario,
 * load shape); it builds the client, runs the closed-loop load, the paced stream or the burst of the scale
 * row, and sends back one result object over IPC, including the process's peak RSS
 * (`process.resourceUsage().maxRSS`, in KiB).
 */
import { measureBurst } from './burst.mjs'
import { runClosedLoop } from './closed-loop.mjs'
import { ourAgent, undiciAgent } from './clients/dispatchers.mjs'
import { SENDERS } from './clients/dispatcher-apis.mjs'
import { nodeCoreSender } from './clients/node-core.mjs'
import { impitSender } from './clients/impit-client.mjs'
import { measurePacedStream } from './paced-stream.mjs'

const config = JSON.parse(process.argv[2])

/** All three policies on, none triggered by a healthy server: retry, a breaker, a limiter far above the load. */
const POLICIES = {
  retry: { maxRetries: 2, minTimeout: 100 },
  circuitBreaker: { threshold: 0.5, minimumRequests: 20 },
  rateLimit: { requestsPerSecond: 1e7, burst: 1e6 }
}
const { scenario } = config

function targetOf () {
  const url = config.origin + scenario.path
  const body = scenario.requestBytes > 0 ? Buffer.alloc(scenario.requestBytes, 0x63) : null
  return {
    origin: config.origin,
    path: scenario.path,
    url,
    method: scenario.method,
    headers: body ? { 'content-type': 'application/octet-stream' } : undefined,
    body,
    messageBytes: scenario.messageBytes
  }
}

/** `{ send, close, note }` for load rows, or `{ unavailable }` when the client cannot run this row. */
async function buildClient () {
  const [family, api] = config.clientId.split('-')
  if (family === 'ours' || family === 'ourspolicies' || family === 'before' || family === 'undici') {
    const built = family === 'undici'
      ? undiciAgent(config)
      : await ourAgent(config, family === 'ourspolicies' ? POLICIES : {}, family === 'before' ? config.beforePackage : null)
    if (!built.dispatcher) return { unavailable: built.unavailable }
    return {
      api,
      dispatcher: built.dispatcher,
      send: SENDERS[api]?.(built.dispatcher, targetOf()),
      // destroy(), not close(): a request stuck in flight must not keep the process from reporting.
      close: () => built.dispatcher.destroy(),
      note: built.note
    }
  }
  if (family === 'node') return { api: 'node', ...nodeCoreSender(config, targetOf()) }
  if (family === 'impit') return { api: 'impit', ...(await impitSender(config, targetOf())) }
  throw new Error(`unknown client ${config.clientId}`)
}

async function main () {
  const client = await buildClient()
  if (client.unavailable) return { unavailable: client.unavailable }
  let measured
  if (scenario.kind === 'stream') {
    // Warm the path (connection, code, allocator) before the baseline is taken.
    await measurePacedStream({ api: client.api, dispatcher: client.dispatcher, url: `${config.origin}/stream/1048576`, rate: 1e12 })
    measured = await measurePacedStream({
      api: client.api,
      dispatcher: client.dispatcher,
      url: config.origin + scenario.path,
      rate: scenario.consumerBytesPerSecond
    })
  } else if (scenario.kind === 'scale') {
    measured = await measureBurst(client.send, { requests: scenario.requests })
    if (measured.requests === 0) return { failed: `every request failed: ${measured.firstError?.split('\n')[0]}` }
  } else {
    const load = { ...config.load, concurrency: scenario.concurrency ?? config.load.concurrency, busyUs: scenario.busyUs ?? 0 }
    measured = await runClosedLoop(client.send, load)
    if (measured.requests === 0 && measured.errors > 0) {
      return { failed: `every request failed: ${measured.firstError?.split('\n')[0]}` }
    }
    if (measured.eventLoopStalled) {
      // Timers fired far too late: the event loop was blocked, so the window (and every rate) is meaningless.
      const rss = process.resourceUsage().maxRSS / 1024
      return { failed: `event loop blocked: the ${config.load.durationMs} ms window measured ${Math.round(measured.seconds * 1000)} ms (${measured.requests} requests); max RSS ${Math.round(rss)} MiB` }
    }
    // WebSocket rows: what the round trips carried, each way.
    if (scenario.messageBytes) measured.mibPerSecond = (measured.rps * scenario.messageBytes) / (1024 * 1024)
  }
  await Promise.race([Promise.resolve(client.close?.()).catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
  return { ...measured, note: client.note ?? null }
}

let result
try {
  result = await main()
} catch (err) {
  result = { failed: String(err?.stack ?? err) }
}
result.maxRssMiB = process.resourceUsage().maxRSS / 1024
process.send(result, () => process.exit(0))
