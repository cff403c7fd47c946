/**
 * Builds the two Dispatchers under comparison for a scenario: our `Agent` and `undici.Agent`.
 *
 * TLS rows (HTTPS HTTP/1.1, HTTP/2) need the client to trust the run's throw-away CA. undici takes it as `connect: { ca }`. Our Agent
 * may not take TLS options yet, so `ourAgent` probes, in order: the same `connect` options as undici; the
 * `SSL_CERT_FILE` variable (read by rustls-native-certs when the Agent's reqwest client is built); and when
 * neither gets a response, reports the row as unavailable instead of failing the run.
 */
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Agent as UndiciAgent, request } from 'undici'

/** TLS options for the scenario's protocol (`h1` plain, `h1s` HTTPS HTTP/1.1, `h2` HTTP/2 over TLS). */
function tlsOptionsOf (config) {
  if (config.protocol === 'h1') return {}
  return { allowH2: config.protocol === 'h2', connect: { ca: config.tls.ca, rejectUnauthorized: false } }
}

export function undiciAgent (config) {
  return { dispatcher: new UndiciAgent(tlsOptionsOf(config)), note: null }
}

async function answers (dispatcher, origin) {
  try {
    const { statusCode, body } = await request(`${origin}/bytes/64`, { dispatcher, headersTimeout: 5000 })
    await body.arrayBuffer()
    return statusCode === 200 ? null : `status ${statusCode}`
  } catch (err) {
    return `${err.code ?? ''} ${err.message}`.trim()
  }
}

/**
 * Our Agent for the scenario; `extra` adds options (the policies row). `packageDir` loads another build of
 * ours (a directory holding a copy of packages/node's dist/ and index.node) instead of the workspace's.
 */
export async function ourAgent (config, extra = {}, packageDir = null) {
  const entry = packageDir ? pathToFileURL(join(packageDir, 'dist', 'index.mjs')).href : 'reqwest-dispatcher'
  const { Agent } = await import(entry)
  if (config.protocol === 'h1') return { dispatcher: new Agent(extra), note: null }

  const tlsOptions = { ...extra, ...tlsOptionsOf(config) }
  let withOptions = null
  let failure
  try {
    withOptions = new Agent(tlsOptions)
    failure = await answers(withOptions, config.origin)
    if (failure === null) return { dispatcher: withOptions, note: 'CA via connect options' }
  } catch (err) {
    failure = err.message
  }
  await withOptions?.close().catch(() => {})

  process.env.SSL_CERT_FILE = config.tls.caPath
  const viaEnvironment = new Agent({ ...extra, allowH2: config.protocol === 'h2' })
  const envFailure = await answers(viaEnvironment, config.origin)
  if (envFailure === null) return { dispatcher: viaEnvironment, note: 'CA via SSL_CERT_FILE: connect TLS options not honoured yet' }
  await viaEnvironment.close().catch(() => {})
  return { dispatcher: null, unavailable: `n/a (needs TLS options: ${failure}; SSL_CERT_FILE: ${envFailure})` }
}
