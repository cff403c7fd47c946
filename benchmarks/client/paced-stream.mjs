/**
 * Reads one large streamed response at a fixed rate (a slow consumer), through each client API, while sampling
 * the process RSS. What it proves: the client holds back the server (pause/backpressure) instead of buffering
 * the body, so its peak RSS growth stays bounded whatever the body size.
 */
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fetch, request } from 'undici'

/** Milliseconds to wait after `bytes` more were read, to hold the average at `rate` bytes/s. */
function pacer (rate) {
  const start = performance.now()
  let read = 0
  return (bytes) => {
    read += bytes
    return start + (read * 1000) / rate - performance.now()
  }
}

function viaDispatch (dispatcher, url, rate) {
  const { origin, pathname } = new URL(url)
  const delay = pacer(rate)
  let bytes = 0
  return new Promise((resolve, reject) => {
    dispatcher.dispatch({ origin, path: pathname, method: 'GET' }, {
      onRequestStart () {},
      onResponseStart () {},
      onResponseData (controller, chunk) {
        bytes += chunk.length
        const wait = delay(chunk.length)
        if (wait > 0 && !controller.paused) {
          controller.pause()
          setTimeout(() => controller.resume(), wait)
        }
      },
      onResponseEnd () { resolve(bytes) },
      onResponseError (controller, err) { reject(err) }
    })
  })
}

async function viaIterable (iterable, rate) {
  const delay = pacer(rate)
  let bytes = 0
  for await (const chunk of iterable) {
    bytes += chunk.length
    const wait = delay(chunk.length)
    if (wait > 0) await sleep(wait)
  }
  return bytes
}

async function viaRequest (dispatcher, url, rate) {
  const { body } = await request(url, { dispatcher })
  return viaIterable(body, rate)
}

async function viaFetch (dispatcher, url, rate) {
  const response = await fetch(url, { dispatcher })
  return viaIterable(response.body, rate)
}

function viaNodeHttp (url, rate) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => viaIterable(res, rate).then(resolve, reject)).on('error', reject)
  })
}

const READERS = { dispatch: viaDispatch, request: viaRequest, fetch: viaFetch }

/**
 * Streams `url` at `rate` bytes/s through `api` ('dispatch' | 'request' | 'fetch' on `dispatcher`, or 'node').
 * RSS is sampled every 20 ms from just before the request; growth is measured against that baseline.
 */
export async function measurePacedStream ({ api, dispatcher, url, rate }) {
  globalThis.gc?.()
  const baseline = process.memoryUsage.rss()
  let peak = baseline
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()) }, 20)
  const cpuBefore = process.cpuUsage()
  const started = performance.now()
  try {
    const bytes = api === 'node' ? await viaNodeHttp(url, rate) : await READERS[api](dispatcher, url, rate)
    peak = Math.max(peak, process.memoryUsage.rss())
    const seconds = (performance.now() - started) / 1000
    const cpu = process.cpuUsage(cpuBefore)
    return {
      bytes,
      seconds,
      mibPerSecond: bytes / seconds / 1048576,
      rssGrowthMiB: (peak - baseline) / 1048576,
      cpuMs: (cpu.user + cpu.system) / 1000
    }
  } finally {
    clearInterval(sampler)
  }
}
