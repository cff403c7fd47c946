/**
 * dispatch()'s return value and the `drain` event, as undici's Agent gives them when `connections` caps an origin.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent as UndiciAgent, errors, type Dispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { httpServer, type Running } from './helpers/servers'

let server: Running

beforeAll(async () => {
  server = await httpServer((_req, res) => setTimeout(() => res.end('ok'), 50))
})

afterAll(async () => {
  await server.close()
})

function sink(onDone: () => void): Dispatcher.DispatchHandler {
  return { onResponseEnd: onDone, onResponseError: onDone, onRequestStart() {}, onResponseStart() {}, onResponseData() {} }
}

/** Dispatches `n` requests; records dispatch()'s answers and the drain events. */
async function saturate(dispatcher: Dispatcher, n: number): Promise<{ answers: boolean[]; drains: unknown[][] }> {
  const drains: unknown[][] = []
  dispatcher.on('drain', (...args: unknown[]) => drains.push(args))
  const answers: boolean[] = []
  let left = n
  await new Promise<void>((resolve) => {
    for (let i = 0; i < n; i++) {
      answers.push(dispatcher.dispatch({ origin: server.origin, path: '/', method: 'GET' }, sink(() => --left === 0 && resolve())))
    }
  })
  return { answers, drains }
}

describe('saturation and drain', () => {
  it('with connections: 2, the 2nd dispatch answers false and drain follows, as with undici', async () => {
    const theirs = new UndiciAgent({ connections: 2 })
    const ours = new Agent({ connections: 2 })
    const t = await saturate(theirs, 3)
    const o = await saturate(ours, 3)
    expect(o.answers).toEqual(t.answers)
    expect(o.answers).toEqual([true, false, false])
    expect(o.drains.length).toBeGreaterThanOrEqual(1)
    const [origin, targets] = o.drains[0] as [URL, Dispatcher[]]
    expect(origin).toBeInstanceOf(URL)
    expect(origin.origin).toBe(server.origin)
    expect(targets[0]).toBe(ours)
    await Promise.all([theirs.close(), ours.close()])
  })

  it('without a connections cap, dispatch() always answers true', async () => {
    const ours = new Agent()
    const o = await saturate(ours, 20)
    expect(o.answers.every(Boolean)).toBe(true)
    expect(o.drains).toEqual([])
    await ours.close()
  })

  it('an origin is required, as undici.Agent requires it', () => {
    const ours = new Agent()
    let error: unknown
    ours.dispatch({ path: '/', method: 'GET' } as never, { onError: (e: Error) => (error = e) } as never)
    expect(error).toBeInstanceOf(errors.InvalidArgumentError)
    expect((error as Error).message).toBe('opts.origin must be a non-empty string or URL.')
  })
})
