/**
 * Per-dispatch options with undici's names and validation, and request shapes beyond the basics: reset,
 * empty bodies, FormData, latin1 header values, responseHeaders: 'raw', legacy onBodySent/onRequestSent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Readable } from 'node:stream'
import { FormData as UndiciFormData, request, fetch as undiciFetch, type Dispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { agents, record, type Pair } from './helpers/differential'
import { echo, httpServer, type Running } from './helpers/servers'

let server: Running & { server: import('node:http').Server }
let sockets = 0
let pair: Pair
const agent = new Agent()

beforeAll(async () => {
  server = await httpServer(echo)
  server.server.on('connection', () => sockets++)
  pair = agents()
})

afterAll(async () => {
  await agent.close()
  await pair.close()
  await server.close()
})

const base = (): Dispatcher.DispatchOptions => ({ origin: server.origin, path: '/', method: 'GET' })

describe('option validation matches undici.Agent', () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['reset that is not a boolean', { reset: 'yes' }],
    ['expectContinue that is not a boolean', { expectContinue: 1 }],
    ['throwOnError (moved to an interceptor in undici 7)', { throwOnError: true }],
    ['maxRedirections (moved to an interceptor in undici 7)', { maxRedirections: 2 }],
    ['typeOfService out of range', { typeOfService: 300 }],
    ['upgrade that is not a string', { upgrade: 42 }],
    ['bodyTimeout that is not a number', { bodyTimeout: 'soon' }],
    ['a header object value', { headers: { 'x-obj': { nested: true } } }],
    ['an odd flat header array', { headers: ['x-one'] }],
    ['a duplicate host header', { headers: ['host', 'a', 'host', 'b'] }],
    ['an expect header', { headers: { expect: '100-continue' } }],
    ['a body of the wrong type', { method: 'POST', body: 42 }]
  ]
  it.each(cases)('%s', async (_name, override) => {
    const opts = { ...base(), ...override } as never
    const theirs = await record(pair.undici, opts, 'legacy')
    const ours = await record(pair.ours, opts, 'legacy')
    expect(ours).toEqual(theirs)
    expect(ours.transcript[0]).toMatch(/^onError (InvalidArgumentError|NotSupportedError)/)
  })

  it('idempotent, blocking, expectContinue and typeOfService are accepted', async () => {
    const opts = { ...base(), idempotent: false, blocking: true, expectContinue: false, typeOfService: 0 } as never
    const ours = await record(pair.ours, opts, 'controller')
    expect(ours.transcript.at(-1)).toBe('onResponseEnd {}')
  })
})

describe('request shapes', () => {
  it('reset: true sends connection: close and the next request opens a new connection', async () => {
    const fresh = new Agent()
    const before = sockets
    for (let i = 0; i < 2; i++) {
      const res = await request(`${server.origin}/`, { dispatcher: fresh, reset: true } as never)
      const echoed = (await res.body.json()) as { headers: Record<string, string> }
      expect(echoed.headers.connection).toBe('close')
    }
    expect(sockets - before).toBe(2)
    await fresh.close()
  })

  it('without reset, sequential requests reuse one connection', async () => {
    const fresh = new Agent()
    const before = sockets
    for (let i = 0; i < 3; i++) await (await request(`${server.origin}/`, { dispatcher: fresh })).body.text()
    expect(sockets - before).toBe(1)
    await fresh.close()
  })

  it('an empty string body on GET is no body, as with undici', async () => {
    const opts = { ...base(), body: '' } as never
    const theirs = await record(pair.undici, opts, 'controller')
    const ours = await record(pair.ours, opts, 'controller')
    const t = JSON.parse(theirs.body) as { headers: Record<string, string> }
    const o = JSON.parse(ours.body) as { headers: Record<string, string> }
    expect(o.headers['content-length']).toBe(t.headers['content-length'])
    expect(o.headers['content-length']).toBeUndefined()
  })

  it('a FormData body goes out as multipart with its boundary', async () => {
    const form = new FormData()
    form.append('field', 'value')
    form.append('file', new Blob(['file contents']), 'a.txt')
    const res = await request(`${server.origin}/`, { dispatcher: agent, method: 'POST', body: form as never })
    const echoed = (await res.body.json()) as { body: string; headers: Record<string, string> }
    const boundary = /boundary=(.+)$/.exec(echoed.headers['content-type'])?.[1]
    expect(boundary).toBeTruthy()
    expect(echoed.body).toContain(`--${boundary}`)
    expect(echoed.body).toContain('name="field"')
    expect(echoed.body).toContain('file contents')
  })

  it('FormData through fetch arrives the same way', async () => {
    // undici's fetch recognises its own FormData class (Node 20's global one belongs to Node's bundled undici).
    const form = new UndiciFormData()
    form.append('k', 'v')
    const res = await undiciFetch(`${server.origin}/`, { dispatcher: agent, method: 'POST', body: form })
    const echoed = (await res.json()) as { body: string; headers: Record<string, string> }
    expect(echoed.headers['content-type']).toMatch(/^multipart\/form-data; boundary=/)
    expect(echoed.body).toContain('name="k"')
  })

  it('a Buffer header value is refused, as undici 7 refuses any object value', async () => {
    const opts = { ...base(), headers: { 'x-buf': Buffer.from('caf\xe9', 'latin1') } } as never
    const theirs = await record(pair.undici, opts, 'controller')
    const ours = await record(pair.ours, opts, 'controller')
    expect(ours).toEqual(theirs)
    expect(ours.transcript).toEqual(['onResponseError InvalidArgumentError UND_ERR_INVALID_ARG'])
  })

  it('latin1 header values are sent as latin1', async () => {
    const res = await request(`${server.origin}/`, { dispatcher: agent, headers: { 'x-latin1': 'caf\xe9' } })
    const echoed = (await res.body.json()) as { headers: Record<string, string> }
    expect(Buffer.from(echoed.headers['x-latin1'], 'latin1')).toEqual(Buffer.from('caf\xe9', 'latin1'))
  })

  it("responseHeaders: 'raw' gives the raw header array through request()", async () => {
    const res = await request(`${server.origin}/`, { dispatcher: agent, responseHeaders: 'raw' } as never)
    const headers = res.headers as unknown as string[]
    expect(Array.isArray(headers)).toBe(true)
    expect(headers).toContain('content-type')
    await res.body.text()
  })

  it('adds no accept header of its own, as undici, and keeps the caller\'s', async () => {
    const opts = { ...base(), headers: {} } as never
    const theirs = JSON.parse((await record(pair.undici, opts, 'controller')).body) as { headers: Record<string, string> }
    const ours = JSON.parse((await record(pair.ours, opts, 'controller')).body) as { headers: Record<string, string> }
    expect(ours.headers.accept).toBe(theirs.headers.accept)
    expect(ours.headers.accept).toBeUndefined()
    const given = (await (await request(`${server.origin}/`, { dispatcher: agent, headers: { accept: 'text/plain' } })).body.json()) as {
      headers: Record<string, string>
    }
    expect(given.headers.accept).toBe('text/plain')
  })
})

describe('legacy onBodySent and onRequestSent', () => {
  function legacy(): { handler: Dispatcher.DispatchHandler; events: string[]; done: Promise<void> } {
    const events: string[] = []
    let finish!: () => void
    const done = new Promise<void>((r) => (finish = r))
    const handler = {
      onConnect() {},
      onBodySent(chunk: Uint8Array) {
        events.push(`bodySent ${Buffer.from(chunk).toString()}`)
      },
      onRequestSent() {
        events.push('requestSent')
      },
      onHeaders() {
        events.push('headers')
        return true
      },
      onData() {
        return true
      },
      onComplete() {
        events.push('complete')
        finish()
      },
      onError(err: Error) {
        events.push(`error ${err.message}`)
        finish()
      }
    } as unknown as Dispatcher.DispatchHandler
    return { handler, events, done }
  }

  it('a known-size body is reported sent before the response head', async () => {
    const { handler, events, done } = legacy()
    agent.dispatch({ ...base(), method: 'POST', body: 'hello' }, handler)
    await done
    expect(events).toEqual(['bodySent hello', 'requestSent', 'headers', 'complete'])
  })

  it('a streamed body reports each chunk, then the end', async () => {
    const { handler, events, done } = legacy()
    agent.dispatch({ ...base(), method: 'POST', body: Readable.from([Buffer.from('a'), Buffer.from('b')]) }, handler)
    await done
    expect(events).toEqual(['bodySent a', 'bodySent b', 'requestSent', 'headers', 'complete'])
  })
})
