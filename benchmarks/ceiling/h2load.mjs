/**
 * The HTTP/2 ceiling: nghttp2's `h2load` (native C) on one connection with 100 streams in flight, the same
 * shape as the Agents under test. Run from the runner through `bash -c '…; times'` so the shell's `times`
 * reports h2load's CPU. h2load prints no percentiles, so only its mean latency is kept (as p50).
 * Unavailable (not a failure) when h2load is not installed: `apt-get install nghttp2-client`.
 */
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

export function h2loadInstalled () {
  return spawnSync('h2load', ['--version'], { stdio: 'ignore' }).status === 0
}

function seconds (text) {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text)
  if (!match) return null
  return Number(match[1]) / { us: 1e6, ms: 1e3, s: 1 }[match[2]]
}

function cpuSecondsOfChildren (timesOutput) {
  const lines = timesOutput.trim().split('\n')
  const last = lines[lines.length - 1]
  const parts = [...last.matchAll(/(\d+)m([\d.]+)s/g)]
  return parts.reduce((sum, m) => sum + Number(m[1]) * 60 + Number(m[2]), 0)
}

export function runH2load ({ origin, scenario, load, workDir }) {
  if (!h2loadInstalled()) return { unavailable: 'n/a (h2load not installed: apt-get install nghttp2-client)' }
  const args = ['-c', '1', '-m', String(load.concurrency), '-t', '1',
    `--warm-up-time=${load.warmupMs}ms`, '-D', `${load.durationMs}ms`]
  if (scenario.requestBytes > 0) {
    const dataFile = join(workDir, `h2load-body-${scenario.requestBytes}`)
    writeFileSync(dataFile, Buffer.alloc(scenario.requestBytes, 0x63))
    args.push('-d', dataFile, '-H', 'content-type: application/octet-stream')
  }
  args.push(origin + scenario.path)
  const quoted = args.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ')
  const run = spawnSync('bash', ['-c', `h2load ${quoted} 2>&1; times`], { encoding: 'utf8', timeout: 120_000 })
  const out = run.stdout ?? ''
  const finished = /finished in ([\d.]+\w+), ([\d.]+) req\/s/.exec(out)
  const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out)
  const timing = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out)
  if (!finished || !counts) return { failed: `h2load output not understood:\n${out.slice(-2000)}` }
  const requests = Number(counts[4])
  const cpuSeconds = cpuSecondsOfChildren(out)
  return {
    requests,
    errors: Number(counts[5]) + Number(counts[6]),
    seconds: seconds(finished[1]),
    rps: Number(finished[2]),
    // Includes the warm-up's CPU (h2load cannot split it), so this slightly overstates the ceiling's cost.
    cpuUsPerRequest: requests > 0 ? (cpuSeconds * 1e6) / requests : null,
    p50Ms: timing ? seconds(timing[3]) * 1000 : null,
    p99Ms: null,
    maxRssMiB: null,
    note: 'h2load (mean latency shown as p50)'
  }
}
