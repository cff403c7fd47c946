/**
 * The three ways an application drives an undici `Dispatcher`, written once and used for both our Agent and
 * undici's Agent so the two are measured through identical code:
 * - `dispatch`: the Dispatcher contract with a controller-style handler that only counts the body;
 * - `request`: `undici.request()`, body read with `arrayBuffer()`;
 * - `fetch`: `undici.fetch()`, body read with `arrayBuffer()`;
 * - `websocket`: undici's `WebSocket` over the dispatcher, one echo round trip of `target.messageBytes` a send.
 */
import { fetch, request, WebSocket } from 'undici'

/** A controller-style handler that reports completion once, and nothing else. */
class CountingHandler {
  constructor (done) {
    this.done = done
    this.status = 0
  }

  onRequestStart () {}
  onResponseStart (controller, statusCode) { this.status = statusCode }
  onResponseData () {}
  onResponseEnd () {
    this.done(this.status === 200 ? undefined : new Error(`status ${this.status}`))
  }

  onResponseError (controller, err) { this.done(err) }
}

export function dispatchSender (dispatcher, target) {
  return (done) => {
    dispatcher.dispatch({
      origin: target.origin,
      path: target.path,
      method: target.method,
      headers: target.headers,
      body: target.body
    }, new CountingHandler(done))
  }
}

export function requestSender (dispatcher, target) {
  return (done) => {
    request(target.url, { dispatcher, method: target.method, headers: target.headers, body: target.body })
      .then(({ statusCode, body }) => body.arrayBuffer().then(() => {
        done(statusCode === 200 ? undefined : new Error(`status ${statusCode}`))
      }))
      .catch(done)
  }
}

export function fetchSender (dispatcher, target) {
  return (done) => {
    fetch(target.url, { dispatcher, method: target.method, headers: target.headers, body: target.body })
      .then((response) => response.arrayBuffer().then(() => {
        done(response.status === 200 ? undefined : new Error(`status ${response.status}`))
      }))
      .catch(done)
  }
}

/**
 * Each send takes an idle WebSocket (opening one when none is idle: the closed loop's warm-up opens as many as
 * it keeps in flight), sends one binary message and is done when its echo came back whole.
 */
export function websocketSender (dispatcher, target) {
  const url = target.url.replace(/^http/, 'ws')
  const message = Buffer.alloc(target.messageBytes, 0x61)
  const idle = []
  const open = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { dispatcher })
    ws.binaryType = 'arraybuffer'
    ws.onopen = () => resolve(ws)
    ws.onerror = (event) => reject(new Error(`WebSocket failed to open: ${event.message ?? ''}`))
  })
  const roundTrip = (ws, done) => {
    ws.onmessage = (event) => {
      idle.push(ws)
      done(event.data.byteLength === message.length ? undefined : new Error(`echo of ${event.data.byteLength} bytes`))
    }
    ws.onclose = (event) => done(new Error(`WebSocket closed: ${event.code}`))
    ws.send(message)
  }
  return (done) => {
    const ws = idle.pop()
    if (ws !== undefined) roundTrip(ws, done)
    else open().then((opened) => roundTrip(opened, done), done)
  }
}

export const SENDERS = { dispatch: dispatchSender, request: requestSender, fetch: fetchSender, websocket: websocketSender }
