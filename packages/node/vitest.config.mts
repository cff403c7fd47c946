import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// REQWEST_DISPATCHER_TEST_UNDICI=7|8 runs the suite against that undici major (installed as `undici7` / `undici8`):
// Vite aliases the tests' imports, vitest.undici.cjs redirects what Node resolves in the workers and their children,
// so the tests and the package under test share one copy. Unset: plain `undici` (the devDependency).
const major = process.env.REQWEST_DISPATCHER_TEST_UNDICI
if (major !== undefined && major !== '') {
  if (!/^\d+$/.test(major)) throw new Error(`REQWEST_DISPATCHER_TEST_UNDICI must be a major version, not ${major}`)
  const preload = fileURLToPath(new URL('./vitest.undici.cjs', import.meta.url))
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --require ${JSON.stringify(preload)}`.trim()
}

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
