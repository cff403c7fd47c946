/**
 * Renders benchmarks/results.svg: for every load scenario and API, our Agent's throughput, CPU per request
 * (all threads) and CPU per request on the JavaScript thread as ratios to undici.Agent (1.0 = equal; higher
 * throughput and lower CPU are better), with the target of a row marked where one is set (targets.mjs); below,
 * the peak RSS growth of each client in the slow-consumer stream. Plain SVG, no dependencies.
 */
import { fixed } from './format.mjs'
import { TARGETS } from './targets.mjs'

const WIDTH = 960
const LABEL_WIDTH = 280
const PLOT_WIDTH = 600
const BAR = 11
const ROW = 3 * BAR + 14
const COLORS = { throughput: '#2f6fb0', cpu: '#e08a2c', jsCpu: '#b5452f', rss: '#5a9e6f', target: '#222', grid: '#ccc' }
/** The bars of a row, top to bottom: the ratio each shows and the check (targets.mjs) that marks it. */
const BARS = [
  { metric: 'throughput', field: 'throughputRatio', color: COLORS.throughput },
  { metric: 'cpu', field: 'cpuRatio', color: COLORS.cpu },
  { metric: 'jsCpu', field: 'jsCpuRatio', color: COLORS.jsCpu }
]
const APIS = ['dispatch', 'request', 'fetch']

const escape = (text) => String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const text = (x, y, content, attrs = '') => `<text x="${x}" y="${y}" ${attrs}>${escape(content)}</text>`

function ratioRows (summary) {
  const rows = []
  for (const scenario of summary.scenarios.filter((s) => s.kind === 'load')) {
    for (const api of APIS) {
      const row = scenario.rows.find((r) => r.clientId === `ours-${api}`)
      if (!row) continue
      const target = TARGETS.find((t) => t.scenario === scenario.id && t.clients.includes(row.clientId))
      const need = (metric) => {
        const check = target?.checks.find((c) => c.metric === metric)
        return check?.min ?? check?.max ?? null
      }
      rows.push({
        label: `${scenario.short ?? scenario.title} · ${api}`,
        bars: BARS.map((b) => ({ value: row[b.field], color: b.color, need: need(b.metric) })),
        missing: row.roundsOk === 0 ? (row.unavailable ?? 'failed') : null
      })
    }
  }
  return rows
}

function axis (x0, y0, height, scaleMax, toX, unit) {
  const parts = []
  const step = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100].find((s) => scaleMax / s <= 12) ?? 200
  for (let v = 0; v <= scaleMax + 1e-9; v += step) {
    const x = toX(v)
    parts.push(`<line x1="${x}" y1="${y0}" x2="${x}" y2="${y0 + height}" stroke="${COLORS.grid}" stroke-width="0.5"/>`)
    parts.push(text(x, y0 + height + 14, `${Number(v.toFixed(2))}${unit}`, 'font-size="10" text-anchor="middle" fill="#555"'))
  }
  return parts.join('')
}

function bar (x0, y, value, toX, scaleMax, color, suffix) {
  if (value == null) return text(x0 + 4, y + BAR - 2, 'n/a', 'font-size="10" fill="#999"')
  const clipped = Math.min(value, scaleMax)
  const end = toX(clipped)
  return `<rect x="${x0}" y="${y}" width="${Math.max(end - x0, 1)}" height="${BAR}" fill="${color}"/>` +
    text(end + 4, y + BAR - 2, `${fixed(value, 2)}${suffix}${value > scaleMax ? ' →' : ''}`, 'font-size="10" fill="#333"')
}

function targetTick (x, y) {
  return `<line x1="${x}" y1="${y - 2}" x2="${x}" y2="${y + BAR + 2}" stroke="${COLORS.target}" stroke-width="2"/>`
}

function ratioPanel (rows, top) {
  const height = rows.length * ROW
  const values = rows.flatMap((r) => r.bars.map((b) => b.value)).filter((v) => v != null)
  const scaleMax = Math.min(Math.max(2, Math.ceil(Math.max(0, ...values) * 2) / 2, 3.5), 6)
  const x0 = LABEL_WIDTH
  const toX = (v) => x0 + (v / scaleMax) * PLOT_WIDTH
  const parts = [axis(x0, top, height, scaleMax, toX, '×')]
  parts.push(`<line x1="${toX(1)}" y1="${top - 4}" x2="${toX(1)}" y2="${top + height}" stroke="#000" stroke-dasharray="4 3"/>`)
  rows.forEach((row, i) => {
    const y = top + i * ROW + 4
    parts.push(text(x0 - 8, y + BAR + 3, row.label, 'font-size="11" text-anchor="end" fill="#111"'))
    if (row.missing) {
      parts.push(text(x0 + 4, y + BAR + 3, row.missing.slice(0, 90), 'font-size="10" fill="#999"'))
      return
    }
    row.bars.forEach((b, j) => {
      const at = y + j * (BAR + 1)
      parts.push(bar(x0, at, b.value, toX, scaleMax, b.color, '×'))
      if (b.need !== null) parts.push(targetTick(toX(Math.min(b.need, scaleMax)), at))
    })
  })
  return { svg: parts.join(''), height: height + 24 }
}

function rssPanel (scenario, top) {
  const rows = scenario.rows
  const limit = TARGETS.flatMap((t) => t.checks).find((c) => c.metric === 'rssMiB')?.below ?? 32
  const scaleMax = Math.max(limit * 1.25, ...rows.map((r) => r.rssGrowthMiB ?? 0))
  const x0 = LABEL_WIDTH
  const toX = (v) => x0 + (v / scaleMax) * PLOT_WIDTH
  const height = rows.length * (BAR + 8)
  const parts = [axis(x0, top, height, scaleMax, toX, '')]
  parts.push(`<line x1="${toX(limit)}" y1="${top - 4}" x2="${toX(limit)}" y2="${top + height}" stroke="#b00" stroke-dasharray="4 3"/>`)
  parts.push(text(toX(limit) + 4, top - 6, `limit ${limit} MiB`, 'font-size="10" fill="#b00"'))
  rows.forEach((row, i) => {
    const y = top + i * (BAR + 8) + 2
    parts.push(text(x0 - 8, y + BAR - 1, row.label, 'font-size="11" text-anchor="end" fill="#111"'))
    parts.push(bar(x0, y, row.rssGrowthMiB ?? null, toX, scaleMax, COLORS.rss, ' MiB'))
  })
  return { svg: parts.join(''), height: height + 24 }
}

export function renderRatioChart ({ meta, summary }) {
  const parts = []
  let y = 24
  parts.push(text(16, y, 'reqwest-dispatcher Agent ÷ undici.Agent (same run, medians)', 'font-size="15" font-weight="bold"'))
  y += 18
  parts.push(text(16, y, `${meta.cpu} · Node ${meta.node} · undici ${meta.undici} · ${meta.date.slice(0, 10)}${meta.quick ? ' · quick run' : ''}${meta.foreignCpu?.share >= 0.05 ? ` · other processes took ${Math.round(meta.foreignCpu.share * 100)}% of the CPU: numbers skewed` : ''}`, 'font-size="11" fill="#555"'))
  y += 16
  parts.push(`<rect x="16" y="${y}" width="12" height="10" fill="${COLORS.throughput}"/>` + text(32, y + 9, 'throughput (higher is better)', 'font-size="11"'))
  parts.push(`<rect x="200" y="${y}" width="12" height="10" fill="${COLORS.cpu}"/>` + text(216, y + 9, 'CPU/request, all threads', 'font-size="11"'))
  parts.push(`<rect x="370" y="${y}" width="12" height="10" fill="${COLORS.jsCpu}"/>` + text(386, y + 9, 'CPU/request, JS thread (lower is better)', 'font-size="11"'))
  parts.push(`<line x1="620" y1="${y - 1}" x2="620" y2="${y + 11}" stroke="${COLORS.target}" stroke-width="2"/>` + text(626, y + 9, 'target', 'font-size="11"'))
  parts.push(`<line x1="680" y1="${y + 5}" x2="700" y2="${y + 5}" stroke="#000" stroke-dasharray="4 3"/>` + text(706, y + 9, '1.0 = same as undici', 'font-size="11"'))
  y += 28
  const ratios = ratioPanel(ratioRows(summary), y)
  parts.push(ratios.svg)
  y += ratios.height + 16
  const stream = summary.scenarios.find((s) => s.kind === 'stream')
  if (stream) {
    parts.push(text(16, y, `${stream.title}: peak RSS growth of the client`, 'font-size="13" font-weight="bold"'))
    y += 22
    const rss = rssPanel(stream, y)
    parts.push(rss.svg)
    y += rss.height
  }
  const height = y + 8
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif">\n` +
    `<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`
}
