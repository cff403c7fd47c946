/**
 * `npm run bench`: the benchmark suite of reqwest-dispatcher (issue 4).
 *
 * Starts the servers in their own process, runs every client of every scenario in a process of its own
 * (alternating ours and undici's, round after round), times the JS↔Rust glue with tinybench, then writes
 * RESULTS.md, results.svg and results.json (medians across rounds, ratios to undici.Agent, pass/fail against
 * the targets). Options: see lib/args.mjs (`--quick` for a smoke run).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runH2load } from './ceiling/h2load.mjs'
import { parseArgs } from './lib/args.mjs'
import { watchForeignCpu } from './lib/foreign-cpu.mjs'
import { ensureOptionalPeers } from './lib/optional-peers.mjs'
import { describeMachine } from './lib/machine.mjs'
import { AUTOCANNON_MAIN, CLIENT_MAIN, GLUE_MAIN, runChild, runChildRetryingAddon, startServer } from './lib/processes.mjs'
import { CLIENT_LABELS, loadShape, scenarios } from './lib/scenarios.mjs'
import { makeTlsMaterial } from './lib/tls-material.mjs'
import { renderRatioChart } from './report/ratio-chart.mjs'
import { renderResultsMarkdown } from './report/results-markdown.mjs'
import { summarize } from './report/summary.mjs'

const options = parseArgs(process.argv.slice(2))
const benchmarksDir = fileURLToPath(new URL('.', import.meta.url))
const outDir = options.out ?? (options.quick ? mkdtempSync(join(tmpdir(), 'reqwest-dispatcher-bench-')) : benchmarksDir)
const shape = loadShape(options)
const load = {
  concurrency: shape.concurrency,
  warmupMs: options.warmupMs ?? shape.warmupMs,
  durationMs: options.durationMs ?? shape.durationMs
}
const rounds = options.rounds ?? shape.rounds
const began = Date.now()
const elapsed = () => `${((Date.now() - began) / 1000).toFixed(0).padStart(4)} s`
const log = (line) => process.stdout.write(`[${elapsed()}] ${line}\n`)

const unavailablePeers = ensureOptionalPeers(log)
if (unavailablePeers.length > 0) log(`unavailable here: ${unavailablePeers.join(', ')} (their rows will show as failed runs)`)

const selected = scenarios(options).filter((s) => !options.only || options.only.includes(s.id))
const wantClient = (id) => !options.clients || options.clients.includes(id)
const profileDir = join(outDir, 'profiles')
if (options.cpuProf) mkdirSync(profileDir, { recursive: true })

function oneLine (result) {
  if (result.unavailable) return result.unavailable
  if (result.failed) return `FAILED: ${result.failed.split('\n')[0]}`
  if (result.kibPerRequest !== undefined) {
    return `${result.requests} done in ${result.seconds.toFixed(1)} s, RSS +${result.rssGrowthMiB.toFixed(1)} MiB (${result.kibPerRequest.toFixed(1)} KiB/request)${result.errors ? `, ${result.errors} errors` : ''}`
  }
  if (result.rssGrowthMiB !== undefined) {
    return `RSS +${result.rssGrowthMiB.toFixed(1)} MiB, ${result.mibPerSecond.toFixed(1)} MiB/s, max RSS ${result.maxRssMiB.toFixed(0)} MiB`
  }
  const us = (value) => (value == null ? '—' : value.toFixed(1))
  const cpu = `${us(result.cpuUsPerRequest)} (JS ${us(result.jsCpuUsPerRequest)} of which GC ${us(result.gcUsPerRequest)}, core ${us(result.coreCpuUsPerRequest)})`
  const errors = (result.errors ? `, ${result.errors} errors` : '') + (result.stuckInFlight ? `, ${result.stuckInFlight} STALLED` : '')
  return `${Math.round(result.rps)} req/s, ${cpu} µs CPU/req, p50 ${result.p50Ms?.toFixed(2) ?? '—'} ms, p99 ${result.p99Ms?.toFixed(2) ?? '—'} ms${errors}`
}

async function runClient (scenario, clientId, origin, tls, round) {
  if (clientId === 'ceiling') {
    if (scenario.protocol === 'h2') return runH2load({ origin, scenario, load, workDir: tls.dir })
    return runChild(AUTOCANNON_MAIN, { origin, scenario, load })
  }
  const execArgv = scenario.kind === 'stream' || scenario.kind === 'scale' ? ['--expose-gc'] : []
  if (options.cpuProf) {
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${scenario.id}.${clientId}.r${round}.cpuprofile`)
  }
  const config = { clientId, scenario, protocol: scenario.protocol, origin, load, tls: { ca: tls.ca, caPath: tls.caPath }, beforePackage: options.before }
  const streamSeconds = scenario.kind === 'stream' ? Number(scenario.path.split('/').pop()) / scenario.consumerBytesPerSecond : 0
  // Start-up, a warm-up waiting for its first responses (≤ 10 s more), draining (≤ 5 s) and closing (≤ 2 s)
  // fit in the slack; a child past it is stuck, not slow.
  // A burst of connects may wait for the server's accept queue (SYNs retried after 1, 3, 7 s…): a minute.
  const timeoutMs = scenario.kind === 'scale' ? 60_000 : load.warmupMs + load.durationMs + streamSeconds * 1000 + 22_000
  return runChildRetryingAddon(CLIENT_MAIN, config, { execArgv, timeoutMs })
}

const warmedUp = new Set()

async function runScenario (scenario, server, tls) {
  const origin = {
    h1: `http://127.0.0.1:${server.h1Port}`,
    h1s: `https://127.0.0.1:${server.h1sPort}`,
    h2: `https://127.0.0.1:${server.h2Port}`
  }[scenario.protocol]
  const clients = scenario.clients.filter(wantClient)
  if (scenario.kind === 'load' && !warmedUp.has(scenario.protocol)) {
    // One unrecorded run so the first client measured does not pay for the server's JIT warm-up.
    warmedUp.add(scenario.protocol)
    await runClient(scenario, 'undici-dispatch', origin, tls, 0)
  }
  const runs = Object.fromEntries(clients.map((id) => [id, []]))
  for (let round = 1; round <= rounds; round++) {
    if (scenario.kind === 'stream') {
      // Memory, not speed, is measured here and the consumers are slow on purpose: run them side by side.
      const results = await Promise.all(clients.map((id) => runClient(scenario, id, origin, tls, round)))
      clients.forEach((id, i) => {
        runs[id].push(results[i])
        log(`${scenario.id} r${round} ${CLIENT_LABELS[id].padEnd(30)} ${oneLine(results[i])}`)
      })
    } else {
      for (const id of clients) {
        const result = await runClient(scenario, id, origin, tls, round)
        runs[id].push(result)
        log(`${scenario.id} r${round} ${CLIENT_LABELS[id].padEnd(30)} ${oneLine(result)}`)
      }
    }
  }
  return runs
}

// Other work on the machine skews every number: the load average before and after the run says how much.
const loadAverageAtStart = describeMachine().loadAverage
const foreignCpuWatch = watchForeignCpu()
const tls = makeTlsMaterial()
const server = await startServer(tls)
const measured = {}
let glue = null
try {
  for (const scenario of selected) measured[scenario.id] = await runScenario(scenario, server, tls)
  if (!options.only || options.only.includes('glue')) {
    log('glue: tinybench of the JS↔Rust round trip')
    glue = await runChildRetryingAddon(GLUE_MAIN, { quick: options.quick })
  }
} finally {
  server.stop()
  rmSync(tls.dir, { recursive: true, force: true })
}

const summary = summarize({ scenarios: selected, measured, glue })
const foreignCpu = foreignCpuWatch.stop()
const meta = { ...describeMachine(), loadAverageAtStart, foreignCpu, date: new Date().toISOString(), rounds, load, quick: options.quick, wallSeconds: (Date.now() - began) / 1000 }
mkdirSync(outDir, { recursive: true })
const markdown = renderResultsMarkdown({ meta, summary })
writeFileSync(join(outDir, 'RESULTS.md'), markdown)
writeFileSync(join(outDir, 'results.svg'), renderRatioChart({ meta, summary }))
writeFileSync(join(outDir, 'results.json'), JSON.stringify({ meta, measured, glue, summary }, null, 2) + '\n')
process.stdout.write('\n' + markdown.slice(markdown.indexOf('## Targets')) + '\n')
log(`wrote ${join(outDir, 'RESULTS.md')}, results.svg and results.json`)
