/**
 * The targets of issue 4, as data: which row of which scenario is compared with which undici row, and the
 * ratio (ours ÷ undici.Agent, same run) it must reach. Throughput must be at least `minThroughput`, CPU per
 * request at most `maxCpu` (a target without `minThroughput` judges CPU only; the policies row is compared with
 * our own dispatch row, see `baselineOf`); the stream target bounds the peak RSS growth of each of our APIs.
 */
export const TARGETS = [
  { label: 'HTTP/1.1 GET 64 B, dispatch', scenario: 'h1-get-64', clients: ['ours-dispatch'], minThroughput: 1.0, maxCpu: 0.6 },
  { label: 'HTTP/1.1 POST 4 KiB, dispatch', scenario: 'h1-post-4k', clients: ['ours-dispatch'], minThroughput: 1.0, maxCpu: 0.7 },
  { label: 'HTTP/1.1 GET 1 MiB, request()', scenario: 'h1-get-1m', clients: ['ours-request'], minThroughput: 1.2, maxCpu: 0.8 },
  { label: 'HTTP/2 GET 64 B over TLS, dispatch', scenario: 'h2-get-64', clients: ['ours-dispatch'], minThroughput: 3, maxCpu: 0.4 },
  { label: 'HTTP/2 POST 4 KiB over TLS, dispatch', scenario: 'h2-post-4k', clients: ['ours-dispatch'], minThroughput: 3, maxCpu: 0.4 },
  { label: 'fetch() via this Agent vs via undici.Agent (HTTP/1.1 GET 64 B)', scenario: 'h1-get-64', clients: ['ours-fetch'], minThroughput: 1.0, maxCpu: 1.0 },
  { label: 'retry + circuit breaker + rate limit on, happy path: CPU per request vs ours without (HTTP/1.1 GET 64 B, dispatch)', scenario: 'h1-get-64', clients: ['ourspolicies-dispatch'], maxCpu: 1.03 },
  { label: '100 MiB stream, consumer at 10 MiB/s: peak RSS growth (worst of our APIs)', scenario: 'h1-stream-100m', clients: ['ours-dispatch', 'ours-request', 'ours-fetch'], maxRssGrowthMiB: 32 }
]
