// Runs npm from a script that may itself run under `npm run`: npm exports the running project's location and
// workspace (npm_config_local_prefix, npm_config_workspace, …) to scripts, and a nested npm would act on that
// project instead of the folder it is pointed at. Those variables are dropped; registry and cache settings stay.
import { execFileSync } from 'node:child_process'

const PROJECT_VARIABLES = /^(npm_package_|npm_lifecycle_|npm_command$|npm_config_(local_prefix|workspaces?|include_workspace_root|call)$|INIT_CWD$)/i

/** `env` (default: this process's) without the variables that tie npm to the project that started this script. */
export function npmEnv(env = process.env) {
  return Object.fromEntries(Object.entries(env).filter(([key]) => !PROJECT_VARIABLES.test(key)))
}

/** Runs `npm args…` in `cwd`; returns its standard output as text (`stdio` 'inherit' shows it instead). */
export function npm(args, { cwd, env = npmEnv(), stdio = 'pipe' } = {}) {
  const stdioOption = stdio === 'inherit' ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'pipe', 'inherit']
  return execFileSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, {
    cwd,
    env,
    encoding: 'utf8',
    stdio: stdioOption,
    shell: process.platform === 'win32'
  })
}
