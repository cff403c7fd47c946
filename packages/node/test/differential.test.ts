/**
 * The same scenarios against undici.Agent and against ours: what a handler observes must be the same.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Readable } from 'node:stream'
import { agents, record, type Outcome, type Pair, type Steering, type Style } from './helpers/differential'
import { closedPort, echo, httpServer, rawServer, readHead, type Running } from './helpers/servers'

let server: Running
let raw: Running
let pair: Pair
let refusedPort: number

beforeAll(async () => {
  server = await httpServer((req, res) => {
    const url = req.url ?? '/'
    if (url === '/cookies') {
      res.setHeader('set-cookie', ['a=1', 'b=2'])
      res.setHeader('X-Upper', 'Value')
      return void res.end('cookies')
    }
    if (url === '/missing') {
      res.statusCode = 404
      return void res.end('not here')
    }
    if (url === '/empty') {
      res.statusCode = 204
      return void res.end()
    }
    if (url === '/big') return void res.end(Buffer.alloc(1024 * 1024, 'x'))
    if (url === '/slow-body') {
      res.writeHead(200, { 'content-length': '10' })
      res.write('12345')
      return
    }
    // undici adds `connection: keep-alive` (COMPATIBILITY.md), which the echo leaves out; hyper writes `host`
    // after the caller's headers, undici before them: names are sorted to compare the rest.
    delete req.headers.connection
    req.headers = Object.fromEntries(Object.entries(req.headers).sort(([a], [b]) => a.localeCompare(b)))
    echo(req, res)
  })
  raw = await rawServer(async (socket) => {
    const head = await readHead(socket)
    const path = head.split(' ')[1]
    if (path === '/reason') socket.end('HTTP/1.1 200 Very Good\r\ncontent-length: 2\r\n\r\nok')
    else if (path === '/trailers') {
      socket.end(
        'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 42\r\n\r\n'
      )
    } else if (path === '/cut') socket.end('HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nonly this')
    // '/never': no answer at all
  })
  pair = agents()
  refusedPort = await closedPort()
})

afterAll(async () => {
  await pair.close()
  await server.close()
  await raw.close()
})

async function outcomes(opts: Record<string, unknown>, style: Style, steer?: Steering, use: Pair = pair): Promise<[Outcome, Outcome]> {
  const full = { method: 'GET', origin: server.origin, ...opts } as never
  const theirs = await record(use.undici, full, style, steer)
  const ours = await record(use.ours, full, style, steer)
  return [theirs, ours]
}

async function compare(opts: Record<string, unknown>, style: Style, steer?: Steering, use: Pair = pair): Promise<void> {
  const [theirs, ours] = await outcomes(opts, style, steer, use)
  expect(ours).toEqual(theirs)
}

/** For aborts: the callbacks must match; how many bytes arrived before the abort depends on chunk sizes. */
async function compareTranscripts(opts: Record<string, unknown>, style: Style, steer: Steering): Promise<void> {
  const [theirs, ours] = await outcomes(opts, style, steer)
  expect(ours.transcript).toEqual(theirs.transcript)
}

const styles: Style[] = ['controller', 'legacy']

describe.each(styles)('%s handler: same callbacks as undici.Agent', (style) => {
  it('GET with a body', () => compare({ path: '/hello' }, style))
  it('POST echoing a string body', () => compare({ path: '/echo', method: 'POST', body: 'payload' }, style))
  it('PUT with a Buffer body and custom headers', () =>
    compare({ path: '/echo', method: 'PUT', body: Buffer.from('buf'), headers: { 'x-a': 'b', 'x-list': ['1', '2'] } }, style))
  it('repeated set-cookie and mixed-case header names', () => compare({ path: '/cookies' }, style))
  it('404 with a body', () => compare({ path: '/missing' }, style))
  it('204 without a body', () => compare({ path: '/empty' }, style))
  it('HEAD', () => compare({ path: '/cookies', method: 'HEAD' }, style))
  it('a 1 MiB body', () => compare({ path: '/big' }, style))
  it('a non-canonical status message', () => compare({ origin: raw.origin, path: '/reason' }, style))
  it('chunked trailers', () => compare({ origin: raw.origin, path: '/trailers' }, style))
  it('a Readable request body', async () => {
    const theirs = await record(pair.undici, { origin: server.origin, path: '/', method: 'POST', body: Readable.from(['a', 'b']) }, style)
    const ours = await record(pair.ours, { origin: server.origin, path: '/', method: 'POST', body: Readable.from(['a', 'b']) }, style)
    expect(ours).toEqual(theirs)
  })
  it('connection refused: only the error callback, as undici (no start callback without a connection)', async () => {
    const [theirs, ours] = await outcomes({ origin: `http://127.0.0.1:${refusedPort}`, path: '/' }, style)
    expect(ours.transcript).toEqual(theirs.transcript)
    expect(ours.transcript.some((step) => step.startsWith('onConnect') || step.startsWith('onRequestStart'))).toBe(false)
  })
  it('headersTimeout', () => compare({ origin: raw.origin, path: '/never', headersTimeout: 150 }, style))
  it('bodyTimeout', () => compare({ path: '/slow-body', bodyTimeout: 150 }, style))
  it('the server closing mid-body', () => compare({ origin: raw.origin, path: '/cut' }, style))
  it('CRLF in a header value', () => compare({ path: '/', headers: { 'x-bad': 'a\r\nb: c' } }, style))
  it('an invalid method', () => compare({ path: '/', method: 'G(T' }, style))
  it('a path without a leading slash', () => compare({ path: 'relative' }, style))
  // A legacy handler without onUpgrade is refused; a controller-style one gets the server's plain answer.
  it('an upgrade request answered with a normal response', () => compare({ path: '/hello', upgrade: 'websocket' } as never, style))
  it('abort in the start callback', () =>
    compare({ path: '/hello' }, style, { onRequestStart: (c) => c.abort(new Error('stop early')) }))
  it('abort when headers arrive', () =>
    compareTranscripts({ path: '/big' }, style, { onResponseStart: (c) => c.abort(new Error('stop at headers')) }))
  it('abort mid-body', () =>
    compareTranscripts({ path: '/big' }, style, { onResponseData: (c) => c.abort(new Error('stop mid-body')) }))
})

describe('agent options, same as undici.Agent', () => {
  it('maxResponseSize exceeded', async () => {
    const limited = agents({ maxResponseSize: 1000 })
    try {
      await compare({ path: '/big' }, 'controller', undefined, limited)
      await compare({ path: '/big' }, 'legacy', undefined, limited)
    } finally {
      await limited.close()
    }
  })

  it('a closed agent refuses with ClientClosedError', async () => {
    const closed = agents()
    await Promise.all([closed.undici.close(), closed.ours.close()])
    await compare({ path: '/' }, 'legacy', undefined, closed)
    await compare({ path: '/' }, 'controller', undefined, closed)
  })

  it('a destroyed agent refuses with ClientDestroyedError', async () => {
    const destroyed = agents()
    await destroyed.close()
    await compare({ path: '/' }, 'legacy', undefined, destroyed)
  })
})
