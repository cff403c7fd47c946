/**
 * TLS failures as Node reports them: a plain `Error` with OpenSSL's code (`DEPTH_ZERO_SELF_SIGNED_CERT`,
 * `CERT_HAS_EXPIRED`, …) or Node's own (`ERR_TLS_CERT_ALTNAME_INVALID`, with `reason` and `host`), or
 * `ERR_SSL_*` for a handshake the server broke off. undici hands these to the handler unchanged.
 */

/** OpenSSL verification codes the core reports (see packages/core/src/tls.rs). */
const CERTIFICATE_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_PURPOSE',
  'CERT_REJECTED'
])

const ALTNAME_PREFIX = "Hostname/IP does not match certificate's altnames: "

/** Whether `code` is a TLS failure's code. */
export function isTlsCode(code: string): boolean {
  return CERTIFICATE_CODES.has(code) || code.startsWith('ERR_SSL_') || code === 'ERR_TLS_CERT_ALTNAME_INVALID'
}

export interface TlsError extends Error {
  code: string
  reason?: string
  host?: string
}

/** The error Node's `tls.connect` would have raised for `code`. */
export function tlsError(code: string, message: string, hostname: string): TlsError {
  const err = new Error(message) as TlsError
  err.code = code
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    err.reason = message.startsWith(ALTNAME_PREFIX) ? message.slice(ALTNAME_PREFIX.length) : message
    err.host = hostname
  }
  return err
}
