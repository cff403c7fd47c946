/**
 * Upgrades and CONNECT through the Agent: `agent.upgrade()`, `agent.connect()`, the handler callbacks
 * (`onRequestUpgrade`, legacy `onUpgrade`) and the socket they hand over, a Node `Duplex`. Every scenario runs
 * on undici.Agent and on ours, and what each observes must be the same.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { Duplex } from 'node:stream'
import { Agent as UndiciAgent, connect, errors, upgrade, type Dispatcher } from 'undici'
import { Agent, ProxyAgent } from 'reqwest-dispatcher'
import { httpServer, rawServer, readHead, type Running } from './helpers/servers'
import { makePki, type Pki } from './helpers/transport-certs'
import { closed, connectOn, connectProxy, proxyAgents, next, onBoth, readBytes, switchingServer, upgradeOn, type ConnectProxy } from './helpers/upgrades'

let switching: Running & { heads: import('node:http').IncomingMessage[] }
let plain: Running
let proxy: ConnectProxy
let pki: Pki

beforeAll(async () => {
  pki = makePki()
  switching = await switchingServer()
  plain = await httpServer((req, res) => res.end(`plain ${req.method} ${req.url}`))
  proxy = await connectProxy((head) => (head.includes('denied.test') ? 'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\ncontent-length: 5\r\n\r\nnope!' : null))
})

afterAll(async () => {
  await Promise.all([switching.close(), plain.close(), proxy.close()])
  pki.cleanup()
})

/** What `agent.upgrade()` hands back, reduced to what both agents must agree on. */
async function upgraded(agent: Dispatcher): Promise<{ headers: unknown; echoed: string; duplex: boolean; session: boolean }> {
  const { headers, socket } = await upgradeOn(agent, { origin: switching.origin, path: '/chat', protocol: 'echo' })
  socket.write('ping')
  const echoed = (await readBytes(socket, 4)).toString()
  socket.destroy()
  return { headers, echoed, duplex: socket instanceof Duplex, session: 'session' in socket }
}

describe('agent.upgrade()', () => {
  it('sends connection: upgrade and hands over the switched connection as a Duplex, as undici', async () => {
    const [theirs, ours] = await onBoth(upgraded)
    expect(ours).toEqual(theirs)
    expect(ours).toMatchObject({ echoed: 'ping', duplex: true, session: false })
    expect(ours.headers).toMatchObject({ upgrade: 'echo', 'x-upgraded': 'yes', 'set-cookie': ['a=1', 'b=2'] })
    const heads = switching.heads.slice(-2).map((req) => [req.headers.connection, req.headers.upgrade, req.url])
    expect(heads).toEqual([
      ['upgrade', 'echo', '/chat'],
      ['upgrade', 'echo', '/chat']
    ])
  })

  it('works through undici.upgrade(url, { dispatcher })', async () => {
    const [theirs, ours] = await onBoth(async (dispatcher) => {
      const { headers, socket } = await upgrade(`${switching.origin}/top`, { dispatcher, protocol: 'echo' })
      socket.end('x')
      return { headers, end: (await readBytes(socket, 1)).toString() }
    })
    expect(ours).toEqual(theirs)
  })

  it('fails with SocketError("bad upgrade") when the server answers with a normal response', async () => {
    const [theirs, ours] = await onBoth(async (agent) => {
      const err = await upgradeOn(agent, { origin: plain.origin, path: '/' }).then(
        () => null,
        (e: Error) => e
      )
      return { error: err?.constructor.name, code: (err as errors.UndiciError | null)?.code, message: err?.message }
    })
    expect(ours).toEqual(theirs)
    expect(ours).toEqual({ error: 'SocketError', code: 'UND_ERR_SOCKET', message: 'bad upgrade' })
  })

  it('emits disconnect with InformationalError("upgrade") when the connection leaves the agent', async () => {
    // A plain undici.Agent (the one whose events are observed).
    const plainUndici = (options: Record<string, unknown>): Dispatcher => new UndiciAgent(options)
    const [theirs, ours] = await onBoth(async (agent) => {
      const disconnected = next<[URL, Dispatcher[], Error]>(agent, 'disconnect')
      const { socket } = await upgradeOn(agent, { origin: switching.origin, path: '/', protocol: 'echo' })
      const [origin, , err] = await disconnected
      socket.destroy()
      return { origin: origin.origin, error: err.constructor.name, message: err.message, code: (err as errors.UndiciError).code }
    }, {}, plainUndici)
    expect(ours).toEqual(theirs)
    expect(ours.error).toBe('InformationalError')
  })

  it('rejects with the abort reason when the signal fires before the switch', async () => {
    const slow = await rawServer((socket) => {
      void readHead(socket) // and never answer
    })
    try {
      const [theirs, ours] = await onBoth(async (agent) => {
        const controller = new AbortController()
        const pending = upgradeOn(agent, { origin: slow.origin, path: '/', signal: controller.signal })
        setTimeout(() => controller.abort(), 50)
        const err = await pending.then(
          () => null,
          (e: Error) => e
        )
        return { error: err?.name, code: (err as errors.UndiciError | null)?.code }
      })
      expect(ours).toEqual(theirs)
      expect(ours.error).toBe('AbortError')
    } finally {
      await slow.close()
    }
  })

  it('an abort from inside the upgrade callback fails the request and closes the socket; after it, does nothing', async () => {
    // `when`: from inside onUpgrade, or once it returned.
    const scenario = (agent: Dispatcher, when: 'inside' | 'after'): Promise<{ seen: string[]; echoed: string }> =>
      new Promise((resolve) => {
        const seen: string[] = []
        let abort: (reason?: Error) => void = () => {}
        agent.dispatch({ origin: switching.origin, path: '/', method: 'GET', upgrade: 'echo' }, {
          onConnect: (a: (reason?: Error) => void) => (abort = a),
          onUpgrade: (status: number, _raw: Buffer[], socket: Duplex) => {
            seen.push(`onUpgrade ${status}`)
            socket.on('error', (err) => seen.push(`socket error ${err.message}`))
            socket.on('close', () => resolve({ seen, echoed: Buffer.concat(chunks).toString() }))
            const chunks: Buffer[] = []
            socket.on('data', (chunk: Buffer) => {
              chunks.push(chunk)
              socket.destroy()
            })
            if (when === 'inside') abort(new Error('too late'))
            else setTimeout(() => abort(new Error('too late')), 0)
            setTimeout(() => socket.write('still here'), 20)
          },
          onError: (err: Error) => seen.push(`onError ${err.message}`)
        } as unknown as Dispatcher.DispatchHandler)
      })
    const [theirs, ours] = await onBoth(async (agent) => [await scenario(agent, 'inside'), await scenario(agent, 'after')])
    expect(ours).toEqual(theirs)
    expect(ours).toEqual([
      { seen: ['onUpgrade 101', 'onError too late', 'socket error aborted'], echoed: '' },
      { seen: ['onUpgrade 101'], echoed: 'still here' }
    ])
  })

  it('with allowH2: true, an upgrade to an https: origin that speaks HTTP/1.1 switches over HTTP/1.1, as undici', async () => {
    const secure = await switchingServer(undefined, pki.server)
    try {
      const [theirs, ours] = await onBoth(
        async (agent) => {
          const { headers, socket } = await upgradeOn(agent, { origin: secure.origin, path: '/tls', protocol: 'echo' })
          socket.write('over tls')
          const echoed = (await readBytes(socket, 8)).toString()
          const encrypted = (socket as unknown as { encrypted?: boolean }).encrypted
          socket.destroy()
          return { headers, echoed, encrypted, session: 'session' in socket }
        },
        { allowH2: true, connect: { ca: pki.ca.cert } }
      )
      expect(ours).toEqual(theirs)
      expect(ours).toMatchObject({ echoed: 'over tls', encrypted: true, session: false })
      expect(secure.heads.map((req) => [req.httpVersion, req.headers.upgrade])).toEqual([
        ['1.1', 'echo'],
        ['1.1', 'echo']
      ])
    } finally {
      await secure.close()
    }
  })

  it('through a ProxyAgent, an upgrade to an https: origin goes through a CONNECT tunnel, as undici.ProxyAgent', async () => {
    const secure = await switchingServer(undefined, pki.server)
    try {
      const [theirs, ours] = await onBoth(
        async (agent) => {
          const { headers, socket } = await upgradeOn(agent, { origin: secure.origin, path: '/proxied', protocol: 'echo' })
          socket.write('tunnelled')
          const echoed = (await readBytes(socket, 9)).toString()
          socket.destroy()
          return { headers, echoed, tunnel: proxy.requests.at(-1)?.split('\r\n')[0] }
        },
        { uri: proxy.origin, requestTls: { ca: pki.ca.cert } },
        ...proxyAgents
      )
      expect(ours).toEqual(theirs)
      expect(ours).toMatchObject({ echoed: 'tunnelled', tunnel: `CONNECT 127.0.0.1:${secure.port} HTTP/1.1` })
      expect(secure.heads.map((req) => [req.url, req.headers.connection, req.headers.upgrade])).toEqual([
        ['/proxied', 'upgrade', 'echo'],
        ['/proxied', 'upgrade', 'echo']
      ])
    } finally {
      await secure.close()
    }
  })

  it('keeps working after agent.close(): an upgraded socket is no longer the agent’s', async () => {
    const [theirs, ours] = await onBoth(async (agent) => {
      const { socket } = await upgradeOn(agent, { origin: switching.origin, path: '/', protocol: 'echo' })
      await agent.close()
      socket.write('after close')
      const echoed = (await readBytes(socket, 11)).toString()
      socket.destroy()
      return echoed
    })
    expect(ours).toEqual(theirs)
    expect(ours).toBe('after close')
  })
})

describe('agent.connect()', () => {
  it('tunnels through a CONNECT proxy: the request target as given, then a raw HTTP exchange through the socket', async () => {
    const target = new URL(plain.origin).host
    const [theirs, ours] = await onBoth(async (agent) => {
      const { statusCode, headers, socket } = await connectOn(agent, { origin: proxy.origin, path: target })
      socket.write(`GET /through HTTP/1.1\r\nhost: ${target}\r\nconnection: close\r\n\r\n`)
      const chunks: Buffer[] = []
      for await (const chunk of socket) chunks.push(chunk as Buffer)
      const response = Buffer.concat(chunks).toString()
      return { statusCode, headers, status: response.split('\r\n')[0], body: response.slice(response.indexOf('\r\n\r\n') + 4) }
    })
    expect(ours).toEqual(theirs)
    expect(ours).toMatchObject({ statusCode: 200, status: 'HTTP/1.1 200 OK', body: 'plain GET /through' })
    expect(proxy.requests.slice(-2).map((head) => head.split('\r\n')[0])).toEqual([
      `CONNECT ${target} HTTP/1.1`,
      `CONNECT ${target} HTTP/1.1`
    ])
  })

  it('works through undici.connect(url, { dispatcher })', async () => {
    const target = new URL(plain.origin).host
    const [theirs, ours] = await onBoth(async (dispatcher) => {
      const { statusCode, socket } = await connect(`${proxy.origin}/${target}`, { dispatcher })
      socket.destroy()
      return statusCode
    })
    expect(ours).toEqual(theirs)
    expect(ours).toBe(200)
  })

  it('through a ProxyAgent, connect() is refused with NotSupportedError and nothing is sent', async () => {
    const agent = new ProxyAgent({ uri: proxy.origin })
    const before = proxy.requests.length
    try {
      const err = await connectOn(agent as unknown as Dispatcher, { origin: plain.origin, path: 'example.test:443' }).then(
        () => null,
        (e: Error) => e
      )
      expect(err).toBeInstanceOf(errors.NotSupportedError)
      expect(proxy.requests.length).toBe(before)
    } finally {
      await agent.destroy()
    }
  })

  it('hands over the connection whatever the status (a 407 here), as undici: the caller decides', async () => {
    const [theirs, ours] = await onBoth(async (agent) => {
      const { statusCode, headers, socket } = await connectOn(agent, { origin: proxy.origin, path: 'denied.test:443' })
      const rest = (await readBytes(socket, 5)).toString()
      socket.destroy()
      return { statusCode, headers, rest }
    })
    expect(ours).toEqual(theirs)
    expect(ours).toMatchObject({ statusCode: 407, rest: 'nope!' })
  })
})

/** What a handler saw of an upgrade, for both handler styles. */
async function handlerView(agent: Dispatcher, style: 'controller' | 'legacy', opts: Partial<Dispatcher.DispatchOptions> = {}): Promise<string[]> {
  const seen: string[] = []
  await new Promise<void>((resolve) => {
    const done = (socket?: Duplex): void => {
      socket?.destroy()
      setTimeout(resolve, 30)
    }
    const handler =
      style === 'controller'
        ? ({
            onRequestStart: () => seen.push('onRequestStart'),
            onRequestUpgrade: (controller: Dispatcher.DispatchController, status: number, headers: Record<string, unknown>, socket: Duplex) => {
              seen.push(`onRequestUpgrade ${status} ${JSON.stringify(headers)} ${socket instanceof Duplex} ${'session' in socket}`)
              seen.push(`aborted ${controller.aborted}`)
              done(socket)
            },
            onResponseStart: (_c: unknown, status: number) => seen.push(`onResponseStart ${status}`),
            onResponseData: () => seen.push('data'),
            onResponseEnd: () => {
              seen.push('onResponseEnd')
              done()
            },
            onResponseError: (_c: unknown, err: Error) => {
              seen.push(`onResponseError ${err.constructor.name} ${err.message}`)
              done()
            }
          } as Dispatcher.DispatchHandler)
        : ({
            onConnect: () => seen.push('onConnect'),
            onUpgrade: (status: number, raw: Buffer[], socket: Duplex) => {
              seen.push(`onUpgrade ${status} ${JSON.stringify(raw.map(String))} ${socket instanceof Duplex}`)
              done(socket)
            },
            onHeaders: (status: number) => {
              seen.push(`onHeaders ${status}`)
              return true
            },
            onData: () => {
              seen.push('data')
              return true
            },
            onComplete: () => {
              seen.push('onComplete')
              done()
            },
            onError: (err: Error) => {
              seen.push(`onError ${err.constructor.name} ${err.message}`)
              done()
            }
          } as unknown as Dispatcher.DispatchHandler)
    agent.dispatch({ origin: switching.origin, path: '/', method: 'GET', upgrade: 'echo', ...opts }, handler)
  })
  return seen
}

describe('handlers', () => {
  it('onRequestUpgrade(controller, statusCode, headers, socket) gets what undici gives', async () => {
    const [theirs, ours] = await onBoth((agent) => handlerView(agent, 'controller'))
    expect(ours).toEqual(theirs)
    expect(ours[1]).toContain('onRequestUpgrade 101 ')
  })

  it('legacy onUpgrade(statusCode, rawHeaders, socket) gets what undici gives, header case kept', async () => {
    const [theirs, ours] = await onBoth((agent) => handlerView(agent, 'legacy'))
    expect(ours).toEqual(theirs)
    expect(ours[1]).toContain('"X-Upgraded","yes"')
  })

  it('an upgrade answered with a normal response reaches the response callbacks', async () => {
    const [theirs, ours] = await onBoth((agent) => handlerView(agent, 'legacy', { origin: plain.origin }))
    expect(ours).toEqual(theirs)
    expect(ours).toEqual(['onConnect', 'onHeaders 200', 'data', 'onComplete'])
  })

  it('a legacy handler without onUpgrade is refused with InvalidArgumentError, as undici', async () => {
    const [theirs, ours] = await onBoth(async (agent) => {
      return new Promise<string>((resolve) => {
        agent.dispatch(
          { origin: switching.origin, path: '/', method: 'GET', upgrade: 'echo' },
          {
            onConnect() {},
            onHeaders: () => true,
            onError: (err: Error) => resolve(`${err.constructor.name} ${err.message}`)
          } as unknown as Dispatcher.DispatchHandler
        )
      })
    })
    expect(ours).toEqual(theirs)
    expect(ours).toBe('InvalidArgumentError invalid onUpgrade method')
  })

  it('an exception from onUpgrade reaches onError and closes the connection', async () => {
    const [theirs, ours] = await onBoth(async (agent) => {
      let socket: Duplex | undefined
      const error = await new Promise<string>((resolve) => {
        agent.dispatch({ origin: switching.origin, path: '/', method: 'GET', upgrade: 'echo' }, {
          onConnect() {},
          onUpgrade(_status: number, _raw: Buffer[], s: Duplex) {
            socket = s
            throw new Error('handler failed')
          },
          onError: (err: Error) => resolve(err.message)
        } as unknown as Dispatcher.DispatchHandler)
      })
      return { error, destroyed: socket?.destroyed }
    })
    expect(ours).toEqual(theirs)
    expect(ours).toEqual({ error: 'handler failed', destroyed: true })
  })
})

describe('the upgraded socket', () => {
  it('calls write callbacks in order once the bytes are out, and half-closes with end()', async () => {
    const [theirs, ours] = await onBoth(async (agent) => {
      const { socket } = await upgradeOn(agent, { origin: switching.origin, path: '/', protocol: 'echo' })
      const order: string[] = []
      socket.write('a', () => order.push('a'))
      socket.write('b', () => order.push('b'))
      socket.end('c', () => order.push('end'))
      // The server echoes, then ends its side once ours ended: everything comes back, then the end.
      const chunks: Buffer[] = []
      for await (const chunk of socket) chunks.push(chunk as Buffer)
      await closed(socket)
      return { order, echoed: Buffer.concat(chunks).toString(), destroyed: socket.destroyed }
    })
    expect(ours).toEqual(theirs)
    expect(ours).toEqual({ order: ['a', 'b', 'end'], echoed: 'abc', destroyed: true })
  })

  it('ends when the server ends its side, and closes (allowHalfOpen false, as net.Socket)', async () => {
    const closing = await switchingServer((socket) => socket.end('bye'))
    try {
      const [theirs, ours] = await onBoth(async (agent) => {
        const { socket } = await upgradeOn(agent, { origin: closing.origin, path: '/', protocol: 'echo' })
        const events: string[] = []
        socket.on('data', (d: Buffer) => events.push(`data ${d}`))
        socket.on('end', () => events.push('end'))
        socket.on('finish', () => events.push('finish'))
        await next(socket, 'close')
        return { events, allowHalfOpen: socket.allowHalfOpen }
      })
      expect(ours).toEqual(theirs)
      expect(ours.events).toEqual(['data bye', 'end', 'finish'])
    } finally {
      await closing.close()
    }
  })

  it('a reset by the server is an ECONNRESET error, then close', async () => {
    const resetting = await switchingServer((socket) => setTimeout(() => (socket as import('node:net').Socket).resetAndDestroy(), 20))
    try {
      const [theirs, ours] = await onBoth(async (agent) => {
        const { socket } = await upgradeOn(agent, { origin: resetting.origin, path: '/', protocol: 'echo' })
        const [err] = await next<[Error & { code?: string; syscall?: string }]>(socket, 'error')
        await closed(socket)
        return { code: err.code, syscall: err.syscall, message: err.message }
      })
      expect(ours).toEqual(theirs)
      expect(ours.code).toBe('ECONNRESET')
    } finally {
      await resetting.close()
    }
  })

  it('has net.Socket’s addresses and accepts setNoDelay, setKeepAlive, setTimeout, ref and unref', async () => {
    const [theirs, ours] = await onBoth(async (agent) => {
      const { socket } = await upgradeOn(agent, { origin: switching.origin, path: '/', protocol: 'echo' })
      const s = socket as unknown as import('node:net').Socket
      const chained = [s.setNoDelay(true), s.setKeepAlive(true, 1000), s.setTimeout(0), s.unref(), s.ref()].every((r) => r === s)
      const address = s.address() as import('node:net').AddressInfo
      const timedOut = next(s, 'timeout').then(() => 'timeout')
      s.setTimeout(50)
      const result = {
        chained,
        remote: [s.remoteAddress, s.remotePort === Number(new URL(switching.origin).port), s.remoteFamily],
        local: [address.address, address.family, address.port === s.localPort, typeof s.localPort],
        timeout: await timedOut,
        stillOpen: !s.destroyed
      }
      s.destroy()
      return result
    })
    expect(ours).toEqual(theirs)
    expect(ours).toMatchObject({ chained: true, timeout: 'timeout', stillOpen: true })
  })

  it('a paused reader makes the server’s writes block, and every byte comes once it reads', async () => {
    const total = 64 * 1024 * 1024
    let stalledAt = -1
    const flooding = await switchingServer((socket) => {
      const chunk = Buffer.alloc(64 * 1024, 0x61)
      let sent = 0
      const pump = (): void => {
        while (sent < total) {
          sent += chunk.length
          if (!socket.write(chunk)) {
            stalledAt = sent
            socket.once('drain', pump)
            return
          }
        }
        socket.end()
      }
      pump()
    })
    try {
      const [theirs, ours] = await onBoth(async (agent) => {
        stalledAt = -1
        const { socket } = await upgradeOn(agent, { origin: flooding.origin, path: '/', protocol: 'echo' })
        socket.pause()
        await new Promise((resolve) => setTimeout(resolve, 300))
        const first = stalledAt
        await new Promise((resolve) => setTimeout(resolve, 300))
        const stalled = stalledAt === first && first > 0 && first < 32 * 1024 * 1024
        // What waits on the client's side is bounded too: the rest stays in the server's socket.
        const bufferedBounded = socket.readableLength < 4 * 1024 * 1024
        let received = 0
        socket.on('data', (chunk: Buffer) => (received += chunk.length))
        socket.resume()
        await next(socket, 'end', 30_000)
        return { stalled, bufferedBounded, received }
      })
      expect(ours).toEqual(theirs)
      expect(ours).toEqual({ stalled: true, bufferedBounded: true, received: total })
    } finally {
      await flooding.close()
    }
  })

  it('an idle unref’d upgraded socket lets the process exit; a ref’d one keeps it alive', { timeout: 30_000 }, async () => {
    const script = (agentModule: string, unref: boolean): string => `
      const { Agent } = require(${JSON.stringify(agentModule)})
      const agent = new Agent()
      agent.upgrade({ origin: ${JSON.stringify(switching.origin)}, path: '/', protocol: 'echo' }).then(({ socket }) => {
        ${unref ? 'socket.unref()' : ''}
        process.stdout.write('upgraded')
      })`
    // Once the child says it upgraded, it has three seconds to exit by itself.
    const run = (agentModule: string, unref: boolean): Promise<string> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, ['-e', script(agentModule, unref)], { stdio: ['ignore', 'pipe', 'inherit'] })
        let output = ''
        let timer: NodeJS.Timeout | undefined
        child.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString()
          timer ??= setTimeout(() => child.kill(), 3000)
        })
        child.on('exit', (_code, signal) => {
          clearTimeout(timer)
          resolve(`${output} ${signal === null ? 'exited' : 'kept alive'}`)
        })
      })
    const results = await Promise.all([run('undici', true), run('reqwest-dispatcher', true), run('undici', false), run('reqwest-dispatcher', false)])
    expect(results).toEqual(['upgraded exited', 'upgraded exited', 'upgraded kept alive', 'upgraded kept alive'])
  })
})

describe('the agent after upgrades', () => {
  it('an upgraded request does not count against the origin: plain requests go on', async () => {
    const agent = new Agent({ connections: 1 })
    try {
      const { socket } = await upgradeOn(agent, { origin: switching.origin, path: '/', protocol: 'echo' })
      const res = await agent.request({ origin: switching.origin, path: '/after', method: 'GET' })
      expect(await res.body.text()).toBe('plain')
      socket.destroy()
    } finally {
      await agent.destroy()
    }
  })
})
