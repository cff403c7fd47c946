/**
 * TLS options as undici hands them to `tls.connect` (`connect: { ca, cert, key, passphrase, rejectUnauthorized,
 * servername }`), reduced to what the core's rustls configuration takes: PEM text, the key decrypted here with
 * Node's own crypto (so every key format and passphrase scheme Node reads works), and the defaults Node applies
 * (`NODE_EXTRA_CA_CERTS`, `NODE_TLS_REJECT_UNAUTHORIZED`).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { errors } from 'undici'
import type { NativeTlsOptions } from './native'

const { InvalidArgumentError, NotSupportedError } = errors

/** PEM text, as a string or its bytes. */
export type Pem = string | Buffer | Uint8Array
/** A private key: PEM, or PEM with the passphrase that decrypts it (as Node's `tls.connect` takes keys). */
export type KeyInput =
  | Pem
  | {
      /** The key, PEM. */
      pem: Pem
      /** Decrypts this key (else the options' `passphrase` does). */
      passphrase?: string
    }

/** The TLS subset of Node's `tls.ConnectionOptions` that reqwest-dispatcher reads. */
export interface TlsConnectOptions {
  /** Trusted CA certificates (PEM), replacing the default roots. */
  ca?: Pem | Pem[]
  /** Client certificate chain (PEM) for mutual TLS. */
  cert?: Pem | Pem[]
  /** Private key of `cert` (PEM; encrypted keys need `passphrase`). */
  key?: KeyInput | KeyInput[]
  /** Passphrase of an encrypted `key` (a `{ pem, passphrase }` key entry may carry its own). */
  passphrase?: string
  /** Verify the server's certificate (default true, or false when `NODE_TLS_REJECT_UNAUTHORIZED=0`). */
  rejectUnauthorized?: boolean
  /** Name the server's certificate is checked against, instead of the URL's host. */
  servername?: string
  /** Not supported: PKCS#12 cannot be read without OpenSSL. */
  pfx?: unknown
}

function text(value: Pem, what: string): string {
  if (typeof value === 'string') return value
  if (value instanceof Uint8Array) {
    const buffer = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
    const asText = buffer.toString('latin1')
    if (asText.includes('-----BEGIN')) return asText
    // A DER certificate: Node wants PEM, but accepting DER costs nothing.
    try {
      return new X509Certificate(buffer).toString()
    } catch {
      throw new InvalidArgumentError(`invalid ${what}: expected PEM`)
    }
  }
  throw new InvalidArgumentError(`invalid ${what}: expected a string or a Buffer`)
}

function pemList(value: Pem | Pem[] | undefined | null, what: string): string | null {
  if (value == null) return null
  const items = Array.isArray(value) ? value : [value]
  if (items.length === 0) return null
  return items.map((item) => text(item, what).trim()).join('\n') + '\n'
}

/** The first key (Node picks one per algorithm; one client identity is what rustls takes), as PKCS#8 PEM. */
function keyPem(value: KeyInput | KeyInput[] | undefined | null, passphrase: string | undefined): string | null {
  if (value == null) return null
  const first = Array.isArray(value) ? value[0] : value
  if (first == null) return null
  const { pem, pass } =
    typeof first === 'object' && !(first instanceof Uint8Array)
      ? { pem: first.pem, pass: first.passphrase ?? passphrase }
      : { pem: first, pass: passphrase }
  const key = createPrivateKey({ key: typeof pem === 'string' ? pem : Buffer.from(pem), format: 'pem', passphrase: pass })
  return key.export({ type: 'pkcs8', format: 'pem' }).toString()
}

let extraCa: { path: string; pem: string | null } | undefined

/** The certificates in `NODE_EXTRA_CA_CERTS`, read once per path as Node reads them once per process. */
function extraCaCerts(): string | null {
  const path = process.env.NODE_EXTRA_CA_CERTS
  if (!path) return null
  if (extraCa?.path !== path) {
    let pem: string | null = null
    try {
      pem = readFileSync(path, 'latin1')
    } catch (err) {
      process.emitWarning(`Ignoring extra certs from \`${path}\`, load failed: ${(err as Error).message}`)
    }
    extraCa = { path, pem }
  }
  return extraCa.pem
}

let warnedInsecure = false

function warnInsecure(fromEnv: boolean): void {
  if (warnedInsecure) return
  warnedInsecure = true
  const message = fromEnv
    ? "Setting the NODE_TLS_REJECT_UNAUTHORIZED environment variable to '0' makes TLS connections and HTTPS " +
      'requests insecure by disabling certificate verification.'
    : 'Setting rejectUnauthorized to false makes TLS connections and HTTPS requests insecure by disabling ' +
      'certificate verification.'
  process.emitWarning(message, { code: 'REQWEST_DISPATCHER_TLS_INSECURE' })
}

/** Validates `options` (undici's `connect`, or a ProxyAgent's `requestTls`/`proxyTls`) for the core. */
export function nativeTlsOptions(options: TlsConnectOptions | null | undefined): NativeTlsOptions {
  const o = options ?? {}
  if (typeof o !== 'object') throw new InvalidArgumentError('invalid connect options')
  if (o.pfx != null) throw new NotSupportedError('connect.pfx is not supported by reqwest-dispatcher: pass cert and key')
  if (o.rejectUnauthorized != null && typeof o.rejectUnauthorized !== 'boolean') {
    throw new InvalidArgumentError('rejectUnauthorized must be a boolean')
  }
  if (o.servername != null && typeof o.servername !== 'string') {
    throw new InvalidArgumentError('servername must be a string')
  }
  if (o.passphrase != null && typeof o.passphrase !== 'string') {
    throw new InvalidArgumentError('passphrase must be a string')
  }
  const envInsecure = process.env.NODE_TLS_REJECT_UNAUTHORIZED === '0'
  const rejectUnauthorized = o.rejectUnauthorized ?? !envInsecure
  if (!rejectUnauthorized) warnInsecure(o.rejectUnauthorized == null)
  const cert = pemList(o.cert, 'cert')
  const key = keyPem(o.key, o.passphrase)
  if ((cert === null) !== (key === null)) throw new InvalidArgumentError('cert and key must be given together')
  return {
    ca: pemList(o.ca, 'ca'),
    extraCa: extraCaCerts(),
    cert,
    key,
    rejectUnauthorized,
    servername: o.servername || null
  }
}
