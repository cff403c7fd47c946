/**
 * Security regressions (issue 10): where a request goes, what path it carries, numbers that once crashed the
 * process, TLS kept apart between a proxy and the origin, and secrets kept out of error messages.
 */
import https from 'node:https'
import net from 'node:net'
import type { TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errors, ProxyAgent as UndiciProxyAgent, type Dispatcher } from 'undici'
import { Agent, ProxyAgent } from 'reqwest-dispatcher'
import { closedPort, httpServer, rawServer, readHead, tunnel, type Running } from './helpers/servers'
import { makePki, type KeyPair, type Pki } from './helpers/transport-certs'
import { undiciMajor } from './helpers/differential'

/** Runs one dispatch to its end: the response's status and body, or the error it failed with. */
function run(agent: Dispatcher, opts: Dispatcher.DispatchOptions): Promise<{ status: number; body: string } | Error> {
  return new Promise((resolve) => {
    let status = 0
    const chunks: Buffer[] = []
    agent.dispatch(opts, {
      onRequestStart() {},
      onResponseStart(_controller, statusCode) {
        status = statusCode
      },
      onResponseData(_controller, chunk) {
        chunks.push(chunk)
      },
      onResponseEnd() {
        resolve({ status, body: Buffer.concat(chunks).toString() })
      },
      onResponseError(_controller, err) {
        resolve(err)
      }
    })
  })
}

/** A server that answers with the request line's target and host header it received, and counts requests. */
async function targetServer(): Promise<Running & { hits: string[] }> {
  const hits: string[] = []
  const server = await httpServer((req, res) => {
    hits.push(req.url ?? '')
    res.end(JSON.stringify({ url: req.url, host: req.headers.host, authorization: req.headers.authorization }))
  })
  return Object.assign(server, { hits })
}

describe('an absolute URL as path', () => {
  let a: Running & { hits: string[] }
  let b: Running & { hits: string[] }
  const agent = new Agent()

  beforeAll(async () => {
    a = await targetServer()
    b = await targetServer()
  })

  afterAll(async () => {
    await agent.close()
    await a.close()
    await b.close()
  })

  it('never sends the request, or its credentials, to the host the path names', async () => {
    const outcome = await run(agent, {
      origin: a.origin,
      path: `${b.origin}/x?token=1`,
      method: 'GET',
      headers: { authorization: 'Bearer secret' }
    })
    expect(b.hits).toEqual([])
    expect(outcome).toBeInstanceOf(errors.NotSupportedError)
    expect(a.hits).toEqual([])
  })

  it('naming the origin itself is sent to the origin as the same request in origin form', async () => {
    const outcome = await run(agent, { origin: a.origin, path: `${a.origin}/y/../z?q=1`, method: 'GET' })
    expect(outcome).toEqual({ status: 200, body: JSON.stringify({ url: '/y/../z?q=1', host: a.origin.slice(7) }) })
    expect(b.hits).toEqual([])
  })

  it('an origin with a path is refused as undici refuses it', async () => {
    const before = a.hits.length
    for (const origin of [`${a.origin}/base`, `${a.origin}/?q=1`, `${a.origin}/#frag`]) {
      const outcome = await run(agent, { origin, path: '/x', method: 'GET' })
      expect(outcome).toBeInstanceOf(errors.InvalidArgumentError)
      expect((outcome as Error).message).toBe('invalid url')
    }
    expect(a.hits.length).toBe(before)
  })
})

describe('the path is sent as given', () => {
  let server: Running
  const lines: string[] = []
  const agent = new Agent()

  beforeAll(async () => {
    server = await rawServer((socket) => {
      void readHead(socket).then((head) => {
        lines.push(head.slice(0, head.indexOf('\r\n')))
        socket.end('HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n')
      })
    })
  })

  afterAll(async () => {
    await agent.close()
    await server.close()
  })

  const cases: Array<[string, string, string]> = [
    // WHATWG parsing would resolve the escaped dot segments and reach /secret.
    ['escaped dot segments after a non-ASCII character', '/public/\u00e9/%2e%2e/%2e%2e/secret', '/public/%C3%A9/%2e%2e/%2e%2e/secret'],
    ['plain dot segments', '/a/./b/../../c', '/a/./b/../../c'],
    ['a fragment, escaped rather than cut off', '/a#b', '/a%23b'],
    ['characters a request line cannot carry raw', '/a<b>`c?d="e"', '/a%3Cb%3E%60c?d=%22e%22'],
    ['non-ASCII in the query', '/q?name=caf\u00e9', '/q?name=caf%C3%A9']
  ]
  it.each(cases)('%s', async (_name, path, sent) => {
    lines.length = 0
    const outcome = await run(agent, { origin: server.origin, path, method: 'GET' })
    expect(outcome).toEqual({ status: 200, body: '' })
    expect(lines).toEqual([`GET ${sent} HTTP/1.1`])
  })
})

describe('numbers at and beyond their limits', () => {
  let server: Running

  beforeAll(async () => {
    server = await httpServer((_req, res) => res.end('ok'))
  })

  afterAll(async () => {
    await server.close()
  })

  it('a huge per-request timeout neither crashes the process nor strands the requests dispatched with it', async () => {
    const agent = new Agent()
    try {
      const base = { origin: server.origin, path: '/', method: 'GET' } as const
      // Dispatched in one tick: they cross into the addon in one batch.
      const outcomes = await Promise.all([
        run(agent, base),
        run(agent, { ...base, headersTimeout: 1e23 }),
        run(agent, { ...base, bodyTimeout: 1e300 }),
        run(agent, { ...base, headersTimeout: Number.MAX_VALUE, bodyTimeout: 5e-324 }),
        run(agent, base)
      ])
      expect(outcomes).toEqual(Array.from({ length: 5 }, () => ({ status: 200, body: 'ok' })))
    } finally {
      await agent.close()
    }
  })

  it('huge agent timeouts are accepted, as undici accepts them, and requests go through', async () => {
    const agent = new Agent({
      headersTimeout: 1e300,
      bodyTimeout: 1e23,
      connectTimeout: Number.MAX_VALUE,
      keepAliveTimeout: 1e300,
      keepAliveMaxTimeout: 1e300,
      maxHeaderSize: 1e300,
      maxResponseSize: 1e300,
      connections: 1e300
    })
    try {
      expect(await run(agent, { origin: server.origin, path: '/', method: 'GET' })).toEqual({ status: 200, body: 'ok' })
    } finally {
      await agent.close()
    }
  })

  it('a rate limit slower than any wait refuses the request instead of panicking', async () => {
    const agent = new Agent({ rateLimit: { requestsPerSecond: Number.MIN_VALUE, burst: 1, maxWait: 10 } })
    try {
      const base = { origin: server.origin, path: '/', method: 'GET' } as const
      const [first, second] = await Promise.all([run(agent, base), run(agent, base)])
      expect(first).toEqual({ status: 200, body: 'ok' })
      expect((second as errors.UndiciError).code).toBe('UND_ERR_RATE_LIMITED')
    } finally {
      await agent.close()
    }
  })

  it('timeouts undici refuses are refused with its message', () => {
    expect(() => new Agent({ headersTimeout: 1.5 })).toThrow('headersTimeout must be a positive integer or zero')
    expect(() => new Agent({ bodyTimeout: -1 })).toThrow('bodyTimeout must be a positive integer or zero')
    expect(() => new Agent({ keepAliveTimeout: 0 })).toThrow('invalid keepAliveTimeout')
    expect(() => new Agent({ connectTimeout: -5 })).toThrow('invalid connectTimeout')
  })
})

/** An `https://` CONNECT proxy serving `cert`, recording whether each client showed a certificate. */
async function tlsProxy(cert: KeyPair): Promise<Running & { clientCerts: boolean[]; tunnels: string[] }> {
  const clientCerts: boolean[] = []
  const tunnels: string[] = []
  const sockets = new Set<net.Socket>()
  const server = https.createServer({ cert: cert.cert, key: cert.key, requestCert: true, rejectUnauthorized: false })
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket)
    clientCerts.push(Object.keys(socket.getPeerCertificate()).length > 0)
  })
  server.on('request', (req, res) => {
    tunnels.push(`${req.method} ${req.url}`)
    res.end('forwarded')
  })
  server.on('connect', (req, client: net.Socket, head: Buffer) => {
    tunnels.push(`CONNECT ${req.url}`)
    client.on('error', () => {})
    tunnel(req.url ?? '', client, head, sockets)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  return {
    port,
    origin: `https://127.0.0.1:${port}`,
    clientCerts,
    tunnels,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

/** An https origin serving `cert` that answers with the CN of the client certificate it got (or `none`). */
async function tlsOrigin(cert: KeyPair, clientCa?: string): Promise<Running> {
  const server = https.createServer(
    { cert: cert.cert, key: cert.key, requestCert: clientCa !== undefined, rejectUnauthorized: clientCa !== undefined, ca: clientCa },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate()
      res.end(peer?.subject?.CN ?? 'none')
    }
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  return {
    port,
    origin: `https://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

describe('an https:// proxy and the origin behind it are two TLS peers', () => {
  let pki: Pki

  beforeAll(() => {
    pki = makePki()
  })

  afterAll(() => pki?.cleanup())

  const code = (outcome: unknown): string | undefined => (outcome as { code?: string }).code

  it("a lax origin setting never makes the proxy's certificate trusted (as undici: DEPTH_ZERO_SELF_SIGNED_CERT)", async () => {
    const proxy = await tlsProxy(pki.selfSigned)
    const target = await tlsOrigin(pki.server)
    const plain = await httpServer((_req, res) => res.end('plain'))
    const options = { uri: proxy.origin, requestTls: { rejectUnauthorized: false } }
    const ours = new ProxyAgent(options)
    const theirs = new UndiciProxyAgent(options)
    try {
      for (const origin of [target.origin, plain.origin]) {
        const base = { origin, path: '/', method: 'GET' } as const
        const [mine, undici] = [await run(ours, base), await run(theirs, base)]
        // undici 8 (8.13) does not get as far on Node 22+: for an https:// proxy named by an IP address it hands
        // Node's tls.connect that IP as `servername`, which Node refuses (ERR_INVALID_ARG_VALUE) before any TLS.
        const undiciRefusals = undiciMajor < 8 ? ['DEPTH_ZERO_SELF_SIGNED_CERT'] : ['DEPTH_ZERO_SELF_SIGNED_CERT', 'ERR_INVALID_ARG_VALUE']
        expect(undiciRefusals).toContain(code(undici))
        expect(code(mine)).toBe('DEPTH_ZERO_SELF_SIGNED_CERT')
      }
      // Nothing (no CONNECT, no forwarded request, no credentials) reached the unverified proxy.
      expect(proxy.tunnels).toEqual([])
    } finally {
      await Promise.all([ours.close(), theirs.close()])
      await Promise.all([proxy.close(), target.close(), plain.close()])
    }
  })

  it("a lax proxy setting never makes the origin's certificate trusted", async () => {
    const proxy = await tlsProxy(pki.selfSigned)
    const target = await tlsOrigin(pki.selfSigned)
    const agent = new ProxyAgent({ uri: proxy.origin, proxyTls: { rejectUnauthorized: false } })
    try {
      const outcome = await run(agent, { origin: target.origin, path: '/', method: 'GET' })
      expect(code(outcome)).toBe('DEPTH_ZERO_SELF_SIGNED_CERT')
      expect(proxy.tunnels).toEqual([`CONNECT 127.0.0.1:${target.port}`])
    } finally {
      await agent.close()
      await Promise.all([proxy.close(), target.close()])
    }
  })

  it("the origin's client certificate is shown to the origin only, the proxy's to the proxy only", async () => {
    const proxy = await tlsProxy(pki.server)
    const target = await tlsOrigin(pki.server, pki.ca.cert)
    const base = { origin: target.origin, path: '/', method: 'GET' } as const
    const originCert = new ProxyAgent({
      uri: proxy.origin,
      proxyTls: { ca: pki.ca.cert },
      requestTls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }
    })
    const proxyCert = new ProxyAgent({
      uri: proxy.origin,
      proxyTls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key },
      requestTls: { ca: pki.ca.cert }
    })
    try {
      expect(await run(originCert, base)).toEqual({ status: 200, body: 'reqwest-dispatcher client' })
      expect(proxy.clientCerts).toEqual([false])
      const refused = await run(proxyCert, base)
      expect(refused).toBeInstanceOf(Error)
      expect(proxy.clientCerts).toEqual([false, true])
    } finally {
      await Promise.all([originCert.close(), proxyCert.close()])
      await Promise.all([proxy.close(), target.close()])
    }
  })
})

describe('secrets stay out of errors', () => {
  /** A proxy (or origin) that resets every connection once the request head arrived. */
  async function resetting(): Promise<Running> {
    return rawServer((socket) => {
      void readHead(socket).then(() => socket.resetAndDestroy())
    })
  }

  it('a proxy resetting the connection fails with ECONNRESET as undici, the URL and its query nowhere', async () => {
    const proxy = await resetting()
    const ours = new ProxyAgent({ uri: proxy.origin, token: 'Bearer PROXYTOKEN' })
    const theirs = new UndiciProxyAgent({ uri: proxy.origin, token: 'Bearer PROXYTOKEN' })
    try {
      const opts = { origin: 'http://origin.test', path: '/path?token=SECRET', method: 'GET' } as const
      const [mine, undici] = [await run(ours, opts), await run(theirs, opts)]
      for (const err of [mine, undici]) {
        expect(err).toBeInstanceOf(Error)
        expect((err as { code?: string }).code).toBe('ECONNRESET')
      }
      expect((mine as Error).message).toBe('read ECONNRESET')
      expect(JSON.stringify({ ...(mine as object), message: (mine as Error).message, stack: (mine as Error).stack })).not.toMatch(
        /SECRET|PROXYTOKEN|origin\.test/
      )
    } finally {
      await Promise.all([ours.close(), theirs.close()])
      await proxy.close()
    }
  })

  it('an origin resetting the connection fails with ECONNRESET, the query nowhere', async () => {
    const server = await resetting()
    const agent = new Agent()
    try {
      const err = (await run(agent, { origin: server.origin, path: '/p?token=SECRET', method: 'GET' })) as Error
      expect((err as { code?: string }).code).toBe('ECONNRESET')
      expect(`${err.message} ${err.stack}`).not.toContain('SECRET')
    } finally {
      await agent.close()
      await server.close()
    }
  })
})

describe('state kept per origin stays bounded', () => {
  it('after 2 000 distinct origins, metrics() keeps 100 origin label values and folds the rest into "other"', async () => {
    const port = await closedPort()
    const agent = new Agent({ circuitBreaker: true, rateLimit: true })
    try {
      // Every address of 127.0.0.0/8 is loopback: 2 000 origins, each refused at once.
      const origins = Array.from({ length: 2000 }, (_, i) => `http://127.1.${i >> 8}.${i & 255}:${port}`)
      const outcomes = await Promise.all(origins.map((origin) => run(agent, { origin, path: '/', method: 'GET' })))
      expect(outcomes.every((o) => (o as { code?: string }).code === 'ECONNREFUSED')).toBe(true)
      const text = agent.metrics()
      const labels = new Set([...text.matchAll(/origin="([^"]*)"/g)].map((m) => m[1]))
      expect(labels.size).toBe(101)
      expect(labels.has('other')).toBe(true)
      expect(text.length).toBeLessThan(300_000)
      const requests = agent.metricsJSON().reqwest_dispatcher_requests_total.samples
      const total = requests.reduce((sum, sample) => sum + sample.value, 0)
      expect(total).toBe(2000)
      expect(requests.find((s) => s.labels.origin === 'other')?.value).toBe(1900)
      expect(agent.stats).toEqual({})
    } finally {
      await agent.close()
    }
  })
})
