/**
 * The scale row inside a client process: `requests` requests started at once (one synchronous loop) against a
 * route that answers after a delay, so that all of them are in flight together; then the process's peak RSS
 * growth over a baseline taken just before, per request in flight.
 *
 * The peak is the kernel's own high-water mark (`VmHWM` in /proc/self/status), reset to the current RSS right
 * after the baseline through /proc/self/clear_refs: exact, and blind to how busy the event loop is. Where that
 * cannot be reset, RSS is sampled every 10 ms instead (a lower bound: the loop may be too busy to sample).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { cpuPerRequest, startThreadCpu } from '../lib/thread-cpu.mjs'

function statusKiB (field) {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))
  return match ? Number(match[1]) : null
}

/** Resets the kernel's peak-RSS mark; returns whether the peak can be read back from it. */
function resetPeakRss () {
  try {
    writeFileSync('/proc/self/clear_refs', '5')
    return statusKiB('VmHWM') !== null
  } catch {
    return false
  }
}

/**
 * Sends `requests` requests at once with `send(done)` (as the closed loop does); resolves once every one has
 * finished, with `{ requests, errors, seconds, rssGrowthMiB, kibPerRequest, cpu… }`.
 */
export async function measureBurst (send, { requests }) {
  // Warm the path (code, allocator, first connection) before the baseline is taken.
  await new Promise((resolve) => send(resolve))
  globalThis.gc?.()
  const baseline = process.memoryUsage.rss()
  const kernelPeak = resetPeakRss()
  let sampledPeak = baseline
  const sampler = kernelPeak ? null : setInterval(() => { sampledPeak = Math.max(sampledPeak, process.memoryUsage.rss()) }, 10)
  const cpu = startThreadCpu()
  const started = performance.now()
  let errors = 0
  let firstError = null
  await new Promise((resolve) => {
    let left = requests
    const done = (err) => {
      if (err) {
        errors++
        firstError ??= err
      }
      if (--left === 0) resolve()
    }
    for (let i = 0; i < requests; i++) {
      try {
        send(done)
      } catch (err) {
        done(err)
      }
    }
  })
  const seconds = (performance.now() - started) / 1000
  const used = cpu.stop()
  if (sampler) clearInterval(sampler)
  const peak = kernelPeak ? statusKiB('VmHWM') * 1024 : Math.max(sampledPeak, process.memoryUsage.rss())
  const growth = Math.max(0, peak - baseline)
  return {
    requests: requests - errors,
    errors,
    firstError: firstError && String(firstError.stack || firstError),
    seconds,
    rssGrowthMiB: growth / 1048576,
    kibPerRequest: growth / 1024 / requests,
    peakFrom: kernelPeak ? 'VmHWM' : 'sampled',
    ...cpuPerRequest(used, requests - errors)
  }
}
