/**
 * impit (npm): a prebuilt Rust (reqwest-based) HTTP client for Node with a fetch-like API. It is the nearest
 * existing "Rust core behind a JS API" to compare with; loaded lazily because it is optional.
 */
export async function impitSender (config, target) {
  const { Impit } = await import('impit')
  // Its default ("vanilla") TLS setup fails against node:http2 here (the stream ends without close_notify);
  // the Chrome profile negotiates HTTP/2 through ALPN and works.
  const browser = config.protocol === 'h2' ? { browser: 'chrome' } : {}
  const impit = new Impit({ ignoreTlsErrors: true, http3: false, ...browser })
  const send = (done) => {
    impit.fetch(target.url, { method: target.method, headers: target.headers, body: target.body ?? undefined })
      .then((response) => response.arrayBuffer().then(() => {
        done(response.status === 200 ? undefined : new Error(`status ${response.status}`))
      }))
      .catch(done)
  }
  return { send, close: () => {}, note: config.protocol === 'h2' ? 'browser: chrome profile' : null }
}
