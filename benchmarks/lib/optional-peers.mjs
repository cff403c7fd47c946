/**
 * Peers the suite compares against but the repository does not depend on: impit ships per-platform binaries,
 * and a registry that lacks some platforms' packages would break `npm ci` for everyone if the lock file named
 * them. So the suite installs it on demand (`--no-save`); if that fails, its rows are reported as failed runs.
 */
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const PEERS = { impit: '0.14.5' }
const root = fileURLToPath(new URL('../..', import.meta.url))

/** Installs each missing peer; returns the names that are still unavailable. */
export function ensureOptionalPeers(log) {
  const require = createRequire(import.meta.url)
  const missing = []
  for (const [name, version] of Object.entries(PEERS)) {
    try {
      require.resolve(name)
      continue
    } catch {}
    log(`installing ${name}@${version} for its benchmark rows (not saved)`)
    const result = spawnSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--ignore-scripts', `${name}@${version}`], {
      cwd: root,
      stdio: 'ignore'
    })
    if (result.status !== 0) missing.push(name)
  }
  return missing
}
