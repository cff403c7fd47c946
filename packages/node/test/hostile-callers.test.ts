/**
 * Hostile callers: every agent option, dispatch option, header and body shape undici rejects must be rejected
 * the same way here — same error class, code and message, through the same channel (a synchronous throw or the
 * handler's error callback) — and every value undici accepts (numbers at and far beyond their limits: 0,
 * negative, NaN, Infinity, 1e23, 1e300, wrong types) must be accepted and work. Each case runs against
 * `undici.Agent` and ours; where the outcomes differ on purpose, `KNOWN_DIFFERENCES` lists both with the reason.
 * `HOSTILE_PRINT=1` prints every outcome.
 *
 * One difference holds for all agent options: undici validates most of them when the first request creates its
 * per-origin pool, and fails that request; our constructor throws. Both count as the channel `agent` here.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { afterAll, describe, expect, it } from 'vitest'
import { Agent as UndiciAgent, type Dispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { describeError, firstOutcome, okServerForFile } from './helpers/outcomes'

const server = okServerForFile()

/** How long a request may take before it counts as hanging (ms). */
const PATIENCE = 1500

/**
 * One dispatch: `throws …` (synchronously), `handler …` (through the error callback), `ok <status>`, or `HANG`.
 * `opts` may be a function, so that each run gets fresh values (streams, iterators).
 */
function dispatchOutcome(
  dispatcher: Dispatcher,
  opts: () => unknown,
  handler?: () => unknown
): Promise<string> {
  return firstOutcome(PATIENCE, (settle) => {
    let status = 0
    const h = handler?.() ?? {
      onRequestStart() {},
      onResponseStart(_controller: unknown, statusCode: number) {
        status = statusCode
      },
      onResponseData() {},
      onResponseEnd() {
        settle(`ok ${status}`)
      },
      onResponseError(_controller: unknown, err: Error) {
        settle(`handler ${describeError(err)}`)
      }
    }
    try {
      dispatcher.dispatch(opts() as Dispatcher.DispatchOptions, h as Dispatcher.DispatchHandler)
    } catch (err) {
      settle(`throws ${describeError(err)}`)
    }
    // A handler that is not an object never reports: nothing more will come.
    if (handler !== undefined && (typeof h !== 'object' || h === null)) settle('nothing')
  })
}

/** An agent built with `options`, then one GET: `agent …` when either step rejects the options. */
async function agentOutcome(make: (o: Record<string, unknown>) => Dispatcher, options: Record<string, unknown>): Promise<string> {
  let agent: Dispatcher
  try {
    agent = make(options)
  } catch (err) {
    return `agent ${describeError(err)}`
  }
  try {
    const outcome = await dispatchOutcome(agent, () => ({ origin: server.origin, path: '/', method: 'GET' }))
    return outcome.startsWith('handler ') ? `agent ${outcome.slice('handler '.length)}` : outcome
  } finally {
    void agent.destroy().catch(() => {})
  }
}

const makeUndici = (o: Record<string, unknown>): Dispatcher => new UndiciAgent(o as never)
const makeOurs = (o: Record<string, unknown>): Dispatcher => new Agent(o as never)

// ---------------------------------------------------------------------------------------------------------
// Agent options.

const NUMBERS: Array<[string, unknown]> = [
  ['0', 0],
  ['-1', -1],
  ['1.5', 1.5],
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
  ['1e23', 1e23],
  ['1e300', 1e300],
  ['Number.MAX_VALUE', Number.MAX_VALUE],
  ['a numeric string', '5'],
  ['a boolean', true],
  ['an object', {}]
]

/** Number options and the values to try (connectTimeout: no tiny values, they race the connection). */
const NUMBER_OPTIONS = [
  'headersTimeout',
  'bodyTimeout',
  'connectTimeout',
  'keepAliveTimeout',
  'keepAliveMaxTimeout',
  'keepAliveTimeoutThreshold',
  'maxHeaderSize',
  'maxResponseSize',
  'connections',
  'pipelining',
  'maxRequestsPerClient',
  'autoSelectFamilyAttemptTimeout',
  'maxConcurrentStreams',
  'initialWindowSize',
  'connectionWindowSize',
  'pingInterval'
]

const AGENT_CASES: Array<[string, Record<string, unknown>]> = [
  ...NUMBER_OPTIONS.flatMap((name) => NUMBERS.map(([label, value]): [string, Record<string, unknown>] => [`${name}: ${label}`, { [name]: value }])),
  ['allowH2: a string', { allowH2: 'yes' }],
  ['allowH2: a number', { allowH2: 1 }],
  // undici 8 checks the HTTP/2 settings only when HTTP/2 may be used; undici 7 always.
  ['initialWindowSize: -1 with allowH2: false', { allowH2: false, initialWindowSize: -1 }],
  ['maxConcurrentStreams: 0 with allowH2: false', { allowH2: false, maxConcurrentStreams: 0 }],
  ['pingInterval: 1.5 with allowH2: false', { allowH2: false, pingInterval: 1.5 }],
  ['connect: a string', { connect: 'x' }],
  ['connect: a number', { connect: 42 }],
  ['connect.timeout: -1', { connect: { timeout: -1 } }],
  ['connect.timeout: NaN', { connect: { timeout: NaN } }],
  ['localAddress: not an IP', { localAddress: 'not-an-ip' }],
  ['localAddress: a number', { localAddress: 42 }],
  ['keepAlive (renamed)', { keepAlive: true }],
  ['socketTimeout (renamed)', { socketTimeout: 1 }],
  ['requestTimeout (renamed)', { requestTimeout: 1 }],
  ['idleTimeout (renamed)', { idleTimeout: 1 }],
  ['maxKeepAliveTimeout (renamed)', { maxKeepAliveTimeout: 1 }],
  ['socketPath: a number', { socketPath: 42 }],
  ['maxOrigins: 0', { maxOrigins: 0 }],
  ['maxOrigins: NaN', { maxOrigins: NaN }],
  ['maxOrigins: a string', { maxOrigins: '3' }],
  ['factory: a string', { factory: 'x' }]
]

// ---------------------------------------------------------------------------------------------------------
// Dispatch options, headers and bodies.

const base = (): Record<string, unknown> => ({ origin: server.origin, path: '/', method: 'GET' })
const post = (body: () => unknown, extra: Record<string, unknown> = {}) => (): Record<string, unknown> => ({
  ...base(),
  method: 'POST',
  body: body(),
  ...extra
})
const withHeaders = (headers: () => unknown) => (): Record<string, unknown> => ({ ...base(), headers: headers() })
const override = (extra: () => Record<string, unknown>) => (): Record<string, unknown> => ({ ...base(), ...extra() })

const DISPATCH_CASES: Array<[string, () => unknown, (() => unknown)?]> = [
  // The options object and the handler.
  ['opts: null', () => null],
  ['opts: a number', () => 42],
  ['handler: null', base, () => null],
  ['handler: a number', base, () => 42],
  // origin
  ['origin: missing', override(() => ({ origin: undefined }))],
  ['origin: empty', override(() => ({ origin: '' }))],
  ['origin: a number', override(() => ({ origin: 42 }))],
  ['origin: an object', override(() => ({ origin: {} }))],
  ['origin: not a URL', override(() => ({ origin: 'not a url' }))],
  ['origin: ftp', override(() => ({ origin: 'ftp://127.0.0.1' }))],
  ['origin: with a path', override(() => ({ origin: `${server.origin}/base` }))],
  ['origin: with a query', override(() => ({ origin: `${server.origin}/?q=1` }))],
  ['origin: a URL with a path', override(() => ({ origin: new URL(`${server.origin}/base`) }))],
  ['origin: a URL', override(() => ({ origin: new URL(server.origin) }))],
  // path
  ['path: missing', override(() => ({ path: undefined }))],
  ['path: a number', override(() => ({ path: 42 }))],
  ['path: empty', override(() => ({ path: '' }))],
  ['path: relative', override(() => ({ path: 'x' }))],
  ['path: a space', override(() => ({ path: '/a b' }))],
  ['path: CRLF', override(() => ({ path: '/a\r\nb' }))],
  ['path: a character above U+00FF', override(() => ({ path: '/\u0100' }))],
  ['path: a tab', override(() => ({ path: '/a\tb' }))],
  ['path: an absolute URL of the origin', override(() => ({ path: `${server.origin}/x` }))],
  ['path: an absolute URL of another host', override(() => ({ path: 'http://other.test/x' }))],
  // method
  ['method: missing', override(() => ({ method: undefined }))],
  ['method: a number', override(() => ({ method: 42 }))],
  ['method: empty', override(() => ({ method: '' }))],
  ['method: a space', override(() => ({ method: 'G ET' }))],
  ['method: CRLF', override(() => ({ method: 'GET\r\n' }))],
  ['method: lower case', override(() => ({ method: 'get' }))],
  ['method: CONNECT', override(() => ({ method: 'CONNECT' }))],
  // Other options.
  ['headersTimeout: -1', override(() => ({ headersTimeout: -1 }))],
  ['headersTimeout: NaN', override(() => ({ headersTimeout: NaN }))],
  ['headersTimeout: Infinity', override(() => ({ headersTimeout: Infinity }))],
  ['headersTimeout: a string', override(() => ({ headersTimeout: '5' }))],
  ['headersTimeout: 1e300', override(() => ({ headersTimeout: 1e300 }))],
  ['headersTimeout: 1e23', override(() => ({ headersTimeout: 1e23 }))],
  ['headersTimeout: 1.5 s and a half', override(() => ({ headersTimeout: 1500.5 }))],
  ['bodyTimeout: -1', override(() => ({ bodyTimeout: -1 }))],
  ['bodyTimeout: NaN', override(() => ({ bodyTimeout: NaN }))],
  ['bodyTimeout: Infinity', override(() => ({ bodyTimeout: Infinity }))],
  ['bodyTimeout: Number.MAX_VALUE', override(() => ({ bodyTimeout: Number.MAX_VALUE }))],
  ['bodyTimeout: 0', override(() => ({ bodyTimeout: 0 }))],
  ['reset: a string', override(() => ({ reset: 'yes' }))],
  ['expectContinue: a number', override(() => ({ expectContinue: 1 }))],
  ['throwOnError', override(() => ({ throwOnError: true }))],
  ['maxRedirections: 2', override(() => ({ maxRedirections: 2 }))],
  ['maxRedirections: 0', override(() => ({ maxRedirections: 0 }))],
  ['typeOfService: 256', override(() => ({ typeOfService: 256 }))],
  ['typeOfService: -1', override(() => ({ typeOfService: -1 }))],
  ['typeOfService: 1.5', override(() => ({ typeOfService: 1.5 }))],
  ['upgrade: a number', override(() => ({ upgrade: 42 }))],
  ['upgrade: CRLF', override(() => ({ upgrade: 'x\r\ny' }))],
  ['query: a string', override(() => ({ query: 'a=1' }))],
  ['query: onto a path with a query', override(() => ({ path: '/?x=1', query: { a: 1 } }))],
  ['query: an object', override(() => ({ query: { a: 1, b: ['2', '3'] } }))],
  // headers
  ['headers: a number', withHeaders(() => 42)],
  ['headers: a string', withHeaders(() => 'x: y')],
  ['headers: an odd flat array', withHeaders(() => ['x-one'])],
  ['headers: an array of pairs', withHeaders(() => [['x-a', '1']])],
  ['headers: a Map', withHeaders(() => new Map([['x-a', '1']]))],
  ['headers: an iterable of triples', withHeaders(() => new Set([['a', 'b', 'c']]))],
  ['header value: an object', withHeaders(() => ({ 'x-a': { nested: true } }))],
  ['header value: an array holding an object', withHeaders(() => ({ 'x-a': [{}] }))],
  ['header value: null', withHeaders(() => ({ 'x-a': null }))],
  ['header value: undefined', withHeaders(() => ({ 'x-a': undefined }))],
  ['header value: a number', withHeaders(() => ({ 'x-a': 42 }))],
  ['header value: a boolean', withHeaders(() => ({ 'x-a': false }))],
  ['header value: a Symbol', withHeaders(() => ({ 'x-a': Symbol('s') }))],
  ['header value: a function', withHeaders(() => ({ 'x-a': () => 1 }))],
  ['header value: a BigInt', withHeaders(() => ({ 'x-a': 10n }))],
  ['header value: CRLF', withHeaders(() => ({ 'x-a': 'a\r\nb' }))],
  ['header value: LF', withHeaders(() => ({ 'x-a': 'a\nb' }))],
  ['header value: NUL', withHeaders(() => ({ 'x-a': 'a\0b' }))],
  ['header value: DEL', withHeaders(() => ({ 'x-a': 'a\x7fb' }))],
  ['header value: latin1', withHeaders(() => ({ 'x-a': 'caf\u00e9' }))],
  ['header value: above U+00FF', withHeaders(() => ({ 'x-a': '\u0100' }))],
  ['header value: a Buffer', withHeaders(() => ({ 'x-a': Buffer.from('b') }))],
  ['header name: a space', withHeaders(() => ({ 'x a': '1' }))],
  ['header name: a colon', withHeaders(() => ({ 'x:a': '1' }))],
  ['header name: empty', withHeaders(() => ({ '': '1' }))],
  ['header name: non-ASCII', withHeaders(() => ({ 'x-\u00e9': '1' }))],
  ['host: twice', withHeaders(() => ['host', 'a', 'host', 'b'])],
  ['host: an array', withHeaders(() => ({ host: ['a', 'b'] }))],
  ['content-length: not a number', withHeaders(() => ({ 'content-length': 'abc' }))],
  ['content-length: negative', withHeaders(() => ({ 'content-length': '-1' }))],
  ['content-length: twice', withHeaders(() => ['content-length', '0', 'content-length', '0'])],
  ['content-length: an array', withHeaders(() => ({ 'content-length': ['1', '2'] }))],
  ['content-length: without a body', withHeaders(() => ({ 'content-length': '5' }))],
  ['transfer-encoding', withHeaders(() => ({ 'transfer-encoding': 'chunked' }))],
  ['keep-alive', withHeaders(() => ({ 'keep-alive': 'timeout=5' }))],
  ['upgrade header', withHeaders(() => ({ upgrade: 'websocket' }))],
  ['expect', withHeaders(() => ({ expect: '100-continue' }))],
  ['connection: an invalid token', withHeaders(() => ({ connection: 'a b' }))],
  ['connection: an array', withHeaders(() => ({ connection: ['close', 'x'] }))],
  ['connection: close', withHeaders(() => ({ connection: 'close' }))],
  // bodies
  ['body: a number', post(() => 42)],
  ['body: a boolean', post(() => true)],
  ['body: a plain object', post(() => ({ a: 1 }))],
  ['body: a Symbol', post(() => Symbol('s'))],
  ['body: a function', post(() => () => 'x')],
  ['body: a Promise', post(() => Promise.resolve('x'))],
  ['body: null', post(() => null)],
  ['body: empty string', post(() => '')],
  ['body: a DataView', post(() => new DataView(new ArrayBuffer(4)))],
  ['body: an ArrayBuffer', post(() => new ArrayBuffer(4))],
  ['body: a Uint16Array', post(() => new Uint16Array([1, 2]))],
  ['body: a string, content-length too large', post(() => 'abc', { headers: { 'content-length': '5' } })],
  ['body: a Buffer, content-length too small', post(() => Buffer.from('abcdef'), { headers: { 'content-length': '2' } })],
  ['body: a stream that errors', post(() => new Readable({ read() { this.destroy(new Error('source failed')) } }))],
  ['body: a destroyed stream', post(() => Readable.from(['x']).destroy())],
  ['body: an iterable of strings', post(() => ['a', 'b'])],
  ['body: an async iterable that throws', post(() => ({ async *[Symbol.asyncIterator]() { yield 'a'; throw new Error('iterator failed') } }))],
  ['body: a stream shorter than content-length', post(() => Readable.from([Buffer.from('ab')]), { headers: { 'content-length': '5' } })],
  ['body: a stream longer than content-length', post(() => Readable.from([Buffer.from('abcdef')]), { headers: { 'content-length': '2' } })],
  ['body: a Blob', post(() => new Blob(['blob']))]
]

/** Differences from undici today: both outcomes, and why (each also in COMPATIBILITY.md › Hostile callers). */
const KNOWN_DIFFERENCES: Record<string, { undici: string; ours: string; reason: string }> = {}

const CONNECT_TIMEOUT =
  "undici's Agent never validates connectTimeout (its Pool hands it to the connector unchecked, where a negative or non-numeric delay makes a timer of 1 ms or garbage); here it must be a number ≥ 0"
for (const [name, message] of [
  ['agent connectTimeout: -1', 'invalid connectTimeout'],
  ['agent connectTimeout: a numeric string', 'invalid connectTimeout'],
  ['agent connectTimeout: a boolean', 'invalid connectTimeout'],
  ['agent connectTimeout: an object', 'invalid connectTimeout'],
  ['agent connect.timeout: -1', 'invalid connectTimeout']
]) {
  KNOWN_DIFFERENCES[name] = { undici: 'ok 200', ours: `agent InvalidArgumentError UND_ERR_INVALID_ARG ${message}`, reason: CONNECT_TIMEOUT }
}
for (const label of ['NaN', 'Infinity', '-Infinity']) {
  KNOWN_DIFFERENCES[`agent maxResponseSize: ${label}`] = {
    undici: 'agent ResponseExceededMaxSizeError UND_ERR_RES_EXCEEDED_MAX_SIZE Response content exceeded max size',
    ours: 'ok 200',
    reason: "undici's JSON clone of its options turns the value into null, which its Client then takes as a limit of 0 bytes; here it means no limit (the default), as for every other option"
  }
}
const PIPELINING = "undici never validates pipelining (and pipelining: -1 makes its requests wait forever); here it must be an integer ≥ 0"
KNOWN_DIFFERENCES['agent pipelining: -1'] = { undici: 'HANG', ours: 'agent InvalidArgumentError UND_ERR_INVALID_ARG invalid pipelining', reason: PIPELINING }
for (const label of ['1.5', 'a numeric string', 'a boolean', 'an object']) {
  KNOWN_DIFFERENCES[`agent pipelining: ${label}`] = {
    undici: 'ok 200',
    ours: 'agent InvalidArgumentError UND_ERR_INVALID_ARG invalid pipelining',
    reason: PIPELINING
  }
}
Object.assign(KNOWN_DIFFERENCES, {
  'dispatch path: an absolute URL of another host': {
    undici: 'ok 200',
    ours: 'handler NotSupportedError UND_ERR_NOT_SUPPORTED an absolute URL as path is sent only to its own origin by reqwest-dispatcher (see COMPATIBILITY.md)',
    reason: "undici writes the absolute URL in the request line to the origin; hyper's client writes only origin-form targets, so such a path is refused rather than sent elsewhere"
  }
})

const print = process.env.HOSTILE_PRINT === '1'
const counts = { same: 0, different: 0 }

function compare(name: string, theirs: string, ours: string): void {
  if (print) console.log(`${name}\n  undici: ${theirs}\n  ours:   ${ours}`)
  expect(ours).not.toBe('HANG')
  const known = KNOWN_DIFFERENCES[name]
  if (known === undefined) {
    expect(ours).toBe(theirs)
    counts.same++
  } else {
    expect({ undici: theirs, ours }).toEqual({ undici: known.undici, ours: known.ours })
    counts.different++
  }
}

describe('hostile callers: ours against undici.Agent', () => {
  it('lists each known difference once, for a case that exists, documented in COMPATIBILITY.md', () => {
    const names = [...AGENT_CASES.map(([n]) => `agent ${n}`), ...DISPATCH_CASES.map(([n]) => `dispatch ${n}`)]
    expect(new Set(names).size).toBe(names.length)
    const doc = readFileSync(join(__dirname, '..', 'COMPATIBILITY.md'), 'utf8')
    const start = doc.indexOf('## Hostile callers')
    const section = doc.slice(start, doc.indexOf('\n## ', start + 1))
    for (const name of Object.keys(KNOWN_DIFFERENCES)) {
      expect(names).toContain(name)
      expect(section).toContain(name.replace(/^(agent|dispatch) /, ''))
    }
  })

  it.each(AGENT_CASES)('agent %s', async (name, options) => {
    const [theirs, ours] = [await agentOutcome(makeUndici, options), await agentOutcome(makeOurs, options)]
    compare(`agent ${name}`, theirs, ours)
  })

  describe('dispatch', () => {
    const undici = new UndiciAgent()
    const ours = new Agent()
    afterAll(async () => {
      await Promise.all([undici.destroy(), ours.destroy()])
      if (print) console.log(`${counts.same} cases as undici, ${counts.different} known differences`)
    })

    it.each(DISPATCH_CASES)('dispatch %s', async (name, opts, handler) => {
      const theirs = await dispatchOutcome(undici, opts, handler)
      const mine = await dispatchOutcome(ours, opts, handler)
      compare(`dispatch ${name}`, theirs, mine)
    })
  })
})
