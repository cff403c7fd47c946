/**
 * A small PKI made at test time with the openssl CLI (EC P-256 keys: fast to make): a root CA, an
 * intermediate, server certificates good and bad in the ways Node names (expired, self-signed, wrong name,
 * chain with an unknown root), and a client certificate for mutual TLS.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface KeyPair {
  cert: string
  key: string
}

export interface Pki {
  dir: string
  ca: KeyPair
  intermediate: KeyPair
  /** localhost and 127.0.0.1, signed by `ca`. */
  server: KeyPair
  /** Only DNS:example.test, signed by `ca`. */
  otherName: KeyPair
  /** Signed by `ca`, no longer valid. */
  expired: KeyPair
  /** Self-signed, localhost and 127.0.0.1 (a CA certificate, as `openssl req -x509` makes them). */
  selfSigned: KeyPair
  /** localhost and 127.0.0.1, signed by `intermediate`. */
  chained: KeyPair
  /** A client certificate signed by `ca`. */
  client: KeyPair
  /** A client certificate signed by `ca`, X.509 version 1 (no extensions), as internal PKIs often make them. */
  clientV1: KeyPair
  /** The client key encrypted with `passphrase`. */
  clientEncryptedKey: string
  passphrase: string
  /** A second, unrelated CA. */
  otherCa: KeyPair
  cleanup(): void
}

const SERVER_NAMES = 'subjectAltName=DNS:localhost,IP:127.0.0.1'

export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'reqwest-dispatcher-pki-'))
  const path = (name: string): string => join(dir, name)
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  }
  const read = (name: string): string => readFileSync(path(name), 'utf8')
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

  const selfSignedCa = (name: string, subject: string, ext: string[] = []): KeyPair => {
    openssl('req', '-x509', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', subject, ...ext)
    return { cert: read(`${name}.crt`), key: read(`${name}.key`) }
  }
  /** Signed by `issuer`; with no `extensions`, an X.509 v1 certificate (what `openssl x509 -req` makes alone). */
  const signed = (name: string, subject: string, issuer: string, extensions: string | null, days = '2'): KeyPair => {
    openssl('req', '-new', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject)
    const extfile: string[] = []
    if (extensions !== null) {
      writeFileSync(path(`${name}.ext`), extensions)
      extfile.push('-extfile', `${name}.ext`)
    }
    openssl(
      'x509', '-req', '-in', `${name}.csr`, '-CA', `${issuer}.crt`, '-CAkey', `${issuer}.key`, '-CAcreateserial',
      '-days', days, ...extfile, '-out', `${name}.crt`
    )
    return { cert: read(`${name}.crt`), key: read(`${name}.key`) }
  }
  const leaf = `${SERVER_NAMES}\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n`

  const ca = selfSignedCa('ca', '/CN=reqwest-dispatcher test CA')
  const otherCa = selfSignedCa('other-ca', '/CN=reqwest-dispatcher other CA')
  const intermediate = signed(
    'intermediate',
    '/CN=reqwest-dispatcher intermediate',
    'ca',
    'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n'
  )
  const server = signed('server', '/CN=localhost', 'ca', leaf)
  const otherName = signed(
    'other-name',
    '/CN=example.test',
    'ca',
    'subjectAltName=DNS:example.test\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n'
  )
  const expired = signed('expired', '/CN=localhost', 'ca', leaf, '-1')
  const selfSigned = selfSignedCa('self-signed', '/CN=localhost', ['-addext', SERVER_NAMES])
  const chained = signed('chained', '/CN=localhost', 'intermediate', leaf)
  const client = signed(
    'client',
    '/CN=reqwest-dispatcher client',
    'ca',
    'extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n'
  )
  const clientV1 = signed('client-v1', '/CN=reqwest-dispatcher v1 client', 'ca', null)
  const passphrase = 'correct horse'
  openssl('pkcs8', '-topk8', '-in', 'client.key', '-v2', 'aes-256-cbc', '-passout', `pass:${passphrase}`, '-out', 'client-enc.key')

  return {
    dir,
    ca,
    intermediate,
    server,
    otherName,
    expired,
    selfSigned,
    chained,
    client,
    clientV1,
    clientEncryptedKey: read('client-enc.key'),
    passphrase,
    otherCa,
    cleanup: () => rmSync(dir, { recursive: true, force: true })
  }
}
