/**
 * Connect timeout and header overflow, against undici.Agent: same error classes and callback sequences.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { errors, request, type Dispatcher } from 'undici'
import { agents, record, type Pair } from './helpers/differential'
import { rawServer, readHead, type Running } from './helpers/servers'

let pair: Pair
let hugeHeaders: Running
let listener: ChildProcess
let fullPort = 0
const fillers: net.Socket[] = []

/**
 * A listener that never accepts, with a backlog of 0: once one connection waits in its queue, further SYNs are
 * dropped and connecting hangs until the client's connect timeout.
 */
async function unacceptingListener(): Promise<number> {
  listener = spawn('python3', [
    '-c',
    'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)'
  ])
  const port = await new Promise<number>((resolve) => listener.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))))
  for (let i = 0; i < 3; i++) {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    fillers.push(s)
  }
  await new Promise((r) => setTimeout(r, 100))
  return port
}

beforeAll(async () => {
  pair = agents({ connectTimeout: 300 })
  fullPort = await unacceptingListener()
  hugeHeaders = await rawServer(async (socket) => {
    await readHead(socket)
    socket.end(`HTTP/1.1 200 OK\r\nx-huge: ${'a'.repeat(20 * 1024)}\r\ncontent-length: 2\r\n\r\nok`)
  })
})

afterAll(async () => {
  for (const s of fillers) s.destroy()
  listener.kill()
  await pair.close()
  await hugeHeaders.close()
})

describe('same as undici.Agent', () => {
  it('a connection that cannot be established in connectTimeout gives ConnectTimeoutError', async () => {
    const opts = { origin: `http://127.0.0.1:${fullPort}`, path: '/', method: 'GET' } as const
    const theirs = await record(pair.undici, opts, 'legacy')
    const ours = await record(pair.ours, opts, 'legacy')
    expect(theirs.transcript.at(-1)).toBe('onError ConnectTimeoutError UND_ERR_CONNECT_TIMEOUT')
    // As with connection refused: no start callback without a connection.
    expect(ours.transcript).toEqual(theirs.transcript)
  })

  it("the ConnectTimeoutError's message names the address and the timeout as undici's", async () => {
    for (const host of ['127.0.0.1', 'localhost']) {
      const url = `http://${host}:${fullPort}/`
      const failure = (d: Dispatcher): Promise<Error> =>
        request(url, { dispatcher: d }).then(
          () => new Error('connected'),
          (e: Error) => e
        )
      const theirs = await failure(pair.undici)
      const ours = await failure(pair.ours)
      expect(theirs.message).toBe(`Connect Timeout Error (attempted address: ${host}:${fullPort}, timeout: 300ms)`)
      expect(ours).toBeInstanceOf(errors.ConnectTimeoutError)
      expect(ours.message).toBe(theirs.message)
    }
  })

  it('a response head larger than maxHeaderSize gives HeadersOverflowError', async () => {
    const opts = { origin: hugeHeaders.origin, path: '/', method: 'GET' } as const
    const theirs = await record(pair.undici, opts, 'controller')
    const ours = await record(pair.ours, opts, 'controller')
    expect(ours).toEqual(theirs)
    expect(ours.transcript.at(-1)).toBe('onResponseError HeadersOverflowError UND_ERR_HEADERS_OVERFLOW')
  })

  it('onResponseStarted comes before onHeaders', async () => {
    const events: string[] = []
    const run = (d: import('undici').Dispatcher): Promise<void> =>
      new Promise((resolve) => {
        d.dispatch({ origin: hugeHeaders.origin, path: '/', method: 'GET' }, {
          onConnect() {},
          onResponseStarted: () => events.push('started'),
          onHeaders: () => (events.push('headers'), true),
          onData: () => true,
          onComplete: () => resolve(),
          onError: () => (events.push('error'), resolve())
        } as never)
      })
    const small = agents({ maxHeaderSize: 64 * 1024 })
    await run(small.undici)
    const theirs = events.splice(0)
    await run(small.ours)
    expect(events).toEqual(theirs)
    expect(events).toEqual(['started', 'headers'])
    await small.close()
  })
})
