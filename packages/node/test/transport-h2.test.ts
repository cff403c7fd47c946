/**
 * HTTP/2: `allowH2` (ALPN over TLS, off by default as in undici 7), multiplexing on one connection, h2c by prior
 * knowledge (`h2c: true`), trailers, RST_STREAM on abort and GOAWAY, against node:http2 servers.
 */
import http2 from 'node:http2'
import { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { H2CClient, request } from 'undici'
import type { Dispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { controllerHandler } from './helpers/recorder'
import { json } from './helpers/requests'
import { serve } from './helpers/servers'
import { makePki, type Pki } from './helpers/transport-certs'

let pki: Pki

beforeAll(() => {
  pki = makePki()
})

afterAll(() => pki?.cleanup())

interface H2Server {
  port: number
  origin: string
  /** HTTP/2 sessions the server saw. */
  sessions: () => number
  /** TCP connections the server accepted. */
  connections: () => number
  server: http2.Http2SecureServer | http2.Http2Server
  close(): Promise<void>
}

type Handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void

const describeRequest: Handler = (req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ httpVersion: req.httpVersion, method: req.method, path: req.url, body: Buffer.concat(chunks).toString() }))
  })
}

async function listen(server: http2.Http2SecureServer | http2.Http2Server, scheme: string): Promise<H2Server> {
  let sessions = 0
  let connections = 0
  server.on('session', () => sessions++)
  server.on('connection', () => connections++)
  const running = await serve(server, scheme)
  return { ...running, sessions: () => sessions, connections: () => connections }
}

function secureServer(handler: Handler = describeRequest, allowHTTP1 = true): Promise<H2Server> {
  const server = http2.createSecureServer({ cert: pki.server.cert, key: pki.server.key, allowHTTP1 }, handler)
  return listen(server, 'https')
}

function cleartextServer(handler: Handler = describeRequest): Promise<H2Server> {
  return listen(http2.createServer(handler), 'http')
}

describe('allowH2', () => {
  it('is off by default, as in undici 7: a server offering h2 is spoken to in HTTP/1.1', async () => {
    const server = await secureServer()
    const agent = new Agent({ connect: { ca: pki.ca.cert } })
    try {
      expect((await json(`${server.origin}/`, agent)).httpVersion).toBe('1.1')
      expect(server.sessions()).toBe(0)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('negotiates HTTP/2 through ALPN when true', async () => {
    const server = await secureServer()
    const agent = new Agent({ allowH2: true, connect: { ca: pki.ca.cert } })
    try {
      expect((await json(`${server.origin}/`, agent)).httpVersion).toBe('2.0')
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('falls back to HTTP/1.1 with a server that does not offer h2', async () => {
    const https = await import('node:https')
    const server = await serve(https.createServer({ cert: pki.server.cert, key: pki.server.key }, (req, res) => res.end(req.httpVersion)), 'https')
    const agent = new Agent({ allowH2: true, connect: { ca: pki.ca.cert } })
    try {
      const res = await request(`${server.origin}/`, { dispatcher: agent })
      expect(await res.body.text()).toBe('1.1')
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('multiplexes 100 concurrent requests to one origin on one connection', async () => {
    const server = await secureServer()
    const agent = new Agent({ allowH2: true, connect: { ca: pki.ca.cert } })
    try {
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) => json(`${server.origin}/r${i}`, agent))
      )
      expect(results.map((r) => r.path)).toEqual(Array.from({ length: 100 }, (_, i) => `/r${i}`))
      expect(results.every((r) => r.httpVersion === '2.0')).toBe(true)
      expect(server.sessions()).toBe(1)
      expect(server.connections()).toBe(1)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('streams a request body to an HTTP/2 origin', async () => {
    const server = await secureServer()
    const agent = new Agent({ allowH2: true, connect: { ca: pki.ca.cert } })
    try {
      const body = Readable.from(['a', 'b', 'c'].map((s) => Buffer.from(s.repeat(10_000))))
      const result = await json(`${server.origin}/upload`, agent, { method: 'POST', body })
      expect(result.httpVersion).toBe('2.0')
      expect(result.body).toBe('a'.repeat(10_000) + 'b'.repeat(10_000) + 'c'.repeat(10_000))
    } finally {
      await agent.close()
      await server.close()
    }
  })
})

describe('h2c (HTTP/2 over cleartext by prior knowledge)', () => {
  it('speaks HTTP/2 to a cleartext origin with h2c: true', async () => {
    const server = await cleartextServer()
    const agent = new Agent({ h2c: true })
    try {
      expect((await json(`${server.origin}/`, agent)).httpVersion).toBe('2.0')
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('shares one connection among 100 concurrent requests', async () => {
    const server = await cleartextServer()
    const agent = new Agent({ h2c: true })
    try {
      const results = await Promise.all(Array.from({ length: 100 }, (_, i) => json(`${server.origin}/c${i}`, agent)))
      expect(results.every((r) => r.httpVersion === '2.0')).toBe(true)
      expect(server.sessions()).toBe(1)
      expect(server.connections()).toBe(1)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it("reports an empty status message, as undici's H2CClient does (HTTP/2 carries no reason phrase)", async () => {
    const server = await cleartextServer()
    const agent = new Agent({ h2c: true })
    const reference = new H2CClient(server.origin)
    try {
      const statusOf = (d: Dispatcher): Promise<string | undefined> =>
        new Promise((resolve, reject) => {
          let text: string | undefined
          d.dispatch({ origin: server.origin, path: '/', method: 'GET' }, {
            onRequestStart() {},
            onResponseStart: (_c, _s, _h, statusMessage) => void (text = statusMessage),
            onResponseData() {},
            onResponseEnd: () => resolve(text),
            onResponseError: (_c, err) => reject(err)
          })
        })
      const theirs = await statusOf(reference)
      expect(await statusOf(agent)).toBe(theirs)
      expect(theirs).toBe('')
    } finally {
      await reference.close()
      await agent.close()
      await server.close()
    }
  })

  it('rejects a non-boolean h2c', () => {
    expect(() => new Agent({ h2c: 'yes' as unknown as boolean })).toThrow(/h2c/)
  })
})

describe('HTTP/2 streams', () => {
  it('delivers trailers to onResponseEnd', async () => {
    const server = await secureServer((_req, res) => {
      res.setHeader('content-type', 'text/plain')
      res.addTrailers({ 'x-checksum': 'abc123', 'x-count': '2' })
      res.end('body')
    }, false)
    const agent = new Agent({ allowH2: true, connect: { ca: pki.ca.cert } })
    try {
      const { handler, done } = controllerHandler()
      agent.dispatch({ origin: server.origin, path: '/', method: 'GET' }, handler)
      const rec = await done
      expect(rec.error).toBeUndefined()
      expect(rec.body.toString()).toBe('body')
      expect(rec.trailers).toEqual({ 'x-checksum': 'abc123', 'x-count': '2' })
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('aborting a request resets its stream (RST_STREAM CANCEL) and leaves the connection usable', async () => {
    let resetCode: number | undefined
    let resolveReset!: () => void
    const reset = new Promise<void>((resolve) => (resolveReset = resolve))
    const server = await secureServer((req, res) => {
      if (req.url === '/slow') {
        res.stream.on('close', () => {
          resetCode = res.stream.rstCode
          resolveReset()
        })
        res.writeHead(200)
        res.write('first chunk')
        return
      }
      describeRequest(req, res)
    }, false)
    const agent = new Agent({ allowH2: true, connect: { ca: pki.ca.cert } })
    try {
      const { handler, done } = controllerHandler({
        onResponseData(controller) {
          controller.abort(new Error('enough'))
        }
      })
      agent.dispatch({ origin: server.origin, path: '/slow', method: 'GET' }, handler)
      const rec = await done
      expect(rec.error?.message).toBe('enough')
      await reset
      expect(resetCode).toBe(http2.constants.NGHTTP2_CANCEL)
      expect((await json(`${server.origin}/after`, agent)).path).toBe('/after')
      expect(server.sessions()).toBe(1)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('a request the server refused in its GOAWAY (above the last stream id) is sent again on a new connection', async () => {
    // The server holds /first, and when /second arrives on the same connection answers with a graceful GOAWAY
    // naming /first as the last stream it processes: /second was never acted upon.
    let held: http2.ServerHttp2Stream | null = null
    const seen: string[] = []
    const server = http2.createServer()
    server.on('stream', (stream, headers) => {
      stream.on('error', () => {})
      const path = String(headers[':path'])
      seen.push(`${path} on ${stream.session?.socket?.remotePort}`)
      if (path === '/first') {
        held = stream
      } else if (path === '/second' && held !== null) {
        const first = held
        held = null
        stream.session?.goaway(http2.constants.NGHTTP2_NO_ERROR, first.id)
        first.respond({ ':status': 200 })
        first.end('first')
      } else {
        stream.respond({ ':status': 200 })
        stream.end(`${path} again`)
      }
    })
    const { origin, close } = await serve(server)
    const agent = new Agent({ h2c: true })
    try {
      const first = request(`${origin}/first`, { dispatcher: agent }).then((r) => r.body.text())
      await vi.waitFor(() => expect(held).not.toBeNull())
      // A POST: not idempotent, and still safe to send again, since the server did not process it.
      const second = request(`${origin}/second`, { dispatcher: agent, method: 'POST', body: 'payload' }).then((r) => r.body.text())
      expect(await first).toBe('first')
      expect(await second).toBe('/second again')
      expect(seen).toHaveLength(3)
      // The second attempt went on another connection (another client port).
      expect(seen[2].split(' on ')[1]).not.toBe(seen[1].split(' on ')[1])
    } finally {
      await agent.close()
      await close()
    }
  })

  it('after a GOAWAY, the next request goes on a new connection', async () => {
    const server = await secureServer((req, res) => {
      const session = req.stream.session
      describeRequest(req, res)
      if (req.url === '/bye') res.on('finish', () => session?.close())
    }, false)
    const agent = new Agent({ allowH2: true, connect: { ca: pki.ca.cert } })
    try {
      expect((await json(`${server.origin}/bye`, agent)).path).toBe('/bye')
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect((await json(`${server.origin}/again`, agent)).path).toBe('/again')
      expect(server.sessions()).toBe(2)
    } finally {
      await agent.close()
      await server.close()
    }
  })
})
