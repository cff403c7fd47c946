/** The facts about the machine and the software that a result is only valid for. */
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import os from 'node:os'

const require = createRequire(import.meta.url)

function versionOf (pkg) {
  try {
    return require(`${pkg}/package.json`).version
  } catch {
    return null
  }
}

function gitRevision () {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'packages'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    return dirty ? `${rev} (packages/ modified)` : rev
  } catch {
    return null
  }
}

export function describeMachine () {
  const cpus = os.cpus()
  return {
    cpu: `${cpus[0]?.model ?? 'unknown'} × ${cpus.length}`,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    undici: versionOf('undici'),
    impit: versionOf('impit'),
    autocannon: versionOf('autocannon'),
    revision: gitRevision(),
    loadAverage: os.loadavg().map((v) => v.toFixed(2)).join(' ')
  }
}
