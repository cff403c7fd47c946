/**
 * The three ways an application drives an undici `Dispatcher`, written once and used for both our Agent and
 * undici's Agent so the two are measured through identical code:
 * - `dispatch`: the Dispatcher contract with a controller-style handler that only counts the body;
 * - `request`: `undici.request()`, body read with `arrayBuffer()`;
 * - `fetch`: `undici.fetch()`, body read with `arrayBuffer()`.
 */
import { fetch, request } from 'undici'

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

export const SENDERS = { dispatch: dispatchSender, request: requestSender, fetch: fetchSender }
