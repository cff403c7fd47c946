/**
 * Node's own clients as a reference: `node:http` (`node:https` over TLS) with a keep-alive agent for HTTP/1.1
 * rows, one `node:http2` session (all streams multiplexed on it, like the Agents under test) for HTTP/2 rows.
 * Bodies are read and dropped chunk by chunk.
 */
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'

function http1Sender (target, ca) {
  const module = ca ? https : http
  const agent = new module.Agent({ keepAlive: true, maxSockets: Infinity, ca })
  const url = new URL(target.url)
  const headers = { ...target.headers }
  if (target.body) headers['content-length'] = target.body.length
  const send = (done) => {
    const req = module.request({ agent, host: url.hostname, port: url.port, path: target.path, method: target.method, headers }, (res) => {
      res.on('data', () => {})
      res.on('end', () => done(res.statusCode === 200 ? undefined : new Error(`status ${res.statusCode}`)))
      res.on('error', done)
    })
    req.on('error', done)
    req.end(target.body ?? undefined)
  }
  return { send, close: () => agent.destroy() }
}

function http2Sender (target, ca) {
  const session = http2.connect(target.origin, { ca })
  session.on('error', () => {})
  const send = (done) => {
    const stream = session.request({ ':method': target.method, ':path': target.path, ...target.headers })
    let status = 0
    stream.on('response', (headers) => { status = headers[':status'] })
    stream.on('data', () => {})
    stream.on('end', () => done(status === 200 ? undefined : new Error(`status ${status}`)))
    stream.on('error', done)
    stream.end(target.body ?? undefined)
  }
  return { send, close: () => session.close() }
}

export function nodeCoreSender (config, target) {
  if (config.protocol === 'h2') return http2Sender(target, config.tls.ca)
  return http1Sender(target, config.protocol === 'h1s' ? config.tls.ca : undefined)
}
