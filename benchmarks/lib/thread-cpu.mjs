/**
 * CPU time of this process split by thread, from /proc (Linux): the three figures each row reports.
 * - all threads: `process.cpuUsage()` (JS, libuv, V8's helper threads, tokio workers);
 * - the JavaScript thread alone: the task whose id is the process id (the main thread runs the event loop);
 * - the core's threads: tasks named like the core's tokio threads (`reqwest-dispatcher`, which the kernel
 *   truncates to 15 bytes: `reqwest-dispatc`).
 * Per thread, `/proc/self/task/<tid>/schedstat` gives nanoseconds on the CPU; where it is missing (kernels
 * without schedstats) `/proc/self/task/<tid>/stat` gives utime + stime in clock ticks (10 ms), coarse but
 * still fine over a window of seconds. Elsewhere than Linux the split is unknown (null).
 */
import { readdirSync, readFileSync } from 'node:fs'

/** The comm of the core's tokio threads (thread names are cut to 15 bytes by the kernel). */
const CORE_THREAD = /^reqwest-dispatc/
/** Clock ticks per second of /proc's stat (USER_HZ; 100 on every Linux port Node ships for). */
const TICKS_PER_SECOND = 100

function read (path) {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return null
  }
}

/** CPU nanoseconds of one thread, or null once it has exited. */
function threadNs (tid) {
  const schedstat = read(`/proc/self/task/${tid}/schedstat`)
  if (schedstat !== null) return Number(schedstat.split(' ')[0])
  const stat = read(`/proc/self/task/${tid}/stat`)
  if (stat === null) return null
  // After "(comm) ": state, ppid, …; utime and stime are fields 14 and 15 of the whole line.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1e9) / TICKS_PER_SECOND
}

/** `{ tid: { comm, ns } }` for every thread of this process, or null where /proc cannot tell. */
function threads () {
  let tids
  try {
    tids = readdirSync('/proc/self/task')
  } catch {
    return null
  }
  const out = new Map()
  for (const tid of tids) {
    const ns = threadNs(tid)
    if (ns === null) continue
    out.set(Number(tid), { comm: (read(`/proc/self/task/${tid}/comm`) ?? '').trim(), ns })
  }
  return out
}

/**
 * Starts a measurement window; `stop()` returns CPU microseconds used in it:
 * `{ all, js, core, other }` (`js`, `core` and `other` null where threads cannot be told apart). A thread
 * that started inside the window counts from zero; one that exited inside it is lost (tokio's workers and
 * Node's threads live as long as the process, so nothing the rows measure is).
 */
export function startThreadCpu () {
  const before = threads()
  const cpuBefore = process.cpuUsage()
  return {
    stop () {
      const cpu = process.cpuUsage(cpuBefore)
      const after = threads()
      const all = cpu.user + cpu.system
      if (before === null || after === null) return { all, js: null, core: null, other: null }
      let js = 0
      let core = 0
      for (const [tid, { comm, ns }] of after) {
        const us = (ns - (before.get(tid)?.ns ?? 0)) / 1000
        if (tid === process.pid) js += us
        else if (CORE_THREAD.test(comm)) core += us
      }
      return { all, js, core, other: Math.max(0, all - js - core) }
    }
  }
}

/** Microseconds per request of each figure of a `stop()` result, as result fields (null when unknown). */
export function cpuPerRequest (cpu, requests) {
  const per = (us) => (requests > 0 && cpu && us != null ? us / requests : null)
  return {
    cpuUsPerRequest: per(cpu?.all),
    jsCpuUsPerRequest: per(cpu?.js),
    coreCpuUsPerRequest: per(cpu?.core),
    otherCpuUsPerRequest: per(cpu?.other)
  }
}
