// Types of npm.mjs, for the tests that use it.
/** `env` (default: this process's) without the variables that tie npm to the project that started this script. */
export function npmEnv(env?: NodeJS.ProcessEnv): NodeJS.ProcessEnv
/** Runs `npm args…` in `cwd`; returns its standard output as text (`stdio` 'inherit' shows it instead). */
export function npm(args: string[], options?: { cwd?: string; env?: NodeJS.ProcessEnv; stdio?: 'pipe' | 'inherit' }): string
