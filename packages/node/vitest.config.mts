import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// REQWEST_DISPATCHER_TEST_UNDICI=7|8 runs the suite against that undici major (installed as `undici7` / `undici8`):
// Vite aliases the tests' imports, vitest.undici.cjs redirects what Node resolves in the workers and their children,
// so the tests and the package under test share one copy. Unset: plain `undici` (the devDependency).
const major = process.env.REQWEST_DISPATCHER_TEST_UNDICI
const workerOptions: string[] = []
if (major !== undefined && major !== '') {
  if (!/^\d+$/.test(major)) throw new Error(`REQWEST_DISPATCHER_TEST_UNDICI must be a major version, not ${major}`)
  workerOptions.push(`--require ${JSON.stringify(fileURLToPath(new URL('./vitest.undici.cjs', import.meta.url)))}`)
}
// One young-generation size on every Node line: the memory-bound tests measure the process's RSS, and Node 26's V8
// lets the garbage of a test's own server (a gigabyte of received chunks) grow its new space far larger than Node
// 20-24 do, which would be counted against the client.
workerOptions.push('--max-semi-space-size=16')
process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${workerOptions.join(' ')}`.trim()

export default defineConfig({
  resolve: {
    alias: major ? [{ find: /^undici(?=\/|$)/, replacement: `undici${major}` }] : []
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks'
  }
})
