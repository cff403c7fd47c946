/**
 * undici's own decorators work over this Agent: compose() with undici's interceptors, RetryAgent, and MockAgent
 * side by side in the same process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { gzipSync } from 'node:zlib'
import { Agent as UndiciAgent, errors, interceptors, MockAgent, request, RetryAgent, fetch as undiciFetch, type Dispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { httpServer, type Running } from './helpers/servers'

let server: Running
let flakyHits = 0
let cacheHits = 0
const agent = new Agent()

beforeAll(async () => {
  server = await httpServer((req, res) => {
    switch (req.url) {
      case '/flaky':
        flakyHits++
        if (flakyHits % 3 !== 0) {
          res.statusCode = 503
          return void res.end('try again')
        }
        return void res.end('finally')
      case '/redirect':
        res.writeHead(302, { location: '/target' })
        return void res.end()
      case '/target':
        return void res.end('arrived')
      case '/teapot':
        res.writeHead(418, { 'content-type': 'application/json' })
        return void res.end(JSON.stringify({ message: 'short and stout' }))
      case '/gzip':
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'text/plain' })
        return void res.end(gzipSync('compressed hello'))
      case '/cached':
        cacheHits++
        res.writeHead(200, { 'cache-control': 'public, max-age=60' })
        return void res.end(`hit ${cacheHits}`)
      case '/large':
        return void res.end(Buffer.alloc(256 * 1024, 1))
      default:
        res.end('ok')
    }
  })
})

afterAll(async () => {
  await agent.close()
  await server.close()
})

describe('compose() with undici interceptors', () => {
  it('retry: retries 503 until success', async () => {
    flakyHits = 0
    const dispatcher = agent.compose(interceptors.retry({ maxRetries: 3, minTimeout: 10, timeoutFactor: 1 }))
    const res = await request(`${server.origin}/flaky`, { dispatcher })
    expect(res.statusCode).toBe(200)
    expect(await res.body.text()).toBe('finally')
    expect(flakyHits).toBe(3)
  })

  it('redirect: follows a 302', async () => {
    const dispatcher = agent.compose(interceptors.redirect({ maxRedirections: 2 }))
    const res = await request(`${server.origin}/redirect`, { dispatcher })
    expect(res.statusCode).toBe(200)
    expect(await res.body.text()).toBe('arrived')
  })

  it('responseError: turns a 4xx into ResponseError', async () => {
    const dispatcher = agent.compose(interceptors.responseError())
    const err = await request(`${server.origin}/teapot`, { dispatcher }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(errors.ResponseError)
    expect((err as errors.ResponseError).statusCode).toBe(418)
  })

  it('decompress: gunzips the body', async () => {
    const dispatcher = agent.compose(interceptors.decompress())
    const res = await request(`${server.origin}/gzip`, { dispatcher })
    expect(await res.body.text()).toBe('compressed hello')
  })

  it('dump: discards the body within maxSize', async () => {
    const dispatcher = agent.compose(interceptors.dump({ maxSize: 1024 * 1024 }))
    const res = await request(`${server.origin}/large`, { dispatcher })
    expect(res.statusCode).toBe(200)
    expect((await res.body.arrayBuffer()).byteLength).toBe(0)
  })

  it('cache: a second GET is served from the cache', async () => {
    cacheHits = 0
    const dispatcher = agent.compose(interceptors.cache())
    const first = await request(`${server.origin}/cached`, { dispatcher })
    expect(await first.body.text()).toBe('hit 1')
    const second = await request(`${server.origin}/cached`, { dispatcher })
    expect(await second.body.text()).toBe('hit 1')
    expect(cacheHits).toBe(1)
  })

  it('all of them at once, as the issue lists them: same results as over undici.Agent', async () => {
    const chain = (base: Dispatcher): Dispatcher =>
      base.compose(
        interceptors.retry({ maxRetries: 3, minTimeout: 10, timeoutFactor: 1 }),
        interceptors.redirect({ maxRedirections: 2 }),
        interceptors.dump(),
        interceptors.responseError(),
        interceptors.decompress(),
        interceptors.cache()
      )
    const run = async (dispatcher: Dispatcher): Promise<unknown[]> => {
      flakyHits = 0
      const results: unknown[] = []
      for (const path of ['/redirect', '/gzip', '/flaky', '/teapot']) {
        try {
          const res = await request(`${server.origin}${path}`, { dispatcher })
          results.push([path, res.statusCode, await res.body.text()])
        } catch (err) {
          results.push([path, (err as errors.UndiciError).code, (err as errors.ResponseError).statusCode])
        }
      }
      return results
    }
    const reference = new UndiciAgent()
    const theirs = await run(chain(reference))
    const ours = await run(chain(agent))
    await reference.close()
    expect(ours).toEqual(theirs)
    expect(ours.length).toBe(4)
  })

  it('fetch through a composed dispatcher', async () => {
    const dispatcher = agent.compose(interceptors.redirect({ maxRedirections: 1 }))
    const res = await undiciFetch(`${server.origin}/gzip`, { dispatcher })
    // fetch decodes content-encoding itself.
    expect(await res.text()).toBe('compressed hello')
  })
})

describe('RetryAgent and MockAgent', () => {
  it('RetryAgent wraps this Agent and retries', async () => {
    flakyHits = 0
    const retrying = new RetryAgent(agent, { maxRetries: 3, minTimeout: 10, timeoutFactor: 1 })
    const res = await request(`${server.origin}/flaky`, { dispatcher: retrying })
    expect(await res.body.text()).toBe('finally')
    expect(flakyHits).toBe(3)
  })

  it('MockAgent on its own still works in a process that uses this Agent', async () => {
    const mock = new MockAgent()
    mock.disableNetConnect()
    mock.get('http://mocked.test').intercept({ path: '/x' }).reply(200, 'from the mock')
    const mocked = await request('http://mocked.test/x', { dispatcher: mock })
    expect(await mocked.body.text()).toBe('from the mock')
    const real = await request(`${server.origin}/`, { dispatcher: agent })
    expect(await real.body.text()).toBe('ok')
    await mock.close()
  })

  it('MockAgent({ agent }) cannot wrap a foreign Agent (undici reaches into its private client map)', () => {
    // Documented in COMPATIBILITY.md: MockAgent reads undici's internal symbols of the agent it wraps.
    let failure: unknown
    try {
      const mock = new MockAgent({ agent: agent as never })
      mock.get('http://mocked.test').intercept({ path: '/' }).reply(200, 'x')
    } catch (err) {
      failure = err
    }
    expect(failure).toBeDefined()
  })
})
