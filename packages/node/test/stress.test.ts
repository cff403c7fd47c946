/**
 * 1000 concurrent requests of mixed fates (plain, aborted at three points, paused and resumed, timing out) all
 * end with a valid callback sequence, and nothing is left behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errors, type Dispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { httpServer, type Running } from './helpers/servers'

let server: Running

beforeAll(async () => {
  server = await httpServer((req, res) => {
    if (req.url === '/slow') return void setTimeout(() => res.end('slow'), 1500)
    if (req.url === '/big') return void res.end(Buffer.alloc(256 * 1024, 2))
    res.end('fast')
  })
})

afterAll(async () => {
  await server.close()
})

type Fate = 'plain' | 'abort-start' | 'abort-headers' | 'abort-data' | 'pause' | 'timeout'
const FATES: Fate[] = ['plain', 'abort-start', 'abort-headers', 'abort-data', 'pause', 'timeout']
const VALID = /^start(?: headers(?: data)*)? (?:end|error)$/

function run(agent: Agent, fate: Fate): Promise<{ fate: Fate; sequence: string; error?: Error; bytes: number }> {
  return new Promise((resolve) => {
    const events: string[] = []
    let bytes = 0
    let ended = false
    const finish = (error?: Error): void => {
      if (ended) events.push('AFTER-END')
      ended = true
      // Anything arriving after the end would show up in the sequence.
      setTimeout(() => resolve({ fate, sequence: events.join(' ').replace(/(?: data)+/g, ' data'), error, bytes }), 20)
    }
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(controller) {
        events.push('start')
        if (fate === 'abort-start') controller.abort(new Error('abort-start'))
      },
      onResponseStart(controller) {
        events.push('headers')
        if (fate === 'abort-headers') controller.abort(new Error('abort-headers'))
      },
      onResponseData(controller, chunk) {
        events.push('data')
        bytes += chunk.length
        if (fate === 'abort-data') controller.abort(new Error('abort-data'))
        if (fate === 'pause' && !controller.paused && bytes < 256 * 1024) {
          controller.pause()
          setTimeout(() => controller.resume(), 5)
        }
      },
      onResponseEnd() {
        events.push('end')
        finish()
      },
      onResponseError(_c, error) {
        events.push('error')
        finish(error)
      }
    }
    const path = fate === 'timeout' ? '/slow' : fate === 'plain' ? '/' : '/big'
    agent.dispatch({ origin: server.origin, path, method: 'GET', headersTimeout: fate === 'timeout' ? 200 : undefined }, handler)
  })
}

describe('1000 concurrent mixed requests', () => {
  it('each ends with a valid callback sequence and its expected outcome; nothing leaks', async () => {
    const resourcesBefore = process.getActiveResourcesInfo().filter((r) => r !== 'Timeout').length
    const agent = new Agent()
    const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => run(agent, FATES[i % FATES.length])))
    for (const r of results) {
      // A timeout may come while the request's connection is still being opened (headersTimeout covers the
      // connect here): then, as for any failure before a connection is assigned, only the error callback runs.
      if (r.fate !== 'timeout' || r.sequence !== 'error') expect(r.sequence, `${r.fate}: ${r.sequence}`).toMatch(VALID)
      switch (r.fate) {
        case 'plain':
          expect(r.sequence).toBe('start headers data end')
          expect(r.bytes).toBe(4)
          break
        case 'pause':
          expect(r.sequence).toBe('start headers data end')
          expect(r.bytes).toBe(256 * 1024)
          break
        case 'timeout':
          expect(r.error).toBeInstanceOf(errors.HeadersTimeoutError)
          break
        default:
          expect(r.error?.message).toBe(r.fate)
          expect(r.sequence.endsWith('error')).toBe(true)
      }
    }
    await agent.close()
    expect(agent.destroyed).toBe(true)
    // Connections close asynchronously once the pool is dropped: allow them a moment, then nothing may remain.
    let remaining: string[] = []
    for (let i = 0; i < 60; i++) {
      remaining = process.getActiveResourcesInfo().filter((r) => r !== 'Timeout')
      if (remaining.length <= resourcesBefore) break
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(remaining.length, remaining.join(',')).toBeLessThanOrEqual(resourcesBefore)
  })
})
