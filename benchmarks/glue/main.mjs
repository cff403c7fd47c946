/**
 * Entry point of the glue benchmark process: tinybench times the JS↔Rust round trip alone, with no socket.
 *
 * There is no test hook yet for "a request Rust answers without a socket", so two stand-ins:
 * - the raw addon (`index.node`) driven directly with a request the core rejects before any I/O (an empty
 *   method): one N-API call in, a tokio task, the Channel wake-up and one batched delivery back — the FFI path
 *   minus HTTP. The addon's private surface changes often; the row adapts to the known shapes or says n/a;
 * - the public path, ours and undici's: `Agent.dispatch` to a loopback port nobody listens on, so each request
 *   costs the whole JS layer plus one refused connect() and the error mapping, with no HTTP exchange.
 * The TypeScript layer's validation step is timed alone (`normalizeRequest`).
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { createServer } from 'node:net'
import { Bench } from 'tinybench'
import { Agent as UndiciAgent } from 'undici'
import { cpuPerRequest, startThreadCpu } from '../lib/thread-cpu.mjs'

const config = JSON.parse(process.argv[2])
const require = createRequire(import.meta.url)
const packageDir = dirname(require.resolve('reqwest-dispatcher/package.json'))

function loadRoundTrip () {
  // The addon as the TypeScript layer loads it, which also reads its wire protocol (native/src/protocol.rs).
  const binding = require(join(packageDir, 'dist', 'native.js')).binding()
  for (const name of ['agentNew', 'agentSetActive', 'agentDrainDone', 'agentDrain', 'dispatchBatch']) {
    if (typeof binding[name] !== 'function') throw new Error(`addon has no ${name}() any more`)
  }
  const { eventFields, bodyModes, switches, events } = binding.protocol
  const kindAt = eventFields.indexOf('kind')
  const idAt = eventFields.indexOf('id')
  const waiting = new Map()
  let agent = null
  const deliver = (numbers, count) => {
    for (let i = 0; i < count * eventFields.length; i += eventFields.length) {
      const kind = numbers[i + kindAt]
      if (kind === events.END || kind === events.ERROR) {
        const resolve = waiting.get(numbers[i + idAt])
        waiting.delete(numbers[i + idAt])
        resolve?.()
      }
    }
    // One batch per turn of the event loop, as the Agent does.
    if (binding.agentDrainDone(agent)) setImmediate(() => binding.agentDrain(agent))
  }
  // The TypeScript layer knows the native option document of the day.
  const { nativeAgentOptions } = require(join(packageDir, 'dist', 'options.js'))
  agent = binding.agentNew(JSON.stringify(nativeAgentOptions({})), deliver, 1)
  binding.agentSetActive(agent, true)
  let nextId = 1
  const url = 'http://127.0.0.1:9/'
  // Encoded as the Agent encodes its requests; an empty method makes the core reject the request before any I/O.
  const { Submissions } = require(join(packageDir, 'dist', 'submissions.js'))
  const submissions = new Submissions()
  const startAll = (ids) => {
    for (const id of ids) submissions.add(id, '', url, '', bodyModes.NONE, null, -1, -1, switches.NONE, '')
    binding.dispatchBatch(agent, submissions.text, submissions.numbers, submissions.count, submissions.bodies)
    submissions.clear()
  }
  const roundTrips = (count) => {
    const ids = Array.from({ length: count }, () => nextId++)
    const done = Promise.all(ids.map((id) => new Promise((resolve) => waiting.set(id, resolve))))
    startAll(ids)
    return done
  }
  return { roundTrip: () => roundTrips(1), roundTrips, release: () => binding.agentSetActive(agent, false) }
}

/** A loopback port with nothing listening: connect() is refused at once by the kernel. */
async function refusedPort () {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** One `dispatch` that is expected to fail (connection refused), as a promise. */
function refusedDispatch (dispatcher, origin) {
  return () => new Promise((resolve) => {
    dispatcher.dispatch({ origin, path: '/', method: 'GET' }, {
      onRequestStart () {},
      onResponseStart () {},
      onResponseData () {},
      onResponseEnd: resolve,
      onResponseError: resolve
    })
  })
}

function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not complete in ${ms} ms`)), ms) })
  ])
}


/** CPU per round trip (all threads, JS thread, core threads) over `count` trips, 100 in flight. */
async function cpuPerRoundTrip (glue, count) {
  const window = startThreadCpu()
  for (let done = 0; done < count; done += 100) await glue.roundTrips(100)
  return cpuPerRequest(window.stop(), count)
}

async function main () {
  const rows = []
  const bench = new Bench({ time: config.quick ? 300 : 1000, warmupTime: config.quick ? 100 : 300 })
  bench.add('event-loop floor: setImmediate round trip', () => new Promise((resolve) => setImmediate(resolve)))

  let glue = null
  try {
    glue = loadRoundTrip()
    await withTimeout(glue.roundTrip(), 3000, 'a round trip through the addon')
    bench.add('addon round trip, 1 in flight (N-API call → tokio → Channel → JS)', glue.roundTrip)
    bench.add('addon round trips, 100 in flight (per request)', () => glue.roundTrips(100))
  } catch (err) {
    rows.push({ name: 'addon round trip', unavailable: `pending a test hook: ${err.message}` })
    glue = null
  }

  const origin = `http://127.0.0.1:${await refusedPort()}`
  const { Agent } = await import('reqwest-dispatcher')
  const ours = new Agent()
  const undici = new UndiciAgent()
  bench.add('public path, ours: Agent.dispatch → refused connect → error', refusedDispatch(ours, origin))
  bench.add('public path, undici.Agent: dispatch → refused connect → error', refusedDispatch(undici, origin))

  try {
    const { normalizeRequest } = require(join(packageDir, 'dist', 'request.js'))
    const opts = { origin: 'http://127.0.0.1:3000', path: '/bytes/64', method: 'GET', headers: { accept: '*/*' } }
    bench.add('TypeScript layer: normalizeRequest of a GET', () => { normalizeRequest(opts) })
  } catch (err) {
    rows.push({ name: 'TypeScript layer: normalizeRequest', unavailable: `n/a (${err.message})` })
  }

  await bench.run()
  for (const task of bench.tasks) {
    const result = task.result
    if (result.state !== 'completed') {
      rows.push({ name: task.name, unavailable: `n/a (${result.error?.message ?? result.state})` })
      continue
    }
    const perRequest = task.name.includes('100 in flight') ? 100 : 1
    rows.push({
      name: task.name,
      meanUs: (result.latency.mean * 1000) / perRequest,
      p50Us: (result.latency.p50 * 1000) / perRequest,
      p99Us: (result.latency.p99 * 1000) / perRequest,
      samples: result.latency.samplesCount
    })
  }
  if (glue !== null) {
    const cpu = await cpuPerRoundTrip(glue, config.quick ? 5_000 : 50_000)
    const row = rows.find((r) => r.name.includes('100 in flight'))
    if (row) Object.assign(row, cpu)
    glue.release()
  }
  await Promise.all([ours.destroy(), undici.destroy()])
  return { rows }
}

let result
try {
  result = await main()
} catch (err) {
  result = { failed: String(err?.stack ?? err) }
}
process.send(result, () => process.exit(0))
