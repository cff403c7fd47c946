/**
 * Child processes of the runner: the server, and one process per measured client run. A client process
 * answers with one IPC message; a run that fails because the native addon is being rebuilt (another engineer's
 * `npm run build`) is retried after a pause rather than recorded as a failure.
 */
import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const here = (path) => fileURLToPath(new URL(path, import.meta.url))
export const SERVER_MAIN = here('../server/main.mjs')
export const CLIENT_MAIN = here('../client/main.mjs')
export const AUTOCANNON_MAIN = here('../ceiling/autocannon-main.mjs')
export const GLUE_MAIN = here('../glue/main.mjs')

/** Starts the server process; resolves to `{ h1Port, h2Port, stop() }`. */
export function startServer (tls) {
  const child = fork(SERVER_MAIN, [JSON.stringify({ key: tls.key, cert: tls.cert })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`benchmark server exited with ${code}`)))
    child.once('message', (ports) => {
      child.removeAllListeners('exit')
      resolve({ ...ports, stop: () => child.kill() })
    })
  })
}

/** A client whose RSS passes this is stopped: the machine must survive a client that buffers without bound. */
const RSS_LIMIT_MIB = 4096

/** Resident set size of a live process in MiB, from /proc (null when unreadable, e.g. not Linux). */
function rssMiBOf (pid) {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) / 1024 : null
  } catch {
    return null
  }
}

/**
 * Forks `main` with `config` as its JSON argument; resolves to the one message it sends back. The runner, not
 * the child, enforces the time and memory limits: a child whose event loop is stuck cannot police itself.
 */
export function runChild (main, config, { execArgv = [], timeoutMs = 120_000 } = {}) {
  return new Promise((resolve) => {
    const child = fork(main, [JSON.stringify(config)], { execArgv, stdio: ['ignore', 'inherit', 'pipe', 'ipc'] })
    let stderr = ''
    let result = null
    let killedFor = null
    let peakRssMiB = 0
    child.stderr.on('data', (chunk) => { stderr = (stderr + chunk).slice(-4000) })
    const kill = (why) => {
      killedFor ??= why
      child.kill('SIGKILL')
    }
    const timer = setTimeout(() => kill(`no result after ${timeoutMs / 1000} s`), timeoutMs)
    const watchdog = setInterval(() => {
      const rss = rssMiBOf(child.pid)
      if (rss !== null) peakRssMiB = Math.max(peakRssMiB, rss)
      if (rss !== null && rss > RSS_LIMIT_MIB) kill(`RSS passed ${RSS_LIMIT_MIB} MiB`)
    }, 250)
    child.on('message', (message) => { result = message })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      clearInterval(watchdog)
      if (result) return resolve(result)
      const why = killedFor ? `killed by the runner: ${killedFor}` : `client process exited (${signal ?? code}) without a result`
      resolve({ failed: `${why} (peak RSS seen ${Math.round(peakRssMiB)} MiB)\n${stderr}` })
    })
  })
}

// A crash before any result (addon or dist/ half-written by a concurrent build), not a runner-enforced kill.
const STARTUP_CRASH = /^client process exited .* without a result|index\.node|native addon|ERR_DLOPEN_FAILED|Cannot find module/

/** `runChild`, retried up to 3 times when the client crashed at start (the addon may be mid-rebuild). */
export async function runChildRetryingAddon (main, config, options) {
  let result
  for (let attempt = 1; attempt <= 4; attempt++) {
    result = await runChild(main, config, options)
    if (!result.failed || !STARTUP_CRASH.test(result.failed) || attempt === 4) return result
    const stderr = result.failed.split('\n').slice(1).find((line) => /Error/.test(line)) ?? ''
    process.stdout.write(`  (client crashed at start, retrying in 15 s: ${stderr.trim().slice(0, 200)})\n`)
    await new Promise((resolve) => setTimeout(resolve, 15_000))
  }
  return result
}
