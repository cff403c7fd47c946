/**
 * Turns the raw per-round results into what the report shows: for every scenario and client the medians
 * across rounds, the ratios to the matching undici.Agent row and the share of the ceiling; then each target's
 * verdict. Ratios are taken between medians of the same run, never across runs.
 */
import { median } from '../lib/stats.mjs'
import { baselineOf, CLIENT_LABELS } from '../lib/scenarios.mjs'
import { TARGETS } from './targets.mjs'

const METRICS = ['rps', 'cpuUsPerRequest', 'p50Ms', 'p99Ms', 'maxRssMiB', 'rssGrowthMiB', 'mibPerSecond']

function medianRow (clientId, rounds) {
  const ok = rounds.filter((r) => !r.unavailable && !r.failed)
  const row = { clientId, label: CLIENT_LABELS[clientId], roundsOk: ok.length, roundsRun: rounds.length }
  if (ok.length === 0) {
    row.unavailable = rounds.find((r) => r.unavailable)?.unavailable ?? null
    row.failed = rounds.find((r) => r.failed)?.failed ?? null
    return row
  }
  for (const metric of METRICS) row[metric] = median(ok.map((r) => r[metric]))
  row.errors = ok.reduce((sum, r) => sum + (r.errors ?? 0), 0)
  row.stuck = Math.max(0, ...ok.map((r) => r.stuckInFlight ?? 0))
  row.note = ok.find((r) => r.note)?.note ?? null
  if (ok.length < rounds.length) row.failed = rounds.find((r) => r.failed)?.failed ?? null
  return row
}

const ratio = (a, b) => (a != null && b != null && b !== 0 ? a / b : null)

function summarizeScenario (scenario, runs) {
  const rows = Object.entries(runs).map(([clientId, rounds]) => medianRow(clientId, rounds))
  const byId = Object.fromEntries(rows.map((r) => [r.clientId, r]))
  const ceiling = byId.ceiling?.rps
  for (const row of rows) {
    const baseline = byId[baselineOf(row.clientId)]
    row.baselineId = baseline?.clientId ?? null
    row.throughputRatio = ratio(row.rps, baseline?.rps)
    row.cpuRatio = ratio(row.cpuUsPerRequest, baseline?.cpuUsPerRequest)
    row.rssGrowthRatio = ratio(row.rssGrowthMiB, baseline?.rssGrowthMiB)
    row.ceilingShare = row.clientId === 'ceiling' ? null : ratio(row.rps, ceiling)
  }
  return { id: scenario.id, title: scenario.title, kind: scenario.kind, protocol: scenario.protocol, rows }
}

function judge (target, scenarios) {
  const scenario = scenarios.find((s) => s.id === target.scenario)
  const rows = (scenario?.rows ?? []).filter((r) => target.clients.includes(r.clientId))
  const verdict = { label: target.label, scenario: target.scenario, clients: target.clients }
  if (rows.length === 0 || rows.every((r) => r.roundsOk === 0)) {
    const why = rows.find((r) => r.unavailable)?.unavailable ?? (scenario ? 'no result' : 'not run')
    return { ...verdict, status: 'n/a', why }
  }
  if (target.maxRssGrowthMiB !== undefined) {
    const measured = rows.filter((r) => r.rssGrowthMiB != null)
    const worst = measured.reduce((a, b) => (b.rssGrowthMiB > a.rssGrowthMiB ? b : a))
    const pass = measured.length === target.clients.length && worst.rssGrowthMiB < target.maxRssGrowthMiB
    return { ...verdict, rss: { limitMiB: target.maxRssGrowthMiB, worstMiB: worst.rssGrowthMiB, worstClient: worst.clientId, pass }, status: pass ? 'pass' : 'fail' }
  }
  const row = rows[0]
  const throughput = {
    target: target.minThroughput ?? null,
    ratio: row.throughputRatio,
    pass: target.minThroughput === undefined || (row.throughputRatio != null && row.throughputRatio >= target.minThroughput)
  }
  const cpu = { target: target.maxCpu, ratio: row.cpuRatio, pass: row.cpuRatio != null && row.cpuRatio <= target.maxCpu }
  return { ...verdict, throughput, cpu, status: throughput.pass && cpu.pass ? 'pass' : 'fail' }
}

export function summarize ({ scenarios, measured, glue }) {
  const summarized = scenarios.filter((s) => measured[s.id]).map((s) => summarizeScenario(s, measured[s.id]))
  return { scenarios: summarized, targets: TARGETS.map((t) => judge(t, summarized)), glue }
}
