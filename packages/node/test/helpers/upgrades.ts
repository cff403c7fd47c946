/**
 * Peers for upgrade, CONNECT and WebSocket tests, all on 127.0.0.1: a `ws` WebSocket server (over HTTP or
 * HTTPS), a server that switches every request to a raw echo protocol, and a CONNECT proxy that tunnels to
 * any target; plus the pair of agents every scenario runs on (undici's and ours).
 */
import type { EventEmitter } from 'node:events'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { ProxyAgent as UndiciProxyAgent, type Dispatcher } from 'undici'
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws'
import { Agent, ProxyAgent } from 'reqwest-dispatcher'
import { undiciAgent } from './differential'
import { readHead, serve, type Running } from './servers'

/**
 * Runs `scenario` on a fresh undici agent, then on a fresh one of ours (each destroyed afterwards):
 * `[undici's result, ours]`. The undici side answers both handler styles as undici does (undici 7's Agent for
 * legacy handlers when the run is on undici 8: see helpers/differential.ts); `undici` makes another one (a plain
 * `undici.Agent`, for its events), `ours` another of ours (a `ProxyAgent`, say).
 */
export async function onBoth<T>(
  scenario: (agent: Dispatcher) => Promise<T>,
  options: Record<string, unknown> = {},
  undici: (options: Record<string, unknown>) => Dispatcher = undiciAgent,
  ours: (options: Record<string, unknown>) => Dispatcher = (o) => new Agent(o)
): Promise<[T, T]> {
  const results: T[] = []
  for (const make of [undici, ours]) {
    const agent = make(options)
    try {
      results.push(await scenario(agent))
    } finally {
      await agent.destroy()
    }
  }
  return [results[0], results[1]]
}

/** The last two arguments of `onBoth` for a scenario through a proxy: undici.ProxyAgent, then ours, from the same options. */
export const proxyAgents = [
  (options: Record<string, unknown>): Dispatcher => new UndiciProxyAgent(options as unknown as UndiciProxyAgent.Options),
  (options: Record<string, unknown>): Dispatcher => new ProxyAgent(options as unknown as ConstructorParameters<typeof ProxyAgent>[0])
] as const

export interface WsPeer extends Running {
  wss: WebSocketServer
  /** `ws://…` (or `wss://…`) of the server. */
  url: string
  /** Request heads of the handshakes, in order. */
  handshakes: http.IncomingMessage[]
}

/**
 * A `ws` server; `onConnection` gets each accepted socket (by default every message is echoed back in the kind it
 * came). With `tls`, it listens over HTTPS with that certificate.
 */
export async function wsServer(
  onConnection: (ws: ServerSocket, req: http.IncomingMessage) => void = echoMessages,
  tls?: { cert: string; key: string },
  options: ConstructorParameters<typeof WebSocketServer>[0] = {}
): Promise<WsPeer> {
  const server = tls === undefined ? http.createServer() : https.createServer(tls)
  const wss = new WebSocketServer({ server, maxPayload: 64 * 1024 * 1024, ...options })
  const handshakes: http.IncomingMessage[] = []
  wss.on('headers', (_headers, req) => handshakes.push(req))
  wss.on('connection', onConnection)
  const running = await serve(server, tls === undefined ? 'http' : 'https')
  return {
    ...running,
    wss,
    handshakes,
    url: running.origin.replace(/^http/, 'ws'),
    close: async () => {
      for (const client of wss.clients) client.terminate()
      wss.close()
      await running.close()
    }
  }
}

/** Echoes every message back, text as text and binary as binary. */
export function echoMessages(ws: ServerSocket): void {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
}

/**
 * A server that switches every request that asks for an upgrade to protocol `echo`: the 101 (with
 * `X-Upgraded: yes` and two `Set-Cookie`), then `onSwitch` gets the raw connection (by default an echo of what it
 * reads, ended when the client ends). Requests without `upgrade` get a plain `200 plain`. With `tls`, it
 * listens over HTTPS (HTTP/1.1 only, as `https.createServer`) with that certificate.
 */
export async function switchingServer(
  onSwitch: (socket: Duplex, req: http.IncomingMessage) => void = (socket) => socket.pipe(socket),
  tls?: { cert: string; key: string }
): Promise<Running & { heads: http.IncomingMessage[] }> {
  const heads: http.IncomingMessage[] = []
  const plainAnswer = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    heads.push(req)
    res.end('plain')
  }
  const server = tls === undefined ? http.createServer(plainAnswer) : https.createServer(tls, plainAnswer)
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    heads.push(req)
    socket.on('error', () => {})
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nX-Upgraded: yes\r\n' +
        'Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n'
    )
    if (head.length > 0) socket.unshift(head)
    onSwitch(socket, req)
  })
  const running = await serve(server, tls === undefined ? 'http' : 'https')
  return { ...running, heads }
}

export interface ConnectProxy extends Running {
  /** The request heads of every CONNECT, in order. */
  requests: string[]
}

/**
 * A CONNECT proxy: each `CONNECT host:port` is answered `200 Connection Established` and tunnelled to the target
 * (a target it cannot reach gets a 502). `answer` may answer a CONNECT itself instead (a 407, say). A request in
 * absolute form (`GET http://host:port/path`, a forward proxy's) goes to its target in origin form, and the
 * connection is piped both ways from then on, so an upgrade passes through.
 */
export async function connectProxy(answer?: (head: string) => string | null): Promise<ConnectProxy> {
  const requests: string[] = []
  let proxy: Running & { track(socket: net.Socket): void }
  const server = net.createServer((client) => {
    client.on('error', () => {})
    void readHead(client).then((head) => {
      requests.push(head)
      const own = answer?.(head) ?? null
      if (own !== null) {
        client.end(own)
        return
      }
      const forwarded = /^(\S+) http:\/\/([^/\s]+)(\S*) HTTP\/1\.1\r\n/.exec(head)
      if (forwarded !== null) {
        const [line, method, authority, path] = forwarded
        const colon = authority.lastIndexOf(':')
        const upstream = net.connect(Number(authority.slice(colon + 1)), authority.slice(0, colon))
        proxy.track(upstream)
        upstream.on('error', () => client.destroy())
        upstream.on('connect', () => {
          upstream.write(Buffer.from(`${method} ${path || '/'} HTTP/1.1\r\n${head.slice(line.length)}`, 'latin1'))
          client.pipe(upstream).pipe(client)
        })
        return
      }
      const target = /^CONNECT \/?(\S+) HTTP\/1\.1\r\n/.exec(head)?.[1] ?? ''
      const colon = target.lastIndexOf(':')
      const upstream = net.connect(Number(target.slice(colon + 1)), target.slice(0, colon).replace(/^\[|\]$/g, ''))
      proxy.track(upstream)
      upstream.on('error', () => {
        if (!client.destroyed) client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n')
      })
      upstream.on('connect', () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
        // What came behind the head belongs to the tunnel.
        const rest = head.slice(head.indexOf('\r\n\r\n') + 4)
        if (rest.length > 0) upstream.write(Buffer.from(rest, 'latin1'))
        client.pipe(upstream).pipe(client)
      })
    })
  })
  proxy = await serve(server)
  return { ...proxy, requests }
}

/** Resolves with the next `event` of `emitter` (its arguments), or rejects after `ms`. */
export function next<T extends unknown[] = unknown[]>(emitter: EventEmitter, event: string, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms)
    emitter.once(event, (...args: unknown[]) => {
      clearTimeout(timer)
      resolve(args as T)
    })
  })
}

/** `agent.upgrade(options)` with the `origin` an Agent needs (undici's types leave it out). */
export function upgradeOn(agent: Dispatcher, options: Dispatcher.UpgradeOptions & { origin: string }): Promise<Dispatcher.UpgradeData> {
  return agent.upgrade(options as Dispatcher.UpgradeOptions)
}

/** `agent.connect(options)` with the `origin` an Agent needs. */
export function connectOn(agent: Dispatcher, options: Dispatcher.ConnectOptions & { origin: string }): Promise<Dispatcher.ConnectData> {
  return agent.connect(options as Dispatcher.ConnectOptions)
}

/** Resolves once `stream` emitted `close` (at once if it did already). */
export async function closed(stream: Duplex): Promise<void> {
  if (!stream.closed) await next(stream, 'close')
}

/** Reads from `stream` until `length` bytes came; resolves with them. */
export function readBytes(stream: Duplex, length: number, ms = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let total = 0
    const timer = setTimeout(() => {
      stream.off('data', onData)
      reject(new Error(`only ${total} of ${length} bytes within ${ms} ms`))
    }, ms)
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      total += chunk.length
      if (total >= length) {
        clearTimeout(timer)
        stream.off('data', onData)
        // What comes next waits for the next reader.
        stream.pause()
        resolve(Buffer.concat(chunks))
      }
    }
    stream.on('data', onData)
  })
}
