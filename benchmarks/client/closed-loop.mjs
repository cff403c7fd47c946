/**
 * The load generator inside a client process: keeps `concurrency` requests in flight (a new one starts as soon
 * as one finishes), warms up, then measures for a fixed time. CPU over the measured window comes three ways
 * (lib/thread-cpu.mjs): every thread of the process (JS, libuv, V8 helpers, tokio workers), the JavaScript
 * thread alone, and the core's tokio threads.
 *
 * `send(done)` starts one request and calls `done(err?)` once its response body has been read to the end.
 * With `busyUs`, every response is followed by that much synchronous JavaScript (a busy-wait) before the next
 * request starts: the event loop of a service that has work of its own besides its HTTP calls.
 */
import { performance, PerformanceObserver } from 'node:perf_hooks'
import { percentile } from '../lib/stats.mjs'
import { cpuPerRequest, startThreadCpu } from '../lib/thread-cpu.mjs'

/** Sums the JS thread's GC pauses (V8's `gc` performance entries) while `counting()` says so. */
function watchGc (counting) {
  let ms = 0
  const observer = new PerformanceObserver((list) => {
    if (!counting()) return
    for (const entry of list.getEntries()) ms += entry.duration
  })
  observer.observe({ entryTypes: ['gc'] })
  return { stop: () => { observer.disconnect(); return ms } }
}

/** Spends `us` microseconds of CPU on the JS thread. */
function busyWait (us) {
  const until = performance.now() + us / 1000
  while (performance.now() < until);
}

/** Stop early when every request fails: the numbers would mean nothing. */
const MAX_ERRORS_WITHOUT_SUCCESS = 200

export function runClosedLoop (send, { concurrency, warmupMs, durationMs, busyUs = 0 }) {
  return new Promise((resolve) => {
    let phase = 'warmup'
    let inFlight = 0
    let completed = 0
    let warmedUp = 0
    let errors = 0
    let firstError = null
    let gaveUp = false
    let everSucceeded = false
    // Latencies go to a typed array (memory outside the JS heap, grown by doubling): a JS array that grows by
    // a push per response would be garbage the collector copies, a cost that is the benchmark's own.
    let latencies = new Float64Array(1 << 16)
    let latencyCount = 0
    let windowStart = 0
    let windowEnd = 0
    let cpuWindow = null
    let cpuUsed = null
    const gc = watchGc(() => phase === 'measure')

    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      clearTimeout(warmupTimer)
      clearTimeout(warmupLimit)
      clearTimeout(stopTimer)
      const sorted = latencies.subarray(0, latencyCount).sort()
      const seconds = (windowEnd - windowStart) / 1000
      const gcMs = gc.stop()
      resolve({
        requests: completed,
        errors,
        firstError: firstError && String(firstError.stack || firstError),
        seconds,
        rps: seconds > 0 ? completed / seconds : 0,
        ...cpuPerRequest(cpuUsed, completed),
        // Time the JS thread spent in GC pauses (part of its CPU figure); entries come late, so a lower bound.
        gcUsPerRequest: completed > 0 ? (gcMs * 1000) / completed : null,
        p50Ms: percentile(sorted, 0.5),
        p99Ms: percentile(sorted, 0.99),
        stuckInFlight: inFlight,
        // Timers fire late when the event loop is blocked: the window then differs from the one planned (by a
        // second or half the window, whichever is more: a busy shared machine delays timers by less).
        eventLoopStalled: !gaveUp && Math.abs(seconds * 1000 - durationMs) > Math.max(durationMs / 2, 1000)
      })
    }

    const startOne = () => {
      const startedAt = performance.now()
      inFlight++
      let called = false
      const done = (err) => {
        if (called) return
        called = true
        inFlight--
        if (err) {
          errors++
          firstError ??= err
          if (!everSucceeded && errors >= MAX_ERRORS_WITHOUT_SUCCESS) {
            gaveUp = true
            stop()
          }
        } else {
          everSucceeded = true
          if (phase === 'measure') {
            completed++
            if (latencyCount === latencies.length) {
              const grown = new Float64Array(latencies.length * 2)
              grown.set(latencies)
              latencies = grown
            }
            latencies[latencyCount++] = performance.now() - startedAt
          } else if (phase === 'warmup' && ++warmedUp >= concurrency && warmupTimerFired) {
            startMeasuring()
          }
          if (busyUs > 0) busyWait(busyUs)
        }
        if (phase !== 'stopping') startOne()
        else if (inFlight === 0) finish()
      }
      try {
        send(done)
      } catch (err) {
        done(err)
      }
    }

    const stop = () => {
      if (phase === 'stopping') return
      if (phase === 'measure') {
        windowEnd = performance.now()
        cpuUsed = cpuWindow.stop()
      }
      phase = 'stopping'
      if (inFlight === 0) finish()
      // Requests still in flight after this are abandoned: they no longer count.
      setTimeout(finish, 5_000)
    }

    // Warm-up lasts `warmupMs` and until `concurrency` responses came back, so that connection set-up (TLS
    // handshakes on a loaded machine can outlast the warm-up) stays out of the window; at most 10 s more.
    let warmupTimerFired = false
    let stopTimer = null
    const startMeasuring = () => {
      if (phase !== 'warmup') return
      phase = 'measure'
      errors = 0
      cpuWindow = startThreadCpu()
      windowStart = performance.now()
      stopTimer = setTimeout(stop, durationMs)
    }
    const warmupTimer = setTimeout(() => {
      warmupTimerFired = true
      if (warmedUp >= concurrency) startMeasuring()
    }, warmupMs)
    const warmupLimit = setTimeout(startMeasuring, warmupMs + 10_000)

    for (let i = 0; i < concurrency; i++) startOne()
  })
}
