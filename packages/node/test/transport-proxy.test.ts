/**
 * `ProxyAgent` and `EnvHttpProxyAgent` through real proxies started by the test: an HTTP proxy (absolute-form
 * requests and CONNECT, optionally behind TLS and requiring credentials) and a SOCKS5 proxy.
 */
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { errors, fetch, request } from 'undici'
import { EnvHttpProxyAgent, ProxyAgent } from 'reqwest-dispatcher'
import { answer, json } from './helpers/requests'
import { serve, tunnel } from './helpers/servers'
import { makePki, type Pki } from './helpers/transport-certs'

let pki: Pki

beforeAll(() => {
  pki = makePki()
})

afterAll(() => pki?.cleanup())

interface Seen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
}

interface Proxy {
  uri: string
  port: number
  seen: Seen[]
  close(): Promise<void>
}

/** Destroys a proxy's upstream connections, then closes the proxy. */
function closeWith(upstreams: Set<net.Socket>, close: () => Promise<void>): Promise<void> {
  for (const socket of upstreams) socket.destroy()
  return close()
}

/** An HTTP proxy: forwards absolute-form requests, tunnels CONNECT; `credentials` makes it demand them. */
async function httpProxy(options: { credentials?: string; tls?: boolean } = {}): Promise<Proxy> {
  const seen: Seen[] = []
  /** Connections the proxy made upstream (the server tracks those it accepted). */
  const upstreams = new Set<net.Socket>()
  const authorized = (headers: http.IncomingHttpHeaders): boolean =>
    options.credentials === undefined || headers['proxy-authorization'] === options.credentials
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    if (!authorized(req.headers)) {
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"' }).end()
      return
    }
    const target = new URL(req.url ?? '')
    const headers = { ...req.headers }
    delete headers['proxy-authorization']
    delete headers['proxy-connection']
    const upstream = http.request(
      { host: target.hostname, port: target.port, path: target.pathname + target.search, method: req.method, headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, { ...up.headers, 'x-via-proxy': 'yes' })
        up.pipe(res)
      }
    )
    upstream.on('error', () => res.writeHead(502).end())
    req.pipe(upstream)
  }
  const server = options.tls
    ? https.createServer({ cert: pki.server.cert, key: pki.server.key }, onRequest)
    : http.createServer(onRequest)
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    seen.push({ method: 'CONNECT', url: req.url ?? '', headers: req.headers })
    client.on('error', () => {})
    if (!authorized(req.headers)) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n\r\n')
      return
    }
    tunnel(req.url ?? '', client, head, upstreams)
  })
  const { origin, port, close } = await serve(server, options.tls ? 'https' : 'http')
  return { uri: origin, port, seen, close: () => closeWith(upstreams, close) }
}

/** A SOCKS5 proxy (no authentication, CONNECT only) recording the destinations asked for. */
async function socksProxy(): Promise<Proxy> {
  const seen: Seen[] = []
  /** Connections the proxy made upstream (the server tracks those it accepted). */
  const upstreams = new Set<net.Socket>()
  const server = net.createServer((client) => {
    client.on('error', () => {})
    client.once('data', (greeting: Buffer) => {
      if (greeting[0] !== 5) return client.destroy()
      client.write(Buffer.from([5, 0]))
      client.once('data', (req: Buffer) => {
        let host: string
        let at: number
        if (req[3] === 1) {
          host = Array.from(req.subarray(4, 8)).join('.')
          at = 8
        } else if (req[3] === 3) {
          host = req.subarray(5, 5 + req[4]).toString()
          at = 5 + req[4]
        } else {
          return client.destroy()
        }
        const port = req.readUInt16BE(at)
        seen.push({ method: 'SOCKS5', url: `${host}:${port}`, headers: {} })
        const upstream = net.connect(port, host, () => {
          client.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]))
          upstream.pipe(client)
          client.pipe(upstream)
        })
        upstreams.add(upstream)
        upstream.on('error', () => client.destroy())
      })
    })
  })
  const { origin, port, close } = await serve(server, 'socks5')
  return { uri: origin, port, seen, close: () => closeWith(upstreams, close) }
}

interface Origin {
  origin: string
  host: string
  close(): Promise<void>
}

async function origin(tls = false): Promise<Origin> {
  const handler: http.RequestListener = (req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ url: req.url, host: req.headers.host, tls, auth: req.headers['proxy-authorization'] ?? null }))
  }
  const server = tls ? https.createServer({ cert: pki.server.cert, key: pki.server.key }, handler) : http.createServer(handler)
  const { origin, port, close } = await serve(server, tls ? 'https' : 'http')
  return { origin, host: `127.0.0.1:${port}`, close }
}

describe('ProxyAgent', () => {
  it('sends requests for http: origins to the proxy in absolute form', async () => {
    const proxy = await httpProxy()
    const target = await origin()
    const agent = new ProxyAgent(proxy.uri)
    try {
      const { status, json: body, headers: { 'x-via-proxy': via } } = await answer(`${target.origin}/path?q=1`, agent)
      expect(status).toBe(200)
      expect(via).toBe('yes')
      expect(body).toMatchObject({ url: '/path?q=1', host: target.host, auth: null })
      expect(proxy.seen.map((s) => `${s.method} ${s.url}`)).toEqual([`GET ${target.origin}/path?q=1`])
    } finally {
      await agent.close()
      await proxy.close()
      await target.close()
    }
  })

  it('tunnels https: origins through CONNECT, verifying the origin with requestTls', async () => {
    const proxy = await httpProxy()
    const target = await origin(true)
    const agent = new ProxyAgent({ uri: proxy.uri, requestTls: { ca: pki.ca.cert } })
    try {
      const { status, json: body } = await answer(`${target.origin}/secure`, agent)
      expect(status).toBe(200)
      expect(body).toMatchObject({ url: '/secure', tls: true })
      expect(proxy.seen.map((s) => `${s.method} ${s.url}`)).toEqual([`CONNECT ${target.host}`])
    } finally {
      await agent.close()
      await proxy.close()
      await target.close()
    }
  })

  it('a tunnelled origin is still verified: an unknown issuer fails as without a proxy', async () => {
    const proxy = await httpProxy()
    const target = await origin(true)
    const agent = new ProxyAgent({ uri: proxy.uri })
    try {
      await expect(request(`${target.origin}/`, { dispatcher: agent })).rejects.toMatchObject({
        code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'
      })
    } finally {
      await agent.close()
      await proxy.close()
      await target.close()
    }
  })

  it('authenticates with token on forwarded requests and on CONNECT, and never leaks it to the origin', async () => {
    const token = 'Bearer s3cret'
    const proxy = await httpProxy({ credentials: token })
    const plain = await origin()
    const secure = await origin(true)
    const agent = new ProxyAgent({ uri: proxy.uri, token, requestTls: { ca: pki.ca.cert } })
    try {
      expect((await json(`${plain.origin}/`, agent)).auth).toBe(null)
      expect((await json(`${secure.origin}/`, agent)).auth).toBe(null)
      expect(proxy.seen.map((s) => [s.method, s.headers['proxy-authorization']])).toEqual([
        ['GET', token],
        ['CONNECT', token]
      ])
    } finally {
      await agent.close()
      await proxy.close()
      await plain.close()
      await secure.close()
    }
  })

  it('takes Basic credentials from the proxy URL', async () => {
    const basic = `Basic ${Buffer.from('user:p@ss').toString('base64')}`
    const proxy = await httpProxy({ credentials: basic })
    const target = await origin()
    const agent = new ProxyAgent(`http://user:p%40ss@127.0.0.1:${proxy.port}`)
    try {
      expect((await answer(`${target.origin}/`, agent)).status).toBe(200)
      expect(proxy.seen[0].headers['proxy-authorization']).toBe(basic)
    } finally {
      await agent.close()
      await proxy.close()
      await target.close()
    }
  })

  it('a CONNECT the proxy refuses with 407 fails as undici: RequestAbortedError', async () => {
    const proxy = await httpProxy({ credentials: 'Bearer right' })
    const target = await origin(true)
    const agent = new ProxyAgent({ uri: proxy.uri, token: 'Bearer wrong', requestTls: { ca: pki.ca.cert } })
    try {
      const err = await request(`${target.origin}/`, { dispatcher: agent }).catch((e: Error) => e)
      expect(err).toBeInstanceOf(errors.RequestAbortedError)
      expect((err as Error).message).toBe('Proxy response (407) !== 200 when HTTP Tunneling')
    } finally {
      await agent.close()
      await proxy.close()
      await target.close()
    }
  })

  it('sends the headers option to the proxy', async () => {
    const proxy = await httpProxy()
    const plain = await origin()
    const secure = await origin(true)
    const agent = new ProxyAgent({ uri: proxy.uri, headers: { 'x-proxy-tenant': 'blue' }, requestTls: { ca: pki.ca.cert } })
    try {
      await json(`${plain.origin}/`, agent)
      await json(`${secure.origin}/`, agent)
      expect(proxy.seen.map((s) => s.headers['x-proxy-tenant'])).toEqual(['blue', 'blue'])
    } finally {
      await agent.close()
      await proxy.close()
      await plain.close()
      await secure.close()
    }
  })

  it('reaches the proxy itself over TLS (https:// proxy, proxyTls)', async () => {
    const proxy = await httpProxy({ tls: true })
    const plain = await origin()
    const secure = await origin(true)
    const agent = new ProxyAgent({ uri: proxy.uri, proxyTls: { ca: pki.ca.cert }, requestTls: { ca: pki.ca.cert } })
    try {
      expect((await answer(`${plain.origin}/a`, agent)).headers['x-via-proxy']).toBe('yes')
      expect((await json(`${secure.origin}/b`, agent)).url).toBe('/b')
      expect(proxy.seen.map((s) => s.method)).toEqual(['GET', 'CONNECT'])
    } finally {
      await agent.close()
      await proxy.close()
      await plain.close()
      await secure.close()
    }
  })

  it('goes through a SOCKS5 proxy for http: and https: origins', async () => {
    const proxy = await socksProxy()
    const plain = await origin()
    const secure = await origin(true)
    const agent = new ProxyAgent({ uri: proxy.uri, requestTls: { ca: pki.ca.cert } })
    try {
      expect((await json(`${plain.origin}/s`, agent)).url).toBe('/s')
      expect(await json(`${secure.origin}/t`, agent)).toMatchObject({ url: '/t', tls: true })
      expect(proxy.seen.map((s) => s.url)).toEqual([plain.host, secure.host])
    } finally {
      await agent.close()
      await proxy.close()
      await plain.close()
      await secure.close()
    }
  })

  it('works with fetch', async () => {
    const proxy = await httpProxy()
    const target = await origin()
    const agent = new ProxyAgent({ uri: proxy.uri })
    try {
      const res = await fetch(`${target.origin}/f`, { dispatcher: agent })
      expect(((await res.json()) as { url: string }).url).toBe('/f')
      expect(proxy.seen).toHaveLength(1)
    } finally {
      await agent.close()
      await proxy.close()
      await target.close()
    }
  })

  it('validates its options as undici does', () => {
    expect(() => new ProxyAgent({} as never)).toThrow('Proxy uri is mandatory')
    expect(() => new ProxyAgent({ uri: 'http://p:1', token: 't', auth: 'a' })).toThrow(
      'opts.auth cannot be used in combination with opts.token'
    )
    const agent = new ProxyAgent('http://127.0.0.1:1')
    expect(() =>
      agent.dispatch(
        { origin: 'http://x.test', path: '/', method: 'GET', headers: { 'Proxy-Authorization': 'x' } },
        { onResponseError() {} }
      )
    ).toThrow('Proxy-Authorization should be sent in ProxyAgent constructor')
  })
})

describe('EnvHttpProxyAgent', () => {
  const names = ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'no_proxy', 'NO_PROXY']

  function withEnv<T>(env: Record<string, string>, make: () => T): T {
    const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]))
    for (const n of names) delete process.env[n]
    Object.assign(process.env, env)
    try {
      return make()
    } finally {
      for (const n of names) {
        if (saved[n] === undefined) delete process.env[n]
        else process.env[n] = saved[n]
      }
    }
  }

  it('uses HTTP_PROXY for http: and HTTPS_PROXY for https: origins', async () => {
    const forHttp = await httpProxy()
    const forHttps = await httpProxy()
    const plain = await origin()
    const secure = await origin(true)
    const agent = withEnv({ HTTP_PROXY: forHttp.uri, HTTPS_PROXY: forHttps.uri }, () => new EnvHttpProxyAgent({ connect: { ca: pki.ca.cert } }))
    try {
      await json(`${plain.origin}/`, agent)
      await json(`${secure.origin}/`, agent)
      expect(forHttp.seen.map((s) => s.method)).toEqual(['GET'])
      expect(forHttps.seen.map((s) => s.method)).toEqual(['CONNECT'])
    } finally {
      await agent.close()
      await forHttp.close()
      await forHttps.close()
      await plain.close()
      await secure.close()
    }
  })

  it('prefers the lower-case variables, and sends https: through the http proxy when HTTPS_PROXY is unset', async () => {
    const lower = await httpProxy()
    const upper = await httpProxy()
    const secure = await origin(true)
    const agent = withEnv({ http_proxy: lower.uri, HTTP_PROXY: upper.uri }, () => new EnvHttpProxyAgent({ connect: { ca: pki.ca.cert } }))
    try {
      await json(`${secure.origin}/`, agent)
      expect(lower.seen.map((s) => s.method)).toEqual(['CONNECT'])
      expect(upper.seen).toHaveLength(0)
    } finally {
      await agent.close()
      await lower.close()
      await upper.close()
      await secure.close()
    }
  })

  it('goes direct to origins NO_PROXY names (host, host:port, suffix)', async () => {
    const proxy = await httpProxy()
    const direct = await origin()
    const proxied = await origin()
    const directPort = new URL(direct.origin).port
    for (const noProxy of [`127.0.0.1:${directPort}`, `localhost,127.0.0.1:${directPort}`]) {
      proxy.seen.length = 0
      const agent = withEnv({ HTTP_PROXY: proxy.uri, NO_PROXY: noProxy }, () => new EnvHttpProxyAgent())
      try {
        expect((await answer(`${direct.origin}/d`, agent)).headers['x-via-proxy']).toBeUndefined()
        expect((await answer(`${proxied.origin}/p`, agent)).headers['x-via-proxy']).toBe('yes')
        expect(proxy.seen.map((s) => s.url)).toEqual([`${proxied.origin}/p`])
      } finally {
        await agent.close()
      }
    }
    const everything = withEnv({ HTTP_PROXY: proxy.uri, no_proxy: '*' }, () => new EnvHttpProxyAgent())
    try {
      proxy.seen.length = 0
      expect((await answer(`${proxied.origin}/p`, everything)).headers['x-via-proxy']).toBeUndefined()
      expect(proxy.seen).toHaveLength(0)
    } finally {
      await everything.close()
      await proxy.close()
      await direct.close()
      await proxied.close()
    }
  })

  it('takes httpProxy, httpsProxy and noProxy options over the environment', async () => {
    const fromOption = await httpProxy()
    const fromEnv = await httpProxy()
    const target = await origin()
    const agent = withEnv({ HTTP_PROXY: fromEnv.uri }, () => new EnvHttpProxyAgent({ httpProxy: fromOption.uri, noProxy: '' }))
    try {
      await json(`${target.origin}/`, agent)
      expect(fromOption.seen).toHaveLength(1)
      expect(fromEnv.seen).toHaveLength(0)
    } finally {
      await agent.close()
      await fromOption.close()
      await fromEnv.close()
      await target.close()
    }
  })

  it('connects directly when no proxy is configured', async () => {
    const target = await origin()
    const agent = withEnv({}, () => new EnvHttpProxyAgent())
    try {
      expect((await answer(`${target.origin}/`, agent)).headers['x-via-proxy']).toBeUndefined()
    } finally {
      await agent.close()
      await target.close()
    }
  })
})
