/**
 * Turns the raw per-round results into what the report shows: for every scenario and client the medians
 * across rounds, the ratios to the matching undici.Agent row and the share of the ceiling; then each target's
 * verdict. Ratios are taken between medians of the same run, never across runs.
 */
import { median } from '../lib/stats.mjs'
import { baselineOf, CLIENT_LABELS } from '../lib/scenarios.mjs'
import { TARGETS } from './targets.mjs'

const METRICS = [
  'rps', 'cpuUsPerRequest', 'jsCpuUsPerRequest', 'coreCpuUsPerRequest', 'otherCpuUsPerRequest', 'gcUsPerRequest',
  'p50Ms', 'p99Ms', 'maxRssMiB', 'rssGrowthMiB', 'mibPerSecond', 'kibPerRequest', 'seconds'
]

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
    row.jsCpuRatio = ratio(row.jsCpuUsPerRequest, baseline?.jsCpuUsPerRequest)
    row.p50Ratio = ratio(row.p50Ms, baseline?.p50Ms)
    row.rssGrowthRatio = ratio(row.rssGrowthMiB, baseline?.rssGrowthMiB)
    row.ceilingShare = row.clientId === 'ceiling' ? null : ratio(row.rps, ceiling)
  }
  return { id: scenario.id, title: scenario.title, short: scenario.short, kind: scenario.kind, protocol: scenario.protocol, rows }
}

/** The row field each kind of check reads (see targets.mjs). */
const CHECKED_FIELD = {
  throughput: 'throughputRatio',
  cpu: 'cpuRatio',
  jsCpu: 'jsCpuRatio',
  p50: 'p50Ratio',
  memory: 'rssGrowthRatio'
}

/** One check against the target's first row, or (`rssMiB`) against the worst of its rows. */
function judgeCheck (check, rows, wanted) {
  if (check.metric === 'rssMiB') {
    const measured = rows.filter((r) => r.rssGrowthMiB != null)
    if (measured.length === 0) return { ...check, value: null, pass: false }
    const worst = measured.reduce((a, b) => (b.rssGrowthMiB > a.rssGrowthMiB ? b : a))
    const pass = measured.length === wanted && worst.rssGrowthMiB < check.below
    return { ...check, value: worst.rssGrowthMiB, worstClient: worst.clientId, pass }
  }
  const value = rows[0][CHECKED_FIELD[check.metric]] ?? null
  const pass = value !== null && (check.min !== undefined ? value >= check.min : value <= check.max)
  return { ...check, value, pass }
}

function judge (target, scenarios) {
  const scenario = scenarios.find((s) => s.id === target.scenario)
  const rows = (scenario?.rows ?? []).filter((r) => target.clients.includes(r.clientId))
  const verdict = { label: target.label, scenario: target.scenario, clients: target.clients }
  if (rows.length === 0 || rows.every((r) => r.roundsOk === 0)) {
    const why = rows.find((r) => r.unavailable)?.unavailable ?? (scenario ? 'no result' : 'not run')
    return { ...verdict, status: 'n/a', why }
  }
  const checks = target.checks.map((check) => judgeCheck(check, rows, target.clients.length))
  return { ...verdict, checks, status: checks.every((c) => c.pass) ? 'pass' : 'fail' }
}

export function summarize ({ scenarios, measured, glue }) {
  const summarized = scenarios.filter((s) => measured[s.id]).map((s) => summarizeScenario(s, measured[s.id]))
  return { scenarios: summarized, targets: TARGETS.map((t) => judge(t, summarized)), glue }
}
