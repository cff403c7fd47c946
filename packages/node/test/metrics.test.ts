/**
 * `agent.metrics()` (Prometheus text exposition) checked by Prometheus' own Python client parser, and
 * `agent.metricsJSON()` against it.
 */
import { execFileSync } from 'node:child_process'
import http from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { closedPort, httpServer, serve, type Running } from './helpers/servers'

interface ParsedSample {
  name: string
  labels: Record<string, string>
  value: number
}
interface ParsedFamily {
  name: string
  type: string
  samples: ParsedSample[]
}

const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
`

/** The Python interpreter that has prometheus_client (.ci/run installs Debian's python3-prometheus-client). */
function python(): string {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    try {
      execFileSync(candidate, ['-c', 'import prometheus_client.parser'], { stdio: 'ignore' })
      return candidate
    } catch {
      // try the next one
    }
  }
  throw new Error('no python3 with prometheus_client: install python3-prometheus-client (.ci/run does)')
}

function parse(text: string): Map<string, ParsedFamily> {
  const families = JSON.parse(execFileSync(python(), ['-c', PARSE], { input: text }).toString()) as ParsedFamily[]
  return new Map(families.map((f) => [f.name, f]))
}

function value(families: Map<string, ParsedFamily>, family: string, sample: string, labels: Record<string, string>): number | undefined {
  return families
    .get(family)
    ?.samples.find((s) => s.name === sample && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value
}

let server: Running & { server: http.Server }
let agent: Agent
let refusedOrigin: string

beforeAll(async () => {
  server = await httpServer((req, res) => {
    if (req.url === '/missing') res.writeHead(404).end('no')
    else if (req.url === '/hang') return
    else req.resume().on('end', () => res.end('hello'))
  })
  // Connections stay open for the whole file (no server hint, a long keepAliveTimeout): the gauges read by
  // different tests must not change between them.
  server.server.keepAliveTimeout = 0
  agent = new Agent({ keepAliveTimeout: 600_000 })
  await (await request(`${server.origin}/`, { dispatcher: agent })).body.text()
  await (await request(`${server.origin}/`, { dispatcher: agent, method: 'POST', body: 'abc' })).body.text()
  await (await request(`${server.origin}/missing`, { dispatcher: agent })).body.text()
  const controller = new AbortController()
  const hanging = request(`${server.origin}/hang`, { dispatcher: agent, signal: controller.signal }).catch(() => {})
  await new Promise((r) => setTimeout(r, 30))
  controller.abort()
  await hanging
  refusedOrigin = `http://127.0.0.1:${await closedPort()}`
  await request(`${refusedOrigin}/`, { dispatcher: agent }).catch(() => {})
  // The abort closed the connection it used; this one stays open, idle.
  await (await request(`${server.origin}/`, { dispatcher: agent })).body.text()
  // The core counts an abort once its task lets go, just after JS heard of it.
  await new Promise((r) => setTimeout(r, 30))
})

afterAll(async () => {
  await agent.close()
  await server.close()
})

describe('agent.metrics()', () => {
  it('is valid Prometheus text exposition with every documented family and its type', () => {
    const families = parse(agent.metrics())
    const expected: Record<string, string> = {
      reqwest_dispatcher_requests: 'counter',
      reqwest_dispatcher_request_duration_seconds: 'histogram',
      reqwest_dispatcher_request_body_bytes: 'counter',
      reqwest_dispatcher_response_body_bytes: 'counter',
      reqwest_dispatcher_requests_in_flight: 'gauge',
      reqwest_dispatcher_open_connections: 'gauge',
      reqwest_dispatcher_retries: 'counter',
      reqwest_dispatcher_circuit_state: 'gauge',
      reqwest_dispatcher_circuit_trips: 'counter',
      reqwest_dispatcher_rate_limit_waits: 'counter',
      reqwest_dispatcher_rate_limit_rejections: 'counter'
    }
    // The parser names counter families without their _total suffix.
    expect(Object.fromEntries([...families.values()].map((f) => [f.name, f.type]))).toEqual(expected)
  })

  it('counts requests by origin, method and status class, errors and aborts', () => {
    const families = parse(agent.metrics())
    const requests = (labels: Record<string, string>): number | undefined =>
      value(families, 'reqwest_dispatcher_requests', 'reqwest_dispatcher_requests_total', labels)
    const origin = server.origin
    expect(requests({ origin, method: 'GET', status_class: '2xx' })).toBe(2)
    expect(requests({ origin, method: 'POST', status_class: '2xx' })).toBe(1)
    expect(requests({ origin, method: 'GET', status_class: '4xx' })).toBe(1)
    expect(requests({ origin, method: 'GET', status_class: 'aborted' })).toBe(1)
    expect(requests({ origin: refusedOrigin, method: 'GET', status_class: 'error' })).toBe(1)
  })

  it('has a duration histogram, body bytes both ways, in-flight and open connections', () => {
    const families = parse(agent.metrics())
    const origin = { origin: server.origin }
    const histogram = 'reqwest_dispatcher_request_duration_seconds'
    expect(value(families, histogram, `${histogram}_count`, origin)).toBe(5)
    expect(value(families, histogram, `${histogram}_bucket`, { ...origin, le: '+Inf' })).toBe(5)
    expect(value(families, histogram, `${histogram}_sum`, origin)).toBeGreaterThan(0)
    const buckets = families.get(histogram)?.samples.filter((s) => s.name.endsWith('_bucket') && s.labels.origin === server.origin) ?? []
    expect(buckets.length).toBeGreaterThan(5)
    for (let i = 1; i < buckets.length; i++) expect(buckets[i].value).toBeGreaterThanOrEqual(buckets[i - 1].value)
    expect(value(families, 'reqwest_dispatcher_request_body_bytes', 'reqwest_dispatcher_request_body_bytes_total', origin)).toBe(3)
    // hello + hello + no + hello
    expect(value(families, 'reqwest_dispatcher_response_body_bytes', 'reqwest_dispatcher_response_body_bytes_total', origin)).toBe(17)
    expect(value(families, 'reqwest_dispatcher_requests_in_flight', 'reqwest_dispatcher_requests_in_flight', origin)).toBe(0)
    expect(value(families, 'reqwest_dispatcher_open_connections', 'reqwest_dispatcher_open_connections', origin)).toBe(1)
    expect(agent.stats[server.origin]?.connected).toBe(1)
  })

  it('metricsJSON() carries the same families and values', () => {
    const families = parse(agent.metrics())
    const json = agent.metricsJSON()
    expect(Object.keys(json).map((name) => name.replace(/_total$/, '')).sort()).toEqual([...families.keys()].sort())
    for (const [name, family] of Object.entries(json)) {
      const parsed = families.get(name.replace(/_total$/, ''))
      expect(family.type).toBe(parsed?.type)
      for (const sample of family.samples) {
        const canonical = (labels: Record<string, string>): string => JSON.stringify(Object.entries(labels).sort())
        const twin = parsed?.samples.find((s) => s.name === sample.name && canonical(s.labels) === canonical(sample.labels))
        expect(twin?.value, `${sample.name} ${JSON.stringify(sample.labels)}`).toBe(sample.value)
      }
    }
  })

  it('can be served on /metrics as in the README', async () => {
    const metricsServer = http.createServer((req, res) => {
      if (req.url !== '/metrics') return res.writeHead(404).end()
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(agent.metrics())
    })
    const { origin, close } = await serve(metricsServer)
    try {
      const scraped = await fetch(`${origin}/metrics`)
      expect(scraped.headers.get('content-type')).toBe('text/plain; version=0.0.4')
      const families = parse(await scraped.text())
      expect(families.get('reqwest_dispatcher_requests')?.samples.length).toBeGreaterThan(0)
    } finally {
      await close()
    }
  })
})
