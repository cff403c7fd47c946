/**
 * Runs a scenario in a Node process of its own, for tests whose subject is what reaches the process itself:
 * uncaught exceptions (vitest would count them against the test run), stalls that must not leak into other
 * tests. The scenario is the body of an async function that sees the package as `lib`, undici as `undici`,
 * and the helpers below; what it returns is printed as JSON and handed back with the exceptions the process
 * reported as uncaught.
 */
import { spawn } from 'node:child_process'

/** What the scenario returned, and the messages of every uncaught exception, in order. */
export interface IsolatedOutcome<T> {
  result: T
  uncaught: string[]
}

const preamble = `
const http = require('node:http')
const undici = require('undici')
const lib = require('reqwest-dispatcher')
const uncaught = []
process.on('uncaughtException', (err) => uncaught.push(String(err && err.message)))
/** An HTTP server on 127.0.0.1; resolves to its origin. */
const listen = (handler) => new Promise((resolve) => {
  const server = http.createServer(handler)
  servers.push(server)
  server.listen(0, '127.0.0.1', () => resolve('http://127.0.0.1:' + server.address().port))
})
const servers = []
/** Keeps the JavaScript thread busy for ms, so that what the core reports meanwhile queues into one batch. */
const blockFor = (ms) => { const until = Date.now() + ms; while (Date.now() < until) {} }
/** The turn after this one: requests dispatched now have been handed to the core. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
/**
 * GETs each origin's \`/\` through \`agent\`, then keeps the JavaScript thread busy while the core works, so that
 * what it reports of all of them travels in one batch. Resolves to each request's outcome (its body text).
 */
const inOneBatch = async (agent, origins) => {
  const requests = origins.map((origin) => outcome(undici.request(origin + '/', { dispatcher: agent }).then((r) => r.body.text())))
  await nextTurn()
  blockFor(400)
  return requests
}
/** The promise's value, or 'rejected: <code or message>' (handled at once: no unhandled rejection). */
const outcome = (p) => p.then((v) => v, (e) => 'rejected: ' + (e && (e.code || e.message)))
/** Each promise's outcome, or 'stalled' for those still pending after ms. */
const settle = (promises, ms) => Promise.all(promises.map((p) => Promise.race([
  outcome(p),
  new Promise((resolve) => setTimeout(() => resolve('stalled'), ms))
])))
`

/** Runs `body` (the statements of an async function returning a JSON-serialisable value) in a fresh process. */
export function runIsolated<T>(body: string, env: Record<string, string> = {}): Promise<IsolatedOutcome<T>> {
  const script = `${preamble}
;(async () => {
${body}
})().then(
  (result) => {
    for (const server of servers) { server.closeAllConnections(); server.close() }
    process.stdout.write(JSON.stringify({ result, uncaught }))
    process.exit(0)
  },
  (err) => { process.stderr.write(String(err && err.stack)); process.exit(1) }
)
`
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], {
      cwd: __dirname,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    child.on('close', (status) => {
      clearTimeout(timer)
      if (status !== 0) reject(new Error(`isolated scenario exited with ${status}: ${stderr}`))
      else resolve(JSON.parse(stdout) as IsolatedOutcome<T>)
    })
  })
}
