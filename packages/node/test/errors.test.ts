import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errors, request } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { undiciMajor } from './helpers/differential'
import { controllerHandler, legacyHandler } from './helpers/recorder'
import { closedPort, httpServer, rawServer, readHead, type Running } from './helpers/servers'

let server: Running
let stalling: Running
const agent = new Agent()

beforeAll(async () => {
  server = await httpServer((_req, res) => res.end('ok'))
  stalling = await rawServer(async (socket) => {
    const head = await readHead(socket)
    if (head.startsWith('GET /body')) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial')
    if (head.startsWith('GET /cut')) socket.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial')
    // GET /head: never answers
  })
})

afterAll(async () => {
  await agent.close()
  await server.close()
  await stalling.close()
})

describe('connection failures reach the handler', () => {
  it('connection refused arrives as an error with code ECONNREFUSED', async () => {
    const port = await closedPort()
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: `http://127.0.0.1:${port}`, path: '/', method: 'GET' }, handler)
    const rec = await done
    // As undici: no start callback without a connection.
    expect(rec.events).toEqual(['error'])
    expect((rec.error as NodeJS.ErrnoException).code).toBe('ECONNREFUSED')
    expect(rec.error?.message).toBe(`connect ECONNREFUSED 127.0.0.1:${port}`)
  })

  it('a DNS failure arrives as an error with code ENOTFOUND', async () => {
    const { handler, done } = legacyHandler()
    agent.dispatch({ origin: 'http://no-such-host.invalid', path: '/', method: 'GET' }, handler)
    const rec = await done
    expect(rec.events).toEqual(['error'])
    expect((rec.error as NodeJS.ErrnoException).code).toBe('ENOTFOUND')
  })

  it('undici.request rejects with the connection error', async () => {
    const port = await closedPort()
    await expect(request(`http://127.0.0.1:${port}/`, { dispatcher: agent })).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })
})

describe('timeouts and truncated responses map to undici error classes', () => {
  it('headersTimeout gives HeadersTimeoutError', async () => {
    const err = await request(`${stalling.origin}/head`, { dispatcher: agent, headersTimeout: 200 }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(errors.HeadersTimeoutError)
    expect((err as errors.UndiciError).code).toBe('UND_ERR_HEADERS_TIMEOUT')
  })

  it('bodyTimeout gives BodyTimeoutError', async () => {
    const res = await request(`${stalling.origin}/body`, { dispatcher: agent, bodyTimeout: 200 })
    const err = await res.body.text().catch((e: Error) => e)
    expect(err).toBeInstanceOf(errors.BodyTimeoutError)
  })

  it('a server closing mid-body gives SocketError', async () => {
    const res = await request(`${stalling.origin}/cut`, { dispatcher: agent })
    const err = await res.body.text().catch((e: Error) => e)
    expect(err).toBeInstanceOf(errors.SocketError)
  })

  it("SocketError carries the socket's addresses, as undici's does", async () => {
    const { Agent: UndiciAgent } = await import('undici')
    const reference = new UndiciAgent()
    const infos: Array<Record<string, unknown>> = []
    for (const dispatcher of [agent, reference]) {
      const res = await request(`${stalling.origin}/cut`, { dispatcher })
      const err = (await res.body.text().catch((e: Error) => e)) as InstanceType<typeof errors.SocketError>
      expect(err).toBeInstanceOf(errors.SocketError)
      infos.push({ ...err.socket })
    }
    const [ours, theirs] = infos
    for (const key of ['remoteAddress', 'remotePort', 'remoteFamily', 'localAddress'] as const) {
      expect(ours[key], key).toBe(theirs[key])
    }
    expect(ours.remotePort).toBe(stalling.port)
    expect(typeof ours.localPort).toBe('number')
    expect(ours.localPort).not.toBe(stalling.port)
    // The connection's counters, as undici's socket has them: the request written, the head and part read.
    for (const info of [ours, theirs]) {
      expect(info.bytesWritten as number).toBeGreaterThan(0)
      expect(info.bytesRead as number).toBeGreaterThan(0)
    }
    expect(ours.bytesWritten).toBe(theirs.bytesWritten)
    await reference.close()
  })
})

describe('invalid input is rejected with InvalidArgumentError, never a crash', () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['CRLF in a header value', { headers: { 'x-bad': 'a\r\nInjected: yes' } }],
    ['NUL in a header value', { headers: { 'x-bad': 'a\0b' } }],
    ['an invalid header name', { headers: { 'bad name': 'x' } }],
    ['an invalid method', { method: 'GE T' }],
    ['a path without a leading slash', { path: 'nope' }],
    ['a non-http origin', { origin: 'ftp://127.0.0.1' }],
    ['a negative headersTimeout', { headersTimeout: -1 }],
    ['a transfer-encoding header', { headers: { 'transfer-encoding': 'chunked' } }]
  ]
  it.each(cases)('%s', async (_name, override) => {
    const { handler, done } = legacyHandler()
    const result = agent.dispatch({ origin: server.origin, path: '/', method: 'GET', ...override } as never, handler)
    const rec = await done
    // As undici's Agent answers: true for a request it cannot build; for an origin the Agent itself refuses, false
    // on undici 7 and true on undici 8 (undici-versions.test.ts compares both).
    expect(result).toBe('origin' in override ? undiciMajor >= 8 : true)
    expect(rec.events).toEqual(['error'])
    expect(rec.error).toBeInstanceOf(errors.InvalidArgumentError)
  })

  it('an origin that is no URL fails with the URL parser\'s TypeError, as with undici', async () => {
    const { handler, done } = legacyHandler()
    const result = agent.dispatch({ origin: 'not a url', path: '/', method: 'GET' } as never, handler)
    const rec = await done
    // The agent refuses it itself: false on undici 7, true on undici 8 (undici-versions.test.ts).
    expect(result).toBe(undiciMajor >= 8)
    expect(rec.error).toBeInstanceOf(TypeError)
    expect((rec.error as { code?: string }).code).toBe('ERR_INVALID_URL')
  })

  it('a content-length that disagrees with the body gives RequestContentLengthMismatchError', async () => {
    const { handler, done } = legacyHandler()
    agent.dispatch({ origin: server.origin, path: '/', method: 'POST', body: 'abc', headers: { 'content-length': '10' } }, handler)
    expect((await done).error).toBeInstanceOf(errors.RequestContentLengthMismatchError)
  })

  it('invalid agent options throw InvalidArgumentError', () => {
    expect(() => new Agent({ headersTimeout: -5 })).toThrow(errors.InvalidArgumentError)
    expect(() => new Agent({ maxHeaderSize: 0 })).toThrow(errors.InvalidArgumentError)
    expect(() => new Agent({ allowH2: 'yes' as never })).toThrow(errors.InvalidArgumentError)
  })

  it('a handler that is not an object throws InvalidArgumentError', () => {
    expect(() => agent.dispatch({ origin: server.origin, path: '/', method: 'GET' }, null as never)).toThrow(errors.InvalidArgumentError)
  })
})
