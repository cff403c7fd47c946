/**
 * What the suite measures: the scenarios (server route, protocol, request body), the clients compared in each,
 * and the load shape of a full or a quick run. Clients are listed so that each of ours sits next to undici's
 * counterpart: runs alternate A B A B within a round, and rounds repeat the whole sequence.
 */

const MiB = 1024 * 1024

/** Clients that drive a Dispatcher, ours then undici's, per API. */
const DISPATCHER_CLIENTS = [
  'ours-dispatch', 'undici-dispatch',
  'ours-request', 'undici-request',
  'ours-fetch', 'undici-fetch'
]
const LOAD_CLIENTS = [...DISPATCHER_CLIENTS, 'node', 'impit', 'ceiling']
/**
 * Our dispatch with retry, circuit breaker and rate limit all enabled (none of them triggered: the happy path),
 * next to our dispatch without: what having the policies on costs per request.
 */
const POLICY_CLIENTS = ['ourspolicies-dispatch', 'ours-dispatch']

export const CLIENT_LABELS = {
  'ours-dispatch': 'ours · dispatch',
  'ours-request': 'ours · request()',
  'ours-fetch': 'ours · fetch()',
  'undici-dispatch': 'undici.Agent · dispatch',
  'undici-request': 'undici.Agent · request()',
  'undici-fetch': 'undici.Agent · fetch()',
  'ourspolicies-dispatch': 'ours · dispatch, retry + breaker + rate limit on (ratios to ours · dispatch)',
  'before-dispatch': 'before (--before build) · dispatch',
  'before-request': 'before (--before build) · request()',
  'before-fetch': 'before (--before build) · fetch()',
  node: 'node:http(s)/http2 keep-alive',
  impit: 'impit (fetch)',
  ceiling: 'ceiling (autocannon / h2load)',
  'ours-websocket': 'ours · undici WebSocket',
  'undici-websocket': 'undici.Agent · undici WebSocket'
}

/** The undici row a client's ratios are taken against: the same API, or undici's dispatch for others. */
export function baselineOf (clientId) {
  const [family, api] = clientId.split('-')
  if (family === 'ourspolicies') return `ours-${api}`
  return family === 'ours' || family === 'before' || family === 'undici' ? `undici-${api}` : 'undici-dispatch'
}

/** undici's WebSocket over our Agent and over undici.Agent. */
const WEBSOCKET_CLIENTS = ['ours-websocket', 'undici-websocket']

/** Our dispatch and request() next to undici's: the rows that measure one property rather than every client. */
const API_PAIRS = ['ours-dispatch', 'undici-dispatch', 'ours-request', 'undici-request']

/**
 * Every scenario. `kind`: `load` (closed loop, `concurrency` in flight, default the load shape's), `stream`
 * (one paced download, memory), `scale` (`requests` at once to a slow route, memory), `websocket` (closed loop
 * of echo round trips of `messageBytes` over `concurrency` WebSockets, one message in flight on each). `busyUs`: synchronous
 * JavaScript spent after each response, before the next request starts (a service with work of its own).
 * `short`: the title where space is scarce (the chart).
 */
export function scenarios ({ quick, before = null }) {
  const list = allScenarios(quick)
  if (!before) return list
  // `--before=DIR`: another build of ours runs right after ours through the same API, for before/after figures.
  const withBefore = (clients) => clients.flatMap((id) => (id.startsWith('ours-') ? [id, id.replace('ours-', 'before-')] : [id]))
  return list.map((s) => ({ ...s, clients: withBefore(s.clients) }))
}

function allScenarios (quick) {
  const scale = quick ? { requests: 2_000, delayMs: 500 } : { requests: 10_000, delayMs: 1_500 }
  return [
    { id: 'h1-get-64', title: 'HTTP/1.1 GET 64 B', kind: 'load', protocol: 'h1', method: 'GET', path: '/bytes/64', requestBytes: 0, clients: [...LOAD_CLIENTS, ...POLICY_CLIENTS] },
    { id: 'h1-post-4k', title: 'HTTP/1.1 POST 4 KiB', kind: 'load', protocol: 'h1', method: 'POST', path: '/upload', requestBytes: 4096, clients: LOAD_CLIENTS },
    { id: 'h1-get-1m', title: 'HTTP/1.1 GET 1 MiB', kind: 'load', protocol: 'h1', method: 'GET', path: `/bytes/${MiB}`, requestBytes: 0, clients: LOAD_CLIENTS },
    { id: 'h1s-get-64', title: 'HTTPS HTTP/1.1 GET 64 B', kind: 'load', protocol: 'h1s', method: 'GET', path: '/bytes/64', requestBytes: 0, clients: LOAD_CLIENTS },
    {
      id: 'h1-busy-64',
      title: 'Busy service: HTTP/1.1 GET 64 B, then 30 µs of synchronous JS per response',
      short: 'Busy service, GET 64 B + 30 µs JS',
      kind: 'load',
      protocol: 'h1',
      method: 'GET',
      path: '/bytes/64',
      requestBytes: 0,
      busyUs: 30,
      clients: API_PAIRS
    },
    {
      id: 'h1-latency-64',
      title: 'Single request latency: HTTP/1.1 GET 64 B, 1 in flight',
      short: 'HTTP/1.1 GET 64 B, 1 in flight',
      kind: 'load',
      protocol: 'h1',
      method: 'GET',
      path: '/bytes/64',
      requestBytes: 0,
      concurrency: 1,
      clients: [...API_PAIRS, 'node']
    },
    {
      // No target: a service with a few calls in flight at once, between the latency row and the 100 of the
      // load rows, where each thread's fixed cost per wake-up is shared by few requests.
      id: 'h1-get-64-c8',
      title: 'HTTP/1.1 GET 64 B, 8 in flight',
      short: 'HTTP/1.1 GET 64 B, 8 in flight',
      kind: 'load',
      protocol: 'h1',
      method: 'GET',
      path: '/bytes/64',
      requestBytes: 0,
      concurrency: 8,
      clients: API_PAIRS
    },
    { id: 'h2-get-64', title: 'HTTP/2 (TLS) GET 64 B', kind: 'load', protocol: 'h2', method: 'GET', path: '/bytes/64', requestBytes: 0, clients: LOAD_CLIENTS },
    { id: 'h2-post-4k', title: 'HTTP/2 (TLS) POST 4 KiB', kind: 'load', protocol: 'h2', method: 'POST', path: '/upload', requestBytes: 4096, clients: LOAD_CLIENTS },
    {
      id: 'h1-stream-100m',
      title: `HTTP/1.1 GET ${quick ? 10 : 100} MiB stream, consumer at 10 MiB/s`,
      kind: 'stream',
      protocol: 'h1',
      method: 'GET',
      path: `/stream/${(quick ? 10 : 100) * MiB}`,
      requestBytes: 0,
      consumerBytesPerSecond: 10 * MiB,
      clients: [...DISPATCHER_CLIENTS, 'node']
    },
    {
      id: 'ws-echo-1k',
      title: 'WebSocket echo, 1 KiB messages, 16 sockets (round trips/s; MiB/s each way)',
      short: 'WebSocket echo 1 KiB',
      kind: 'websocket',
      protocol: 'h1',
      path: '/echo',
      messageBytes: 1024,
      concurrency: 16,
      clients: WEBSOCKET_CLIENTS
    },
    {
      id: 'ws-echo-1m',
      title: 'WebSocket echo, 1 MiB messages, 4 sockets (round trips/s; MiB/s each way)',
      short: 'WebSocket echo 1 MiB',
      kind: 'websocket',
      protocol: 'h1',
      path: '/echo',
      messageBytes: MiB,
      concurrency: 4,
      clients: WEBSOCKET_CLIENTS
    },
    {
      id: 'h1-scale-10k',
      title: `Scale: ${scale.requests.toLocaleString('en-US')} HTTP/1.1 GETs in flight at once, server answers after ${scale.delayMs / 1000} s`,
      kind: 'scale',
      protocol: 'h1',
      method: 'GET',
      path: `/delay/${scale.delayMs}`,
      requestBytes: 0,
      requests: scale.requests,
      clients: API_PAIRS
    }
  ]
}

export function loadShape ({ quick }) {
  return quick
    ? { concurrency: 100, warmupMs: 200, durationMs: 600, rounds: 1 }
    : { concurrency: 100, warmupMs: 500, durationMs: 2000, rounds: 3 }
}
