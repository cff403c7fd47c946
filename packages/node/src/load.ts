/**
 * Finds the native addon. First the prebuilt platform package for this machine (`@reqwest-dispatcher/<platform>`,
 * an optional dependency that npm installs only where its `os`, `cpu` and `libc` match), then the addon built from
 * source in this package's folder (`index.node`, made by `npm run build` with a Rust toolchain). When neither loads,
 * the error says what was tried, why each failed, and what to do.
 */
import { join } from 'node:path'

/**
 * Where each platform's prebuilt package is installed, by Node platform name. Kept in step with `neon.platforms` in
 * package.json (a test checks); each names its package literally so that bundlers and `npm ls` see it.
 */
const PREBUILT: Readonly<Record<string, () => string>> = {
  'linux-x64-gnu': () => require.resolve('@reqwest-dispatcher/linux-x64-gnu'),
  'linux-arm64-gnu': () => require.resolve('@reqwest-dispatcher/linux-arm64-gnu'),
  'linux-x64-musl': () => require.resolve('@reqwest-dispatcher/linux-x64-musl'),
  'darwin-x64': () => require.resolve('@reqwest-dispatcher/darwin-x64'),
  'darwin-arm64': () => require.resolve('@reqwest-dispatcher/darwin-arm64'),
  'win32-x64-msvc': () => require.resolve('@reqwest-dispatcher/win32-x64-msvc')
}

/** The platforms a prebuilt package exists for. */
export const PREBUILT_PLATFORMS: readonly string[] = Object.keys(PREBUILT)

/** The npm scope of the platform packages. */
export const PLATFORM_SCOPE = '@reqwest-dispatcher'

/**
 * This machine's platform in the names neon and napi use: `linux-x64-gnu`, `linux-x64-musl`, `darwin-arm64`,
 * `win32-x64-msvc`, …
 */
export function currentPlatform(): string {
  const { platform, arch } = process
  switch (platform) {
    case 'linux':
      return arch === 'arm' ? 'linux-arm-gnueabihf' : `linux-${arch}-${isGlibc() ? 'gnu' : 'musl'}`
    case 'win32':
      return `win32-${arch}-msvc`
    default:
      return `${platform}-${arch}`
  }
}

/**
 * Whether this Node links against glibc. Node's diagnostic report names the glibc version it runs on and has no such
 * field on musl (Alpine). Network handles are left out of the report: listing them is the slow part, and unneeded.
 */
function isGlibc(): boolean {
  const report = process.report as (NodeJS.ProcessReport & { excludeNetwork?: boolean }) | undefined
  if (report === undefined) return true
  const excluded = report.excludeNetwork
  try {
    report.excludeNetwork = true
    const header = (report.getReport() as { header?: { glibcVersionRuntime?: unknown } }).header
    return typeof header?.glibcVersionRuntime === 'string'
  } finally {
    report.excludeNetwork = excluded
  }
}

/** Why one way of loading did not work: `missing` when the module is not there, else the loader's own error. */
function reason(error: unknown, module: string, missing: string): string {
  const e = error as NodeJS.ErrnoException
  if (e?.code === 'MODULE_NOT_FOUND' && String(e.message).includes(module)) return missing
  return `failed to load: ${e?.message ?? String(error)}`
}

/**
 * Loads the addon: the platform package, else the local build; returns it with the file it came from. `packageDir`
 * is this package's folder (the local build's home).
 */
export function loadAddon<T>(packageDir: string = join(__dirname, '..')): { addon: T; file: string } {
  const platform = currentPlatform()
  const tried: string[] = []
  const prebuilt = PREBUILT[platform]
  const prebuiltName = `${PLATFORM_SCOPE}/${platform}`
  if (prebuilt !== undefined) {
    try {
      const file = prebuilt()
      return { addon: require(file) as T, file }
    } catch (error) {
      tried.push(`- prebuilt package ${prebuiltName}: ${reason(error, prebuiltName, 'not installed')}`)
    }
  } else {
    tried.push(`- prebuilt package: none is published for ${platform} (there are: ${PREBUILT_PLATFORMS.join(', ')})`)
  }
  const local = join(packageDir, 'index.node')
  try {
    return { addon: require(local) as T, file: local }
  } catch (error) {
    tried.push(`- local build ${local}: ${reason(error, local, 'not found')}`)
  }
  throw new Error(
    `reqwest-dispatcher: no native addon could be loaded for ${platform} (Node ${process.version}).\n` +
      `${tried.join('\n')}\n` +
      (prebuilt !== undefined
        ? `npm installs ${prebuiltName} as an optional dependency of reqwest-dispatcher: install again without ` +
          '--omit=optional / --no-optional, on the machine (or in the image) that runs the code. '
        : '') +
      'Or build from source: with Rust (https://rustup.rs), run `npm ci && npm run pack:source` in a clone of the ' +
      'repository and install the tarball it writes (README: "Building from source").'
  )
}
