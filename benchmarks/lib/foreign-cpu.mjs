/**
 * Watches how much CPU processes *outside* the benchmark use while it runs (builds, test runs, editors on a
 * shared 2-core machine). Every number in RESULTS.md is skewed by such work, so the report states it. Linux
 * only (reads /proc); elsewhere it reports nothing. Samples once a second; a process that starts and ends
 * between two samples is missed, so the share is a lower bound. Kernel threads are left out: they also carry
 * the benchmark's own loopback traffic.
 */
import { readdirSync, readFileSync } from 'node:fs'

function readStat (pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const close = text.lastIndexOf(')')
    const comm = text.slice(text.indexOf('(') + 1, close)
    const fields = text.slice(close + 2).split(' ')
    // After "(comm) ": state, ppid, …; utime, stime and starttime are fields 14, 15 and 22 of the whole line.
    return { comm, ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]), started: fields[19] }
  } catch {
    return null
  }
}

function snapshot () {
  const processes = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = readStat(name)
    if (stat) processes.set(Number(name), stat)
  }
  const cpuLine = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  return { processes, machineTicks: cpuLine.reduce((a, b) => a + b, 0) }
}

function isOurs (pid, processes, root) {
  for (let at = pid, hops = 0; at > 1 && hops < 64; hops++) {
    if (at === root) return true
    at = processes.get(at)?.ppid ?? 0
  }
  return false
}

/** Starts watching; `stop()` returns `{ share, top: [{ comm, share }] }` (shares of the whole machine). */
export function watchForeignCpu () {
  let previous
  try {
    previous = snapshot()
  } catch {
    return { stop: () => null }
  }
  const foreignTicks = new Map()
  let machineTicks = 0
  const sample = () => {
    const current = snapshot()
    machineTicks += current.machineTicks - previous.machineTicks
    for (const [pid, stat] of current.processes) {
      // Kernel threads (children of kthreadd, pid 2) also carry the benchmark's own loopback traffic.
      if (pid === 2 || stat.ppid === 2 || isOurs(pid, current.processes, process.pid)) continue
      const before = previous.processes.get(pid)
      const delta = before && before.started === stat.started ? stat.ticks - before.ticks : stat.ticks
      if (delta > 0) foreignTicks.set(stat.comm, (foreignTicks.get(stat.comm) ?? 0) + delta)
    }
    previous = current
  }
  const timer = setInterval(sample, 1000)
  return {
    stop () {
      clearInterval(timer)
      sample()
      if (machineTicks <= 0) return null
      const top = [...foreignTicks].sort((a, b) => b[1] - a[1]).slice(0, 5)
        .map(([comm, ticks]) => ({ comm, share: ticks / machineTicks }))
      const share = [...foreignTicks.values()].reduce((a, b) => a + b, 0) / machineTicks
      return { share, top }
    }
  }
}
