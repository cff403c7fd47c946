/**
 * undici's `WebSocket` over the Agent, against the `ws` package's server: every scenario runs over undici.Agent
 * and over ours, and the events the page-facing API produces (open, message, close, error, in order, with their
 * data) must be the same.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Agent as UndiciAgent, EnvHttpProxyAgent as UndiciEnvHttpProxyAgent, getGlobalDispatcher, setGlobalDispatcher, WebSocket, type Dispatcher } from 'undici'
import { Agent, EnvHttpProxyAgent } from 'reqwest-dispatcher'
import { undiciMajor } from './helpers/differential'
import { makePki, type Pki } from './helpers/transport-certs'
import { connectProxy, echoMessages, onBoth, proxyAgents, wsServer, type WsPeer } from './helpers/upgrades'

let echo: WsPeer
let pki: Pki

beforeAll(async () => {
  echo = await wsServer()
  pki = makePki()
})

afterAll(async () => {
  await echo.close()
  pki.cleanup()
})

/** A WebSocket over `dispatcher`, open (or the reason it is not). */
function open(url: string, dispatcher: Dispatcher | undefined, protocols?: string[], options: Record<string, unknown> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, { dispatcher, protocols, ...options } as ConstructorParameters<typeof WebSocket>[1])
  ws.binaryType = 'arraybuffer'
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve(ws)
    ws.onerror = (event) => reject(new Error(`error before open: ${(event as unknown as { message?: string }).message}`))
  })
}

/** The next `count` messages, as text or bytes. */
function messages(ws: WebSocket, count: number): Promise<Array<string | Buffer>> {
  return new Promise((resolve) => {
    const got: Array<string | Buffer> = []
    ws.onmessage = (event) => {
      got.push(typeof event.data === 'string' ? event.data : Buffer.from(event.data as ArrayBuffer))
      if (got.length === count) resolve(got)
    }
  })
}

/** Opens a WebSocket to `url` over `agent`, sends `text` and closes it once the echo came: the echo. */
async function echoOnce(url: string, agent: Dispatcher, text: string): Promise<string | Buffer> {
  const ws = await open(url, agent)
  const got = messages(ws, 1)
  ws.send(text)
  const [back] = await got
  ws.close()
  return back
}

/** Every event of `ws` until it closes, with what each says. */
function eventsUntilClose(ws: WebSocket): Promise<string[]> {
  return new Promise((resolve) => {
    const seen: string[] = []
    ws.onmessage = (event) => seen.push(`message ${String(event.data)}`)
    ws.onerror = (event) => seen.push(`error ${(event as unknown as { message?: string }).message ?? ''}`.trim())
    ws.onclose = (event) => {
      seen.push(`close ${event.code} ${JSON.stringify(event.reason)} wasClean=${event.wasClean}`)
      resolve(seen)
    }
  })
}

/** A WebSocket to `url` fails its handshake over ours as over undici's agent: `error`, then an unclean close. */
async function expectHandshakeToFail(url: string): Promise<void> {
  const [theirs, ours] = await onBoth((agent) => eventsUntilClose(new WebSocket(url, { dispatcher: agent } as ConstructorParameters<typeof WebSocket>[1])))
  expect(ours).toEqual(theirs)
  expect(ours).toEqual(['error', 'close 1006 "" wasClean=false'])
}

describe('WebSocket over the agent', () => {
  it('opens and echoes text and binary messages', async () => {
    const [theirs, ours] = await onBoth(async (agent) => {
      const ws = await open(echo.url, agent)
      const got = messages(ws, 2)
      ws.send('hello')
      ws.send(new Uint8Array([1, 2, 3]))
      const [text, bytes] = await got
      ws.close()
      return { text, bytes: [...(bytes as Buffer)], readyState: ws.readyState, extensions: ws.extensions, protocol: ws.protocol }
    })
    expect(ours).toEqual(theirs)
    expect(ours).toMatchObject({ text: 'hello', bytes: [1, 2, 3] })
  })

  it('carries 16 MiB messages both ways', { timeout: 60_000 }, async () => {
    const big = Buffer.alloc(16 * 1024 * 1024)
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) % 251
    const [theirs, ours] = await onBoth(async (agent) => {
      const ws = await open(echo.url, agent)
      const got = messages(ws, 1)
      ws.send(big)
      const [back] = await got
      ws.close()
      return { length: (back as Buffer).length, same: (back as Buffer).equals(big) }
    })
    expect(ours).toEqual(theirs)
    expect(ours).toEqual({ length: big.length, same: true })
  })

  it('answers the server’s ping with a pong carrying its payload', async () => {
    const pongs: string[] = []
    const pinging = await wsServer((ws) => {
      ws.on('pong', (data) => pongs.push(data.toString()))
      ws.ping('are you there')
    })
    try {
      await onBoth(async (agent) => {
        const ws = await open(pinging.url, agent)
        const before = pongs.length
        while (pongs.length === before) await new Promise((resolve) => setTimeout(resolve, 5))
        ws.close()
      })
      expect(pongs).toEqual(['are you there', 'are you there'])
    } finally {
      await pinging.close()
    }
  })

  it('closes with the client’s code and reason, seen by the server', async () => {
    const seenByServer: string[] = []
    const recording = await wsServer((ws) => ws.on('close', (code, reason) => seenByServer.push(`${code} ${reason}`)))
    try {
      const [theirs, ours] = await onBoth(async (agent) => {
        const ws = await open(recording.url, agent)
        const events = eventsUntilClose(ws)
        ws.close(4000, 'client done')
        return events
      })
      expect(ours).toEqual(theirs)
      expect(ours).toEqual(['close 4000 "client done" wasClean=true'])
      // The server hears of the close once the connection is gone, which may be just after the client.
      while (seenByServer.length < 2) await new Promise((resolve) => setTimeout(resolve, 5))
      expect(seenByServer).toEqual(['4000 client done', '4000 client done'])
    } finally {
      await recording.close()
    }
  })

  it('reports a server-initiated close with its code and reason', async () => {
    const closing = await wsServer((ws) => {
      ws.send('last words')
      ws.close(4001, 'server done')
    })
    try {
      const [theirs, ours] = await onBoth(async (agent) => eventsUntilClose(await open(closing.url, agent)))
      expect(ours).toEqual(theirs)
      expect(ours).toEqual(['message last words', 'close 4001 "server done" wasClean=true'])
    } finally {
      await closing.close()
    }
  })

  it('an abrupt disconnect by the server is an unclean close 1006, as undici reports it', async () => {
    const dropping = await wsServer((ws) => {
      ws.send('before')
      setTimeout(() => ws.terminate(), 20)
    })
    try {
      const [theirs, ours] = await onBoth(async (agent) => eventsUntilClose(await open(dropping.url, agent)))
      expect(ours).toEqual(theirs)
      expect(ours.at(-1)).toBe('close 1006 "" wasClean=false')
    } finally {
      await dropping.close()
    }
  })

  it('a handshake the server refuses fails with error then close 1006', async () => {
    const refusing = await wsServer(echoMessages, undefined, {
      verifyClient: (_info: unknown, done: (ok: boolean, code?: number) => void) => done(false, 403)
    } as ConstructorParameters<typeof import('ws').WebSocketServer>[0])
    try {
      await expectHandshakeToFail(refusing.url)
    } finally {
      await refusing.close()
    }
  })

  it('applies the agent’s webSocket.maxPayloadSize: a bigger message is an error and an unclean close, as over undici.Agent', async () => {
    const sending = await wsServer((ws) => {
      ws.send(Buffer.alloc(1024, 1))
      ws.send(Buffer.alloc(2048, 2))
    })
    try {
      const [theirs, ours] = await onBoth(
        async (agent) => {
          const ws = new WebSocket(sending.url, { dispatcher: agent } as ConstructorParameters<typeof WebSocket>[1])
          ws.binaryType = 'arraybuffer'
          const seen = eventsUntilClose(ws)
          const sizes: number[] = []
          const onMessage = ws.onmessage
          ws.onmessage = (event) => {
            sizes.push((event.data as ArrayBuffer).byteLength)
            onMessage?.call(ws, event)
          }
          return { events: (await seen).map((e) => e.replace(/^message .*/, 'message')), sizes }
        },
        { webSocket: { maxPayloadSize: 1024 } },
        // A plain undici.Agent: its webSocketOptions are what the WebSocket reads.
        (o) => new UndiciAgent(o)
      )
      expect(ours).toEqual(theirs)
      expect(ours.sizes).toEqual([1024])
      expect(ours.events).toEqual(['message', 'error', 'close 1006 "" wasClean=false'])
    } finally {
      await sending.close()
    }
  })

  it('negotiates a subprotocol and sends the handshake headers undici sends', async () => {
    const [theirs, ours] = await onBoth(async (agent) => {
      const ws = await open(echo.url, agent, ['chat', 'superchat'])
      const req = echo.handshakes.at(-1)!
      ws.close()
      return {
        protocol: ws.protocol,
        upgrade: req.headers.upgrade,
        connection: req.headers.connection,
        version: req.headers['sec-websocket-version'],
        offered: req.headers['sec-websocket-protocol'],
        extensions: req.headers['sec-websocket-extensions']
      }
    })
    expect(ours).toEqual(theirs)
    expect(ours).toMatchObject({ protocol: 'chat', upgrade: 'websocket', connection: 'upgrade' })
  })

  it('wss:// trusts the agent’s TLS options (connect.ca)', async () => {
    const secure = await wsServer(echoMessages, pki.server)
    try {
      const [theirs, ours] = await onBoth(
        (agent) => echoOnce(secure.url, agent, 'over tls'),
        { connect: { ca: pki.ca.cert } }
      )
      expect(ours).toEqual(theirs)
      expect(ours).toBe('over tls')
    } finally {
      await secure.close()
    }
  })

  it('wss:// on an agent with allowH2: true opens over HTTP/1.1 (the server speaks only that), as undici', async () => {
    const secure = await wsServer(echoMessages, pki.server)
    try {
      const [theirs, ours] = await onBoth(
        async (agent) => ({ back: await echoOnce(secure.url, agent, 'h2 offered'), httpVersion: secure.handshakes.at(-1)?.httpVersion }),
        { allowH2: true, connect: { ca: pki.ca.cert } }
      )
      expect(ours).toEqual(theirs)
      expect(ours).toEqual({ back: 'h2 offered', httpVersion: '1.1' })
    } finally {
      await secure.close()
    }
  })

  it('wss:// through a ProxyAgent: a CONNECT tunnel, the handshake inside it, as undici.ProxyAgent', async () => {
    const secure = await wsServer(echoMessages, pki.server)
    const proxy = await connectProxy()
    try {
      const options = { uri: proxy.origin, requestTls: { ca: pki.ca.cert } }
      const [theirs, ours] = await onBoth(
        async (agent) => {
          const ws = await open(secure.url, agent)
          const got = messages(ws, 2)
          ws.send('through the proxy')
          ws.send(new Uint8Array([7, 8, 9]))
          const [text, bytes] = await got
          const events = eventsUntilClose(ws)
          ws.close(4002, 'proxied')
          return { text, bytes: [...(bytes as Buffer)], events: await events, tunnel: proxy.requests.at(-1)?.split('\r\n')[0] }
        },
        options,
        ...proxyAgents
      )
      expect(ours).toEqual(theirs)
      expect(ours).toEqual({
        text: 'through the proxy',
        bytes: [7, 8, 9],
        events: ['close 4002 "proxied" wasClean=true'],
        tunnel: `CONNECT 127.0.0.1:${secure.port} HTTP/1.1`
      })
    } finally {
      await Promise.all([secure.close(), proxy.close()])
    }
  })

  it('wss:// through an EnvHttpProxyAgent: the https proxy it names, a CONNECT tunnel, as undici.EnvHttpProxyAgent', async () => {
    const secure = await wsServer(echoMessages, pki.server)
    const proxy = await connectProxy()
    try {
      // The origin's CA both ways undici's and ours take it (requestTls for undici's ProxyAgent, connect for ours).
      const options = { httpsProxy: proxy.origin, noProxy: '', requestTls: { ca: pki.ca.cert }, connect: { ca: pki.ca.cert } }
      const [theirs, ours] = await onBoth(
        async (agent) => {
          const back = await echoOnce(secure.url, agent, 'from the environment')
          return { back, tunnel: proxy.requests.at(-1)?.split('\r\n')[0] }
        },
        options,
        (o) => new UndiciEnvHttpProxyAgent(o as UndiciEnvHttpProxyAgent.Options),
        (o) => new EnvHttpProxyAgent(o as ConstructorParameters<typeof EnvHttpProxyAgent>[0])
      )
      expect(ours).toEqual(theirs)
      expect(ours).toEqual({ back: 'from the environment', tunnel: `CONNECT 127.0.0.1:${secure.port} HTTP/1.1` })
    } finally {
      await Promise.all([secure.close(), proxy.close()])
    }
  })

  it('ws:// through a ProxyAgent: ours forwards the handshake to the proxy in absolute form, undici 7 tunnels it; the same messages', async () => {
    const proxy = await connectProxy()
    try {
      const [theirs, ours] = await onBoth(
        async (agent) => {
          const ws = await open(echo.url, agent)
          const got = messages(ws, 1)
          ws.send('forwarded')
          const [back] = await got
          const events = eventsUntilClose(ws)
          ws.close(1000, 'done')
          return { back, events: await events, line: proxy.requests.at(-1)?.split('\r\n')[0] }
        },
        { uri: proxy.origin },
        ...proxyAgents
      )
      const { host } = new URL(echo.origin)
      expect({ ...ours, line: undefined }).toEqual({ ...theirs, line: undefined })
      expect(ours).toMatchObject({ back: 'forwarded', events: ['close 1000 "done" wasClean=true'] })
      // undici 8 forwards http: requests too (its proxyTunnel defaults to false).
      expect(theirs.line).toBe(undiciMajor < 8 ? `CONNECT ${host} HTTP/1.1` : `GET http://${host}/ HTTP/1.1`)
      expect(ours.line).toBe(`GET http://${host}/ HTTP/1.1`)
      expect(echo.handshakes.at(-1)?.headers.upgrade).toBe('websocket')
    } finally {
      await proxy.close()
    }
  })

  it('wss:// without the CA fails the handshake as undici does', async () => {
    const secure = await wsServer(echoMessages, pki.server)
    try {
      await expectHandshakeToFail(secure.url)
    } finally {
      await secure.close()
    }
  })

  it('publishes undici:websocket:open and :close diagnostics as over undici.Agent', async () => {
    const seen: string[] = []
    const onOpen = (message: unknown): void => {
      const { address, protocol, extensions } = message as { address: { family?: string; port?: number }; protocol: string; extensions: string }
      seen.push(`open ${address.family} ${typeof address.port} ${JSON.stringify(protocol)} ${JSON.stringify(extensions)}`)
    }
    const onClose = (message: unknown): void => {
      const { code, reason } = message as { code: number; reason: string }
      seen.push(`close ${code} ${reason}`)
    }
    subscribe('undici:websocket:open', onOpen)
    subscribe('undici:websocket:close', onClose)
    try {
      await onBoth(async (agent) => {
        const ws = await open(echo.url, agent)
        const events = eventsUntilClose(ws)
        ws.close(1000, 'bye')
        await events
      })
    } finally {
      unsubscribe('undici:websocket:open', onOpen)
      unsubscribe('undici:websocket:close', onClose)
    }
    expect(seen.slice(2)).toEqual(seen.slice(0, 2))
    expect(seen.slice(0, 2)).toEqual(['open IPv4 number "" ""', 'close 1000 bye'])
  })

  it('the WebSocket after setGlobalDispatcher(agent) goes through the agent', async () => {
    // Node 22 and later have a global WebSocket (its own undici copy reads the global dispatcher too).
    const Global = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket ?? WebSocket
    const previous = getGlobalDispatcher()
    const agent = new Agent()
    let connections = 0
    agent.on('connect', () => connections++)
    setGlobalDispatcher(agent)
    try {
      const ws = new Global(echo.url)
      await new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve()
        ws.onerror = () => reject(new Error('error before open'))
      })
      const got = new Promise((resolve) => (ws.onmessage = (event) => resolve(event.data)))
      ws.send('global')
      expect(await got).toBe('global')
      ws.close()
      expect(connections).toBe(1)
    } finally {
      setGlobalDispatcher(previous)
      await agent.destroy()
    }
  })
})
