/**
 * Entry point of the autocannon process: the HTTP/1.1 ceiling, i.e. what a load generator with its own
 * minimal HTTP stack gets out of the same server with the same 100 connections. A short warm-up run, then the
 * measured run; CPU is this process's over the measured run.
 */
import autocannon from 'autocannon'
import { cpuPerRequest, startThreadCpu } from '../lib/thread-cpu.mjs'

const config = JSON.parse(process.argv[2])
const { scenario, load } = config

function run (durationMs) {
  return autocannon({
    url: config.origin + scenario.path,
    method: scenario.method,
    connections: load.concurrency,
    duration: Math.max(durationMs / 1000, 0.2),
    body: scenario.requestBytes > 0 ? Buffer.alloc(scenario.requestBytes, 0x63) : undefined,
    headers: scenario.requestBytes > 0 ? { 'content-type': 'application/octet-stream' } : undefined
  })
}

let result
try {
  await run(load.warmupMs)
  const cpu = startThreadCpu()
  const started = performance.now()
  const outcome = await run(load.durationMs)
  const seconds = (performance.now() - started) / 1000
  const used = cpu.stop()
  const requests = outcome.requests.total
  result = {
    requests,
    errors: outcome.errors + outcome.non2xx,
    seconds,
    rps: requests / outcome.duration,
    ...cpuPerRequest(used, requests),
    p50Ms: outcome.latency.p50,
    p99Ms: outcome.latency.p99,
    note: 'autocannon'
  }
} catch (err) {
  result = { failed: String(err?.stack ?? err) }
}
result.maxRssMiB = process.resourceUsage().maxRSS / 1024
process.send(result, () => process.exit(0))
