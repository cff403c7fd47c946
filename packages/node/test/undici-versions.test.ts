// The undici majors and Node lines the package supports: which undici copy a run tests against (one copy shared by
// the tests and the package), fetch's resource-timing entries, and Node's global fetch after setGlobalDispatcher
// with either undici major the application may import it from.
import { execFile, spawnSync } from 'node:child_process'
import { promisify } from 'node:util'
import http from 'node:http'
import { Readable, Writable } from 'node:stream'
import { pipeline as streamPipeline } from 'node:stream/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Dispatcher, errors, fetch as undiciFetch, Agent as UndiciAgent, interceptors, pipeline, request } from 'undici'
import { Agent, ProxyAgent } from 'reqwest-dispatcher'
import { httpServer, type Running } from './helpers/servers'

const pkgDir = join(__dirname, '..')
const requested = process.env.REQWEST_DISPATCHER_TEST_UNDICI
/** The undici the tests resolve (in this run: the aliased major, see vitest.config.mts). */
const undiciPackage = createRequire(__filename)('undici/package.json') as { version: string }
const [nodeMajor, nodeMinor] = process.versions.node.split('.').map(Number)
/** undici 8 needs Node >= 22.19. */
const undici8Runs = nodeMajor > 22 || (nodeMajor === 22 && nodeMinor >= 19)
const undiciMajors = undici8Runs ? [7, 8] : [7]

let server: Running
beforeAll(async () => {
  server = await httpServer((req, res) => {
    if (req.url === '/redirect') {
      res.writeHead(302, { location: '/final' }).end()
      return
    }
    if (req.url === '/missing') {
      res.writeHead(404).end('missing')
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${req.url}`)
  })
})
afterAll(() => server.close())

describe('the undici copy under test', () => {
  it('is the major this run asked for (REQWEST_DISPATCHER_TEST_UNDICI)', () => {
    if (requested) expect(undiciPackage.version.split('.')[0]).toBe(requested)
    expect(undiciPackage.version).toMatch(/^[78]\./)
  })

  it("is the package's own: its Agent extends the tests' Dispatcher and throws the tests' error classes", async () => {
    const packageUndici = createRequire(join(pkgDir, 'dist', 'index.js'))('undici/package.json') as { version: string }
    expect(packageUndici.version).toBe(undiciPackage.version)
    const agent = new Agent()
    try {
      expect(agent).toBeInstanceOf(Dispatcher)
      const failure = await new Promise<Error>((resolve) =>
        agent.dispatch({ origin: server.origin, path: 'no-slash', method: 'GET' }, {
          onRequestStart: () => {},
          onResponseError: (_c: unknown, err: Error) => resolve(err)
        } as Dispatcher.DispatchHandler)
      )
      expect(failure).toBeInstanceOf(errors.InvalidArgumentError)
      expect(failure).toBeInstanceOf(errors.UndiciError)
    } finally {
      await agent.close()
    }
  })

  it.each([
    ['a request that cannot be built (invalid method)', false, true],
    ['an invalid origin', false, undiciPackage.version.startsWith('7.') ? false : true],
    // Closed and idle: both majors have destroyed it by then (ClientDestroyedError); only the answer differs.
    ['a closed agent', true, undiciPackage.version.startsWith('7.') ? false : true]
  ] as const)('answers dispatch() for %s as this major\'s Agent does', async (name, closeFirst, answer) => {
    const run = async (dispatcher: Dispatcher): Promise<[boolean, string]> => {
      if (closeFirst) await dispatcher.close()
      let seen = ''
      const origin = name === 'an invalid origin' ? 'ftp://127.0.0.1' : server.origin
      const returned = dispatcher.dispatch({ origin, path: '/', method: name.includes('invalid method') ? 'BAD METHOD' : 'GET' }, {
        onRequestStart: () => {},
        onResponseError: (_c: unknown, err: Error) => void (seen = err.constructor.name)
      } as Dispatcher.DispatchHandler)
      await new Promise((resolve) => setImmediate(resolve))
      return [returned, seen]
    }
    const ours = new Agent()
    const theirs = new UndiciAgent()
    try {
      const expected = await run(theirs)
      expect(expected[0]).toBe(answer)
      expect(expected[1]).toBe(closeFirst ? 'ClientDestroyedError' : 'InvalidArgumentError')
      expect(await run(ours)).toEqual(expected)
    } finally {
      await ours.destroy()
      await theirs.destroy()
    }
  })

  it('is what the processes a test starts resolve too', () => {
    const run = spawnSync(process.execPath, ['-p', "require('undici/package.json').version"], { cwd: pkgDir, encoding: 'utf8' })
    expect(run.stdout.trim()).toBe(undiciPackage.version)
  })
})

/** What a PerformanceObserver sees of one fetch: the entry's timestamps and sizes. */
type TimingEntry = Record<string, number | string>
const TIMESTAMPS = [
  'startTime',
  'redirectStart',
  'redirectEnd',
  'fetchStart',
  'domainLookupStart',
  'domainLookupEnd',
  'connectStart',
  'connectEnd',
  'secureConnectionStart',
  'requestStart',
  'responseStart',
  'responseEnd'
] as const

async function timedFetch(url: string, dispatcher: Dispatcher, fetchImpl: typeof undiciFetch = undiciFetch): Promise<TimingEntry> {
  const { PerformanceObserver } = await import('node:perf_hooks')
  const seen = new Promise<TimingEntry>((resolve) => {
    const observer = new PerformanceObserver((list) => {
      const entry = list.getEntries().find((e) => e.name === url)
      if (entry) {
        observer.disconnect()
        resolve((entry as PerformanceEntry & { toJSON(): TimingEntry }).toJSON())
      }
    })
    observer.observe({ type: 'resource' })
  })
  const res = await fetchImpl(url, { dispatcher } as never)
  await res.text()
  return seen
}

/** The order of the entry's timestamps (zero ones, which undici leaves unset, named apart). */
function shape(entry: TimingEntry) {
  const stamps = TIMESTAMPS.map((name) => [name, entry[name] as number] as const)
  const set = stamps.filter(([, t]) => t > 0)
  return {
    unset: stamps.filter(([, t]) => t === 0).map(([name]) => name),
    order: [...set].sort((a, b) => a[1] - b[1]).map(([name]) => name),
    sizes: [entry.transferSize, entry.encodedBodySize, entry.decodedBodySize, entry.responseStatus],
    initiatorType: entry.initiatorType
  }
}

describe("fetch's resource-timing entries through this Agent", () => {
  it.each(['/plain', '/redirect'])('%s: requestStart ≤ responseStart ≤ responseEnd, and the same entry undici.Agent gives', async (path) => {
    const ours = new Agent()
    const theirs = new UndiciAgent()
    try {
      const mine = await timedFetch(`${server.origin}${path}`, ours)
      const reference = await timedFetch(`${server.origin}${path}`, theirs)
      expect(mine.requestStart as number).toBeGreaterThan(0)
      expect(mine.responseStart as number).toBeGreaterThanOrEqual(mine.requestStart as number)
      expect(mine.responseEnd as number).toBeGreaterThanOrEqual(mine.responseStart as number)
      expect(mine.fetchStart as number).toBeLessThanOrEqual(mine.requestStart as number)
      const expected = shape(reference)
      const actual = shape(mine)
      expect(actual.unset).toEqual(expected.unset)
      expect(actual.sizes).toEqual(expected.sizes)
      expect(actual.initiatorType).toBe(expected.initiatorType)
      // Timestamps that tie in one run may not in the other: compare each one's position, ties allowed.
      for (const [i, name] of actual.order.entries()) {
        for (const later of actual.order.slice(i + 1)) {
          if (expected.order.indexOf(later) < expected.order.indexOf(name)) {
            expect(mine[later]).toBe(mine[name])
          }
        }
      }
    } finally {
      await ours.close()
      await theirs.close()
    }
  })

  it('controller-style handlers get onResponseStarted before onResponseStart, as from undici.Agent', async () => {
    const record = async (dispatcher: Dispatcher) => {
      const calls: string[] = []
      await new Promise<void>((resolve, reject) =>
        dispatcher.dispatch({ origin: server.origin, path: '/order', method: 'GET' }, {
          onRequestStart: () => calls.push('onRequestStart'),
          onResponseStarted: () => calls.push('onResponseStarted'),
          onResponseStart: () => calls.push('onResponseStart'),
          onResponseData: () => calls.push('onResponseData'),
          onResponseEnd: () => {
            calls.push('onResponseEnd')
            resolve()
          },
          onResponseError: (_c: unknown, err: Error) => reject(err)
        } as Dispatcher.DispatchHandler)
      )
      return calls
    }
    const ours = new Agent()
    const theirs = new UndiciAgent()
    try {
      expect(await record(ours)).toEqual(await record(theirs))
    } finally {
      await ours.close()
      await theirs.close()
    }
  })
})

describe(`Node ${nodeMajor}'s global fetch after setGlobalDispatcher(new Agent())`, () => {
  // A process of its own per case: the global dispatcher is process-wide, and the application's undici is the only
  // undici in it (the package under test resolves the same one, as with a real install).
  it.each(undiciMajors)('with setGlobalDispatcher from undici %i', async (major) => {
    const script = `
      const { setGlobalDispatcher } = require('undici')
      const { Agent } = require('reqwest-dispatcher')
      const { PerformanceObserver } = require('node:perf_hooks')
      const agent = new Agent()
      let dispatched = 0
      const dispatch = agent.dispatch.bind(agent)
      agent.dispatch = (opts, handler) => (dispatched++, dispatch(opts, handler))
      setGlobalDispatcher(agent)
      const entries = []
      new PerformanceObserver((list) => entries.push(...list.getEntries().map((e) => e.toJSON()))).observe({ type: 'resource' })
      ;(async () => {
        const res = await fetch(${JSON.stringify(`${server.origin}/global`)})
        const body = await res.text()
        await new Promise((r) => setTimeout(r, 50))
        console.log(JSON.stringify({ status: res.status, body, dispatched, undici: require('undici/package.json').version, entries }))
        await agent.close()
      })().catch((err) => { console.error(err); process.exit(1) })`
    const env = {
      ...process.env,
      REQWEST_DISPATCHER_TEST_UNDICI: String(major),
      NODE_OPTIONS: `--require ${JSON.stringify(join(pkgDir, 'vitest.undici.cjs'))}`
    }
    // Asynchronously: the child fetches from this process's server.
    const run = await promisify(execFile)(process.execPath, ['-e', script], { cwd: pkgDir, env, encoding: 'utf8' })
    expect(run.stderr).toBe('')
    const result = JSON.parse(run.stdout)
    expect(result).toMatchObject({ status: 200, body: 'hello /global', dispatched: 1 })
    expect(result.undici.split('.')[0]).toBe(String(major))
    const [entry] = result.entries
    expect(entry.responseStart).toBeGreaterThanOrEqual(entry.requestStart)
    expect(entry.responseEnd).toBeGreaterThanOrEqual(entry.responseStart)
  })
})

describe('undici APIs of the major under test, composed with this package', () => {
  it('pipeline() streams a request body through the Agent and the response back', async () => {
    const echoServer = await httpServer((req, res) => req.pipe(res))
    const agent = new Agent()
    try {
      const out: Buffer[] = []
      await streamPipeline(
        Readable.from(['to ', 'and ', 'fro']),
        pipeline(`${echoServer.origin}/p`, { dispatcher: agent, method: 'POST' }, ({ body }) => body),
        new Writable({
          write(chunk: Buffer, _e, cb) {
            out.push(chunk)
            cb()
          }
        })
      )
      expect(Buffer.concat(out).toString()).toBe('to and fro')
    } finally {
      await agent.close()
      await echoServer.close()
    }
  })

  it("ProxyAgent composed with undici's interceptors follows a redirect through a real proxy", async () => {
    const seen: string[] = []
    // An HTTP proxy taking absolute-form requests, as proxies do.
    const proxy = await httpServer((req, res) => {
      seen.push(`${req.method} ${req.url}`)
      const upstream = http.request(req.url as string, { method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode as number, r.headers)
        r.pipe(res)
      })
      req.pipe(upstream)
    })
    const proxyAgent = new ProxyAgent(proxy.origin)
    // Composed twice: both interceptors stay in the chain, and the agent's own methods work through it.
    const agent = proxyAgent.compose(interceptors.redirect({ maxRedirections: 2 })).compose(interceptors.responseError())
    try {
      const res = await request(`${server.origin}/redirect`, { dispatcher: agent })
      expect(res.statusCode).toBe(200)
      expect(await res.body.text()).toBe('hello /final')
      expect(seen).toEqual([`GET ${server.origin}/redirect`, `GET ${server.origin}/final`])
      await expect(request(`${server.origin}/missing`, { dispatcher: agent })).rejects.toMatchObject({ name: 'ResponseError', statusCode: 404 })
      expect((agent as unknown as ProxyAgent).metrics()).toContain('reqwest_dispatcher_requests_total')
    } finally {
      await agent.close()
      await proxy.close()
    }
  })
})
