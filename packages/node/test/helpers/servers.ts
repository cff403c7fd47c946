/** Real servers on 127.0.0.1 for the tests, closed by the returned function. */
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'

export interface Running {
  origin: string
  port: number
  close(): Promise<void>
}

/**
 * Starts `server` on 127.0.0.1, on a free port. `close()` destroys every connection it accepted (and every
 * socket handed to `track`, such as a proxy's upstream connections), then closes the server.
 */
export async function serve<S extends net.Server>(server: S, scheme = 'http'): Promise<Running & { server: S; track(socket: net.Socket): void }> {
  const sockets = new Set<net.Socket>()
  const track = (socket: net.Socket): void => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  }
  server.on('connection', track)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    server,
    port,
    origin: `${scheme}://127.0.0.1:${port}`,
    track,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}

export async function httpServer(handler: http.RequestListener): Promise<Running & { server: http.Server }> {
  const server = http.createServer(handler)
  // Node's default: `Keep-Alive: timeout=5`, which undici (and this agent) reuse connections under. A hint of
  // 2 s or less (the keepAliveTimeoutThreshold) means no reuse to undici.
  server.keepAliveTimeout = 5000
  return serve(server)
}

/** A TCP server that answers each connection with `onConnection`, for raw or malformed HTTP. */
export async function rawServer(onConnection: (socket: net.Socket) => void): Promise<Running> {
  return serve(
    net.createServer((socket) => {
      socket.on('error', () => {})
      onConnection(socket)
    })
  )
}

/** Reads one HTTP/1.1 request head from a raw socket. */
export function readHead(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = ''
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1')
      if (text.includes('\r\n\r\n')) {
        socket.off('data', onData)
        resolve(text)
      }
    }
    socket.on('data', onData)
  })
}

/** A port nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = await serve(net.createServer())
  await server.close()
  return server.port
}

/** An echo route: method, url, selected request headers and the body, as JSON. */
export const echo: http.RequestListener = (req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    res.setHeader('content-type', 'application/json')
    res.end(
      JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8')
      })
    )
  })
}

/**
 * Answers a proxy's `CONNECT` request: connects to the `host:port` it names, says 200, and pipes both ways.
 * The upstream socket joins `sockets` so that the caller can destroy it on close.
 */
export function tunnel(target: string, client: net.Socket, head: Buffer, sockets: Set<net.Socket>): void {
  const [host, port] = target.split(':')
  const upstream = net.connect(Number(port), host, () => {
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    upstream.write(head)
    upstream.pipe(client)
    client.pipe(upstream)
  })
  sockets.add(upstream)
  upstream.on('error', () => client.destroy())
}
