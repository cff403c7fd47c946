/**
 * What a response told about its connection (peer and local address, HTTP version), and the `socket` info
 * undici puts on a `SocketError` built from it.
 */
import { isIP } from 'node:net'

/** The connection a response came over, as the native START event reports it. */
export interface ConnectionSeen {
  /** `ip:port` (`[v6]:port`), or `''` when the transport could not tell (through a proxy). */
  remote: string
  local: string
  /** HTTP version × 10: 10, 11 or 20. */
  version: number
}

/** undici's `SocketError#socket` (`util.getSocketInfo`): what is known of the socket that failed. */
export interface SocketInfo {
  localAddress: string | undefined
  localPort: number | undefined
  remoteAddress: string | undefined
  remotePort: number | undefined
  remoteFamily: 'IPv4' | 'IPv6' | undefined
  timeout: number | undefined
  bytesWritten: number | undefined
  bytesRead: number | undefined
}

/** `ip:port` split; `undefined` parts when `text` is empty. */
export function splitAddress(text: string): { address: string | undefined; port: number | undefined; family: 'IPv4' | 'IPv6' | undefined } {
  const colon = text.lastIndexOf(':')
  if (text === '' || colon < 0) return { address: undefined, port: undefined, family: undefined }
  let address = text.slice(0, colon)
  if (address.startsWith('[')) address = address.slice(1, -1)
  const family = isIP(address)
  return { address, port: Number(text.slice(colon + 1)), family: family === 6 ? 'IPv6' : family === 4 ? 'IPv4' : undefined }
}

/** What the core counted on a connection that failed (HTTP/1.1). */
export interface SocketCounters {
  bytesWritten: number
  bytesRead: number
}

/** The `socket` of a `SocketError` on a request whose response came over `seen`. */
export function socketInfo(seen: ConnectionSeen, counters: SocketCounters | null = null): SocketInfo {
  const remote = splitAddress(seen.remote)
  const local = splitAddress(seen.local)
  return {
    localAddress: local.address,
    localPort: local.port,
    remoteAddress: remote.address,
    remotePort: remote.port,
    remoteFamily: remote.family,
    // The socket's timeout is not tracked; its counters come with the error where the HTTP/1.1 engine kept
    // them (HTTP/2 connections do not report theirs).
    timeout: undefined,
    bytesWritten: counters?.bytesWritten,
    bytesRead: counters?.bytesRead
  }
}
