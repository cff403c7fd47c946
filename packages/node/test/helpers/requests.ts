/** Requests read whole with undici's `request`, through the dispatcher under test. */
import type { IncomingHttpHeaders } from 'node:http'
import { request, type Dispatcher } from 'undici'

type Options = Partial<Omit<Dispatcher.RequestOptions, 'origin' | 'path'>>

/** A parsed body, which the tests read field by field (hence `any`, in test code only). */
type Json = Record<string, any>

/** A response read whole: its status, headers and JSON body (`{}` when empty). */
export interface Answer<T = Json> {
  status: number
  headers: IncomingHttpHeaders
  json: T
}

/** The body of the response to `url`, as text. */
export async function text(url: string, dispatcher: Dispatcher, opts: Options = {}): Promise<string> {
  const res = await request(url, { dispatcher, ...opts })
  return res.body.text()
}

/** The body of the response to `url`, parsed as JSON (`{}` when empty). */
export async function json<T = Json>(url: string, dispatcher: Dispatcher, opts: Options = {}): Promise<T> {
  return (await answer<T>(url, dispatcher, opts)).json
}

/** The response to `url`: status, headers and JSON body. */
export async function answer<T = Json>(url: string, dispatcher: Dispatcher, opts: Options = {}): Promise<Answer<T>> {
  const res = await request(url, { dispatcher, ...opts })
  const body = await res.body.text()
  return { status: res.statusCode, headers: res.headers, json: (body === '' ? {} : JSON.parse(body)) as T }
}

/** The error a request to `url` fails with (the test fails if it succeeds). */
export async function failure(url: string, dispatcher: Dispatcher, opts: Options = {}): Promise<Error & { code?: string }> {
  try {
    const res = await request(url, { dispatcher, ...opts })
    await res.body.dump()
  } catch (err) {
    return err as Error & { code?: string }
  }
  throw new Error(`request to ${url} succeeded`)
}
