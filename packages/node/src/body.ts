/**
 * Request bodies: bytes known up front travel with the dispatch call; everything else (streams, async
 * iterables, web streams, Blobs) is pulled by the core one chunk at a time.
 */
import { errors } from 'undici'

const { InvalidArgumentError, RequestAbortedError, RequestContentLengthMismatchError } = errors

/** Where a request's body comes from. */
export type PreparedBody =
  | { kind: 'none' }
  | { kind: 'bytes'; bytes: Uint8Array }
  | { kind: 'pull'; length: number | null; source: () => AsyncIterator<unknown>; contentType?: string }

const EMPTY = new Uint8Array(0)
/** Shared by every request without a body: prepared bodies are replaced, never changed. */
const NO_BODY: PreparedBody = Object.freeze({ kind: 'none' })
const EMPTY_BODY: PreparedBody = Object.freeze({ kind: 'bytes', bytes: EMPTY })

function isAsyncIterable(value: object): value is AsyncIterable<unknown> {
  return typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function'
}

function isBlob(value: object): value is Blob {
  return typeof Blob !== 'undefined' && value instanceof Blob
}

/** Whether undici takes `body` as a request body: nothing, a string, bytes, a stream, an iterable, a Blob, FormData. */
export function isBodyShape(body: unknown): boolean {
  if (body == null || typeof body === 'string' || ArrayBuffer.isView(body) || body instanceof ArrayBuffer) return true
  if (typeof body !== 'object') return false
  return (
    (typeof FormData !== 'undefined' && body instanceof FormData) ||
    isBlob(body) ||
    isAsyncIterable(body) ||
    typeof (body as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function'
  )
}

/**
 * Prepares `body`. `contentLength` is the user's content-length header, if any; as undici, a body of bytes that
 * disagrees with it is refused when `checkLength` (the method is one that sends a content-length), and no body
 * at all never is. Bodyless methods that expect a payload send `content-length: 0`, as undici does.
 */
export function prepareBody(
  body: unknown,
  contentLength: number | null,
  expectsPayload: boolean,
  checkLength = true
): PreparedBody {
  if (body == null) {
    return expectsPayload || contentLength === 0 ? EMPTY_BODY : NO_BODY
  }
  // Bytes first: the common body, and no FormData is a Uint8Array, a string or an ArrayBuffer.
  const bytes = toBytes(body)
  if (bytes !== undefined) {
    // As undici: an empty body is no body.
    if (bytes.byteLength === 0) return prepareBody(null, contentLength, expectsPayload)
    if (checkLength && contentLength !== null && contentLength !== bytes.byteLength) {
      throw new RequestContentLengthMismatchError()
    }
    return { kind: 'bytes', bytes }
  }
  if (typeof FormData !== 'undefined' && body instanceof FormData) {
    // The web Response serializes FormData as multipart with a fresh boundary, named in its content-type.
    const encoded = new Response(body)
    const stream = encoded.body as unknown as AsyncIterable<unknown>
    return {
      kind: 'pull',
      length: contentLength,
      source: () => iterate(stream),
      contentType: encoded.headers.get('content-type') ?? undefined
    }
  }
  if (typeof body === 'object') {
    if (isBlob(body)) {
      const blob = body
      return { kind: 'pull', length: contentLength ?? blob.size, source: () => iterate(blob.stream() as unknown as AsyncIterable<unknown>) }
    }
    if (isAsyncIterable(body)) {
      return { kind: 'pull', length: contentLength, source: () => iterate(body) }
    }
    const iterable = body as { [Symbol.iterator]?: unknown }
    if (typeof iterable[Symbol.iterator] === 'function') {
      const sync = body as Iterable<unknown>
      return { kind: 'pull', length: contentLength, source: () => iterate(toAsync(sync)) }
    }
  }
  throw new InvalidArgumentError('body must be a string, a Buffer, a Readable stream, an iterable, or an async iterable')
}

/**
 * The chunks of `iterable`. A stream that closes before its end (destroyed, even before the request) fails the
 * request with `RequestAbortedError`, as undici reports it.
 */
function iterate(iterable: AsyncIterable<unknown>): AsyncIterator<unknown> {
  const chunks = iterable[Symbol.asyncIterator]()
  const aborted = (err: unknown): never => {
    throw (err as { code?: unknown } | null)?.code === 'ERR_STREAM_PREMATURE_CLOSE' ? new RequestAbortedError() : err
  }
  return {
    next: () => chunks.next().catch(aborted),
    return: chunks.return?.bind(chunks)
  }
}

async function* toAsync(iterable: Iterable<unknown>): AsyncGenerator<unknown> {
  yield* iterable
}

/** `value` as bytes when it is a string (UTF-8), a Uint8Array, another view or an ArrayBuffer; else undefined. */
function toBytes(value: unknown): Uint8Array | undefined {
  if (value instanceof Uint8Array) return value
  if (typeof value === 'string') return Buffer.from(value)
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
  if (value instanceof ArrayBuffer) return new Uint8Array(value)
  return undefined
}

/** A chunk from a body source as bytes. */
export function chunkBytes(chunk: unknown): Uint8Array {
  const bytes = toBytes(chunk)
  if (bytes === undefined) throw new InvalidArgumentError('body chunks must be strings, Buffers or Uint8Arrays')
  return bytes
}
