// Soak: a million mixed requests through one Agent — GETs small and large, POSTs with bodies known up front and
// streamed, requests aborted at random phases, responses paused and resumed, hostile answers (a body cut short by a
// reset, a malformed status line) and headers that come too late (headersTimeout) — while RSS, external memory, open
// file descriptors and active handles are sampled. After a warm-up, memory may not grow by 10 % or more; after
// close() the descriptors and handles must be back where they were before the agent existed.
//
//   node --expose-gc scripts/soak.mjs [--requests=1000000] [--concurrency=64] [--samples=50] [--max-growth=0.1] [--json]
//
// The server runs in a child process, so that only the client's memory and descriptors are measured. Exit code 0
// when every check holds; the report (a table, or JSON with --json) says what was measured.
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'

const require = createRequire(import.meta.url)
const { Agent } = require('reqwest-dispatcher')
const { errors } = require('undici')

const args = Object.fromEntries(
  process.argv.slice(2).map((arg) => {
    const [key, value] = arg.replace(/^--/, '').split('=')
    return [key, value ?? 'true']
  })
)
const REQUESTS = Number(args.requests ?? 1_000_000)
const CONCURRENCY = Number(args.concurrency ?? 64)
const SAMPLES = Number(args.samples ?? 50)
/** Memory is compared from the end of the warm-up (this share of the requests) to the end. */
const WARM_UP = 0.2
const MAX_GROWTH = Number(args['max-growth'] ?? 0.1)
const LARGE = 256 * 1024

const SERVER = `
const http = require('node:http')
const small = Buffer.alloc(64, 'a')
const large = Buffer.alloc(${LARGE}, 'b')
const server = http.createServer((req, res) => {
  if (req.url === '/echo') {
    let length = 0
    req.on('data', (chunk) => { length += chunk.length })
    req.on('end', () => res.end(String(length)))
    return
  }
  req.resume()
  if (req.url === '/large') return res.end(large)
  // Hostile answers: a body cut short by a reset, a status line no parser takes, a head that comes too late.
  if (req.url === '/truncated') {
    res.writeHead(200, { 'content-length': String(${LARGE}) })
    res.write(small)
    return setImmediate(() => res.socket.destroy())
  }
  if (req.url === '/malformed') return req.socket.end('HTTP/1.1 2x0 OK\\r\\n\\r\\n')
  if (req.url === '/slow') return setTimeout(() => res.end('slow'), 100)
  res.end(small)
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'))
`

function startServer() {
  const child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.stdout.once('data', (chunk) => resolve({ child, origin: `http://127.0.0.1:${String(chunk).trim()}` }))
  })
}

const fds = () => readdirSync('/proc/self/fd').length
const handles = () => process._getActiveHandles().length

/** Memory and descriptors after a full collection; external buffers are released by finalizers that run after
 * the collection, on a later turn, so the collection is repeated once they had their turn. */
async function sample(done) {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.()
    await new Promise((resolve) => setImmediate(resolve))
  }
  const memory = process.memoryUsage()
  return { done, rss: memory.rss, external: memory.external + memory.arrayBuffers, heap: memory.heapUsed, fds: fds(), handles: handles() }
}

const FATES = ['get', 'get', 'get', 'post', 'post-stream', 'large', 'abort-start', 'abort-headers', 'abort-body', 'abort-later', 'pause', 'truncated', 'malformed', 'timeout']
/** Fates that must fail, and the undici error each must fail with (a short success is a failure of the soak). */
const FAILS = {
  truncated: [errors.SocketError, errors.ResponseContentLengthMismatchError],
  malformed: [errors.HTTPParserError],
  timeout: [errors.HeadersTimeoutError]
}
const PATHS = { truncated: '/truncated', malformed: '/malformed', timeout: '/slow' }

/** One request of a random fate; resolves to what happened, checked against what should have. */
function one(agent, origin, fate) {
  return new Promise((resolve) => {
    const path =
      PATHS[fate] ?? (fate === 'large' || fate === 'abort-body' || fate === 'pause' ? '/large' : fate.startsWith('post') ? '/echo' : '/small')
    const size = 1 + Math.floor(Math.random() * 16 * 1024)
    let body
    if (fate === 'post') body = Buffer.alloc(size, 'c')
    if (fate === 'post-stream') body = Readable.from([Buffer.alloc(size >> 1, 'd'), Buffer.alloc(size - (size >> 1), 'e')])
    const expected = path === '/large' ? LARGE : path === '/echo' ? String(size).length : 64
    let status = 0
    let received = 0
    let text = ''
    let timer
    const began = performance.now()
    const finish = (outcome) => {
      clearTimeout(timer)
      resolve(outcome)
    }
    agent.dispatch(
      { origin, path, method: body === undefined ? 'GET' : 'POST', body, headersTimeout: fate === 'timeout' ? 20 : undefined },
      {
        onRequestStart(controller) {
          if (fate === 'abort-start') controller.abort(new errors.RequestAbortedError())
          if (fate === 'abort-later') timer = setTimeout(() => controller.abort(new errors.RequestAbortedError()), Math.random() * 2)
        },
        onResponseStart(controller, code) {
          status = code
          if (fate === 'abort-headers') controller.abort(new errors.RequestAbortedError())
        },
        onResponseData(controller, chunk) {
          received += chunk.length
          if (path === '/echo' || path === '/slow') text += chunk
          if (fate === 'abort-body') return controller.abort(new errors.RequestAbortedError())
          if (fate === 'pause' && !controller.paused && received < LARGE) {
            controller.pause()
            setTimeout(() => controller.resume(), Math.random() * 3)
          }
        },
        onResponseEnd() {
          // Under CPU starvation the core may see the late head and the expired timer in one turn and take the
          // head: counted apart, never as a failure — unless the body is not the one this request asked for.
          if (fate === 'timeout' && status === 200 && text === 'slow') return finish('timeout-raced')
          if (FAILS[fate] !== undefined) return finish(`wrong ${fate}: a success (${status}, ${received} bytes after ${Math.round(performance.now() - began)} ms)`)
          const ok = status === 200 && (path === '/echo' ? text === String(size) : received === expected)
          finish(ok ? 'ok' : fate.startsWith('abort') ? 'aborted-late' : `wrong ${fate} ${status} ${received}`)
        },
        onResponseError(_controller, err) {
          if (FAILS[fate]?.some((Class) => err instanceof Class)) return finish('failed')
          finish(err instanceof errors.RequestAbortedError && fate.startsWith('abort') ? 'aborted' : `error ${fate} ${err.code} ${err.message}`)
        }
      }
    )
  })
}

async function main() {
  const { child, origin } = await startServer()
  // The core's runtime (threads, epoll) and undici's lazily loaded parts live as long as the process: a first
  // agent starts them before the baseline is taken.
  const warm = new Agent()
  await one(warm, origin, 'get')
  await warm.close()
  await new Promise((resolve) => setTimeout(resolve, 200))
  const before = await sample(0)

  const agent = new Agent()
  const outcomes = {}
  const samples = []
  const every = Math.max(1, Math.floor(REQUESTS / SAMPLES))
  let started = 0
  let done = 0
  let inFlight = 0
  // Samples are taken with nothing in flight (the workers wait at a barrier meanwhile): what is measured is what
  // the agent retains, not the response buffers that happen to be alive at that instant.
  let barrier = null
  const quiesce = () => {
    let release
    barrier = { promise: new Promise((resolve) => (release = resolve)), release }
  }
  const began = Date.now()
  const worker = async () => {
    while (started < REQUESTS) {
      if (barrier !== null) {
        await barrier.promise
        continue
      }
      started++
      inFlight++
      const fate = FATES[Math.floor(Math.random() * FATES.length)]
      const outcome = await one(agent, origin, fate)
      inFlight--
      const key = outcome.startsWith('wrong') || outcome.startsWith('error') ? outcome.slice(0, 120) : outcome
      outcomes[key] = (outcomes[key] ?? 0) + 1
      if (++done % every === 0 && barrier === null) quiesce()
      if (barrier !== null && inFlight === 0) {
        // Let aborted requests' last events and closed connections settle before measuring.
        await new Promise((resolve) => setTimeout(resolve, 20))
        const taken = await sample(done)
        samples.push(taken)
        if (!args.json) {
          process.stderr.write(
            `${done} done, ${Math.round(done / ((Date.now() - began) / 1000))}/s, rss ${(taken.rss / 1048576).toFixed(1)} MiB, external ${(taken.external / 1048576).toFixed(1)} MiB, fds ${taken.fds}\n`
          )
        }
        const { release } = barrier
        barrier = null
        release()
      }
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  const seconds = (Date.now() - began) / 1000
  await agent.close()
  // Connections close on the core's threads a moment after close() resolves.
  let after = await sample(REQUESTS)
  for (let i = 0; i < 100 && (after.fds > before.fds || after.handles > before.handles); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    after = await sample(REQUESTS)
  }
  child.kill()

  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
  const window = (from, to) => samples.filter((s) => s.done > from * REQUESTS && s.done <= to * REQUESTS)
  const warmed = window(WARM_UP, WARM_UP + 0.1)
  const end = window(0.9, 1)
  const growth = (key) => median(end.map((s) => s[key])) / median(warmed.map((s) => s[key])) - 1
  const unexpected = Object.entries(outcomes).filter(([key]) => key.startsWith('wrong') || key.startsWith('error'))
  const report = {
    requests: REQUESTS,
    concurrency: CONCURRENCY,
    seconds,
    perSecond: Math.round(REQUESTS / seconds),
    outcomes,
    warmUp: { rss: median(warmed.map((s) => s.rss)), external: median(warmed.map((s) => s.external)), heap: median(warmed.map((s) => s.heap)) },
    end: { rss: median(end.map((s) => s.rss)), external: median(end.map((s) => s.external)), heap: median(end.map((s) => s.heap)) },
    growth: { rss: growth('rss'), external: growth('external'), heap: growth('heap') },
    rss: { before: before.rss, duringMax: Math.max(...samples.map((s) => s.rss)), after: after.rss },
    fds: { before: before.fds, duringMax: Math.max(...samples.map((s) => s.fds)), after: after.fds },
    handles: { before: before.handles, duringMax: Math.max(...samples.map((s) => s.handles)), after: after.handles },
    load: (await import('node:os')).loadavg()
  }
  const failures = []
  if (unexpected.length > 0) failures.push(`unexpected outcomes: ${JSON.stringify(Object.fromEntries(unexpected))}`)
  for (const key of ['rss', 'external']) {
    if (report.growth[key] >= MAX_GROWTH) failures.push(`${key} grew ${(report.growth[key] * 100).toFixed(1)} % after the warm-up`)
  }
  if (after.fds > before.fds) failures.push(`${after.fds - before.fds} file descriptors left open after close()`)
  if (after.handles > before.handles) failures.push(`${after.handles - before.handles} handles left active after close()`)
  report.failures = failures

  if (args.json) {
    process.stdout.write(JSON.stringify(report) + '\n')
  } else {
    const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`
    const pct = (x) => `${(x * 100).toFixed(1)} %`
    console.log(`${REQUESTS} requests, ${CONCURRENCY} in flight, ${seconds.toFixed(1)} s (${report.perSecond}/s), load ${report.load.map((l) => l.toFixed(1)).join(' ')}`)
    console.log(`outcomes: ${JSON.stringify(outcomes)}`)
    console.log(`rss       warm-up ${mib(report.warmUp.rss)}  end ${mib(report.end.rss)}  growth ${pct(report.growth.rss)}`)
    console.log(`external  warm-up ${mib(report.warmUp.external)}  end ${mib(report.end.external)}  growth ${pct(report.growth.external)}`)
    console.log(`heap      warm-up ${mib(report.warmUp.heap)}  end ${mib(report.end.heap)}  growth ${pct(report.growth.heap)}`)
    console.log(`rss       before ${mib(before.rss)}  max during ${mib(report.rss.duringMax)}  after close ${mib(after.rss)}`)
    console.log(`fds       before ${before.fds}  max during ${report.fds.duringMax}  after close ${after.fds}`)
    console.log(`handles   before ${before.handles}  max during ${report.handles.duringMax}  after close ${after.handles}`)
    console.log(failures.length === 0 ? 'soak: every check holds' : `soak FAILED:\n  ${failures.join('\n  ')}`)
  }
  process.exitCode = failures.length === 0 ? 0 : 1
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
