import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { controllerHandler } from './helpers/recorder'
import { echo, httpServer, type Running } from './helpers/servers'

let server: Running
const agent = new Agent()

beforeAll(async () => {
  server = await httpServer(echo)
})

afterAll(async () => {
  await agent.close()
  await server.close()
})

describe('request bodies pulled from streams', () => {
  it('uploads a Readable of unknown length with chunked encoding', async () => {
    const body = Readable.from(['one,', 'two,', 'three'].map((s) => Buffer.from(s)))
    const res = await request(`${server.origin}/`, { dispatcher: agent, method: 'POST', body })
    const echoed = (await res.body.json()) as { body: string; headers: Record<string, string> }
    expect(echoed.body).toBe('one,two,three')
    expect(echoed.headers['transfer-encoding']).toBe('chunked')
  })

  it('uploads an async iterable with a declared content-length', async () => {
    async function* gen(): AsyncGenerator<string> {
      yield 'abc'
      yield 'def'
    }
    const res = await request(`${server.origin}/`, {
      dispatcher: agent,
      method: 'PUT',
      body: gen() as never,
      headers: { 'content-length': '6' }
    })
    const echoed = (await res.body.json()) as { body: string; headers: Record<string, string> }
    expect(echoed.body).toBe('abcdef')
    expect(echoed.headers['content-length']).toBe('6')
  })

  it('uploads a Blob', async () => {
    const res = await request(`${server.origin}/`, { dispatcher: agent, method: 'POST', body: new Blob(['blob body']) as never })
    expect(((await res.body.json()) as { body: string }).body).toBe('blob body')
  })

  it('fails the request with the error of a body stream that errors', async () => {
    const failure = new Error('source broke')
    const body = new Readable({
      read() {
        this.push('start')
        this.destroy(failure)
      }
    })
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: server.origin, path: '/', method: 'POST', body }, handler)
    const rec = await done
    expect(rec.error).toBe(failure)
  })

  it('streams a 16 MiB upload through the pull path intact', async () => {
    const total = 16 * 1024 * 1024
    let sent = 0
    const body = new Readable({
      read() {
        if (sent >= total) return void this.push(null)
        const chunk = Buffer.alloc(64 * 1024, sent / (64 * 1024))
        sent += chunk.length
        this.push(chunk)
      }
    })
    const counter = await httpServer((req, res) => {
      let n = 0
      req.on('data', (c: Buffer) => (n += c.length))
      req.on('end', () => res.end(String(n)))
    })
    const res = await request(`${counter.origin}/`, { dispatcher: agent, method: 'POST', body })
    expect(await res.body.text()).toBe(String(total))
    await counter.close()
  })
})

describe('large uploads', () => {
  it('a 1 GiB upload of unknown length streams with bounded memory', async () => {
    const total = 1024 * 1024 * 1024
    const chunk = Buffer.alloc(256 * 1024, 0x5a)
    let produced = 0
    let peakRss = 0
    const baseline = process.memoryUsage().rss
    const body = new Readable({
      read() {
        if (produced >= total) return void this.push(null)
        produced += chunk.length
        if ((produced & (64 * 1024 * 1024 - 1)) === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss)
        this.push(chunk)
      }
    })
    const counter = await httpServer((req, res) => {
      let n = 0
      req.on('data', (c: Buffer) => (n += c.length))
      req.on('end', () => res.end(String(n)))
    })
    const res = await request(`${counter.origin}/`, { dispatcher: agent, method: 'PUT', body })
    expect(await res.body.text()).toBe(String(total))
    // The whole gigabyte passed through; the client never held more than a few chunks of it.
    expect(peakRss - baseline).toBeLessThan(128 * 1024 * 1024)
    await counter.close()
  }, 60_000)
})

describe('pause and resume', () => {
  it('a paused response resumes and arrives intact', async () => {
    const size = 8 * 1024 * 1024
    const big = await httpServer((_req, res) => res.end(Buffer.alloc(size, 1)))
    let pausedOnce = false
    const { handler, done } = controllerHandler({
      onResponseData(controller) {
        if (!pausedOnce) {
          pausedOnce = true
          controller.pause()
          expect(controller.paused).toBe(true)
          setTimeout(() => controller.resume(), 100)
        }
      }
    })
    agent.dispatch({ origin: big.origin, path: '/', method: 'GET' }, handler)
    const rec = await done
    expect(rec.body.length).toBe(size)
    expect(rec.controller?.paused).toBe(false)
    await big.close()
  })

  it('abort mid-body reports exactly the given reason and nothing after it', async () => {
    const big = await httpServer((_req, res) => res.end(Buffer.alloc(8 * 1024 * 1024, 1)))
    const reason = new Error('enough')
    const { handler, done } = controllerHandler({
      onResponseData(controller) {
        controller.abort(reason)
      }
    })
    agent.dispatch({ origin: big.origin, path: '/', method: 'GET' }, handler)
    const rec = await done
    expect(rec.error).toBe(reason)
    expect(rec.controller?.aborted).toBe(true)
    expect(rec.controller?.reason).toBe(reason)
    await new Promise((r) => setTimeout(r, 50))
    expect(rec.events.filter((e) => e === 'data').length).toBe(1)
    expect(rec.events.at(-1)).toBe('error')
    await big.close()
  })
})

describe('large response chunks', () => {
  it('arrive intact, large ones as Buffers of their own (handed over from Rust without a copy)', async () => {
    const size = 8 * 1024 * 1024
    const pattern = Buffer.alloc(size)
    for (let i = 0; i < size; i += 4) pattern.writeUInt32LE((i * 2654435761) >>> 0, i)
    const big = await httpServer((_req, res) => {
      res.setHeader('content-length', size)
      res.end(pattern)
    })
    const agent = new Agent()
    try {
      const chunks: Buffer[] = []
      await new Promise<void>((resolve, reject) => {
        agent.dispatch({ origin: big.origin, path: '/', method: 'GET' }, {
          onRequestStart() {},
          onResponseStart() {},
          onResponseData(_controller, chunk) {
            chunks.push(chunk)
          },
          onResponseEnd: () => resolve(),
          onResponseError: (_controller, err) => reject(err)
        })
      })
      expect(Buffer.concat(chunks).equals(pattern)).toBe(true)
      const own = chunks.filter((c) => c.length >= 64 * 1024 && c.byteOffset === 0 && c.buffer.byteLength === c.length)
      expect(own.length).toBeGreaterThan(0)
    } finally {
      await agent.close()
      await big.close()
    }
  })
})
