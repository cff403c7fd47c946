/**
 * Property-based fuzzing (fast-check) of the option and header normalisation, through the public API and
 * differentially: for generated dispatch options (method, path, headers of every shape, bodies, timeouts, query)
 * and generated agent options (several numbers at once, of every kind), ours must end exactly as
 * `undici.Agent` does — accepted, or refused with the same class and message through the same channel. A
 * failure prints fast-check's seed and the shrunk counterexample. Runs are bounded (`FUZZ_RUNS`, default 300
 * each) so the file takes a few seconds; the values known to differ on purpose (hostile-callers.test.ts ›
 * KNOWN_DIFFERENCES) are not generated.
 */
import { afterAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { Agent as UndiciAgent, type Dispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { describeError, firstOutcome, okServerForFile } from './helpers/outcomes'

const RUNS = Number(process.env.FUZZ_RUNS ?? 300)

const server = okServerForFile()

/** `throws …`, `handler …` or `ok` (any response: servers may answer odd requests differently). */
function outcome(dispatcher: Dispatcher, opts: unknown): Promise<string> {
  return firstOutcome(5000, (settle) => {
    try {
      dispatcher.dispatch(opts as Dispatcher.DispatchOptions, {
        onRequestStart() {},
        onResponseStart() {},
        onResponseData() {},
        onResponseEnd: () => settle('ok'),
        onResponseError: (_controller, err) => settle(`handler ${describeError(err)}`)
      })
    } catch (err) {
      settle(`throws ${describeError(err)}`)
    }
  })
}

// ---------------------------------------------------------------------------------------------------------
// Generators.

const latin1 = fc.string({ unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 12 })
const anyText = fc.oneof(latin1, fc.string({ maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 4 }))
const token = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,10}$/)
const special = fc.constantFrom(
  'host',
  'Host',
  'content-length',
  'Content-Type',
  'connection',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'expect',
  'x-a'
)
const headerName = fc.oneof({ weight: 3, arbitrary: special }, { weight: 3, arbitrary: token }, { weight: 1, arbitrary: anyText })
const scalar = fc.oneof(
  { weight: 4, arbitrary: latin1 },
  { weight: 2, arbitrary: fc.stringMatching(/^[0-9]{1,3}$/) },
  { weight: 1, arbitrary: fc.constantFrom('close', 'keep-alive, close', 'a b', '100-continue', '-1') },
  { weight: 1, arbitrary: anyText },
  { weight: 1, arbitrary: fc.integer({ min: -5, max: 1000 }) },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.bigInt({ min: -5n, max: 5n }) }
)
const headerValue = fc.oneof(
  { weight: 6, arbitrary: scalar },
  { weight: 2, arbitrary: fc.array(fc.oneof(scalar, fc.constant({})), { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constant({ nested: true }) },
  { weight: 1, arbitrary: fc.constant(Buffer.from('b')) }
)
const pairs = fc.array(fc.tuple(headerName, headerValue), { maxLength: 4 })
const headers = fc.oneof(
  { weight: 4, arbitrary: pairs.map((list) => Object.fromEntries(list)) },
  { weight: 2, arbitrary: pairs.map((list) => list.flat()) },
  { weight: 1, arbitrary: pairs.map((list) => new Map(list)) },
  { weight: 1, arbitrary: fc.array(headerName, { minLength: 1, maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom(undefined, null, 42, 'x: y') }
)
const method = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'PATCH', 'OPTIONS', 'get') },
  { weight: 1, arbitrary: anyText.filter((m) => m !== 'CONNECT') },
  { weight: 1, arbitrary: fc.constantFrom(undefined, 42) }
)
const path = fc.oneof(
  { weight: 6, arbitrary: latin1.map((p) => `/${p}`) },
  { weight: 1, arbitrary: anyText },
  { weight: 1, arbitrary: latin1.map((p) => `${server.origin}/${p}`) },
  { weight: 1, arbitrary: fc.constantFrom(undefined, 42, '') }
)
const body = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: latin1 },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }) },
  { weight: 1, arbitrary: fc.constantFrom(null, 42, true, { a: 1 }) }
)
/** Timeouts whose outcome does not race the server: none, off, long, or invalid. */
const timeout = fc.oneof(
  { weight: 4, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.double({ min: 2000 }) },
  { weight: 1, arbitrary: fc.double({ max: -Number.MIN_VALUE }) },
  { weight: 1, arbitrary: fc.integer({ min: 2000, max: 10_000_000 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, -1, NaN, Infinity, -Infinity, '5', null, 1e23, 1e300) }
)
const query = fc.oneof(
  { weight: 4, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.dictionary(token, fc.oneof(latin1, fc.integer())) },
  { weight: 1, arbitrary: fc.constantFrom('a=1', 0, '') }
)
const dispatchOptions = fc.record(
  { method, path, headers, body, headersTimeout: timeout, bodyTimeout: timeout, query },
  { requiredKeys: ['method', 'path'] }
)

/** Agent number options whose every value ends the same with undici (pipelining, connectTimeout: see KNOWN). */
const NUMBER_OPTIONS = [
  'headersTimeout',
  'bodyTimeout',
  'keepAliveTimeout',
  'keepAliveMaxTimeout',
  'keepAliveTimeoutThreshold',
  'maxHeaderSize',
  'connections',
  'maxRequestsPerClient',
  'maxConcurrentStreams',
  'initialWindowSize',
  'connectionWindowSize',
  'pingInterval'
] as const
const optionValue = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: -2, max: 100_000 }) },
  { weight: 2, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.constantFrom(0, -1, 0.5, NaN, Infinity, -Infinity, 1e23, 1e300) },
  { weight: 1, arbitrary: fc.constantFrom('5', true, null, {}) }
)
const agentOptions = fc
  .record(Object.fromEntries(NUMBER_OPTIONS.map((name) => [name, optionValue])) as Record<string, typeof optionValue>, {
    requiredKeys: []
  })
  .chain((numbers) =>
    fc.record(
      {
        maxResponseSize: fc.oneof(fc.integer({ min: -2, max: 1 << 20 }), fc.constantFrom(0.5, '1', undefined)),
        allowH2: fc.constantFrom(undefined, true, false, 'yes', 1),
        localAddress: fc.constantFrom(undefined, '127.0.0.1', 'not-an-ip', 42),
        keepAlive: fc.constantFrom(undefined, undefined, undefined, true)
      },
      { requiredKeys: [] }
    ).map((rest) => ({ ...numbers, ...rest }))
  )

// ---------------------------------------------------------------------------------------------------------

describe('fuzzing option and header normalisation against undici.Agent', () => {
  const undici = new UndiciAgent()
  const ours = new Agent()

  afterAll(async () => {
    await Promise.all([undici.destroy(), ours.destroy()])
  })

  it('dispatch options, headers and bodies end as with undici', async () => {
    await fc.assert(
      fc.asyncProperty(dispatchOptions, async (generated) => {
        const opts = { origin: server.origin, ...generated }
        const theirs = await outcome(undici, opts)
        const mine = await outcome(ours, opts)
        expect(mine).toBe(theirs)
      }),
      { numRuns: RUNS }
    )
  })

  it('agent options end as with undici, the first bad one reported', async () => {
    const end = async (make: () => Dispatcher): Promise<string> => {
      let agent: Dispatcher
      try {
        agent = make()
      } catch (err) {
        return `agent ${describeError(err)}`
      }
      const result = await outcome(agent, { origin: server.origin, path: '/', method: 'GET' })
      void agent.destroy().catch(() => {})
      return result.replace(/^handler /, 'agent ')
    }
    await fc.assert(
      fc.asyncProperty(agentOptions, async (options) => {
        const theirs = await end(() => new UndiciAgent(options as never))
        const mine = await end(() => new Agent(options as never))
        expect(mine).toBe(theirs)
      }),
      { numRuns: RUNS }
    )
  })
})
