/**
 * The load generator inside a client process: keeps `concurrency` requests in flight (a new one starts as soon
 * as one finishes), warms up, then measures for a fixed time. CPU is `process.cpuUsage()` over the measured
 * window, so it covers every thread of the process (JS, libuv, tokio workers), not just the JS thread.
 *
 * `send(done)` starts one request and calls `done(err?)` once its response body has been read to the end.
 */
import { performance } from 'node:perf_hooks'
import { percentile } from '../lib/stats.mjs'

/** Stop early when every request fails: the numbers would mean nothing. */
const MAX_ERRORS_WITHOUT_SUCCESS = 200

export function runClosedLoop (send, { concurrency, warmupMs, durationMs }) {
  return new Promise((resolve) => {
    let phase = 'warmup'
    let inFlight = 0
    let completed = 0
    let errors = 0
    let firstError = null
    let gaveUp = false
    let everSucceeded = false
    const latencies = []
    let windowStart = 0
    let windowEnd = 0
    let cpuAtStart = null
    let cpuUsed = null

    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      clearTimeout(measureTimer)
      clearTimeout(stopTimer)
      latencies.sort((a, b) => a - b)
      const seconds = (windowEnd - windowStart) / 1000
      resolve({
        requests: completed,
        errors,
        firstError: firstError && String(firstError.stack || firstError),
        seconds,
        rps: seconds > 0 ? completed / seconds : 0,
        cpuUsPerRequest: completed > 0 && cpuUsed ? (cpuUsed.user + cpuUsed.system) / completed : null,
        p50Ms: percentile(latencies, 0.5),
        p99Ms: percentile(latencies, 0.99),
        stuckInFlight: inFlight,
        // Timers fire late when the event loop is blocked: the window then differs from the one planned.
        eventLoopStalled: !gaveUp && Math.abs(seconds * 1000 - durationMs) > durationMs / 2
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
            latencies.push(performance.now() - startedAt)
          }
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
        cpuUsed = process.cpuUsage(cpuAtStart)
      }
      phase = 'stopping'
      if (inFlight === 0) finish()
      // Requests still in flight after this are abandoned: they no longer count.
      setTimeout(finish, 5_000)
    }

    const measureTimer = setTimeout(() => {
      if (phase !== 'warmup') return
      phase = 'measure'
      completed = 0
      errors = 0
      cpuAtStart = process.cpuUsage()
      windowStart = performance.now()
    }, warmupMs)
    const stopTimer = setTimeout(stop, warmupMs + durationMs)

    for (let i = 0; i < concurrency; i++) startOne()
  })
}
