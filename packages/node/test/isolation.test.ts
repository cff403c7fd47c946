/**
 * One exception never stalls other requests: whatever a listener of the agent's events throws, or whatever
 * fails while the bridge encodes a batch of events, every other event of the batch is delivered, the agent
 * keeps delivering, `close()` resolves, and the exception is reported once, as an uncaught exception (where
 * undici's own listener exceptions end up too).
 *
 * Each scenario keeps the JavaScript thread busy while the core works, so that the event whose listener throws
 * and the events of an unrelated request travel in one batch. Scenarios run in a process of their own: their
 * uncaught exceptions are the subject, not a failure of the test run.
 */
import { describe, expect, it } from 'vitest'
import { runIsolated } from './helpers/isolated'

interface Outcome {
  /** What each request resolved to ('stalled' if it never did). */
  settled: string[]
  /** How many times the throwing listener ran. */
  calls: number
  /** Whether `close()` resolved. */
  closed: string
}

/** The tail every scenario shares: the outcome of its requests, then whether the agent still closes. */
const finish = `
  const settled = await settle(requests, 3000)
  const [closed] = await settle([agent.close().then(() => 'closed')], 3000)
  return { settled, calls, closed }
`

describe('one exception never stalls other requests', () => {
  it('a throwing disconnect listener', async () => {
    const { result, uncaught } = await runIsolated<Outcome>(`
      const closing = await listen((req, res) => { res.setHeader('connection', 'close'); res.end('a') })
      const slow = await listen((req, res) => setTimeout(() => res.end('b'), 100))
      const agent = new lib.Agent()
      let calls = 0
      agent.on('disconnect', () => { calls++; throw new Error('disconnect listener failed') })
      const requests = await inOneBatch(agent, [closing, slow])
      ${finish}
    `)
    expect(result.settled).toEqual(['a', 'b'])
    expect(result.closed).toBe('closed')
    expect(result.calls).toBeGreaterThan(0)
    expect(uncaught).toEqual(Array(result.calls).fill('disconnect listener failed'))
  })

  it('a throwing connectionError listener', async () => {
    const { result, uncaught } = await runIsolated<Outcome>(`
      const refused = await listen(() => {})
      servers.pop().close()
      await new Promise((resolve) => setTimeout(resolve, 50))
      const slow = await listen((req, res) => setTimeout(() => res.end('b'), 100))
      const agent = new lib.Agent()
      let calls = 0
      agent.on('connectionError', () => { calls++; throw new Error('connectionError listener failed') })
      const requests = await inOneBatch(agent, [refused, slow])
      ${finish}
    `)
    expect(result.settled).toEqual(['rejected: ECONNREFUSED', 'b'])
    expect(result.closed).toBe('closed')
    expect(result.calls).toBe(1)
    expect(uncaught).toEqual(['connectionError listener failed'])
  })

  it('a throwing circuitStateChange listener', async () => {
    const { result, uncaught } = await runIsolated<Outcome>(`
      const failing = await listen((req, res) => { res.statusCode = 500; res.end('a') })
      const slow = await listen((req, res) => setTimeout(() => res.end('b'), 100))
      const agent = new lib.Agent({ circuitBreaker: { minimumRequests: 1, threshold: 0 } })
      let calls = 0
      agent.on('circuitStateChange', () => { calls++; throw new Error('circuitStateChange listener failed') })
      const requests = await inOneBatch(agent, [failing, slow])
      ${finish}
    `)
    expect(result.settled).toEqual(['a', 'b'])
    expect(result.closed).toBe('closed')
    expect(result.calls).toBe(1)
    expect(uncaught).toEqual(['circuitStateChange listener failed'])
  })

  it('a throwing drain listener', async () => {
    const { result, uncaught } = await runIsolated<Outcome>(`
      const slow = await listen((req, res) => setTimeout(() => res.end('ok'), 50))
      // connections: 1 saturates the origin at once, so that the last request to finish owes a drain event.
      const agent = new lib.Agent({ connections: 1 })
      let calls = 0
      agent.on('drain', () => { calls++; throw new Error('drain listener failed') })
      const requests = [1, 2].map(() => outcome(undici.request(slow + '/', { dispatcher: agent }).then((r) => r.body.text())))
      ${finish}
    `)
    expect(result.settled).toEqual(['ok', 'ok'])
    expect(result.closed).toBe('closed')
    expect(result.calls).toBe(1)
    expect(uncaught).toEqual(['drain listener failed'])
  })

  // The bridge's test hook makes encoding the response head of a 599 (a JavaScript exception) or a 598 (a
  // panic in Rust) fail, as creating a string or Buffer can (external Buffers are forbidden in some hosts).
  for (const [status, how] of [
    [599, 'an exception'],
    [598, 'a panic']
  ] as const) {
    it(`${how} while encoding one event of a batch fails only that request`, async () => {
      const { result, uncaught } = await runIsolated<Outcome>(
        `
        const broken = await listen((req, res) => { res.statusCode = ${status}; res.end('a') })
        const slow = await listen((req, res) => setTimeout(() => res.end('b'), 100))
        const agent = new lib.Agent()
        const calls = 0
        const requests = await inOneBatch(agent, [broken, slow])
        ${finish}
      `,
        { REQWEST_DISPATCHER_TEST_HOOKS: '1' }
      )
      expect(result.settled).toEqual(['rejected: UND_ERR_INTERNAL', 'b'])
      expect(result.closed).toBe('closed')
      expect(uncaught).toEqual([])
    })
  }
})
