/**
 * Hostile servers: raw TCP servers on 127.0.0.1 answering with malformed or adversarial HTTP/1.1. Every case runs
 * against `undici.Agent` and ours, and the outcomes (error class and code, or status and exact body) must be equal.
 * Whatever the server does, the process survives, no request hangs, a truncated body is an error (never a short
 * success), and no connection or handle is left open afterwards.
 *
 * This file is the acceptance test of the HTTP/1.1 engine. Where our outcome differs from undici's today, the case
 * is listed in `KNOWN_DIFFERENCES` with both outcomes and the reason, and the test asserts that the difference is
 * exactly as listed: when a change makes a case match undici, its entry fails and is to be deleted (and its row in
 * COMPATIBILITY.md › Hostile servers with it). `HOSTILE_PRINT=1` prints every outcome.
 */
import net from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent as UndiciAgent, type Dispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { undiciMajor } from './helpers/differential'
import { firstOutcome } from './helpers/outcomes'

/** What a case's server does with one connection, once the request head was read (`head`: its text). */
type Serve = (socket: net.Socket, head: string) => void

interface Case {
  name: string
  serve: Serve
  /** Dispatch options beyond origin, path `/` and method GET. */
  request?: Partial<Dispatcher.DispatchOptions>
  /** Agent options beyond the harness's short timeouts. */
  agent?: Record<string, unknown>
  /** The true response is longer than what arrives: any success would be a fabricated one. */
  truncated?: boolean
}

/** Both agents fail a request that stalls for this long (ms): no case may hang the suite. */
const STALL_MS = 400

const ok = (headers: string, body = ''): string => `HTTP/1.1 200 OK\r\n${headers}\r\n${body}`
const write = (text: string | Buffer): Serve => (socket) => void socket.end(text)
/** Writes `parts` one after the other, `gap` ms apart, then leaves the connection as it is. */
const trickle = (parts: Array<string | Buffer>, gap: number): Serve => (socket) => {
  let i = 0
  const next = (): void => {
    if (socket.destroyed || i >= parts.length) return
    socket.write(parts[i++])
    setTimeout(next, gap)
  }
  next()
}
const gzipGarbage = randomBytes(64)

const CASES: Case[] = [
  // Status lines.
  { name: 'a status line that is not HTTP', serve: write('garbage\r\n\r\n') },
  { name: 'a status code that is not a number', serve: write('HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n') },
  { name: 'a four-digit status code', serve: write('HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n') },
  { name: 'a status code above 599', serve: write('HTTP/1.1 600 Odd\r\ncontent-length: 2\r\n\r\nhi') },
  { name: 'a status line without a reason phrase', serve: write('HTTP/1.1 200\r\ncontent-length: 2\r\n\r\nhi') },
  { name: 'an unknown HTTP version', serve: write('HTTP/3.7 200 OK\r\ncontent-length: 2\r\n\r\nhi') },
  { name: 'an HTTP/1.0 response delimited by close', serve: write('HTTP/1.0 200 OK\r\n\r\nuntil close') },
  // Content-Length.
  { name: 'a content-length that is not a number', serve: write(ok('content-length: abc\r\n', 'abc')) },
  { name: 'a negative content-length', serve: write(ok('content-length: -1\r\n', 'x')) },
  { name: 'an overflowing content-length', serve: write(ok('content-length: 99999999999999999999999\r\n', 'x')) },
  { name: 'two different content-lengths', serve: write(ok('content-length: 5\r\ncontent-length: 6\r\n', 'hello!')) },
  { name: 'two equal content-length headers', serve: write(ok('content-length: 5\r\ncontent-length: 5\r\n', 'hello')) },
  { name: 'a content-length list of equal values', serve: write(ok('content-length: 5, 5\r\n', 'hello')) },
  { name: 'a content-length longer than the body, then close', serve: write(ok('content-length: 10\r\n', 'hello')), truncated: true },
  {
    name: 'a content-length longer than the body, connection left open',
    serve: (socket) => void socket.write(ok('content-length: 10\r\n', 'hello')),
    truncated: true
  },
  { name: 'a content-length shorter than the body', serve: write(ok('content-length: 5\r\n', 'hello, and more')) },
  {
    name: 'content-length together with transfer-encoding chunked',
    serve: write(ok('content-length: 3\r\ntransfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'))
  },
  // Chunked framing.
  { name: 'a chunk size that is not hex', serve: write(ok('transfer-encoding: chunked\r\n', 'zz\r\nhello\r\n0\r\n\r\n')) },
  { name: 'a chunk size that overflows', serve: write(ok('transfer-encoding: chunked\r\n', 'fffffffffffffffffff\r\nhello\r\n0\r\n\r\n')), truncated: true },
  { name: 'a chunk larger than the data sent, then close', serve: write(ok('transfer-encoding: chunked\r\n', 'a\r\nhello')), truncated: true },
  { name: 'chunked without the last chunk, then close', serve: write(ok('transfer-encoding: chunked\r\n', '5\r\nhello\r\n')), truncated: true },
  { name: 'chunk data not followed by CRLF', serve: write(ok('transfer-encoding: chunked\r\n', '5\r\nhelloXX0\r\n\r\n')) },
  { name: 'a chunk extension', serve: write(ok('transfer-encoding: chunked\r\n', '5;name=value\r\nhello\r\n0\r\n\r\n')) },
  {
    name: 'a 20 KiB chunk extension',
    serve: write(ok('transfer-encoding: chunked\r\n', `5;x=${'a'.repeat(20 * 1024)}\r\nhello\r\n0\r\n\r\n`))
  },
  { name: 'chunk lines ending in a bare LF', serve: write(ok('transfer-encoding: chunked\r\n', '5\nhello\n0\n\n')) },
  { name: 'chunked with trailers', serve: write(ok('transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\nx-trailer: t\r\n\r\n')) },
  { name: 'transfer-encoding gzip, chunked', serve: write(ok('transfer-encoding: gzip, chunked\r\n', '5\r\nhello\r\n0\r\n\r\n')) },
  { name: 'transfer-encoding chunked twice', serve: write(ok('transfer-encoding: chunked, chunked\r\n', '5\r\nhello\r\n0\r\n\r\n')) },
  { name: 'an unknown transfer-encoding, delimited by close', serve: write(ok('transfer-encoding: foo\r\n', 'until close')) },
  // Header syntax.
  { name: 'an obs-folded header value', serve: write(ok('x-folded: one\r\n two\r\ncontent-length: 2\r\n', 'hi')) },
  { name: 'a NUL in a header value', serve: write(ok('x-nul: a\0b\r\ncontent-length: 2\r\n', 'hi')) },
  { name: 'a bare CR in a header value', serve: write(ok('x-cr: a\rb\r\ncontent-length: 2\r\n', 'hi')) },
  { name: 'header lines ending in a bare LF', serve: write('HTTP/1.1 200 OK\nx-lf: 1\ncontent-length: 2\n\nhi') },
  { name: 'a header line without a colon', serve: write(ok('no colon here\r\ncontent-length: 2\r\n', 'hi')) },
  { name: 'whitespace before a header colon', serve: write(ok('x-space : v\r\ncontent-length: 2\r\n', 'hi')) },
  { name: 'a header name with a forbidden character', serve: write(ok('x(bad): v\r\ncontent-length: 2\r\n', 'hi')) },
  { name: 'latin1 bytes in a header value', serve: write(Buffer.from(ok('x-latin1: caf\u00e9\r\ncontent-length: 2\r\n', 'hi'), 'latin1')) },
  // Sizes.
  { name: 'a head over the default maxHeaderSize', serve: write(ok(`x-big: ${'a'.repeat(20 * 1024)}\r\ncontent-length: 2\r\n`, 'hi')) },
  {
    name: 'a 1 MiB header value within maxHeaderSize',
    agent: { maxHeaderSize: 2 * 1024 * 1024 },
    serve: write(ok(`x-big: ${'a'.repeat(1024 * 1024)}\r\ncontent-length: 2\r\n`, 'hi'))
  },
  {
    name: '101 headers',
    serve: write(ok(`${Array.from({ length: 101 }, (_, i) => `x-h${i}: ${i}\r\n`).join('')}content-length: 2\r\n`, 'hi'))
  },
  {
    name: '10 000 headers within maxHeaderSize',
    agent: { maxHeaderSize: 1024 * 1024 },
    serve: write(ok(`${Array.from({ length: 10_000 }, (_, i) => `x-h${i}: ${i}\r\n`).join('')}content-length: 2\r\n`, 'hi'))
  },
  // Interim and unexpected responses.
  { name: '100 Continue before the response', serve: write(`HTTP/1.1 100 Continue\r\n\r\n${ok('content-length: 2\r\n', 'hi')}`) },
  { name: '103 Early Hints with headers before the response', serve: write(`HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n${ok('content-length: 2\r\n', 'hi')}`) },
  { name: 'a flood of 1 000 interim responses', serve: write(`${'HTTP/1.1 102 Processing\r\n\r\n'.repeat(1000)}${ok('content-length: 2\r\n', 'hi')}`) },
  { name: 'an unsolicited 101 Switching Protocols', serve: write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nraw bytes') },
  { name: 'two responses to one request', serve: write(`${ok('content-length: 5\r\n', 'first')}${ok('content-length: 6\r\n', 'second')}`) },
  { name: 'a HEAD response with a body', request: { method: 'HEAD' }, serve: write(ok('content-length: 5\r\n', 'hello')) },
  { name: 'a 204 response with a body', serve: write('HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello') },
  { name: 'a 304 response with a body', serve: write('HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\nhello') },
  { name: 'gzip garbage (passed through undecoded)', serve: write(Buffer.concat([Buffer.from(ok(`content-encoding: gzip\r\ncontent-length: ${gzipGarbage.length}\r\n`)), gzipGarbage])) },
  {
    name: 'brotli garbage, chunked (passed through undecoded)',
    serve: write(Buffer.from(ok('content-encoding: br\r\ntransfer-encoding: chunked\r\n', '4\r\n\xff\xfe\xfd\xfc\r\n0\r\n\r\n'), 'latin1'))
  },
  // The connection going away.
  { name: 'a close before any response', serve: (socket) => void socket.end() },
  { name: 'a reset before any response', serve: (socket) => void socket.resetAndDestroy() },
  {
    name: 'a reset after the head',
    serve: (socket) => {
      socket.write(ok('content-length: 10\r\n'))
      setTimeout(() => socket.resetAndDestroy(), 50)
    },
    truncated: true
  },
  {
    name: 'a reset mid-body',
    serve: (socket) => {
      socket.write(ok('content-length: 10\r\n', 'hello'))
      setTimeout(() => socket.resetAndDestroy(), 50)
    },
    truncated: true
  },
  {
    name: 'a reset mid-chunked-body',
    serve: (socket) => {
      socket.write(ok('transfer-encoding: chunked\r\n', '5\r\nhello\r\n'))
      setTimeout(() => socket.resetAndDestroy(), 50)
    },
    truncated: true
  },
  { name: 'an empty response, then close', serve: write('') },
  { name: 'a head and no framing, then close', serve: write('HTTP/1.1 200 OK\r\n\r\n') },
  // Slow servers.
  { name: 'a server that never answers', serve: () => {} },
  { name: 'a slow-loris head', serve: trickle(['HTTP/1.1 200 OK\r\n', ...Array.from({ length: 40 }, () => 'x-a: b\r\n')], 100) },
  { name: 'a body that stalls', serve: (socket) => void socket.write(ok('content-length: 10\r\n', 'hel')), truncated: true },
  // Uploads.
  {
    name: 'an early 413 while a large body is uploaded',
    request: { method: 'POST', body: Buffer.alloc(8 * 1024 * 1024, 1) },
    serve: write('HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 8\r\n\r\ntoo big!')
  }
]

/** Differences from undici today: both outcomes, and why (each also a row of COMPATIBILITY.md › Hostile servers). */
const KNOWN_DIFFERENCES: Record<string, { undici: string; ours: string; reason: string }> = {}

/**
 * undici 7 fails a 204/304 that announces a body with a length mismatch; undici 8 delivers it without a body and
 * does not reuse the connection, as we do on both majors.
 */
const STRAY_BODY = 'a 204 or 304 announcing a body is delivered without one and its connection closed, as undici 8 does; undici 7 fails it'
if (undiciMajor < 8) {
  for (const status of [204, 304]) {
    KNOWN_DIFFERENCES[`a ${status} response with a body`] = {
      undici: 'error ResponseContentLengthMismatchError UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
      ours: `${status} ""`,
      reason: STRAY_BODY
    }
  }
}

/** A raw server answering each connection with `serve` once the request head has arrived. */
async function hostileServer(serve: Serve): Promise<{ origin: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let head = ''
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1')
      const end = head.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.off('data', onData)
      // Keep reading (and dropping) what follows, as a server that does not care would.
      socket.resume()
      serve(socket, head.slice(0, end))
    }
    socket.on('data', onData)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}

function describeBody(body: Buffer): string {
  if (body.length <= 64 && /^[\x20-\x7e]*$/.test(body.toString('latin1'))) return JSON.stringify(body.toString('latin1'))
  return `${body.length} bytes sha256:${createHash('sha256').update(body).digest('hex').slice(0, 16)}`
}

/**
 * One request through `dispatcher`: `status body [trailers]` or `error Class CODE`, or `HANG` if it has not ended
 * after a few seconds (both agents time out stalls after STALL_MS).
 */
function outcome(dispatcher: Dispatcher, opts: Dispatcher.DispatchOptions): Promise<string> {
  return firstOutcome(10 * STALL_MS, (settle) => {
    let status = 0
    const chunks: Buffer[] = []
    dispatcher.dispatch(opts, {
      onRequestStart() {},
      onResponseStart(_controller, statusCode) {
        status = statusCode
      },
      onResponseData(_controller, chunk) {
        chunks.push(chunk)
      },
      onResponseEnd(_controller, trailers) {
        const extra = Object.keys(trailers).length > 0 ? ` trailers ${JSON.stringify(trailers)}` : ''
        settle(`${status} ${describeBody(Buffer.concat(chunks))}${extra}`)
      },
      onResponseError(_controller, err) {
        const e = err as Error & { code?: string }
        settle(`error ${e.constructor.name} ${e.code ?? ''}`.trimEnd())
      }
    })
  })
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length
}

function activeHandles(): number {
  return (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length
}

async function settled(probe: () => boolean, ms = 3000): Promise<void> {
  const until = Date.now() + ms
  while (!probe() && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 25))
}

const print = process.env.HOSTILE_PRINT === '1'
const baseline = { fds: 0, handles: 0 }
const seen = new Map<string, { undici: string; ours: string }>()

describe('hostile servers: ours against undici.Agent', () => {
  beforeAll(async () => {
    // The core's runtime (threads, epoll) starts with the first agent and lives as long as the process.
    const server = await hostileServer(write(ok('content-length: 2\r\n', 'hi')))
    const warm = [new UndiciAgent(), new Agent()]
    for (const agent of warm) await outcome(agent, { origin: server.origin, path: '/', method: 'GET' })
    await Promise.all(warm.map((agent) => agent.destroy()))
    await server.close()
    await settled(() => false, 200)
    baseline.fds = openFds()
    baseline.handles = activeHandles()
  })

  it('has at least 40 cases, each named once', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40)
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length)
    for (const name of Object.keys(KNOWN_DIFFERENCES)) expect(CASES.map((c) => c.name)).toContain(name)
  })

  it('documents every known difference in COMPATIBILITY.md', () => {
    const doc = readFileSync(join(__dirname, '..', 'COMPATIBILITY.md'), 'utf8')
    const section = doc.slice(doc.indexOf('## Hostile servers'), doc.indexOf('\n## ', doc.indexOf('## Hostile servers') + 1))
    for (const name of Object.keys(KNOWN_DIFFERENCES)) expect(section).toContain(name)
  })

  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const server = await hostileServer(c.serve)
    const options = { headersTimeout: STALL_MS, bodyTimeout: STALL_MS, ...c.agent }
    const undici = new UndiciAgent(options)
    const ours = new Agent(options)
    try {
      const opts = { origin: server.origin, path: '/', method: 'GET', ...c.request } as Dispatcher.DispatchOptions
      const theirs = await outcome(undici, opts)
      const mine = await outcome(ours, opts)
      seen.set(c.name, { undici: theirs, ours: mine })
      if (print) console.log(`${c.name}\n  undici: ${theirs}\n  ours:   ${mine}`)
      expect(mine).not.toBe('HANG')
      if (c.truncated) expect(mine).toMatch(/^error /)
      const known = KNOWN_DIFFERENCES[c.name]
      if (known === undefined) {
        expect(mine).toBe(theirs)
      } else {
        expect({ undici: theirs, ours: mine }).toEqual({ undici: known.undici, ours: known.ours })
      }
    } finally {
      await Promise.all([undici.destroy(), ours.destroy()])
      await server.close()
    }
  })

  afterAll(async () => {
    // Connections the core closes go away on its threads, a moment after the agent's destroy().
    await settled(() => openFds() <= baseline.fds && activeHandles() <= baseline.handles)
    expect({ fds: openFds(), handles: activeHandles() }).toEqual(baseline)
    if (print) {
      const same = [...seen.values()].filter((s) => s.undici === s.ours).length
      console.log(`${seen.size} cases, ${same} the same as undici`)
    }
  })
})
