/**
 * The targets, as data: which row of which scenario is compared with which baseline row, and the ratios (ours
 * ÷ undici.Agent through the same API, same run, medians of rounds) it must reach. Issue 12 sets the HTTP/1.1,
 * HTTPS, busy-service, latency and scale targets; issue 4 the fetch(), policies and stream ones; the HTTP/2 rows
 * must not regress from the ratios measured before issue 12's work (RESULTS.md at c49960a), within 10% for
 * the noise between runs.
 *
 * A target is a list of checks on one row's ratios (or, for `maxAbsolute`, on a value of its own):
 * - `throughput`: `throughputRatio` at least `min`;
 * - `cpu`: `cpuRatio` (all threads of the client process) at most `max`;
 * - `jsCpu`: `jsCpuRatio` (the JavaScript thread alone) at most `max`;
 * - `p50`: `p50Ratio` (median latency) at most `max`;
 * - `memory`: `rssGrowthRatio` (peak RSS growth) at most `max`;
 * - `rssMiB`: the worst `rssGrowthMiB` of the target's rows below `below` (an absolute limit in MiB).
 */

/** Ratios of the HTTP/2 rows at c49960a (the last full run before issue 12's work): the no-regression bar. */
const H2_BEFORE = {
  get: { throughput: 3.19, cpu: 0.18 },
  post: { throughput: 1.86, cpu: 0.38 }
}
/** Issue 12's three checks of a speed row: throughput at least, CPU per request (all threads, JS thread) at most. */
const speed = (throughput, cpu, jsCpu) => [
  { metric: 'throughput', min: throughput },
  { metric: 'cpu', max: cpu },
  { metric: 'jsCpu', max: jsCpu }
]
const NOISE = 0.1
const noWorseThan = ({ throughput, cpu }) => [
  { metric: 'throughput', min: Number((throughput * (1 - NOISE)).toFixed(2)) },
  { metric: 'cpu', max: Number((cpu * (1 + NOISE)).toFixed(2)) }
]

export const TARGETS = [
  { label: 'HTTP/1.1 GET 64 B, dispatch', scenario: 'h1-get-64', clients: ['ours-dispatch'], checks: speed(1.1, 0.9, 0.4) },
  { label: 'HTTP/1.1 POST 4 KiB, dispatch', scenario: 'h1-post-4k', clients: ['ours-dispatch'], checks: speed(1.1, 0.9, 0.4) },
  { label: 'HTTP/1.1 GET 1 MiB, request()', scenario: 'h1-get-1m', clients: ['ours-request'], checks: speed(1.2, 0.8, 0.5) },
  { label: 'HTTP/1.1 GET 1 MiB, dispatch', scenario: 'h1-get-1m', clients: ['ours-dispatch'], checks: speed(1.2, 0.8, 0.5) },
  { label: 'HTTPS HTTP/1.1 GET 64 B, dispatch', scenario: 'h1s-get-64', clients: ['ours-dispatch'], checks: speed(1.5, 0.8, 0.4) },
  { label: 'busy service: GET 64 B + 30 µs of JS per response, dispatch', scenario: 'h1-busy-64', clients: ['ours-dispatch'], checks: [{ metric: 'throughput', min: 1.3 }] },
  { label: 'single request latency, 1 in flight, p50, dispatch', scenario: 'h1-latency-64', clients: ['ours-dispatch'], checks: [{ metric: 'p50', max: 1.0 }] },
  { label: 'scale: 10 000 requests in flight at once, peak RSS growth, dispatch', scenario: 'h1-scale-10k', clients: ['ours-dispatch'], checks: [{ metric: 'memory', max: 1.0 }] },
  { label: 'HTTP/2 GET 64 B over TLS, dispatch: no regression', scenario: 'h2-get-64', clients: ['ours-dispatch'], checks: noWorseThan(H2_BEFORE.get) },
  { label: 'HTTP/2 POST 4 KiB over TLS, dispatch: no regression', scenario: 'h2-post-4k', clients: ['ours-dispatch'], checks: noWorseThan(H2_BEFORE.post) },
  { label: 'fetch() via this Agent vs via undici.Agent (HTTP/1.1 GET 64 B)', scenario: 'h1-get-64', clients: ['ours-fetch'], checks: [{ metric: 'throughput', min: 1.0 }, { metric: 'cpu', max: 1.0 }] },
  { label: 'retry + circuit breaker + rate limit on, happy path: CPU per request vs ours without (HTTP/1.1 GET 64 B, dispatch)', scenario: 'h1-get-64', clients: ['ourspolicies-dispatch'], checks: [{ metric: 'cpu', max: 1.03 }] },
  { label: '100 MiB stream, consumer at 10 MiB/s: peak RSS growth (worst of our APIs)', scenario: 'h1-stream-100m', clients: ['ours-dispatch', 'ours-request', 'ours-fetch'], checks: [{ metric: 'rssMiB', below: 32 }] }
]
