/**
 * The routes every benchmark server answers, shared by the HTTP/1.1 and HTTP/2 servers:
 * - `GET /bytes/<n>`: `n` bytes, one write (64 B and 1 MiB rows);
 * - `POST /upload`: reads the whole request body, answers its length as a 64-byte body (4 KiB row);
 * - `GET /stream/<n>`: `n` bytes in 64 KiB writes that wait for the socket to drain (100 MiB stream row),
 *   so a slow client pushes back on the server instead of the server buffering the file;
 * - `GET /delay/<ms>`: 64 bytes after `ms` milliseconds (scale row: many requests waiting at once).
 */

const STREAM_CHUNK = Buffer.alloc(64 * 1024, 0x61)
const bodies = new Map()

/** A cached body of `size` bytes (the contents do not matter, only their length). */
function bodyOfSize (size) {
  let body = bodies.get(size)
  if (body === undefined) {
    body = Buffer.alloc(size, 0x62)
    bodies.set(size, body)
  }
  return body
}

/**
 * Answers one request. `respond(status, headers, body?)` sends a complete response; `write(chunk)` returns
 * false when the transport wants the caller to wait for `drain`; `onDrain(fn)` waits once.
 */
export function route (method, path, io) {
  if (method === 'GET' && path.startsWith('/bytes/')) {
    const body = bodyOfSize(Number(path.slice(7)))
    io.respond(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }, body)
  } else if (method === 'POST' && path === '/upload') {
    let received = 0
    io.request.on('data', (chunk) => { received += chunk.length })
    io.request.on('end', () => {
      const body = Buffer.from(String(received).padEnd(64, ' '))
      io.respond(200, { 'content-type': 'text/plain', 'content-length': body.length }, body)
    })
  } else if (method === 'GET' && path.startsWith('/stream/')) {
    streamBytes(Number(path.slice(8)), io)
  } else if (method === 'GET' && path.startsWith('/delay/')) {
    const body = bodyOfSize(64)
    setTimeout(() => io.respond(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }, body), Number(path.slice(7)))
  } else {
    io.respond(404, { 'content-length': 0 })
  }
}

function streamBytes (total, io) {
  io.start(200, { 'content-type': 'application/octet-stream', 'content-length': total })
  let left = total
  const pump = () => {
    while (left > 0) {
      const chunk = left >= STREAM_CHUNK.length ? STREAM_CHUNK : STREAM_CHUNK.subarray(0, left)
      left -= chunk.length
      if (!io.write(chunk)) {
        if (left > 0) io.onDrain(pump)
        else io.end()
        return
      }
    }
    io.end()
  }
  pump()
}
