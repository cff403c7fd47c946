/**
 * Requests made one at a time: with few requests in flight, a request on an idle kept-alive connection is
 * written from the JavaScript thread and its task waits, parked, for what it waits for (the response, a timeout,
 * an abort) before the runtime runs it. Each of those must still end the request as undici does.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errors, type Dispatcher } from 'undici'
import type * as net from 'node:net'
import { Agent } from 'reqwest-dispatcher'
import { httpServer, type Running } from './helpers/servers'

let server: Running & { server: import('node:http').Server }
/** Connections the server accepted, and those it saw close. */
const opened: net.Socket[] = []
const closed: net.Socket[] = []

beforeAll(async () => {
  server = await httpServer((req, res) => {
    // `/never` is never answered.
    if (req.url !== '/never') res.end(`ok ${req.url}`)
  })
  server.server.on('connection', (socket: net.Socket) => {
    opened.push(socket)
    socket.on('close', () => closed.push(socket))
  })
})

afterAll(async () => {
  await server.close()
})

interface Ended {
  events: string[]
  body: string
  error: Error | null
}

/** Dispatches one request; resolves with its callbacks in order once it ended. `then` runs right after dispatch. */
function request(agent: Agent, path: string, then?: (controller: Dispatcher.DispatchController) => void): Promise<Ended> {
  return new Promise((resolve) => {
    const ended: Ended = { events: [], body: '', error: null }
    agent.dispatch(
      { origin: server.origin, path, method: 'GET' },
      {
        onRequestStart(controller) {
          ended.events.push('start')
          if (then !== undefined) setImmediate(() => then(controller))
        },
        onResponseStart(_controller, status) {
          ended.events.push(`head ${status}`)
        },
        onResponseData(_controller, chunk) {
          ended.body += chunk.toString()
        },
        onResponseEnd() {
          ended.events.push('end')
          resolve(ended)
        },
        onResponseError(_controller, error) {
          ended.events.push('error')
          ended.error = error
          resolve(ended)
        }
      }
    )
  })
}

async function until(condition: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

describe('requests started on the JavaScript thread', () => {
  it('one at a time, on one kept-alive connection, with callbacks in order', async () => {
    const agent = new Agent()
    const before = opened.length
    for (let i = 0; i < 5; i++) {
      const ended = await request(agent, `/n${i}`)
      expect(ended).toEqual({ events: ['start', 'head 200', 'end'], body: `ok /n${i}`, error: null })
    }
    expect(opened.length - before).toBe(1)
    await agent.close()
  })

  it('an abort while the request waits for its response ends it and closes its connection', async () => {
    const agent = new Agent()
    await request(agent, '/warm')
    const socket = opened[opened.length - 1]
    const ended = await request(agent, '/never', (controller) => controller.abort(new Error('enough')))
    expect(ended.events).toEqual(['start', 'error'])
    expect(ended.error?.message).toBe('enough')
    // The core heard of the abort, though the request's task never ran on the runtime: the connection goes.
    await until(() => closed.includes(socket))
    // The next request takes a new connection, and works.
    expect((await request(agent, '/after')).body).toBe('ok /after')
    await agent.close()
  })

  it('headersTimeout fires for a request written on a pooled connection', async () => {
    const agent = new Agent({ headersTimeout: 150 })
    await request(agent, '/warm')
    const socket = opened[opened.length - 1]
    const ended = await request(agent, '/never')
    expect(ended.events).toEqual(['start', 'error'])
    expect(ended.error).toBeInstanceOf(errors.HeadersTimeoutError)
    await until(() => closed.includes(socket))
    await agent.close()
  })
})
