/**
 * `ProxyAgent` and `EnvHttpProxyAgent`, with undici's constructor options, as `Agent`s whose core sends every
 * request through the proxy (reqwest's proxy support): `http:` origins as absolute-form requests to the proxy,
 * `https:` origins through a `CONNECT` tunnel, `socks5://` proxies for both.
 */
import type { Dispatcher } from 'undici'
import { errors } from 'undici'
import { Agent } from './agent'
import { walkHeaders } from './headers'
import type { NativeProxyOptions } from './native'
import { kProxyOptions, type AgentOptions } from './options'
import { nativeTlsOptions, type TlsConnectOptions } from './tls-options'

const { InvalidArgumentError } = errors

const PROXY_PROTOCOLS = new Set(['http:', 'https:', 'socks5:', 'socks5h:', 'socks:'])

/** undici's `ProxyAgent.Options`, as far as they apply here. */
export interface ProxyAgentOptions extends AgentOptions {
  /** The proxy: `http://`, `https://` or `socks5://`, with optional `user:password@`. */
  uri: string
  /** `Proxy-Authorization` value, e.g. `Bearer …` or `Basic …`. */
  token?: string
  /** Deprecated in undici in favour of `token`: base64 `user:password` for Basic auth. */
  auth?: string
  /** Headers sent to the proxy (with forwarded requests and with `CONNECT`). */
  headers?: Record<string, string>
  /** TLS options towards the origin (through the tunnel); falls back to `connect`. */
  requestTls?: TlsConnectOptions
  /** TLS options towards a `https://` proxy. */
  proxyTls?: TlsConnectOptions
}

function proxyUrl(uri: string | URL): URL {
  let url: URL
  try {
    url = new URL(String(uri))
  } catch {
    throw new InvalidArgumentError('Invalid Proxy URL')
  }
  if (!PROXY_PROTOCOLS.has(url.protocol)) {
    throw new InvalidArgumentError(`Unsupported proxy protocol: ${url.protocol}`)
  }
  return url
}

function proxyHeaders(opts: { headers?: Record<string, string>; token?: string; auth?: string }): string[] {
  const out: string[] = []
  for (const [name, value] of Object.entries(opts.headers ?? {})) {
    if (value != null) out.push(name.toLowerCase(), String(value))
  }
  if (opts.auth && opts.token) throw new InvalidArgumentError('opts.auth cannot be used in combination with opts.token')
  if (opts.token) out.push('proxy-authorization', opts.token)
  else if (opts.auth) out.push('proxy-authorization', `Basic ${opts.auth}`)
  return out
}

function hasProxyAuthorization(headers: unknown): boolean {
  if (headers == null || typeof headers !== 'object') return false
  const found = { proxyAuthorization: false }
  // A malformed shape is dispatch()'s to report, through the handler.
  walkHeaders(headers, isProxyAuthorization, found)
  return found.proxyAuthorization
}

function isProxyAuthorization(found: { proxyAuthorization: boolean }, name: string): boolean {
  found.proxyAuthorization = name.toLowerCase() === 'proxy-authorization'
  return found.proxyAuthorization
}

/** Options for `Agent` with the proxy settings attached where `nativeAgentOptions` looks for them. */
function withProxy(
  agentOptions: AgentOptions,
  proxy: NativeProxyOptions | null,
  requestTls?: TlsConnectOptions
): AgentOptions {
  const connect = requestTls === undefined ? agentOptions.connect : { ...agentOptions.connect, ...requestTls }
  return Object.assign({ ...agentOptions, connect }, { [kProxyOptions]: proxy })
}

/**
 * undici's `ProxyAgent`: every request goes through the proxy at `uri`.
 *
 * ```js
 * import { ProxyAgent } from 'reqwest-dispatcher'
 * setGlobalDispatcher(new ProxyAgent({ uri: 'http://proxy.internal:3128', token: 'Bearer …' }))
 * ```
 */
export class ProxyAgent extends Agent {
  constructor(opts: ProxyAgentOptions | string | URL) {
    if (!opts || (typeof opts === 'object' && !(opts instanceof URL) && !opts.uri)) {
      throw new InvalidArgumentError('Proxy uri is mandatory')
    }
    const options: ProxyAgentOptions =
      typeof opts === 'string' || opts instanceof URL ? { uri: String(opts) } : opts
    const url = proxyUrl(options.uri)
    const { uri: _uri, token: _token, auth: _auth, headers: _headers, requestTls, proxyTls, ...agentOptions } = options
    const proxy: NativeProxyOptions = {
      http: url.href,
      https: url.href,
      noProxy: null,
      headers: proxyHeaders(options),
      // Defaults (system roots, NODE_EXTRA_CA_CERTS, NODE_TLS_REJECT_UNAUTHORIZED) when not given, as undici.
      tls: nativeTlsOptions(proxyTls)
    }
    super(withProxy(agentOptions, proxy, requestTls))
  }

  /** As undici: credentials for the proxy belong in the constructor, never in a request's headers. */
  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (opts && hasProxyAuthorization(opts.headers)) {
      throw new InvalidArgumentError('Proxy-Authorization should be sent in ProxyAgent constructor')
    }
    return super.dispatch(opts, handler)
  }
}

/** undici's `EnvHttpProxyAgent.Options`. */
export interface EnvHttpProxyAgentOptions extends AgentOptions {
  /** Proxy for `http:` origins; default `http_proxy` / `HTTP_PROXY`. */
  httpProxy?: string
  /** Proxy for `https:` origins; default `https_proxy` / `HTTPS_PROXY`, else the `http:` proxy. */
  httpsProxy?: string
  /** Origins reached directly; default `no_proxy` / `NO_PROXY`. */
  noProxy?: string
}

/**
 * undici's `EnvHttpProxyAgent`: proxies from `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` (lower case first, as
 * undici reads them), or from the options of the same names. The environment is read when the agent is
 * created.
 */
export class EnvHttpProxyAgent extends Agent {
  constructor(opts: EnvHttpProxyAgentOptions = {}) {
    const { httpProxy, httpsProxy, noProxy, ...agentOptions } = opts
    const env = process.env
    const http = httpProxy ?? env.http_proxy ?? env.HTTP_PROXY
    const https = httpsProxy ?? env.https_proxy ?? env.HTTPS_PROXY
    const bypass = noProxy ?? env.no_proxy ?? env.NO_PROXY ?? ''
    const httpUrl = http ? proxyUrl(http).href : null
    const httpsUrl = https ? proxyUrl(https).href : httpUrl
    const proxy: NativeProxyOptions | null =
      httpUrl === null && httpsUrl === null
        ? null
        : { http: httpUrl, https: httpsUrl, noProxy: bypass, headers: [], tls: nativeTlsOptions(undefined) }
    super(withProxy(agentOptions, proxy))
  }
}
