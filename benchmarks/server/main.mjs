/**
 * The benchmark server process: an HTTP/1.1 server (node:http), the same over TLS (node:https) and an
 * HTTP/2-over-TLS server (node:http2), all on 127.0.0.1 with ephemeral ports, answering the routes of
 * `routes.mjs`; the HTTP/1.1 server also takes WebSocket upgrades (the `ws` package's server), echoing every
 * message back. Run as a child of the runner so its CPU is never counted as a client's; it reports
 * `{ h1Port, h1sPort, h2Port }` over IPC and exits when told to.
 */
import { createServer } from 'node:http'
import { createSecureServer } from 'node:http2'
import { createServer as createHttpsServer } from 'node:https'
import { WebSocketServer } from 'ws'
import { route } from './routes.mjs'

const { key, cert } = JSON.parse(process.argv[2])

function http1Io (req, res) {
  return {
    request: req,
    respond (status, headers, body) { res.writeHead(status, headers); res.end(body) },
    start (status, headers) { res.writeHead(status, headers) },
    write: (chunk) => res.write(chunk),
    onDrain: (fn) => res.once('drain', fn),
    end: () => res.end()
  }
}

function http2Io (stream) {
  // A client that is killed or closes mid-request leaves a destroyed stream behind: answer nothing then.
  const respondHeaders = (status, headers) => {
    if (stream.destroyed || stream.closed) return false
    stream.respond({ ':status': status, ...headers })
    return true
  }
  return {
    request: stream,
    respond (status, headers, body) { if (respondHeaders(status, headers)) stream.end(body) },
    start: respondHeaders,
    write: (chunk) => stream.write(chunk),
    onDrain: (fn) => stream.once('drain', fn),
    end: () => stream.end()
  }
}

const answerHttp1 = (req, res) => route(req.method, req.url, http1Io(req, res))
const http1 = createServer({ keepAliveTimeout: 60_000 }, answerHttp1)
const https1 = createHttpsServer({ key, cert, keepAliveTimeout: 60_000 }, answerHttp1)
for (const server of [http1, https1]) {
  server.maxRequestsPerSocket = 0
  // The scale row opens 10 000 connections at once; they must not be timed out while they wait.
  server.headersTimeout = 0
  server.requestTimeout = 0
}

const echo = new WebSocketServer({ server: http1, maxPayload: 64 * 1024 * 1024, perMessageDeflate: false })
echo.on('connection', (ws) => {
  ws.on('error', () => {})
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
})

const http2 = createSecureServer({ key, cert, allowHTTP1: false, settings: { maxConcurrentStreams: 1000 } })
http2.on('stream', (stream, headers) => {
  stream.on('error', () => {})
  route(headers[':method'], headers[':path'], http2Io(stream))
})
http2.on('sessionError', () => {})

// The server outlives any one client: an error from a half-closed connection is logged, never fatal.
process.on('uncaughtException', (err) => process.stderr.write(`benchmark server: ${err.stack}\n`))

// A long accept queue (the kernel caps it at net.core.somaxconn) for the scale row's burst of connects.
const BACKLOG = 65_535
const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', BACKLOG, () => resolve(server.address().port)))
const [h1Port, h1sPort, h2Port] = await Promise.all([listen(http1), listen(https1), listen(http2)])
process.send({ h1Port, h1sPort, h2Port })
process.on('message', (message) => {
  if (message === 'stop') process.exit(0)
})
process.on('disconnect', () => process.exit(0))
