/**
 * diagnostics_channel parity: our Agent publishes undici's channels with undici's message shapes, so that
 * OpenTelemetry's undici instrumentation (and anything else listening to undici) works unchanged.
 *
 * Two parts: OpenTelemetry's spans through our Agent against the spans through undici.Agent (same scenario,
 * same server), then each channel's message against undici.Agent's.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import { Readable } from 'node:stream'
import { context, propagation, SpanKind, SpanStatusCode } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici'
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan
} from '@opentelemetry/sdk-trace-base'
import {
  Agent as UndiciAgent,
  errors,
  fetch as undiciFetch,
  interceptors,
  getGlobalDispatcher,
  H2CClient,
  request,
  setGlobalDispatcher,
  type Dispatcher
} from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { closedPort, httpServer, rawServer, readHead, serve, type Running } from './helpers/servers'
import { makePki } from './helpers/transport-certs'

/** What the server saw of each request. */
interface Received {
  url: string
  headers: http.IncomingHttpHeaders
}

let server: Running & { server: http.Server }
let received: Received[] = []
let refusedPort: number
/** Requests `/flaky` received since the test reset it: the first gets a 503. */
let flakyCalls = 0
/** Reads a request head, then closes the connection without answering. */
let hangup: Running
/** Reads request heads and never answers. */
let silent: Running

beforeAll(async () => {
  server = await httpServer((req, res) => {
    received.push({ url: req.url ?? '', headers: req.headers })
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const url = req.url ?? '/'
      res.setHeader('x-res', 'r1')
      if (url.startsWith('/missing')) {
        res.statusCode = 404
        return void res.end('not here')
      }
      if (url.startsWith('/create')) {
        res.statusCode = 201
        return void res.end(`got ${Buffer.concat(chunks).length} bytes`)
      }
      if (url.startsWith('/flaky')) {
        flakyCalls++
        if (flakyCalls === 1) return void res.writeHead(503, { 'retry-after': '0' }).end('busy')
        return void res.end('recovered')
      }
      if (url.startsWith('/stall')) {
        res.writeHead(200, { 'content-type': 'text/plain' })
        return void res.write('partial')
      }
      if (url.startsWith('/trailers')) {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
        res.write('part one, ')
        res.addTrailers({ 'x-checksum': 'abc123' })
        return void res.end('part two')
      }
      res.end('ok')
    })
  })
  refusedPort = await closedPort()
  hangup = await rawServer((socket) => void readHead(socket).then(() => socket.destroy()))
  silent = await rawServer((socket) => socket.resume())
})

afterAll(async () => {
  await Promise.all([server.close(), hangup.close(), silent.close()])
})

type Make = () => Dispatcher
const implementations: Array<[string, Make]> = [
  ['undici.Agent', () => new UndiciAgent()],
  ['reqwest-dispatcher Agent', () => new Agent()]
]

/** Runs `scenario` once with each agent (a fresh one each time) and returns what each run returned. */
async function bothAgents<T>(
  scenario: (dispatcher: Dispatcher) => Promise<T>,
  makers: Array<[string, Make]> = implementations
): Promise<{ undici: T; ours: T }> {
  const out: T[] = []
  for (const [, make] of makers) {
    const dispatcher = make()
    try {
      out.push(await scenario(dispatcher))
    } finally {
      await dispatcher.close()
    }
  }
  return { undici: out[0], ours: out[1] }
}

describe('OpenTelemetry undici instrumentation through our Agent', () => {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const contextManager = new AsyncLocalStorageContextManager()
  let instrumentation: UndiciInstrumentation

  beforeAll(() => {
    context.setGlobalContextManager(contextManager.enable())
    propagation.setGlobalPropagator(new W3CTraceContextPropagator())
    instrumentation = new UndiciInstrumentation({
      headersToSpanAttributes: { requestHeaders: ['x-req', 'user-agent'], responseHeaders: ['x-res', 'content-length'] }
    })
    instrumentation.setTracerProvider(provider)
    instrumentation.enable()
  })

  afterAll(async () => {
    instrumentation.disable()
    await provider.shutdown()
    context.disable()
    propagation.disable()
  })

  /** A span reduced to what must match: values that differ between runs (ids, times, stack traces) dropped. */
  function describeSpan(span: ReadableSpan): Record<string, unknown> {
    const attributes = Object.fromEntries(Object.entries(span.attributes).sort(([a], [b]) => a.localeCompare(b)))
    return {
      name: span.name,
      kind: span.kind,
      scope: span.instrumentationScope.name,
      status: span.status,
      attributes,
      events: span.events.map((event) => ({
        name: event.name,
        attributes: Object.fromEntries(
          Object.entries(event.attributes ?? {})
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([k, v]) => [k, k === 'exception.stacktrace' ? typeof v : v])
        )
      }))
    }
  }

  interface Traced {
    spans: ReadableSpan[]
    received: Received[]
  }

  /** Runs `scenario` with both agents and returns the finished spans and what the server received of each. */
  async function traced(
    scenario: (dispatcher: Dispatcher) => Promise<unknown>,
    makers?: Array<[string, Make]>
  ): Promise<{ undici: Traced; ours: Traced }> {
    return bothAgents(async (dispatcher) => {
      exporter.reset()
      received = []
      await scenario(dispatcher)
      return { spans: exporter.getFinishedSpans().slice(), received: received.slice() }
    }, makers)
  }

  function expectSameSpans(runs: { undici: Traced; ours: Traced }, count = 1): void {
    expect(runs.undici.spans).toHaveLength(count)
    expect(runs.ours.spans.map(describeSpan)).toEqual(runs.undici.spans.map(describeSpan))
  }

  /** The server got the traceparent of the client span it belongs to. */
  function expectPropagated(run: Traced): void {
    expect(run.received).toHaveLength(run.spans.length)
    run.spans.forEach((span, i) => {
      const { traceId, spanId } = span.spanContext()
      expect(run.received[i].headers.traceparent).toBe(`00-${traceId}-${spanId}-01`)
    })
  }

  it('request(): same span for a GET, and the server receives the injected traceparent', async () => {
    const runs = await traced(async (dispatcher) => {
      const res = await request(`${server.origin}/ok?x=1`, { dispatcher, headers: { 'x-req': 'q1', 'user-agent': 'tester/1' } })
      await res.body.text()
    })
    expectSameSpans(runs)
    const span = runs.ours.spans[0]
    expect(span.name).toBe('GET')
    expect(span.kind).toBe(SpanKind.CLIENT)
    expect(span.attributes['http.response.status_code']).toBe(200)
    expect(span.attributes['url.full']).toBe(`${server.origin}/ok?x=1`)
    expect(span.attributes['network.peer.address']).toBe('127.0.0.1')
    expect(span.attributes['network.peer.port']).toBe(server.port)
    expect(span.attributes['http.request.header.x-req']).toEqual(['q1'])
    expect(span.attributes['http.response.header.x-res']).toEqual(['r1'])
    expect(span.attributes['user_agent.original']).toBe('tester/1')
    expectPropagated(runs.undici)
    expectPropagated(runs.ours)
  })

  it('request(): same span for a POST with a streamed body', async () => {
    const runs = await traced(async (dispatcher) => {
      const body = Readable.from([Buffer.from('abc'), Buffer.from('defg')])
      const res = await request(`${server.origin}/create`, { dispatcher, method: 'POST', body })
      expect(await res.body.text()).toBe('got 7 bytes')
    })
    expectSameSpans(runs)
    expect(runs.ours.spans[0].attributes['http.response.status_code']).toBe(201)
    expectPropagated(runs.ours)
  })

  it('request(): a 404 response gives the same error-status span', async () => {
    const runs = await traced(async (dispatcher) => {
      const res = await request(`${server.origin}/missing`, { dispatcher })
      await res.body.text()
    })
    expectSameSpans(runs)
    const span = runs.ours.spans[0]
    expect(span.status.code).toBe(SpanStatusCode.ERROR)
    expect(span.attributes['error.type']).toBe('404')
  })

  it('undici fetch(): same span, traceparent received', async () => {
    const runs = await traced(async (dispatcher) => {
      const res = await undiciFetch(`${server.origin}/ok`, { dispatcher, headers: { 'x-req': 'f1' } })
      expect(await res.text()).toBe('ok')
    })
    expectSameSpans(runs)
    expect(runs.ours.spans[0].attributes['user_agent.original']).toBe('undici')
    expectPropagated(runs.undici)
    expectPropagated(runs.ours)
  })

  it("Node's global fetch through setGlobalDispatcher(): same span, traceparent received", async () => {
    const previous = getGlobalDispatcher()
    try {
      const runs = await traced(async (dispatcher) => {
        setGlobalDispatcher(dispatcher)
        const res = await globalThis.fetch(`${server.origin}/ok?global=1`, { method: 'POST', body: 'hello' })
        expect(await res.text()).toBe('ok')
      })
      expectSameSpans(runs)
      expect(runs.ours.spans[0].attributes['http.request.method']).toBe('POST')
      expect(runs.ours.spans[0].attributes['user_agent.original']).toBe('node')
      expectPropagated(runs.undici)
      expectPropagated(runs.ours)
    } finally {
      setGlobalDispatcher(previous)
    }
    expect(getGlobalDispatcher()).toBe(previous)
  })

  it('connection refused: the same error span from request(), fetch() and the global fetch', async () => {
    const previous = getGlobalDispatcher()
    const refused = `http://127.0.0.1:${refusedPort}`
    try {
      const runs = await traced(async (dispatcher) => {
        await expect(request(`${refused}/a`, { dispatcher })).rejects.toMatchObject({ code: 'ECONNREFUSED' })
        await expect(undiciFetch(`${refused}/b`, { dispatcher })).rejects.toThrow(TypeError)
        setGlobalDispatcher(dispatcher)
        await expect(globalThis.fetch(`${refused}/c`)).rejects.toThrow(TypeError)
      })
      expectSameSpans(runs, 3)
      for (const span of runs.ours.spans) {
        expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: `connect ECONNREFUSED 127.0.0.1:${refusedPort}` })
        expect(span.attributes['error.type']).toBe('ECONNREFUSED')
        expect(span.events.map((e) => e.name)).toEqual(['exception'])
      }
    } finally {
      setGlobalDispatcher(previous)
    }
  })

  it('https: the same span over TLS', async () => {
    const pki = makePki()
    const tls = https.createServer({ key: pki.server.key, cert: pki.server.cert }, (req, res) => {
      received.push({ url: req.url ?? '', headers: req.headers })
      res.end('secure')
    })
    const { origin, close } = await serve(tls, 'https')
    try {
      const runs = await traced(
        async (dispatcher) => {
          const res = await request(`${origin}/s`, { dispatcher })
          expect(await res.body.text()).toBe('secure')
        },
        [
          ['undici.Agent', () => new UndiciAgent({ connect: { ca: pki.ca.cert } })],
          ['reqwest-dispatcher Agent', () => new Agent({ connect: { ca: pki.ca.cert } })]
        ]
      )
      expectSameSpans(runs)
      expect(runs.ours.spans[0].attributes['url.scheme']).toBe('https')
      expect(runs.ours.spans[0].attributes['network.protocol.version']).toBe('1.1')
      expectPropagated(runs.ours)
    } finally {
      await close()
      pki.cleanup()
    }
  })

  it('allowH2 over TLS: the same span, with the negotiated network.protocol.version from the response head', async () => {
    const pki = makePki()
    const h2 = http2.createSecureServer({ key: pki.server.key, cert: pki.server.cert, allowHTTP1: true }, (req, res) => {
      received.push({ url: req.url, headers: req.headers })
      res.end(`over ${req.httpVersion}`)
    })
    const { origin, close } = await serve(h2, 'https')
    try {
      const runs = await traced(
        async (dispatcher) => {
          const res = await request(`${origin}/h2`, { dispatcher })
          expect(await res.body.text()).toBe('over 2.0')
        },
        [
          ['undici.Agent', () => new UndiciAgent({ allowH2: true, connect: { ca: pki.ca.cert } })],
          ['reqwest-dispatcher Agent', () => new Agent({ allowH2: true, connect: { ca: pki.ca.cert } })]
        ]
      )
      // The core reports the version the response came over; sendHeaders' socket says `h2` from it.
      expect(runs.undici.spans[0].attributes['network.protocol.version']).toBe('2')
      expect(runs.ours.spans[0].attributes['network.protocol.version']).toBe('2')
      expect(runs.ours.spans.map(describeSpan)).toEqual(runs.undici.spans.map(describeSpan))
      expectPropagated(runs.ours)
    } finally {
      await close()
      pki.cleanup()
    }
  })

  it("h2c: the same span as undici's H2CClient, HTTP/2 included", async () => {
    const h2 = http2.createServer((req, res) => {
      received.push({ url: req.url, headers: req.headers })
      res.end('over h2c')
    })
    const { origin, close } = await serve(h2, 'http')
    try {
      const runs = await traced(
        async (dispatcher) => {
          const res = await request(`${origin}/h`, { dispatcher })
          expect(await res.body.text()).toBe('over h2c')
        },
        [
          ['undici H2CClient', () => new H2CClient(origin)],
          ['reqwest-dispatcher Agent', () => new Agent({ h2c: true })]
        ]
      )
      expectSameSpans(runs)
      expect(runs.ours.spans[0].attributes['network.protocol.version']).toBe('2')
      expectPropagated(runs.ours)
    } finally {
      await close()
    }
  })

  it('a host-name origin: the same span, network.peer.address being the address the core connected to', async () => {
    const runs = await traced(async (dispatcher) => {
      await (await request(`http://localhost:${server.port}/ok`, { dispatcher })).body.text()
    })
    expect(runs.undici.spans[0].attributes['network.peer.address']).toBe('127.0.0.1')
    expect(runs.ours.spans[0].attributes['network.peer.address']).toBe('127.0.0.1')
    expect(runs.ours.spans.map(describeSpan)).toEqual(runs.undici.spans.map(describeSpan))
    expect(runs.ours.spans[0].attributes['network.peer.port']).toBe(server.port)
  })

  it("the agent's retry policy retries within one request: one span, where undici's retry interceptor makes one per attempt", async () => {
    const runs = await traced(
      async (dispatcher) => {
        flakyCalls = 0
        const res = await request(`${server.origin}/flaky`, { dispatcher })
        expect(await res.body.text()).toBe('recovered')
      },
      [
        ['undici.Agent + retry interceptor', () => new UndiciAgent().compose(interceptors.retry({ minTimeout: 1 }))],
        ['reqwest-dispatcher Agent', () => new Agent({ retry: { minTimeout: 1 } })]
      ]
    )
    expect(runs.undici.spans.map((s) => s.attributes['http.response.status_code'])).toEqual([503, 200])
    expect(runs.ours.spans.map((s) => s.attributes['http.response.status_code'])).toEqual([200])
    expect(describeSpan(runs.ours.spans[0])).toEqual(describeSpan(runs.undici.spans[1]))
    // Both attempts carry the one span's traceparent: the core resends the same request.
    const { traceId, spanId } = runs.ours.spans[0].spanContext()
    expect(runs.ours.received.map((r) => r.headers.traceparent)).toEqual([`00-${traceId}-${spanId}-01`, `00-${traceId}-${spanId}-01`])
  })

  it('a server that closes without answering: the same error span', async () => {
    const runs = await traced(async (dispatcher) => {
      await expect(request(`${hangup.origin}/`, { dispatcher })).rejects.toMatchObject({ code: 'UND_ERR_SOCKET' })
    })
    expectSameSpans(runs)
    expect(runs.ours.spans[0].attributes['network.peer.address']).toBe('127.0.0.1')
    expect(runs.ours.spans[0].status.code).toBe(SpanStatusCode.ERROR)
  })

  it('a headers timeout: the same error span', async () => {
    const runs = await traced(async (dispatcher) => {
      await expect(request(`${silent.origin}/`, { dispatcher, headersTimeout: 100 })).rejects.toMatchObject({
        code: 'UND_ERR_HEADERS_TIMEOUT'
      })
    })
    expectSameSpans(runs)
    expect(runs.ours.spans[0].attributes['error.type']).toBe('UND_ERR_HEADERS_TIMEOUT')
  })

  it('an aborted request ends its span without error status, as with undici', async () => {
    const runs = await traced(async (dispatcher) => {
      const controller = new AbortController()
      const res = await undiciFetch(`${server.origin}/stall`, { dispatcher, signal: controller.signal })
      controller.abort()
      await expect(res.text()).rejects.toThrow()
    })
    expectSameSpans(runs)
    expect(runs.ours.spans[0].status.code).toBe(SpanStatusCode.UNSET)
  })

  it('client spans are children of the span active where each request was dispatched, even within one tick', async () => {
    const tracer = provider.getTracer('test')
    const runs = await traced(async (dispatcher) => {
      // Both dispatched in the same tick: our agent sends them to the core together, yet each keeps its parent.
      const work = ['p1', 'p2'].map((name) =>
        tracer.startActiveSpan(name, async (parent) => {
          const res = await request(`${server.origin}/ok?${name}`, { dispatcher })
          await res.body.text()
          parent.end()
        })
      )
      await Promise.all(work)
    })
    for (const run of [runs.undici, runs.ours]) {
      const byName = new Map(run.spans.map((s) => [s.name === 'GET' ? String(s.attributes['url.query']) : s.name, s]))
      for (const name of ['p1', 'p2']) {
        const parent = byName.get(name) as ReadableSpan
        const child = byName.get(`?${name}`) as ReadableSpan
        expect(child.parentSpanContext?.spanId).toBe(parent.spanContext().spanId)
        expect(child.spanContext().traceId).toBe(parent.spanContext().traceId)
        const seen = run.received.find((r) => r.url === `/ok?${name}`) as Received
        expect(seen.headers.traceparent).toBe(`00-${child.spanContext().traceId}-${child.spanContext().spanId}-01`)
      }
    }
  })
})

/** A socket's fields as they were when the message was published (undici's socket is closed by the end). */
interface SocketSeen {
  remoteAddress?: string
  remotePort?: number
  alpnProtocol?: string | false
  kind: string
}

/**
 * Collects the messages of the given undici channels, in order, until `stop()`. Messages are kept as published
 * (same request objects), except `socket`, which is replaced by a {@link SocketSeen}.
 */
function listen(names: string[]): { messages: Array<[string, Record<string, unknown>]>; stop(): void } {
  const messages: Array<[string, Record<string, unknown>]> = []
  const listeners = names.map((name) => {
    const listener = (message: unknown): void => {
      const copy = { ...(message as Record<string, unknown>) }
      const socket = copy.socket as (SocketSeen & object) | undefined
      if (socket !== undefined) {
        copy.socket = {
          remoteAddress: socket.remoteAddress,
          remotePort: socket.remotePort,
          alpnProtocol: socket.alpnProtocol,
          kind: socket.constructor.name
        }
      }
      messages.push([name, copy])
    }
    subscribe(`undici:${name}`, listener)
    return [name, listener] as const
  })
  return {
    messages,
    stop: () => {
      for (const [name, listener] of listeners) unsubscribe(`undici:${name}`, listener)
    }
  }
}

const ALL = [
  'client:beforeConnect',
  'client:connected',
  'client:connectError',
  'client:sendHeaders',
  'request:create',
  'request:bodySent',
  'request:bodyChunkSent',
  'request:bodyChunkReceived',
  'request:headers',
  'request:trailers',
  'request:error'
]

/** Runs `scenario` with both agents, recording the messages of `names` published meanwhile. */
async function messagesOf(
  names: string[],
  scenario: (dispatcher: Dispatcher) => Promise<unknown>
): Promise<{ undici: Array<[string, Record<string, unknown>]>; ours: Array<[string, Record<string, unknown>]> }> {
  return bothAgents(async (dispatcher) => {
    const recording = listen(names)
    try {
      await scenario(dispatcher)
    } finally {
      recording.stop()
    }
    return recording.messages
  })
}

/** The fields of undici's Request that subscribers read. */
function requestFields(request: unknown): Record<string, unknown> {
  const r = request as Record<string, unknown>
  return {
    origin: r.origin,
    method: r.method,
    path: r.path,
    headers: r.headers,
    host: r.host,
    contentType: r.contentType,
    contentLength: r.contentLength,
    reset: r.reset,
    idempotent: r.idempotent,
    blocking: r.blocking,
    upgrade: r.upgrade,
    protocol: r.protocol,
    servername: r.servername,
    expectContinue: r.expectContinue,
    addHeader: typeof r.addHeader
  }
}

/** `name: value` pairs of raw Buffer headers, names lower-cased (undici keeps the server's case, hyper does not). */
function rawPairs(raw: unknown): string[] {
  const list = raw as Buffer[]
  const out: string[] = []
  for (let i = 0; i + 1 < list.length; i += 2) {
    const name = list[i].toString('latin1').toLowerCase()
    if (name !== 'date' && name !== 'keep-alive' && name !== 'connection') out.push(`${name}: ${list[i + 1].toString('latin1')}`)
  }
  return out
}

describe('diagnostics_channel messages, compared with undici.Agent', () => {
  // Body chunks may be cut differently: consecutive bodyChunkReceived collapse into one.
  const order = (messages: Array<[string, unknown]>): string[] =>
    messages.map(([name]) => name).filter((name, i, all) => !(name === 'request:bodyChunkReceived' && all[i - 1] === name))

  it('a request with a body publishes the same channels in the same order, one request object throughout', async () => {
    const runs = await messagesOf(ALL, async (dispatcher) => {
      await (await request(`${server.origin}/create`, { dispatcher, method: 'POST', body: 'payload' })).body.text()
    })
    expect(order(runs.ours)).toEqual(order(runs.undici))
    expect(order(runs.ours)).toEqual([
      'request:create',
      'client:beforeConnect',
      'client:connected',
      'client:sendHeaders',
      'request:bodyChunkSent',
      'request:bodySent',
      'request:headers',
      'request:bodyChunkReceived',
      'request:trailers'
    ])
    for (const messages of [runs.undici, runs.ours]) {
      const requests = new Set(messages.filter(([, m]) => 'request' in m).map(([, m]) => m.request))
      expect(requests.size).toBe(1)
    }
  })

  it('a request with a streamed body publishes the same channels in the same order', async () => {
    const runs = await messagesOf(ALL, async (dispatcher) => {
      const body = Readable.from([Buffer.from('ab'), Buffer.from('cd')])
      await (await request(`${server.origin}/create`, { dispatcher, method: 'POST', body })).body.text()
    })
    expect(order(runs.ours)).toEqual(order(runs.undici))
    expect(order(runs.ours)).toEqual([
      'request:create',
      'client:beforeConnect',
      'client:connected',
      'client:sendHeaders',
      'request:bodyChunkSent',
      'request:bodyChunkSent',
      'request:bodySent',
      'request:headers',
      'request:bodyChunkReceived',
      'request:trailers'
    ])
  })

  it("undici:request:create carries a request shaped as undici's", async () => {
    const runs = await messagesOf(['request:create'], async (dispatcher) => {
      const res = await request(`${server.origin}/ok`, {
        dispatcher,
        method: 'PUT',
        query: { a: '1', b: 'two' },
        body: 'data',
        // `null` is accepted at run time (sent as an empty value), beyond what undici's types declare.
        headers: {
          'X-Mixed-Case': 'v',
          'Content-Type': 'text/plain',
          multi: ['m1', 'm2'],
          empty: null as unknown as string,
          host: 'example.test',
          'content-length': '4'
        }
      })
      await res.body.text()
    })
    expect(runs.ours).toHaveLength(1)
    const [[, ours]] = runs.ours
    const [[, undici]] = runs.undici
    expect(requestFields(ours.request)).toEqual(requestFields(undici.request))
    expect(requestFields(ours.request)).toMatchObject({
      origin: server.origin,
      method: 'PUT',
      path: '/ok?a=1&b=two',
      headers: ['X-Mixed-Case', 'v', 'Content-Type', 'text/plain', 'multi', ['m1', 'm2'], 'empty', ''],
      host: 'example.test',
      contentType: 'text/plain',
      contentLength: 4,
      servername: 'example.test',
      addHeader: 'function'
    })
    expect(Buffer.from((ours.request as { body: Uint8Array }).body).toString()).toBe('data')
  })

  it('request.addHeader() in a create subscriber adds a header the server receives', async () => {
    const runs = await bothAgents(async (dispatcher) => {
      received = []
      const created: Array<{ headers: unknown[] }> = []
      const onCreate = (message: unknown): void => {
        interface Created {
          headers: unknown[]
          addHeader(name: string, value: string): Created
        }
        const r = (message as { request: Created }).request
        created.push(r)
        r.addHeader('X-Trace-Id', 'abc').addHeader('x-multi', 'one')
        r.addHeader('x-multi', 'two')
      }
      subscribe('undici:request:create', onCreate)
      try {
        await (await request(`${server.origin}/ok`, { dispatcher, headers: { 'x-own': '1' } })).body.text()
        await (await undiciFetch(`${server.origin}/ok`, { dispatcher })).text()
      } finally {
        unsubscribe('undici:request:create', onCreate)
      }
      return { received: received.slice(), headers: created.map((r) => r.headers) }
    })
    for (const run of [runs.undici, runs.ours]) {
      expect(run.received).toHaveLength(2)
      for (const r of run.received) {
        expect(r.headers['x-trace-id']).toBe('abc')
        expect(r.headers['x-multi']).toBe('one, two')
      }
      expect(run.received[0].headers['x-own']).toBe('1')
    }
    // The request object lists the added headers too, as undici's does.
    expect(runs.ours.headers).toEqual(runs.undici.headers)
    expect(runs.ours.headers[0]).toEqual(['x-own', '1', 'X-Trace-Id', 'abc', 'x-multi', 'one', 'x-multi', 'two'])
  })

  it('request.addHeader() checks names and values as undici does', async () => {
    const outcomes = await bothAgents(async (dispatcher) => {
      const errorsSeen: string[] = []
      const onCreate = (message: unknown): void => {
        const r = (message as { request: { addHeader(name: string, value: unknown): unknown } }).request
        for (const [name, value] of [['bad name', 'v'], ['x-ok', 'bad\nvalue'], ['host', 'second.test'], ['transfer-encoding', 'chunked']]) {
          try {
            r.addHeader(name as string, value)
            errorsSeen.push('accepted')
          } catch (err) {
            errorsSeen.push(`${(err as Error).constructor.name}: ${(err as Error).message}`)
          }
        }
      }
      subscribe('undici:request:create', onCreate)
      try {
        await (await request(`${server.origin}/ok`, { dispatcher, headers: { host: `127.0.0.1:${server.port}` } })).body.text()
      } finally {
        unsubscribe('undici:request:create', onCreate)
      }
      return errorsSeen
    })
    expect(outcomes.ours).toEqual(outcomes.undici)
    expect(outcomes.ours).toEqual([
      'InvalidArgumentError: invalid header key',
      'InvalidArgumentError: invalid x-ok header',
      'InvalidArgumentError: duplicate host header',
      'InvalidArgumentError: invalid transfer-encoding header'
    ])
  })

  it('undici:request:headers carries statusCode, raw Buffer headers and statusText', async () => {
    const runs = await messagesOf(['request:headers'], async (dispatcher) => {
      await (await request(`${server.origin}/missing`, { dispatcher })).body.text()
    })
    const response = (messages: Array<[string, Record<string, unknown>]>): Record<string, unknown> => {
      const r = messages[0][1].response as { statusCode: number; headers: Buffer[]; statusText: string }
      return { statusCode: r.statusCode, statusText: r.statusText, buffers: r.headers.every(Buffer.isBuffer), headers: rawPairs(r.headers) }
    }
    expect(response(runs.ours)).toEqual(response(runs.undici))
    expect(response(runs.ours)).toEqual({
      statusCode: 404,
      statusText: 'Not Found',
      buffers: true,
      headers: ['x-res: r1', 'content-length: 8']
    })
  })

  it('undici:request:trailers carries the raw trailers, [] without any', async () => {
    const runs = await messagesOf(['request:trailers'], async (dispatcher) => {
      await (await request(`${server.origin}/trailers`, { dispatcher })).body.text()
      await (await request(`${server.origin}/ok`, { dispatcher })).body.text()
    })
    const trailers = (messages: Array<[string, Record<string, unknown>]>): unknown[] =>
      messages.map(([, m]) => ({ pairs: rawPairs(m.trailers), completed: (m.request as { completed: boolean }).completed }))
    expect(trailers(runs.ours)).toEqual(trailers(runs.undici))
    expect(trailers(runs.ours)).toEqual([
      { pairs: ['x-checksum: abc123'], completed: true },
      { pairs: [], completed: true }
    ])
  })

  it('undici:request:bodyChunkSent, bodySent and bodyChunkReceived carry the bytes sent and received', async () => {
    const runs = await messagesOf(['request:bodyChunkSent', 'request:bodySent', 'request:bodyChunkReceived'], async (dispatcher) => {
      await (await request(`${server.origin}/create`, { dispatcher, method: 'POST', body: 'twelve bytes' })).body.text()
    })
    const summary = (messages: Array<[string, Record<string, unknown>]>): Record<string, string> => {
      const out: Record<string, string> = {}
      for (const [name, m] of messages) out[name] = (out[name] ?? '') + (m.chunk === undefined ? '.' : Buffer.from(m.chunk as Uint8Array).toString())
      return out
    }
    expect(summary(runs.ours)).toEqual(summary(runs.undici))
    expect(summary(runs.ours)).toEqual({
      'request:bodyChunkSent': 'twelve bytes',
      'request:bodySent': '.',
      'request:bodyChunkReceived': 'got 12 bytes'
    })
  })

  it('undici:request:error carries the request and the error it failed with', async () => {
    const refused = `http://127.0.0.1:${refusedPort}`
    const runs = await messagesOf(['request:error'], async (dispatcher) => {
      await request(`${refused}/x`, { dispatcher }).catch(() => {})
      const controller = new AbortController()
      const pending = request(`${server.origin}/ok`, { dispatcher, signal: controller.signal }).catch(() => {})
      controller.abort()
      await pending
    })
    const errorsOf = (messages: Array<[string, Record<string, unknown>]>): unknown[] =>
      messages.map(([, m]) => {
        const error = m.error as Error & { code?: string }
        const r = m.request as { path: string; aborted: boolean }
        return { path: r.path, aborted: r.aborted, name: error.name, code: error.code, message: error.message }
      })
    expect(errorsOf(runs.ours)).toEqual(errorsOf(runs.undici))
    expect(errorsOf(runs.ours)).toMatchObject([
      { path: '/x', aborted: true, code: 'ECONNREFUSED', message: `connect ECONNREFUSED 127.0.0.1:${refusedPort}` },
      { path: '/ok', aborted: true, name: 'AbortError' }
    ])
  })

  it('an invalid request publishes nothing, as with undici', async () => {
    const runs = await messagesOf(ALL, async (dispatcher) => {
      await expect(request(`${server.origin}/ok`, { dispatcher, headers: { 'bad name': 'x' } })).rejects.toThrow(
        errors.InvalidArgumentError
      )
    })
    expect(runs.undici).toEqual([])
    expect(runs.ours).toEqual([])
  })

  it('undici:client:beforeConnect and connected carry the same connectParams; socket describes the peer', async () => {
    const runs = await messagesOf(['client:beforeConnect', 'client:connected'], async (dispatcher) => {
      await (await request(`${server.origin}/ok`, { dispatcher })).body.text()
    })
    const connect = (messages: Array<[string, Record<string, unknown>]>): unknown[] =>
      messages.map(([name, m]) => {
        const socket = m.socket as SocketSeen | undefined
        return {
          name,
          connectParams: m.connectParams,
          socket: socket && { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, alpnProtocol: socket.alpnProtocol }
        }
      })
    expect(connect(runs.ours)).toEqual(connect(runs.undici))
    expect(connect(runs.ours)).toEqual([
      {
        name: 'client:beforeConnect',
        connectParams: {
          host: `127.0.0.1:${server.port}`,
          hostname: '127.0.0.1',
          protocol: 'http:',
          port: String(server.port),
          version: undefined,
          servername: null,
          localAddress: null
        },
        socket: undefined
      },
      {
        name: 'client:connected',
        connectParams: expect.objectContaining({ version: 'h1' }),
        socket: { remoteAddress: '127.0.0.1', remotePort: server.port, alpnProtocol: undefined }
      }
    ])
    // Not a net.Socket: connections live in the Rust core (COMPATIBILITY.md).
    expect((runs.undici[1][1].socket as SocketSeen).kind).toBe('Socket')
    expect((runs.ours[1][1].socket as SocketSeen).kind).toBe('DiagnosticsSocket')
  })

  it('undici:client:connected names the address a host-name origin reached, as undici does', async () => {
    const order: string[] = []
    const onConnection = (): void => void order.push('server accepted')
    server.server.on('connection', onConnection)
    try {
      const runs = await messagesOf(['client:beforeConnect', 'client:connected'], async (dispatcher) => {
        order.push('dispatch')
        await (await request(`http://localhost:${server.port}/ok`, { dispatcher })).body.text()
      })
      const connected = (messages: Array<[string, Record<string, unknown>]>): unknown => {
        const socket = messages.find(([name]) => name === 'client:connected')?.[1].socket as SocketSeen | undefined
        return socket && { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, alpnProtocol: socket.alpnProtocol }
      }
      expect(connected(runs.ours)).toEqual(connected(runs.undici))
      expect(connected(runs.ours)).toMatchObject({ remoteAddress: '127.0.0.1', remotePort: server.port })
    } finally {
      server.server.off('connection', onConnection)
    }
    expect(order).toEqual(['dispatch', 'server accepted', 'dispatch', 'server accepted'])
  })

  it('undici:client:beforeConnect is published while the connection is still being made', async () => {
    // TCP is accepted but the TLS handshake is never answered: the connection stays in the making.
    const silent = await rawServer(() => {})
    const seen: string[] = []
    const onBefore = (): void => void seen.push('beforeConnect')
    const onConnected = (): void => void seen.push('connected')
    subscribe('undici:client:beforeConnect', onBefore)
    subscribe('undici:client:connected', onConnected)
    const agent = new Agent({ connectTimeout: 5_000 })
    try {
      const controller = new AbortController()
      const pending = request(`https://127.0.0.1:${silent.port}/`, { dispatcher: agent, signal: controller.signal }).catch(
        (e: Error) => e
      )
      await vi.waitFor(() => expect(seen).toEqual(['beforeConnect']), { timeout: 2_000 })
      controller.abort()
      expect(await pending).toBeInstanceOf(Error)
      expect(seen).toEqual(['beforeConnect'])
    } finally {
      unsubscribe('undici:client:beforeConnect', onBefore)
      unsubscribe('undici:client:connected', onConnected)
      await agent.destroy()
      await silent.close()
    }
  })

  it('undici:client:connectError carries the connectParams and the connection error', async () => {
    const runs = await messagesOf(['client:beforeConnect', 'client:connectError', 'request:error'], async (dispatcher) => {
      await request(`http://127.0.0.1:${refusedPort}/`, { dispatcher }).catch(() => {})
    })
    const summary = (messages: Array<[string, Record<string, unknown>]>): unknown[] =>
      messages.map(([name, m]) => ({
        name,
        connectParams: m.connectParams,
        code: (m.error as { code?: string } | undefined)?.code
      }))
    expect(summary(runs.ours)).toEqual(summary(runs.undici))
    expect(summary(runs.ours).map((m) => (m as { name: string }).name)).toEqual([
      'client:beforeConnect',
      'client:connectError',
      'request:error'
    ])
    expect((runs.ours[1][1].error as { code: string }).code).toBe('ECONNREFUSED')
  })

  it('undici:client:sendHeaders carries the request head and the request', async () => {
    const runs = await messagesOf(['request:create', 'client:sendHeaders'], async (dispatcher) => {
      await (await request(`${server.origin}/ok?q=1`, { dispatcher, method: 'DELETE', headers: { 'X-One': '1', multi: ['a', 'b'] } })).body.text()
    })
    const head = (messages: Array<[string, Record<string, unknown>]>): { requestLine: string; lines: string[]; sameRequest: boolean } => {
      const sent = messages.find(([name]) => name === 'client:sendHeaders')?.[1] as { headers: string; request: unknown; socket: { remoteAddress: string } }
      const created = messages.find(([name]) => name === 'request:create')?.[1] as { request: unknown }
      const [requestLine, ...rest] = sent.headers.split('\r\n')
      // undici announces `connection: keep-alive`, which hyper does not send (keep-alive is HTTP/1.1's default).
      const lines = rest.filter((l) => l !== '' && l !== 'connection: keep-alive').map((l) => l.toLowerCase()).sort()
      expect(sent.socket.remoteAddress).toBe('127.0.0.1')
      return { requestLine, lines, sameRequest: sent.request === created.request }
    }
    expect(head(runs.ours)).toEqual(head(runs.undici))
    expect(head(runs.ours)).toEqual({
      requestLine: 'DELETE /ok?q=1 HTTP/1.1',
      lines: [`host: 127.0.0.1:${server.port}`, 'multi: a', 'multi: b', 'x-one: 1'],
      sameRequest: true
    })
  })

  it("undici:client:sendHeaders over h2c lists the same fields as undici's H2CClient", async () => {
    const h2 = http2.createServer((_req, res) => res.end('ok'))
    const { origin, close } = await serve(h2, 'http')
    try {
      const runs = await bothAgents(
        async (dispatcher) => {
          const recording = listen(['client:sendHeaders'])
          try {
            await (await request(`${origin}/h2?x=1`, { dispatcher, headers: { 'x-one': '1' } })).body.text()
          } finally {
            recording.stop()
          }
          const sent = recording.messages[0][1] as { headers: string; socket: SocketSeen }
          return { lines: sent.headers.split('\r\n').filter((l) => l !== '').sort(), alpn: sent.socket.alpnProtocol }
        },
        [
          ['undici H2CClient', () => new H2CClient(origin)],
          ['reqwest-dispatcher Agent', () => new Agent({ h2c: true })]
        ]
      )
      expect(runs.ours).toEqual(runs.undici)
      expect(runs.ours).toEqual({
        lines: [`:authority: ${new URL(origin).host}`, ':method: GET', ':path: /h2?x=1', ':scheme: http', 'x-one: 1'],
        alpn: 'h2'
      })
    } finally {
      await close()
    }
  })

  it('a subscriber that joins after the request started gets a request object too', async () => {
    const dispatcher = new Agent()
    const recording = listen(['request:headers'])
    try {
      const pending = request(`${server.origin}/ok?late=1`, { dispatcher, headers: { 'X-Late': 'yes' } })
      await (await pending).body.text()
    } finally {
      recording.stop()
      await dispatcher.close()
    }
    const r = recording.messages[0][1].request as Record<string, unknown>
    expect({ origin: r.origin, method: r.method, path: r.path }).toEqual({ origin: server.origin, method: 'GET', path: '/ok?late=1' })
    // Without a create subscriber, the fields as sent: the caller's spelling, as undici keeps it.
    expect(r.headers).toEqual(['X-Late', 'yes'])
  })
})
