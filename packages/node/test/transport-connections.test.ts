/**
 * Connection management: `connections` caps sockets per origin, `keepAliveTimeout` closes idle connections,
 * idle connections do not keep the process alive, and `agent.stats` counts pending and running requests.
 */
import { execFile } from 'node:child_process'
import http from 'node:http'
import http2 from 'node:http2'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { Agent } from 'reqwest-dispatcher'
import { text } from './helpers/requests'
import { serve } from './helpers/servers'

interface CountingServer {
  origin: string
  /** Sockets accepted so far. */
  accepted: () => number
  /** Sockets open now. */
  open: () => number
  /** Most requests the handler was running at once. */
  maxConcurrent: () => number
  /** Resolves when the next socket closes. */
  nextClose: () => Promise<number>
  close(): Promise<void>
}

async function countingServer(delayMs: number): Promise<CountingServer> {
  let accepted = 0
  let concurrent = 0
  let maxConcurrent = 0
  const sockets = new Set<Socket>()
  const closeWaiters: Array<(at: number) => void> = []
  const server = http.createServer((req, res) => {
    concurrent++
    maxConcurrent = Math.max(maxConcurrent, concurrent)
    setTimeout(() => {
      concurrent--
      res.end(req.url)
    }, delayMs)
  })
  // No `Keep-Alive: timeout=` hint (Node sends none when 0), so the agent's keepAliveTimeout decides how long a
  // connection idles, as in undici, where a server's hint takes precedence over it.
  server.keepAliveTimeout = 0
  server.on('connection', (socket: Socket) => {
    accepted++
    sockets.add(socket)
    socket.on('close', () => {
      sockets.delete(socket)
      for (const waiter of closeWaiters.splice(0)) waiter(Date.now())
    })
  })
  const { origin, close } = await serve(server)
  return {
    origin,
    accepted: () => accepted,
    open: () => sockets.size,
    maxConcurrent: () => maxConcurrent,
    nextClose: () => new Promise((resolve) => closeWaiters.push(resolve)),
    close
  }
}

describe('connections', () => {
  it('caps the sockets open to one origin', async () => {
    const server = await countingServer(50)
    const agent = new Agent({ connections: 2 })
    try {
      const bodies = await Promise.all(Array.from({ length: 10 }, (_, i) => text(`${server.origin}/${i}`, agent)))
      expect(bodies).toEqual(Array.from({ length: 10 }, (_, i) => `/${i}`))
      expect(server.maxConcurrent()).toBe(2)
      expect(server.accepted()).toBe(2)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('caps each origin separately', async () => {
    const a = await countingServer(30)
    const b = await countingServer(30)
    const agent = new Agent({ connections: 1 })
    try {
      await Promise.all([
        ...Array.from({ length: 4 }, () => text(`${a.origin}/`, agent)),
        ...Array.from({ length: 4 }, () => text(`${b.origin}/`, agent))
      ])
      expect([a.maxConcurrent(), b.maxConcurrent()]).toEqual([1, 1])
      expect([a.accepted(), b.accepted()]).toEqual([1, 1])
    } finally {
      await agent.close()
      await a.close()
      await b.close()
    }
  })

  it('opens as many sockets as requests need when not set', async () => {
    const server = await countingServer(50)
    const agent = new Agent()
    try {
      await Promise.all(Array.from({ length: 6 }, () => text(`${server.origin}/`, agent)))
      expect(server.maxConcurrent()).toBe(6)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('lets an HTTP/2 connection carry many streams even with connections: 1', async () => {
    let concurrent = 0
    let maxConcurrent = 0
    let sessions = 0
    // Every response waits until all 20 requests are in (or 2 s pass): only concurrent streams can fill it.
    const held: http2.Http2ServerResponse[] = []
    const release = (): void => {
      for (const res of held.splice(0)) res.end('ok')
    }
    const server = http2.createServer((_req, res) => {
      concurrent++
      maxConcurrent = Math.max(maxConcurrent, concurrent)
      res.on('finish', () => concurrent--)
      held.push(res)
      if (held.length === 20) release()
      else setTimeout(release, 2_000)
    })
    server.on('session', () => sessions++)
    const { origin, close } = await serve(server)
    const agent = new Agent({ h2c: true, connections: 1 })
    try {
      await Promise.all(Array.from({ length: 20 }, () => text(`${origin}/`, agent)))
      expect(maxConcurrent).toBe(20)
      expect(sessions).toBe(1)
    } finally {
      await agent.close()
      await close()
    }
  })

  it('validates connections as undici does: a negative count is refused, 0 means no cap', async () => {
    expect(() => new Agent({ connections: -1 })).toThrow('invalid connections')
    expect(() => new Agent({ connections: '2' as never })).toThrow('invalid connections')
    const server = await countingServer(0)
    const agent = new Agent({ connections: 0 })
    try {
      expect(await text(`${server.origin}/zero`, agent)).toBe('/zero')
    } finally {
      await agent.close()
      await server.close()
    }
  })
})

describe('keep-alive', () => {
  it('reuses an idle connection for the next request', async () => {
    const server = await countingServer(0)
    const agent = new Agent()
    try {
      await text(`${server.origin}/a`, agent)
      await text(`${server.origin}/b`, agent)
      await text(`${server.origin}/c`, agent)
      expect(server.accepted()).toBe(1)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('closes a connection idle for keepAliveTimeout', async () => {
    const server = await countingServer(0)
    const agent = new Agent({ keepAliveTimeout: 200 })
    try {
      const closed = server.nextClose()
      await text(`${server.origin}/`, agent)
      const idleSince = Date.now()
      const closedAt = await closed
      expect(closedAt - idleSince).toBeGreaterThanOrEqual(150)
      expect(closedAt - idleSince).toBeLessThan(2_000)
      expect(server.open()).toBe(0)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('keeps a connection open while within keepAliveTimeout', async () => {
    const server = await countingServer(0)
    const agent = new Agent({ keepAliveTimeout: 10_000 })
    try {
      await text(`${server.origin}/`, agent)
      await new Promise((resolve) => setTimeout(resolve, 500))
      expect(server.open()).toBe(1)
      await text(`${server.origin}/`, agent)
      expect(server.accepted()).toBe(1)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('idle connections do not keep the process alive', async () => {
    const server = await countingServer(0)
    try {
      const script = `
        const { Agent } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'index.js'))})
        const { request } = require('undici')
        const agent = new Agent({ keepAliveTimeout: 60_000 })
        request(${JSON.stringify(server.origin + '/')}, { dispatcher: agent })
          .then((res) => res.body.text()).then((t) => console.log('got ' + t))`
      const started = Date.now()
      const out = await new Promise<string>((resolve, reject) => {
        execFile(process.execPath, ['-e', script], { cwd: join(__dirname, '..'), timeout: 10_000 }, (err, stdout) =>
          err ? reject(err) : resolve(stdout.trim())
        )
      })
      expect(out).toBe('got /')
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(server.open()).toBe(0)
    } finally {
      await server.close()
    }
  })
})

describe('agent.stats', () => {
  it('counts pending and running requests per origin, as undici keys them', async () => {
    const server = await countingServer(100)
    const agent = new Agent({ connections: 2 })
    try {
      const all = Promise.all(Array.from({ length: 5 }, () => text(`${server.origin}/`, agent)))
      await new Promise((resolve) => setTimeout(resolve, 50))
      const stats = agent.stats[server.origin]
      expect(stats).toEqual({ connected: 2, free: 0, pending: 3, queued: 3, running: 2, size: 5 })
      await all
      // The core lets go of a request just after delivering its end; the two connections stay open, idle.
      await vi.waitFor(
        () => expect(agent.stats[server.origin]).toEqual({ connected: 2, free: 2, pending: 0, queued: 0, running: 0, size: 0 }),
        { timeout: 1_000 }
      )
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('is empty for an agent that has sent nothing', () => {
    expect(new Agent().stats).toEqual({})
  })
})
