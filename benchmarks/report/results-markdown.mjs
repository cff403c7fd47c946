/**
 * Renders benchmarks/RESULTS.md: the machine, the method, the verdict on each target, the chart, one table per
 * scenario (medians across rounds, ratios to the matching undici.Agent row) and the glue timings.
 */
import { cell, fixed, integer, percent, times } from './format.mjs'

function foreignCpuText (foreign) {
  if (!foreign) return 'not measured'
  const top = foreign.top.filter((p) => p.share >= 0.005).map((p) => `${p.comm} ${percent(p.share)}`).join(', ')
  const verdict = foreign.share >= 0.05 ? ' — **numbers skewed: other processes competed for the CPU**' : ''
  return `${percent(foreign.share)} of the machine's CPU used by processes outside the benchmark${top ? ` (${top})` : ''}${verdict}`
}

function machineSection (meta) {
  return [
    '| | |',
    '|---|---|',
    `| date | ${meta.date} |`,
    `| machine | ${meta.cpu}, ${meta.memoryGiB} GiB, ${meta.os} |`,
    `| Node | ${meta.node} |`,
    `| undici | ${meta.undici} · impit ${meta.impit ?? 'not installed'} · autocannon ${meta.autocannon} |`,
    `| revision | ${meta.revision ?? 'unknown'} |`,
    `| load | ${meta.load.concurrency} requests in flight · ${meta.load.warmupMs} ms warm-up + ${meta.load.durationMs} ms measured per run · medians of ${meta.rounds} round(s)${meta.quick ? ' · **quick smoke run: not comparable**' : ''} |`,
    `| wall time | ${Math.round(meta.wallSeconds)} s |`,
    `| other work on the machine | ${foreignCpuText(meta.foreignCpu)} · load average before ${meta.loadAverageAtStart}, after ${meta.loadAverage} |`
  ].join('\n')
}

const METHOD = `Each client runs in a process of its own, forked by the runner; the servers (node:http, node:https and
node:http2 over TLS, with a CA made for the run) run in another. A client keeps 100 requests in flight (1 in
the latency row, 8 in the row that says so), reads every response body to the end, and reports requests/s, latency percentiles and CPU
per request over the measured window, three ways: **all** threads of the client process
(\`process.cpuUsage()\`: JS, libuv, V8's helper threads, tokio), the **JS** thread alone
(\`/proc/self/task/<pid>/schedstat\`) and the **core**'s tokio threads (named \`reqwest-dispatc…\`); what is left
(libuv's and V8's helper threads, e.g. parallel GC) is all − JS − core. Within a round each of our APIs runs
right before undici's same API (A B A B …); rounds repeat the sequence and the tables show medians across
rounds. Ratios divide our median by undici.Agent's median through the same API (other clients: by undici's
dispatch). "of ceiling" is a share of what autocannon (HTTP/1.1) or h2load (HTTP/2) reach on the same server;
with 1 MiB bodies autocannon (JavaScript) is itself the bottleneck, so shares above 100% say so.
The busy-service row spends 30 µs of synchronous JavaScript (a busy-wait) after each response before the next
request starts. The stream rows run side by side (one process each) because they measure memory, not speed:
each reads the body at 10 MiB/s and reports its peak RSS growth over a baseline taken just before the request.
The scale row starts all its requests in one synchronous loop against a route that answers after a delay and
reports the peak RSS growth (the kernel's high-water mark, reset after the baseline) per request in flight.`

const CHECK_NAMES = { throughput: 'throughput', cpu: 'CPU all', jsCpu: 'CPU JS', p50: 'p50', memory: 'memory' }

function checkText (check) {
  if (check.metric === 'rssMiB') {
    return `${fixed(check.value)} MiB (${check.worstClient ?? '—'}); need < ${check.below} MiB ${check.pass ? '✓' : '✗'}`
  }
  const need = check.min !== undefined ? `≥ ${check.min}×` : `≤ ${check.max}×`
  return `${times(check.value)} (${need}) ${check.pass ? '✓' : '✗'}`
}

function targetsSection (targets) {
  const columns = ['throughput', 'cpu', 'jsCpu']
  const lines = [
    '| target | throughput ×baseline (need) | CPU/req all threads ×baseline (need) | CPU/req JS thread ×baseline (need) | other (need) | verdict |',
    '|---|---|---|---|---|---|'
  ]
  for (const t of targets) {
    if (t.status === 'n/a') {
      lines.push(`| ${t.label} | — | — | — | — | n/a: ${cell(t.why)} |`)
      continue
    }
    const cells = columns.map((metric) => {
      const check = t.checks.find((c) => c.metric === metric)
      return check ? checkText(check) : '—'
    })
    const others = t.checks.filter((c) => !columns.includes(c.metric))
      .map((c) => `${CHECK_NAMES[c.metric] ?? 'peak RSS growth'} ${checkText(c)}`)
    lines.push(`| ${t.label} | ${cells.join(' | ')} | ${others.join('; ') || '—'} | **${t.status}** |`)
  }
  return lines.join('\n')
}

function problem (row) {
  if (row.roundsOk === 0) return cell(row.unavailable ?? `failed: ${row.failed?.split('\n')[0]}`)
  const parts = []
  if (row.note) parts.push(row.note)
  if (row.errors) parts.push(`${row.errors} errors`)
  if (row.stuck) parts.push(`${row.stuck} requests never finished (stalled)`)
  if (row.roundsOk < row.roundsRun) parts.push(`${row.roundsRun - row.roundsOk} round(s) failed: ${row.failed?.split('\n')[0]}`)
  return cell(parts.join('; '))
}

function loadTable (scenario) {
  // The latency row is judged on p50: show its ratio there.
  const latency = scenario.id.includes('latency')
  const lines = [
    `| client | req/s | ×undici | of ceiling | CPU µs/req all | ×undici | JS thread µs/req | ×undici | core µs/req | other µs/req | p50 ms |${latency ? ' ×undici |' : ''} p99 ms | peak RSS MiB | notes |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|${latency ? '---:|' : ''}---:|---:|---|`
  ]
  for (const row of scenario.rows) {
    if (row.roundsOk === 0) {
      lines.push(`| ${row.label} | ${'— | '.repeat(latency ? 13 : 12)}${problem(row)} |`)
      continue
    }
    const cells = [
      integer(row.rps), times(row.throughputRatio), percent(row.ceilingShare),
      fixed(row.cpuUsPerRequest), times(row.cpuRatio),
      fixed(row.jsCpuUsPerRequest), times(row.jsCpuRatio), fixed(row.coreCpuUsPerRequest), fixed(row.otherCpuUsPerRequest),
      fixed(row.p50Ms, 3), ...(latency ? [times(row.p50Ratio)] : []), fixed(row.p99Ms, 2), fixed(row.maxRssMiB, 0)
    ]
    lines.push(`| ${row.label} | ${cells.join(' | ')} | ${problem(row)} |`)
  }
  return lines.join('\n')
}

function websocketTable (scenario) {
  const lines = [
    '| client | round trips/s | ×undici | MiB/s each way | CPU µs/round trip all | ×undici | JS thread µs | ×undici | core µs | p50 ms | p99 ms | peak RSS MiB | notes |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|'
  ]
  for (const row of scenario.rows) {
    if (row.roundsOk === 0) {
      lines.push(`| ${row.label} | ${'— | '.repeat(11)}${problem(row)} |`)
      continue
    }
    const cells = [
      integer(row.rps), times(row.throughputRatio), fixed(row.mibPerSecond),
      fixed(row.cpuUsPerRequest), times(row.cpuRatio), fixed(row.jsCpuUsPerRequest), times(row.jsCpuRatio),
      fixed(row.coreCpuUsPerRequest), fixed(row.p50Ms, 3), fixed(row.p99Ms, 2), fixed(row.maxRssMiB, 0)
    ]
    lines.push(`| ${row.label} | ${cells.join(' | ')} | ${problem(row)} |`)
  }
  return lines.join('\n')
}

function scaleTable (scenario) {
  const lines = [
    '| client | peak RSS growth MiB | KiB/request | ×undici | all done after s | CPU µs/req all | JS thread µs/req | core µs/req | peak RSS MiB | notes |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|'
  ]
  for (const row of scenario.rows) {
    if (row.roundsOk === 0) {
      lines.push(`| ${row.label} | ${'— | '.repeat(9)}${problem(row)} |`)
      continue
    }
    const cells = [
      fixed(row.rssGrowthMiB), fixed(row.kibPerRequest), times(row.rssGrowthRatio), fixed(row.seconds, 2),
      fixed(row.cpuUsPerRequest), fixed(row.jsCpuUsPerRequest), fixed(row.coreCpuUsPerRequest), fixed(row.maxRssMiB, 0)
    ]
    lines.push(`| ${row.label} | ${cells.join(' | ')} | ${problem(row)} |`)
  }
  return lines.join('\n')
}

function streamTable (scenario) {
  const lines = [
    '| client | peak RSS growth MiB | ×undici | read rate MiB/s | peak RSS MiB | notes |',
    '|---|---:|---:|---:|---:|---|'
  ]
  for (const row of scenario.rows) {
    if (row.roundsOk === 0) {
      lines.push(`| ${row.label} | — | — | — | — | ${problem(row)} |`)
      continue
    }
    lines.push(`| ${row.label} | ${fixed(row.rssGrowthMiB)} | ${times(row.rssGrowthRatio)} | ${fixed(row.mibPerSecond)} | ${fixed(row.maxRssMiB, 0)} | ${problem(row)} |`)
  }
  return lines.join('\n')
}

function glueSection (glue) {
  if (!glue) return '_Not run._'
  if (glue.failed) return `_Failed:_ ${cell(glue.failed.split('\n')[0])}`
  const lines = ['| what | mean µs | p50 µs | p99 µs | CPU µs/req all | JS thread | core |', '|---|---:|---:|---:|---:|---:|---:|']
  for (const row of glue.rows) {
    if (row.unavailable) lines.push(`| ${cell(row.name)} | — | — | — | ${cell(row.unavailable)} | | |`)
    else lines.push(`| ${cell(row.name)} | ${fixed(row.meanUs, 2)} | ${fixed(row.p50Us, 2)} | ${fixed(row.p99Us, 2)} | ${fixed(row.cpuUsPerRequest, 2)} | ${fixed(row.jsCpuUsPerRequest, 2)} | ${fixed(row.coreCpuUsPerRequest, 2)} |`)
  }
  return lines.join('\n') + `

The addon rows call \`index.node\` directly with a request the core rejects before any I/O, so they time one
N-API call, a tokio task and a Channel wake-up with batched delivery: the FFI path without HTTP. The public-path
rows send \`Agent.dispatch\` to a loopback port nobody listens on: the whole JS layer, one refused connect() and
the error mapping, ours next to undici's. A test hook (a request Rust answers without a socket, through the
public \`Agent\`) would isolate the glue of the public path; until then these are the stand-ins.`
}

export function renderResultsMarkdown ({ meta, summary }) {
  const parts = [
    '# Benchmark results',
    '',
    '_Generated by `npm run bench` (benchmarks/run.mjs); do not edit by hand. Raw per-round numbers: results.json._',
    '',
    machineSection(meta),
    '',
    METHOD,
    '',
    '## Targets',
    '',
    targetsSection(summary.targets),
    '',
    '![ratios of our Agent to undici.Agent](results.svg)',
    ''
  ]
  for (const scenario of summary.scenarios) {
    const table = { stream: streamTable, scale: scaleTable, websocket: websocketTable }[scenario.kind] ?? loadTable
    parts.push(`## ${scenario.title}`, '', table(scenario), '')
  }
  parts.push('## JS↔Rust glue alone (tinybench)', '', glueSection(summary.glue), '')
  return parts.join('\n')
}
