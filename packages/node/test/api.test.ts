import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fetch as undiciFetch, getGlobalDispatcher, request, setGlobalDispatcher, stream } from 'undici'
import { Writable } from 'node:stream'
import { Agent } from 'reqwest-dispatcher'
import { echo, httpServer, type Running } from './helpers/servers'

let server: Running
const agent = new Agent()

beforeAll(async () => {
  server = await httpServer((req, res) => {
    res.setHeader('set-cookie', ['s=1', 't=2'])
    echo(req, res)
  })
})

afterAll(async () => {
  await agent.close()
  await server.close()
})

describe('undici APIs over this Agent', () => {
  it('undici.request returns status, headers and body', async () => {
    const res = await request(`${server.origin}/r?q=1`, { dispatcher: agent, headers: { 'x-test': 'r' } })
    expect(res.statusCode).toBe(200)
    expect(res.headers['set-cookie']).toEqual(['s=1', 't=2'])
    const body = (await res.body.json()) as { url: string; headers: Record<string, string> }
    expect(body.url).toBe('/r?q=1')
    expect(body.headers['x-test']).toBe('r')
  })

  it('undici.request sends a POST body', async () => {
    const res = await request(`${server.origin}/p`, { dispatcher: agent, method: 'POST', body: 'posted' })
    const body = (await res.body.json()) as { method: string; body: string }
    expect(body).toMatchObject({ method: 'POST', body: 'posted' })
  })

  it('undici.stream writes the body into a Writable', async () => {
    const chunks: Buffer[] = []
    await stream<Buffer[]>(`${server.origin}/s`, { dispatcher: agent, method: 'GET', opaque: chunks }, ({ opaque }) =>
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          opaque.push(chunk)
          cb()
        }
      })
    )
    expect(JSON.parse(Buffer.concat(chunks).toString()).url).toBe('/s')
  })

  it('undici.fetch returns status, headers and body', async () => {
    const res = await undiciFetch(`${server.origin}/f`, { dispatcher: agent, method: 'PUT', body: 'fetched' })
    expect(res.status).toBe(200)
    expect(res.statusText).toBe('OK')
    expect(res.headers.getSetCookie()).toEqual(['s=1', 't=2'])
    const body = (await res.json()) as { method: string; body: string }
    expect(body).toMatchObject({ method: 'PUT', body: 'fetched' })
  })

  it("Node's global fetch goes through the Agent after setGlobalDispatcher", async () => {
    const previous = getGlobalDispatcher()
    let dispatched = 0
    const counting = new Agent()
    const original = counting.dispatch.bind(counting)
    counting.dispatch = (opts, handler) => {
      dispatched++
      return original(opts, handler)
    }
    setGlobalDispatcher(counting)
    try {
      const res = await globalThis.fetch(`${server.origin}/g`, {
        method: 'POST',
        body: new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode('web stream'))
            c.close()
          }
        }),
        duplex: 'half'
      } as RequestInit)
      expect(res.status).toBe(200)
      const body = (await res.json()) as { body: string; headers: Record<string, string> }
      expect(body.body).toBe('web stream')
      expect(body.headers['transfer-encoding']).toBe('chunked')
      expect(dispatched).toBe(1)
    } finally {
      setGlobalDispatcher(previous)
      await counting.close()
    }
  })
})
