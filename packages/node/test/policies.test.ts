/**
 * Retry, circuit breaker and rate limit run in the core, per origin, against servers that fail on command;
 * and what they show in the metrics.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { errors, fetch, request, type Dispatcher } from 'undici'
import { Agent, CircuitOpenError, RateLimitError, type CircuitState } from 'reqwest-dispatcher'
import { closedPort, httpServer, type Running } from './helpers/servers'

const open: Array<{ close(): Promise<void> }> = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()))
})

async function server(answer: (n: number, req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<Running & { seen: () => number }> {
  let n = 0
  const running = await httpServer((req, res) => answer(++n, req, res))
  open.push(running)
  return Object.assign(running, { seen: () => n })
}

function agent(options: ConstructorParameters<typeof Agent>[0]): Agent {
  const a = new Agent(options)
  open.push(a)
  return a
}

/** A controller-style handler that records the context it was started with and collects the response. */
function run(dispatcher: Dispatcher, url: string, method = 'GET', body?: string): Promise<{ status: number; body: string; context: { retryCount?: number } }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    let context: { retryCount?: number } = {}
    let status = 0
    const chunks: Buffer[] = []
    dispatcher.dispatch(
      { origin: u.origin, path: u.pathname, method: method as Dispatcher.HttpMethod, body },
      {
        onRequestStart(_controller, ctx) {
          context = ctx as { retryCount?: number }
        },
        onResponseStart(_controller, statusCode) {
          status = statusCode
        },
        onResponseData(_controller, chunk) {
          chunks.push(chunk)
        },
        onResponseEnd() {
          resolve({ status, body: Buffer.concat(chunks).toString(), context })
        },
        onResponseError(_controller, err) {
          reject(err)
        }
      }
    )
  })
}

describe('retry', () => {
  it('sends a GET again after 503s, honouring Retry-After, and tells the count in the request context', async () => {
    const s = await server((n, _req, res) => {
      if (n <= 2) res.writeHead(503, { 'retry-after': '0' }).end('busy')
      else res.end(`answer ${n}`)
    })
    const a = agent({ retry: { minTimeout: 5_000 } })
    const started = Date.now()
    const result = await run(a, `${s.origin}/`)
    expect(result).toEqual({ status: 200, body: 'answer 3', context: { retryCount: 2 } })
    expect(s.seen()).toBe(3)
    // Retry-After: 0 replaced the 5 s backoff.
    expect(Date.now() - started).toBeLessThan(4_000)
  })

  it('works under request() and fetch(), replaying the string body of an idempotent PUT', async () => {
    const bodies: string[] = []
    const s = await server((n, req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => (body += c))
      req.on('end', () => {
        bodies.push(body)
        if (n % 2 === 1) res.writeHead(502).end()
        else res.end('stored')
      })
    })
    const a = agent({ retry: { minTimeout: 1 } })
    const viaRequest = await request(`${s.origin}/`, { dispatcher: a, method: 'PUT', body: 'payload' })
    expect(viaRequest.statusCode).toBe(200)
    expect(await viaRequest.body.text()).toBe('stored')
    // fetch() hands every body over as a stream; one of known length up to 1 MiB is read first, so it is replayed.
    const viaFetch = await fetch(`${s.origin}/`, { dispatcher: a, method: 'PUT', body: 'second' })
    expect(viaFetch.status).toBe(200)
    expect(await viaFetch.text()).toBe('stored')
    expect(bodies).toEqual(['payload', 'payload', 'second', 'second'])
  })

  it('fails a streamed body shorter than its content-length, read up front for replay, as undici does', async () => {
    const s = await server((_n, req, res) => {
      req.resume()
      req.on('end', () => res.writeHead(503).end('down'))
    })
    const a = agent({ retry: { minTimeout: 1 } })
    const { Readable } = await import('node:stream')
    const short = await request(`${s.origin}/`, {
      dispatcher: a,
      method: 'PUT',
      headers: { 'content-length': '10' },
      body: Readable.from(['abc'])
    }).catch((e: Error) => e)
    expect(short).toBeInstanceOf(errors.RequestContentLengthMismatchError)
    expect(s.seen()).toBe(0)
  })

  it('leaves POST and streamed bodies alone, and delivers the last answer once retries run out', async () => {
    const s = await server((_n, _req, res) => res.writeHead(503).end('down'))
    const a = agent({ retry: { maxRetries: 2, minTimeout: 1 } })
    expect((await run(a, `${s.origin}/`, 'POST', 'x')).status).toBe(503)
    expect(s.seen()).toBe(1)
    const exhausted = await run(a, `${s.origin}/`)
    expect(exhausted).toMatchObject({ status: 503, body: 'down', context: { retryCount: 2 } })
    expect(s.seen()).toBe(4)
    const { Readable } = await import('node:stream')
    const streamed = await request(`${s.origin}/`, { dispatcher: a, method: 'PUT', body: Readable.from(['a', 'b']) })
    expect(streamed.statusCode).toBe(503)
    await streamed.body.text()
    expect(s.seen()).toBe(5)
  })

  it('retries a refused connection and ends with the last error when retries run out', async () => {
    const port = await closedPort()
    const a = agent({ retry: { maxRetries: 2, minTimeout: 10 } })
    const err = await run(a, `http://127.0.0.1:${port}/`).catch((e: Error & { code?: string }) => e)
    expect((err as Error & { code?: string }).code).toBe('ECONNREFUSED')
    expect(a.metrics()).toMatch(new RegExp(`reqwest_dispatcher_retries_total\\{origin="http://127.0.0.1:${port}"\\} 2\\n`))
  })

  it('is configured per origin: an origin entry replaces the agent policy', async () => {
    const first = await server((n, _req, res) => res.writeHead(n === 1 ? 503 : 200).end())
    const second = await server((n, _req, res) => res.writeHead(n === 1 ? 503 : 200).end())
    const a = agent({ retry: { minTimeout: 1 }, origins: { [`${second.origin}/ignored/path`]: { retry: false } } })
    expect((await run(a, `${first.origin}/`)).status).toBe(200)
    expect((await run(a, `${second.origin}/`)).status).toBe(503)
  })
})

describe('circuit breaker', () => {
  it('opens over the failure threshold, fails fast with CircuitOpenError, half-opens and closes', async () => {
    let failing = true
    const s = await server((_n, _req, res) => res.writeHead(failing ? 500 : 200).end())
    const a = agent({ circuitBreaker: { minimumRequests: 3, threshold: 0.5, halfOpenAfter: 300 } })
    const changes: Array<[string, CircuitState, unknown]> = []
    a.on('circuitStateChange', (origin, state, targets) => changes.push([origin.origin, state, targets[0]]))
    for (let i = 0; i < 3; i++) expect((await run(a, `${s.origin}/`)).status).toBe(500)
    await expect.poll(() => changes.length).toBe(1)
    expect(changes[0]).toEqual([s.origin, 'open', a])

    const fast = await request(`${s.origin}/`, { dispatcher: a }).catch((e: Error) => e)
    expect(fast).toBeInstanceOf(CircuitOpenError)
    expect(fast).toBeInstanceOf(errors.UndiciError)
    expect((fast as CircuitOpenError).code).toBe('UND_ERR_CIRCUIT_OPEN')
    expect(s.seen()).toBe(3)

    failing = false
    await new Promise((r) => setTimeout(r, 350))
    expect((await run(a, `${s.origin}/`)).status).toBe(200)
    await expect.poll(() => changes.map((c) => c[1])).toEqual(['open', 'half-open', 'closed'])
    const json = a.metricsJSON()
    const trips = json.reqwest_dispatcher_circuit_trips_total.samples.find((x) => x.labels.origin === s.origin)
    expect(trips?.value).toBe(1)
  })

  it('counts connection failures too', async () => {
    const port = await closedPort()
    const a = agent({ circuitBreaker: { minimumRequests: 2 } })
    for (let i = 0; i < 2; i++) {
      const err = await request(`http://127.0.0.1:${port}/`, { dispatcher: a }).catch((e: Error & { code?: string }) => e)
      expect((err as { code?: string }).code).toBe('ECONNREFUSED')
    }
    const third = await request(`http://127.0.0.1:${port}/`, { dispatcher: a }).catch((e: Error) => e)
    expect(third).toBeInstanceOf(CircuitOpenError)
  })
})

describe('rate limit', () => {
  it('spaces requests beyond the burst in order and refuses those that would wait past maxWait', async () => {
    const order: number[] = []
    const s = await server((_n, req, res) => {
      order.push(Number(new URL(req.url ?? '/', 'http://x').searchParams.get('i')))
      res.end()
    })
    const a = agent({ rateLimit: { requestsPerSecond: 20, burst: 2, maxWait: 180 } })
    const started = Date.now()
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        request(`${s.origin}/?i=${i}`, { dispatcher: a }).then(
          async (r) => {
            await r.body.text()
            return 'ok'
          },
          (e: Error) => e
        )
      )
    )
    // 2 at once, then one every 50 ms up to a 180 ms wait: 3 more. The other 3 are refused at once.
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(5)
    const refused = outcomes.filter((o) => o !== 'ok')
    expect(refused).toHaveLength(3)
    for (const e of refused) {
      expect(e).toBeInstanceOf(RateLimitError)
      expect((e as RateLimitError).code).toBe('UND_ERR_RATE_LIMITED')
    }
    // The burst may reach the server in either order; the waiting ones come in the order they were sent.
    expect([...order.slice(0, 2)].sort()).toEqual([0, 1])
    expect(order.slice(2)).toEqual([2, 3, 4])
    expect(Date.now() - started).toBeGreaterThanOrEqual(140)
    const text = a.metrics()
    expect(text).toContain(`reqwest_dispatcher_rate_limit_waits_total{origin="${s.origin}"} 3\n`)
    expect(text).toContain(`reqwest_dispatcher_rate_limit_rejections_total{origin="${s.origin}"} 3\n`)
  })
})

describe('options', () => {
  it('rejects invalid policy options with InvalidArgumentError', () => {
    const bad: Array<ConstructorParameters<typeof Agent>[0]> = [
      { retry: { maxRetries: -1 } },
      { retry: { methods: ['G E T'] } },
      { retry: { statusCodes: [42] } },
      { retry: { jitter: 2 } },
      { circuitBreaker: { threshold: 1.5 } },
      { circuitBreaker: { minimumRequests: 0 } },
      { rateLimit: { requestsPerSecond: 0 } },
      { rateLimit: { burst: 0.5 } },
      { origins: { 'not a url': {} } },
      { retry: 'yes' as never }
    ]
    for (const options of bad) expect(() => new Agent(options), JSON.stringify(options)).toThrow(errors.InvalidArgumentError)
  })

  it('close({ timeout }) waits for requests up to the deadline, then destroys', async () => {
    const s = await server(() => {
      /* never answers */
    })
    const a = new Agent()
    const pending = request(`${s.origin}/`, { dispatcher: a }).catch((e: Error) => e)
    await new Promise((r) => setTimeout(r, 50))
    const started = Date.now()
    await a.close({ timeout: 100 })
    expect(Date.now() - started).toBeGreaterThanOrEqual(90)
    expect(await pending).toBeInstanceOf(errors.ClientDestroyedError)
    expect(a.destroyed).toBe(true)
  })

  it('close({ timeout }) resolves as soon as the agent is idle', async () => {
    const s = await server((_n, _req, res) => setTimeout(() => res.end('late'), 50))
    const a = new Agent()
    const pending = request(`${s.origin}/`, { dispatcher: a }).then((r) => r.body.text())
    await new Promise((r) => setTimeout(r, 10))
    await a.close({ timeout: 5_000 })
    expect(await pending).toBe('late')
  })
})
