/**
 * Where one client process spends its CPU, thread by thread, from a `perf` recording: the JavaScript thread,
 * the core's tokio threads and the rest, each with its top functions by self and by total (inclusive) time.
 * What the V8 profile (cpuprofile-top.mjs) cannot show: native time under N-API calls, GC, the kernel, tokio.
 *
 *   NODE_OPTIONS=--perf-basic-prof perf record -a -g -F 999 -o /tmp/perf.data -- \
 *     node benchmarks/run.mjs --only=h1-get-64 --clients=ours-dispatch --rounds=1
 *   perf script -i /tmp/perf.data -F pid,tid,comm,ip,sym | node benchmarks/tools/perf-top.mjs [--pid=N] [count]
 *
 * Without `--pid` the process with the most samples in a thread named `reqwest-dispatc…` is taken (the
 * client of ours that ran longest). `--perf-basic-prof` names JIT-compiled JavaScript frames.
 */
import { createInterface } from 'node:readline'

const args = process.argv.slice(2)
const pidArg = args.find((a) => a.startsWith('--pid='))
const count = Number(args.find((a) => /^\d+$/.test(a)) ?? 20)

/** One sample: `{ pid, tid, comm, frames }` (frames innermost first, symbol names). */
async function readSamples () {
  const samples = []
  let current = null
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === '') {
      if (current) samples.push(current)
      current = null
      continue
    }
    if (!line.startsWith('\t') && !line.startsWith(' ')) {
      // Header: "comm pid/tid" (comm may contain spaces).
      const match = /^(.*?)\s+(\d+)\/(\d+)\s*$/.exec(line)
      if (match) current = { comm: match[1].trim(), pid: Number(match[2]), tid: Number(match[3]), frames: [] }
      continue
    }
    if (current) {
      const frame = /^\s*[0-9a-f]+\s+(.*?)(?:\+0x[0-9a-f]+)?$/.exec(line)
      current.frames.push(frame ? frame[1] : line.trim())
    }
  }
  if (current) samples.push(current)
  return samples
}

function groupOf (sample) {
  if (sample.tid === sample.pid) return 'JS thread'
  if (sample.comm.startsWith('reqwest-dispatc')) return 'core threads'
  return 'other threads'
}

function top (title, samples) {
  const self = new Map()
  const inclusive = new Map()
  for (const s of samples) {
    const leaf = s.frames[0] ?? '[unknown]'
    self.set(leaf, (self.get(leaf) ?? 0) + 1)
    for (const f of new Set(s.frames)) inclusive.set(f, (inclusive.get(f) ?? 0) + 1)
  }
  const print = (what, map) => {
    process.stdout.write(`  ${what}\n`)
    for (const [name, n] of [...map].sort((a, b) => b[1] - a[1]).slice(0, count)) {
      process.stdout.write(`  ${((100 * n) / samples.length).toFixed(1).padStart(6)}%  ${name.slice(0, 150)}\n`)
    }
  }
  process.stdout.write(`\n${title}: ${samples.length} samples\n`)
  print('self', self)
  print('total', inclusive)
}

const samples = await readSamples()
let pid = pidArg ? Number(pidArg.slice(6)) : null
if (pid === null) {
  const perPid = new Map()
  for (const s of samples) if (s.comm.startsWith('reqwest-dispatc')) perPid.set(s.pid, (perPid.get(s.pid) ?? 0) + 1)
  pid = [...perPid].sort((a, b) => b[1] - a[1])[0]?.[0] ?? null
}
if (pid === null) {
  process.stderr.write('no process with a reqwest-dispatc… thread in the recording; pass --pid=N\n')
  process.exit(1)
}
const mine = samples.filter((s) => s.pid === pid)
process.stdout.write(`process ${pid}: ${mine.length} samples\n`)
const groups = new Map()
for (const s of mine) {
  const group = groupOf(s)
  if (!groups.has(group)) groups.set(group, [])
  groups.get(group).push(s)
}
for (const [group, list] of [...groups].sort((a, b) => b[1].length - a[1].length)) top(group, list)
