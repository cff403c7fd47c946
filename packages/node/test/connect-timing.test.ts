/**
 * When `onConnect`/`onRequestStart` runs: as undici, once a connection is assigned to the request and before
 * anything of it is written. So an abort there sends nothing, a connection failure calls only the error callback,
 * and a request queued behind the `connections` cap starts once a connection is free. Each scenario runs on
 * `undici.Agent` and on ours.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import diagnostics from 'node:diagnostics_channel'
import net from 'node:net'
import { fetch as undiciFetch, type Dispatcher } from 'undici'
import { Agent, ProxyAgent } from 'reqwest-dispatcher'
import { undiciAgent } from './helpers/differential'
import { controllerHandler, legacyHandler } from './helpers/recorder'
import { closedPort, serve, type Running } from './helpers/servers'

/** Bytes every connection to `server` sent, and the request lines it read. */
let received = 0
let requests: string[] = []
let server: Running
let refusedPort: number
/** Answers still held back (`/slow`), released by `release()`. */
let held: Array<() => void> = []
let flaky = 0

function answer(socket: net.Socket, body: string, status = '200 OK'): void {
  socket.write(`HTTP/1.1 ${status}\r\ncontent-length: ${body.length}\r\nkeep-alive: timeout=5\r\n\r\n${body}`)
}

beforeAll(async () => {
  // A raw server: it counts every byte it receives, so "nothing was sent" is checked on the wire.
  server = await serve(
    net.createServer((socket) => {
      socket.on('error', () => {})
      let buffered = ''
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length
        buffered += chunk.toString('latin1')
        for (;;) {
          const end = buffered.indexOf('\r\n\r\n')
          if (end < 0) return
          const head = buffered.slice(0, end)
          const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0)
          if (buffered.length < end + 4 + length) return
          buffered = buffered.slice(end + 4 + length)
          const line = head.split('\r\n')[0]
          requests.push(line)
          const path = line.split(' ')[1]
          if (path === '/slow') held.push(() => answer(socket, 'slow'))
          else if (path === '/flaky' && flaky++ === 0) answer(socket, 'busy', '503 Service Unavailable')
          else answer(socket, 'ok')
        }
      })
    })
  )
  refusedPort = await closedPort()
})

afterAll(() => server.close())

function reset(): void {
  received = 0
  requests = []
  held = []
  flaky = 0
}

function release(): void {
  for (const send of held.splice(0)) send()
}

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
}

type Make = (options?: Record<string, unknown>) => Dispatcher
const implementations: Array<[string, Make]> = [
  // undici 8's Agent refuses legacy handlers: those go to undici 7's there (helpers/differential.ts).
  ['undici', (options) => undiciAgent(options)],
  ['ours', (options) => new Agent(options)]
]

describe.each(implementations)('%s', (_name, make) => {
  it('abort in onConnect of a request without a connection yet: nothing reaches the server (POST with a body)', async () => {
    reset()
    const agent = make()
    try {
      const { handler, done } = legacyHandler({ onConnect: (abort) => abort(new Error('stop')) })
      agent.dispatch({ origin: server.origin, path: '/count', method: 'POST', body: 'payload' }, handler)
      const recorded = await done
      expect(recorded.events).toEqual(['connect', 'error'])
      expect(recorded.error?.message).toBe('stop')
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(received).toBe(0)
    } finally {
      await agent.close()
    }
  })

  it('abort in onRequestStart on a pooled connection: nothing more reaches the server', async () => {
    reset()
    const agent = make()
    try {
      const first = controllerHandler()
      agent.dispatch({ origin: server.origin, path: '/first', method: 'GET' }, first.handler)
      expect((await first.done).events).toEqual(['start', 'headers', 'data', 'end'])
      const bytes = received
      const second = controllerHandler({ onRequestStart: (controller) => controller.abort(new Error('stop')) })
      agent.dispatch({ origin: server.origin, path: '/count', method: 'POST', body: 'payload' }, second.handler)
      expect((await second.done).events).toEqual(['start', 'error'])
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(received).toBe(bytes)
      expect(requests).toEqual(['GET /first HTTP/1.1'])
    } finally {
      await agent.close()
    }
  })

  it('connection refused: only the error callback, both styles', async () => {
    const agent = make()
    try {
      const legacy = legacyHandler()
      agent.dispatch({ origin: `http://127.0.0.1:${refusedPort}`, path: '/', method: 'GET' }, legacy.handler)
      expect((await legacy.done).events).toEqual(['error'])
      const controller = controllerHandler()
      agent.dispatch({ origin: `http://127.0.0.1:${refusedPort}`, path: '/', method: 'POST', body: 'x' }, controller.handler)
      expect((await controller.done).events).toEqual(['error'])
    } finally {
      await agent.close()
    }
  })

  it('behind `connections: 1`, the second request starts once the first finished', async () => {
    reset()
    const agent = make({ connections: 1 })
    const log: string[] = []
    const logged = (name: string): Dispatcher.DispatchHandler => ({
      onRequestStart: () => void log.push(`${name} start`),
      onResponseStart: () => {},
      onResponseData: () => {},
      onResponseEnd: () => void log.push(`${name} end`),
      onResponseError: () => void log.push(`${name} error`)
    })
    try {
      agent.dispatch({ origin: server.origin, path: '/slow', method: 'GET' }, logged('a'))
      agent.dispatch({ origin: server.origin, path: '/next', method: 'GET' }, logged('b'))
      await until(() => held.length === 1)
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(log).toEqual(['a start'])
      release()
      await until(() => log.length === 4)
      expect(log).toEqual(['a start', 'a end', 'b start', 'b end'])
      expect(requests).toEqual(['GET /slow HTTP/1.1', 'GET /next HTTP/1.1'])
    } finally {
      release()
      await agent.close()
    }
  })

  it('fetch aborted while waiting for a connection ends at once, and its request is never sent', async () => {
    reset()
    const agent = make({ connections: 1 })
    try {
      const slow = undiciFetch(`${server.origin}/slow`, { dispatcher: agent }).then((res) => res.text())
      await until(() => held.length === 1)
      const signal = AbortSignal.timeout(20)
      const aborted = await undiciFetch(`${server.origin}/aborted`, { dispatcher: agent, signal }).then(
        () => 'answered',
        (err: Error) => err.name
      )
      expect(aborted).toBe('TimeoutError')
      // The first request still waits for its answer: the abort did not.
      expect(held).toHaveLength(1)
      release()
      expect(await slow).toBe('slow')
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(requests).toEqual(['GET /slow HTTP/1.1'])
    } finally {
      release()
      await agent.close()
    }
  })

  it('diagnostics: `undici:client:connected`, then the start callback, then `undici:client:sendHeaders`', async () => {
    reset()
    const agent = make()
    const log: string[] = []
    const connected = (): void => void log.push('connected')
    const sent = (): void => void log.push('sendHeaders')
    diagnostics.subscribe('undici:client:connected', connected)
    diagnostics.subscribe('undici:client:sendHeaders', sent)
    try {
      const { handler, done } = controllerHandler({ onRequestStart: () => void log.push('start') })
      agent.dispatch({ origin: server.origin, path: '/', method: 'GET' }, handler)
      expect((await done).events).toEqual(['start', 'headers', 'data', 'end'])
      expect(log).toEqual(['connected', 'start', 'sendHeaders'])
    } finally {
      diagnostics.unsubscribe('undici:client:connected', connected)
      diagnostics.unsubscribe('undici:client:sendHeaders', sent)
      await agent.close()
    }
  })

  it('paused in the start callback of a request without a connection: its body waits for resume()', async () => {
    reset()
    const agent = make()
    let resumedAt = 0
    let dataAt = 0
    try {
      const { handler, done } = controllerHandler({
        onRequestStart: (controller) => {
          controller.pause()
          setTimeout(() => {
            resumedAt = Date.now()
            controller.resume()
          }, 100)
        },
        onResponseData: () => void (dataAt = Date.now())
      })
      agent.dispatch({ origin: server.origin, path: '/', method: 'GET' }, handler)
      const recorded = await done
      expect(recorded.events).toEqual(['start', 'headers', 'data', 'end'])
      expect(recorded.body.toString()).toBe('ok')
      expect(resumedAt).toBeGreaterThan(0)
      expect(dataAt).toBeGreaterThanOrEqual(resumedAt)
    } finally {
      await agent.close()
    }
  })

  it('an upgrade aborted in onConnect sends nothing', async () => {
    reset()
    const agent = make()
    try {
      const { handler, done } = legacyHandler({ onConnect: (abort) => abort(new Error('stop')) })
      ;(handler as { onUpgrade?: () => void }).onUpgrade = () => {}
      agent.dispatch({ origin: server.origin, path: '/ws', method: 'GET', upgrade: 'websocket' }, handler)
      expect((await done).events).toEqual(['connect', 'error'])
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(received).toBe(0)
    } finally {
      await agent.close()
    }
  })
})

describe('ours only', () => {
  it('retry policy: the start callback runs once per dispatch, retryCount counts the retries', async () => {
    reset()
    const agent = new Agent({ retry: { minTimeout: 1 } })
    try {
      const starts: number[] = []
      const { handler, done } = controllerHandler({
        onRequestStart: (_controller, context) => void starts.push((context as { retryCount: number }).retryCount)
      })
      let context: { retryCount: number } | undefined
      const wrapped: Dispatcher.DispatchHandler = {
        ...handler,
        onRequestStart(controller, ctx) {
          context = ctx as { retryCount: number }
          handler.onRequestStart?.(controller, ctx)
        }
      }
      agent.dispatch({ origin: server.origin, path: '/flaky', method: 'GET' }, wrapped)
      const recorded = await done
      expect(recorded.statusCode).toBe(200)
      expect(recorded.events.filter((event) => event === 'start')).toHaveLength(1)
      expect(starts).toEqual([0])
      expect(context?.retryCount).toBe(1)
      expect(requests).toEqual(['GET /flaky HTTP/1.1', 'GET /flaky HTTP/1.1'])
    } finally {
      await agent.close()
    }
  })

  it('retry policy on a refused connection: every attempt fails before a connection, only the error callback', async () => {
    const agent = new Agent({ retry: { maxRetries: 2, minTimeout: 1 } })
    try {
      const { handler, done } = legacyHandler()
      agent.dispatch({ origin: `http://127.0.0.1:${refusedPort}`, path: '/', method: 'GET' }, handler)
      const recorded = await done
      expect(recorded.events).toEqual(['error'])
      expect((recorded.error as Error & { code?: string }).code).toBe('ECONNREFUSED')
      expect(agent.metrics()).toMatch(/reqwest_dispatcher_retries_total\{[^}]*\} 2/)
    } finally {
      await agent.close()
    }
  })

  it('an open circuit refuses a request before any connection: only the error callback, though a connection is free', async () => {
    reset()
    const agent = new Agent({ circuitBreaker: { minimumRequests: 2, threshold: 0.5, halfOpenAfter: 60_000 } })
    const states: string[] = []
    agent.on('circuitStateChange', (_origin, state) => states.push(state))
    try {
      for (let i = 0; i < 2; i++) {
        flaky = 0
        const { handler, done } = controllerHandler()
        agent.dispatch({ origin: server.origin, path: '/flaky', method: 'GET' }, handler)
        expect((await done).statusCode).toBe(503)
      }
      await until(() => states.length === 1)
      expect(states).toEqual(['open'])
      const { handler, done } = legacyHandler()
      agent.dispatch({ origin: server.origin, path: '/', method: 'GET' }, handler)
      const recorded = await done
      expect(recorded.events).toEqual(['error'])
      expect((recorded.error as Error & { code?: string }).code).toBe('UND_ERR_CIRCUIT_OPEN')
    } finally {
      await agent.close()
    }
  })

  it('a burst on a new origin: each request starts once it has its connection, all are answered', async () => {
    reset()
    const agent = new Agent()
    try {
      const runs = Array.from({ length: 20 }, (_, i) => {
        const { handler, done } = controllerHandler()
        agent.dispatch({ origin: server.origin, path: `/burst/${i}`, method: 'GET' }, handler)
        return done
      })
      for (const recorded of await Promise.all(runs)) expect(recorded.events).toEqual(['start', 'headers', 'data', 'end'])
      expect(requests).toHaveLength(20)
    } finally {
      await agent.close()
    }
  })

  it('ProxyAgent: the start callback still comes before connecting (COMPATIBILITY.md)', async () => {
    const agent = new ProxyAgent(`http://127.0.0.1:${refusedPort}`)
    try {
      const { handler, done } = legacyHandler()
      agent.dispatch({ origin: server.origin, path: '/', method: 'GET' }, handler)
      expect((await done).events).toEqual(['connect', 'error'])
    } finally {
      await agent.close()
    }
  })
})
