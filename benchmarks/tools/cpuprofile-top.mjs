/**
 * Prints where a V8 CPU profile spent its time: the top functions by self time, and by total (inclusive) time.
 * Use on the profiles `node benchmarks/run.mjs --cpu-prof` writes (or any `--cpu-prof` output):
 *   node benchmarks/tools/cpuprofile-top.mjs <file.cpuprofile> [count]
 * Time in native code called from JS (N-API functions, GC) shows under V8's "(program)"/"(garbage collector)"
 * entries or the JS function that called it; tokio's threads are not in a V8 profile (use `perf` for those).
 */
import { readFileSync } from 'node:fs'

const [file, countArg] = process.argv.slice(2)
if (!file) {
  process.stderr.write('usage: node benchmarks/tools/cpuprofile-top.mjs <file.cpuprofile> [count]\n')
  process.exit(2)
}
const count = Number(countArg ?? 25)
const profile = JSON.parse(readFileSync(file, 'utf8'))
const nodes = new Map(profile.nodes.map((n) => [n.id, n]))
const parent = new Map()
for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id)

// Self time per node from the sample timeline.
const selfUs = new Map()
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0))
}
const total = [...selfUs.values()].reduce((a, b) => a + b, 0)

const keyOf = (n) => {
  const f = n.callFrame
  const where = f.url ? `${f.url.replace(/^.*\/(node_modules|packages|benchmarks)\//, '$1/')}:${f.lineNumber + 1}` : ''
  return `${f.functionName || '(anonymous)'} ${where}`.trim()
}

const self = new Map()
const inclusive = new Map()
for (const [id, us] of selfUs) {
  const key = keyOf(nodes.get(id))
  self.set(key, (self.get(key) ?? 0) + us)
  // Inclusive: credit every distinct function on the stack once.
  const seen = new Set()
  for (let at = id; at !== undefined; at = parent.get(at)) {
    const k = keyOf(nodes.get(at))
    if (seen.has(k)) continue
    seen.add(k)
    inclusive.set(k, (inclusive.get(k) ?? 0) + us)
  }
}

const print = (title, map) => {
  process.stdout.write(`\n${title} (of ${(total / 1000).toFixed(0)} ms sampled)\n`)
  for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, count)) {
    process.stdout.write(`${((100 * us) / total).toFixed(1).padStart(6)}%  ${key}\n`)
  }
}
print('self time', self)
print('total time', inclusive)
