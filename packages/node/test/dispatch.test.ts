import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent } from 'reqwest-dispatcher'
import { Agent as UndiciAgent } from 'undici'
import { controllerHandler, legacyHandler } from './helpers/recorder'
import { echo, httpServer, rawServer, readHead, type Running } from './helpers/servers'

let server: Running
let raw: Running
/** Response heads served one after the other on one connection by `/names/<index>`. */
const NAME_HEADS: Array<Array<[string, string]>> = [
  [['X-Name', 'a'], ['x-name2', 'b'], ['Dup', '1'], ['dup', '2']],
  [['x-name2', 'c'], ['X-Name', 'd']],
  [['X-Nam', 'e'], ['X-Name2', 'f'], ['X-NAME', 'g']],
  [['X-NAME', 'h'], ['x-name2', 'i'], ['Dup', '3'], ['dup', '4'], ['dup', '5']],
  [],
  [['X-Name', 'j'], ['x-name2', 'k'], ['Dup', '6'], ['dup', '7']]
]
const agent = new Agent()

beforeAll(async () => {
  server = await httpServer((req, res) => {
    if (req.url === '/cookies') {
      res.setHeader('Set-Cookie', ['a=1', 'b=2'])
      res.setHeader('X-Mixed-Case', 'yes')
      res.end('ok')
      return
    }
    echo(req, res)
  })
  raw = await rawServer(async (socket) => {
    const head = await readHead(socket)
    if (head.startsWith('GET /reason')) {
      socket.end('HTTP/1.1 299 Quite Fine\r\ncontent-length: 2\r\n\r\nhi')
    } else if (head.startsWith('GET /odd-headers')) {
      socket.end(
        Buffer.from(
          'HTTP/1.1 200 All Good Here\r\n__proto__: polluted\r\nx-empty: \r\nx-latin1: caf\xe9\r\n' +
            'x-rep: 1\r\nx-rep: 2\r\nx-rep: 3\r\ncontent-length: 2\r\n\r\nok',
          'latin1'
        )
      )
    } else if (head.startsWith('GET /names/')) {
      // Heads whose names differ from the previous head's in place, case, length or prefix.
      const fields = NAME_HEADS[Number(head.slice('GET /names/'.length, head.indexOf(' ', 4)))]
      socket.end(`HTTP/1.1 200 OK\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join('')}content-length: 2\r\nconnection: close\r\n\r\nok`)
    } else if (head.startsWith('GET /trailers')) {
      socket.end(
        'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n' +
          '5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n'
      )
    }
  })
})

afterAll(async () => {
  await agent.close()
  await server.close()
  await raw.close()
})

describe('controller-style handler', () => {
  it('receives start, headers, data and end in order with status, headers and body', async () => {
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: server.origin, path: '/hello?x=1', method: 'GET' }, handler)
    const rec = await done
    expect(rec.events[0]).toBe('start')
    expect(rec.events[1]).toBe('headers')
    expect(rec.events.at(-1)).toBe('end')
    expect(rec.statusCode).toBe(200)
    expect(rec.statusMessage).toBe('OK')
    expect(rec.headers?.['content-type']).toBe('application/json')
    const body = JSON.parse(rec.body.toString())
    expect(body.method).toBe('GET')
    expect(body.url).toBe('/hello?x=1')
  })

  it.each([
    ['POST', 'a string body'],
    ['PUT', Buffer.from('a buffer body')],
    ['DELETE', new TextEncoder().encode('a Uint8Array body')]
  ])('sends a %s request body and its content-length', async (method, payload) => {
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: server.origin, path: '/echo', method, body: payload }, handler)
    const rec = await done
    const body = JSON.parse(rec.body.toString())
    const text = typeof payload === 'string' ? payload : Buffer.from(payload).toString()
    expect(body.method).toBe(method)
    expect(body.body).toBe(text)
    expect(body.headers['content-length']).toBe(String(Buffer.byteLength(text)))
  })

  it('sends content-length: 0 for a POST without a body, as undici does', async () => {
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: server.origin, path: '/', method: 'POST' }, handler)
    const body = JSON.parse((await done).body.toString())
    expect(body.headers['content-length']).toBe('0')
  })

  it('gets no body for HEAD', async () => {
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: server.origin, path: '/', method: 'HEAD' }, handler)
    const rec = await done
    expect(rec.statusCode).toBe(200)
    expect(rec.body.length).toBe(0)
    expect(rec.events).not.toContain('data')
  })

  it('passes request headers given as object, flat array and iterable of pairs', async () => {
    const shapes = [
      { 'x-one': '1', 'x-list': ['a', 'b'], 'x-num': 3 },
      ['x-one', '1', 'x-list', 'a', 'x-list', 'b', 'x-num', '3'],
      new Map<string, string | string[]>([['x-one', '1'], ['x-list', ['a', 'b']], ['x-num', '3']])
    ]
    for (const headers of shapes) {
      const { handler, done } = controllerHandler()
      agent.dispatch({ origin: server.origin, path: '/', method: 'GET', headers: headers as never }, handler)
      const body = JSON.parse((await done).body.toString())
      expect(body.headers['x-one']).toBe('1')
      expect(body.headers['x-list']).toBe('a, b')
      expect(body.headers['x-num']).toBe('3')
    }
  })

  it('delivers repeated response headers as arrays under lower-case names', async () => {
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: server.origin, path: '/cookies', method: 'GET' }, handler)
    const rec = await done
    expect(rec.headers?.['set-cookie']).toEqual(['a=1', 'b=2'])
    expect(rec.headers?.['x-mixed-case']).toBe('yes')
    expect(Object.keys(rec.headers ?? {}).every((k) => k === k.toLowerCase())).toBe(true)
  })

  it('keeps the status message the server sent', async () => {
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: raw.origin, path: '/reason', method: 'GET' }, handler)
    const rec = await done
    expect(rec.statusCode).toBe(299)
    expect(rec.statusMessage).toBe('Quite Fine')
    expect(rec.body.toString()).toBe('hi')
  })

  it('delivers a __proto__ header, empty and latin1 values and a thrice repeated name as undici.Agent does', async () => {
    const reference = new UndiciAgent()
    try {
      const [ours, theirs] = await Promise.all(
        [agent, reference].map((dispatcher) => {
          const { handler, done } = controllerHandler()
          dispatcher.dispatch({ origin: raw.origin, path: '/odd-headers', method: 'GET' }, handler)
          return done
        })
      )
      expect(ours.statusMessage).toBe('All Good Here')
      expect(ours.statusMessage).toBe(theirs.statusMessage)
      const own = (headers: object | null | undefined): Array<[string, unknown]> => Object.entries(headers ?? {}).filter(([name]) => !['date', 'connection', 'keep-alive'].includes(name))
      expect(own(ours.headers)).toEqual(own(theirs.headers))
      expect(Object.getPrototypeOf(ours.headers)).toBe(Object.prototype)
      expect(ours.headers?.['x-rep']).toEqual(['1', '2', '3'])
    } finally {
      await reference.close()
    }
  })

  it('gives every head its own header names when one head follows another with other names', async () => {
    const reference = new UndiciAgent({ connections: 1 })
    const own = new Agent({ connections: 1 })
    try {
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < NAME_HEADS.length; i++) {
          const [ours, theirs] = await Promise.all(
            [own, reference].map((dispatcher) => {
              const { handler, done } = controllerHandler()
              dispatcher.dispatch({ origin: raw.origin, path: `/names/${i}`, method: 'GET' }, handler)
              return done
            })
          )
          expect(Object.entries(ours.headers ?? {})).toEqual(Object.entries(theirs.headers ?? {}))
          expect(ours.headers?.['content-length']).toBe('2')
        }
      }
    } finally {
      await own.close()
      await reference.close()
    }
  })

  it('delivers HTTP/1.1 chunked trailers to onResponseEnd', async () => {
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: raw.origin, path: '/trailers', method: 'GET' }, handler)
    const rec = await done
    expect(rec.body.toString()).toBe('hello')
    expect(rec.trailers).toEqual({ 'x-checksum': 'abc123' })
  })

  it('accepts origin as a URL object and appends query parameters', async () => {
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: new URL(server.origin), path: '/q', method: 'GET', query: { a: 1, b: 'x y' } }, handler)
    const body = JSON.parse((await done).body.toString())
    expect(body.url).toBe('/q?a=1&b=x%20y')
  })

  it('serializes query as undici does: spaces as %20, arrays repeated, and not onto a path with a query', async () => {
    const { request: undiciRequest, Agent: UndiciAgent } = await import('undici')
    const reference = new UndiciAgent()
    const query = { s: 'a b&c', list: [1, 2], empty: '', u: undefined as unknown as string }
    const seen: string[] = []
    for (const dispatcher of [agent, reference]) {
      const { body } = await undiciRequest(`${server.origin}/q`, { dispatcher, query })
      seen.push(((await body.json()) as { url: string }).url)
    }
    expect(seen[0]).toBe(seen[1])
    const errorsSeen: string[] = []
    for (const dispatcher of [agent, reference]) {
      const err = await undiciRequest(`${server.origin}/q?x=1`, { dispatcher, query }).catch((e: Error) => e)
      errorsSeen.push((err as Error).message)
    }
    expect(errorsSeen[0]).toBe(errorsSeen[1])
    await reference.close()
  })
})

describe('legacy handler', () => {
  it('receives onConnect, onHeaders with raw Buffers and status text, onData and onComplete', async () => {
    const { handler, done } = legacyHandler()
    agent.dispatch({ origin: server.origin, path: '/cookies', method: 'GET' }, handler)
    const rec = await done
    expect(rec.events[0]).toBe('connect')
    expect(rec.events[1]).toBe('headers')
    expect(rec.events.at(-1)).toBe('complete')
    expect(rec.statusCode).toBe(200)
    expect(rec.statusMessage).toBe('OK')
    expect(rec.rawHeaders?.every((b) => Buffer.isBuffer(b))).toBe(true)
    const names = rec.rawHeaders?.filter((_, i) => i % 2 === 0).map((b) => b.toString())
    // Raw names as the server spelled them (node:http writes `Set-Cookie`), as undici hands them over.
    expect(names?.filter((n) => n === 'Set-Cookie').length).toBe(2)
    expect(rec.body.toString()).toBe('ok')
    expect(rec.trailers).toEqual([])
  })

  it('delivers trailers to onComplete as raw Buffers', async () => {
    const { handler, done } = legacyHandler()
    agent.dispatch({ origin: raw.origin, path: '/trailers', method: 'GET' }, handler)
    const rec = await done
    expect((rec.trailers as Buffer[]).map((b) => b.toString())).toEqual(['x-checksum', 'abc123'])
  })

  it('pauses when onData returns false and finishes the body after resume', async () => {
    const big = await httpServer((_req, res) => res.end(Buffer.alloc(4 * 1024 * 1024, 7)))
    let paused = 0
    let resumeLater: (() => void) | undefined
    const { handler, done } = legacyHandler({
      onData: () => {
        if (paused === 0) {
          paused++
          setTimeout(() => resumeLater?.(), 50)
          return false
        }
        return true
      }
    })
    const wrapped = {
      ...handler,
      onHeaders(status: number, raw: Buffer[], resume: () => void, text: string) {
        resumeLater = resume
        return (handler as unknown as { onHeaders: (...a: unknown[]) => boolean }).onHeaders(status, raw, resume, text)
      }
    } as unknown as typeof handler
    agent.dispatch({ origin: big.origin, path: '/', method: 'GET' }, wrapped)
    const rec = await done
    expect(paused).toBe(1)
    expect(rec.body.length).toBe(4 * 1024 * 1024)
    expect(rec.body.every((b) => b === 7)).toBe(true)
    await big.close()
  })
})
