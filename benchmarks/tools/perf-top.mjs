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
 * client of ours that ran longest); `--match=REGEX` takes the process with the most samples whose stack has a
 * frame matching REGEX instead (`--match=undici/lib` finds an undici client). `--perf-basic-prof` names
 * JIT-compiled JavaScript frames.
 *
 * `--categories` prints, per thread group, where the samples went by kind of work instead of by function:
 * each system call by name (`sendto`, `recvfrom`, `epoll_wait`, `futex`, … with everything the kernel does
 * under it: the TCP stack, waking the peer, the task switch), page faults, other kernel time, and in user space
 * V8's garbage collector, JavaScript, the rest of V8 and Node, N-API/neon, the allocator, memcpy/memset, the
 * core's and the addon's own Rust, tokio, httparse. With `--us=JS:25.9,core:35.0,other:3.2` (a row's µs per
 * request per group, from RESULTS.md) the shares become µs per request. `--from=S` drops each process's
 * first S seconds of samples (start-up and warm-up; needs `time` in `perf script -F`, e.g.
 * `-F pid,tid,comm,time,ip,sym`).
 */
import { createInterface } from 'node:readline'

const args = process.argv.slice(2)
const pidArg = args.find((a) => a.startsWith('--pid='))
const count = Number(args.find((a) => /^\d+$/.test(a)) ?? 20)
const categories = args.includes('--categories')
const usArg = args.find((a) => a.startsWith('--us='))
const fromArg = args.find((a) => a.startsWith('--from='))
const matchArg = args.find((a) => a.startsWith('--match='))
/** µs per request per group, keyed by the group's first word (`JS`, `core`, `other`). */
const usPerGroup = new Map(
  (usArg ? usArg.slice(5).split(',') : []).map((kv) => {
    const [k, v] = kv.split(':')
    return [k, Number(v)]
  })
)

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
      // Header: "comm pid/tid" or "comm pid/tid time:" (comm may contain spaces).
      const match = /^(.*?)\s+(\d+)\/(\d+)(?:\s+([\d.]+):)?\s*$/.exec(line)
      if (match) {
        const time = match[4] === undefined ? null : Number(match[4])
        current = { comm: match[1].trim(), pid: Number(match[2]), tid: Number(match[3]), time, frames: [] }
      }
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

/** The kind of work a sample was doing (see `--categories`); frames are innermost first. */
function categoryOf (frames) {
  // The outermost system call on the stack names what the kernel was doing for this thread.
  for (let i = frames.length - 1; i >= 0; i--) {
    const sys = /^(?:__x64_sys_|__do_sys_|__se_sys_|ksys_)(\w+)/.exec(frames[i])
    if (sys) return `kernel: ${sys[1]}`
  }
  if (frames.some((f) => /exc_page_fault|do_user_addr_fault/.test(f))) return 'kernel: page faults'
  const leaf = frames[0] ?? '[unknown]'
  if (/^[a-f0-9]+$/.test(leaf) || leaf === '[unknown]') return 'unknown'
  if (frames.some((f) => /^entry_SYSCALL|^asm_|^irq|softirq|^ret_from_fork/.test(f)) && !/::/.test(leaf) && /^[_a-z]/.test(leaf) && !/^(mi_|_mi_|malloc|free|_int_|__mem|napi_|uv_|uv__)/.test(leaf)) return 'kernel: other'
  if (/v8::internal::(Heap|Scavenger|Mark|Sweeper|ConcurrentMarking|MemoryAllocator|.*GC|.*Evacuat|MinorMark|Marking|PagedSpace|LocalHeap|Young)/.test(leaf)) return 'V8 garbage collector'
  if (/^JS:|^Builtins_|^LazyCompile|^Function:|^Interpreted/.test(leaf)) return 'JavaScript (JIT and builtins)'
  if (/^(mi_|_mi_|malloc|free|calloc|realloc|_int_|tcache|cfree)/.test(leaf)) return 'allocator'
  if (/^__mem(move|cpy|set)|^memcpy|^memset|^memmove/.test(leaf)) return 'memcpy/memset'
  if (/^napi_|^neon|^v8impl/.test(leaf)) return 'N-API/neon'
  if (/^__GI___lll|^__lll_|^pthread_|^__pthread/.test(leaf)) return 'locks (libc)'
  if (/clock_gettime|^read_tsc/.test(leaf)) return 'clock'
  if (/reqwest_dispatcher/.test(leaf)) return 'our Rust (core + addon)'
  if (/^tokio|^<tokio|mio::/.test(leaf)) return 'tokio'
  if (/httparse/.test(leaf)) return 'httparse'
  if (/^v8::|^node::|^uv_|^uv__|^std::__|^icu/.test(leaf)) return 'V8 runtime (ICs, strings, objects), Node, libuv'
  if (/^(core|alloc|std|hashbrown|bytes|http|futures|rustls|ring|<)/.test(leaf)) return 'Rust std and crates'
  return 'other user code'
}

function byCategory (title, samples) {
  const counts = new Map()
  for (const s of samples) {
    const c = categoryOf(s.frames)
    counts.set(c, (counts.get(c) ?? 0) + 1)
  }
  const us = usPerGroup.get(title.split(' ')[0])
  process.stdout.write(`\n${title}: ${samples.length} samples${us === undefined ? '' : `, ${us} µs/req`}\n`)
  for (const [name, n] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, count)) {
    const share = n / samples.length
    const perRequest = us === undefined ? '' : `  ${(share * us).toFixed(1).padStart(6)} µs/req`
    process.stdout.write(`  ${(100 * share).toFixed(1).padStart(6)}%${perRequest}  ${name}\n`)
  }
}

const samples = await readSamples()
let pid = pidArg ? Number(pidArg.slice(6)) : null
if (pid === null) {
  const perPid = new Map()
  const match = matchArg ? new RegExp(matchArg.slice(8)) : null
  const chosen = match ? (s) => s.frames.some((f) => match.test(f)) : (s) => s.comm.startsWith('reqwest-dispatc')
  for (const s of samples) if (chosen(s)) perPid.set(s.pid, (perPid.get(s.pid) ?? 0) + 1)
  pid = [...perPid].sort((a, b) => b[1] - a[1])[0]?.[0] ?? null
}
if (pid === null) {
  process.stderr.write('no process with a reqwest-dispatc… thread (or a frame matching --match) in the recording; pass --pid=N\n')
  process.exit(1)
}
let mine = samples.filter((s) => s.pid === pid)
if (fromArg) {
  const first = Math.min(...mine.map((s) => s.time ?? Infinity))
  if (!Number.isFinite(first)) {
    process.stderr.write('--from needs sample times: perf script -F pid,tid,comm,time,ip,sym\n')
    process.exit(1)
  }
  mine = mine.filter((s) => s.time - first >= Number(fromArg.slice(7)))
}
process.stdout.write(`process ${pid}: ${mine.length} samples\n`)
const groups = new Map()
for (const s of mine) {
  const group = groupOf(s)
  if (!groups.has(group)) groups.set(group, [])
  groups.get(group).push(s)
}
for (const [group, list] of [...groups].sort((a, b) => b[1].length - a[1].length)) {
  if (categories) byCategory(group, list)
  else top(group, list)
}
