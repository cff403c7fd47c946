// What a user installs: the library's tarball (as `npm pack` lists it), the platform packages, and how the addon is
// found. `npm run pack:check` installs real tarballs without Rust; these tests check the contents and the loader.
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const pkgDir = join(__dirname, '..')
/** The built package's loader (an internal module, so by path). */
const { currentPlatform, PREBUILT_PLATFORMS } = createRequire(__filename)(join(pkgDir, 'dist', 'load.js')) as typeof import('../src/load')
const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'))
const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'))
const npmEnv = async () => (await import('../scripts/npm.mjs')).npmEnv()

describe('the library tarball', () => {
  let work: string
  let files: string[]
  let packed: Record<string, unknown>

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'rd-package-'))
    const env = await npmEnv()
    execFileSync(process.execPath, [join(pkgDir, 'scripts', 'stage.mjs'), '--out', join(work, 'stage')], { env, stdio: 'pipe' })
    const [listing] = JSON.parse(
      execFileSync('npm', ['pack', join(work, 'stage'), '--dry-run', '--json', '--ignore-scripts'], { env, encoding: 'utf8' })
    )
    files = (listing.files as Array<{ path: string }>).map((f) => f.path).sort()
    packed = readJson(join(work, 'stage', 'package.json'))
  }, 60_000)
  afterAll(() => rmSync(work, { recursive: true, force: true }))

  it('holds the entries, their type declarations, README, LICENSE, CHANGELOG, COMPATIBILITY and package.json', () => {
    for (const f of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'COMPATIBILITY.md', 'dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/load.js']) {
      expect(files).toContain(f)
    }
    const sources = readdirSync(join(pkgDir, 'src')).filter((f) => f.endsWith('.ts'))
    for (const source of sources) {
      expect(files).toContain(`dist/${source.replace(/\.ts$/, '.js')}`)
      expect(files).toContain(`dist/${source.replace(/\.ts$/, '.d.ts')}`)
    }
  })

  it('holds no tests, benchmarks, Rust or TypeScript sources, scripts, source maps or native binary', () => {
    const unwanted = files.filter(
      (f) =>
        /(^|\/)(test|tests|benchmarks?|native|src|scripts|platforms|target|examples)\//.test(f) ||
        /\.(rs|ts|map|node|toml|lock|tgz)$/.test(f.replace(/\.d\.ts$/, '')) ||
        /(^|\/)(Cargo\.toml|tsconfig\.json|vitest\.[^/]+)$/.test(f)
    )
    expect(unwanted).toEqual([])
    const topLevel = ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'COMPATIBILITY.md']
    expect(files.filter((f) => !topLevel.includes(f) && !f.startsWith('dist/'))).toEqual([])
  })

  it('lists every prebuilt platform package as an optional dependency at the library version', () => {
    const expected = Object.fromEntries(PREBUILT_PLATFORMS.map((p) => [`@reqwest-dispatcher/${p}`, manifest.version]))
    expect(packed.optionalDependencies).toEqual(expected)
  })

  it('runs nothing at install time and carries no devDependencies', () => {
    expect(packed.scripts).toBeUndefined()
    expect(packed.devDependencies).toBeUndefined()
  })

  it('states the supported Node lines and undici majors', () => {
    expect(packed.engines).toEqual({ node: '^20.0.0 || ^22.0.0 || ^24.0.0 || >=26.0.0' })
    expect(packed.peerDependencies).toEqual({ undici: '^7.0.0 || ^8.0.0' })
  })
})

describe('the platform packages', () => {
  const platforms = Object.keys(manifest.neon.platforms as Record<string, string>)

  it('are the six prebuilt platforms, and the loader knows exactly those', () => {
    expect(platforms).toEqual(['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc'])
    expect([...PREBUILT_PLATFORMS]).toEqual(platforms)
    expect(readdirSync(join(pkgDir, 'platforms')).sort()).toEqual([...platforms].sort())
  })

  it.each(Object.keys(readJson(join(pkgDir, 'package.json')).neon.platforms))(
    '%s: named in the scope, at the library version, installable only where os, cpu and libc match',
    (platform) => {
      const p = readJson(join(pkgDir, 'platforms', platform, 'package.json'))
      const [os, cpu, abi] = platform.split('-')
      expect(p.name).toBe(`@reqwest-dispatcher/${platform}`)
      expect(p.version).toBe(manifest.version)
      expect(p.os).toEqual([os])
      expect(p.cpu).toEqual([cpu])
      expect(p.libc).toEqual(os === 'linux' ? [abi === 'gnu' ? 'glibc' : 'musl'] : undefined)
      expect(p.main).toBe('index.node')
      expect(p.files).toEqual(['index.node', 'LICENSE'])
      expect(p.neon.rust).toBe(manifest.neon.platforms[platform])
    }
  )
})

describe('loading the addon', () => {
  let work: string
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'rd-load-'))
  })
  afterAll(() => rmSync(work, { recursive: true, force: true }))

  /**
   * Lays out `node_modules/reqwest-dispatcher` (the built dist, with or without a local build) and optionally this
   * machine's platform package in a fresh folder, then makes an Agent there and reports which addon loaded.
   */
  function installAndLoad(name: string, { local, prebuilt }: { local: boolean; prebuilt: 'none' | 'good' | 'broken' }) {
    const app = join(work, name)
    const lib = join(app, 'node_modules', 'reqwest-dispatcher')
    mkdirSync(lib, { recursive: true })
    cpSync(join(pkgDir, 'dist'), join(lib, 'dist'), { recursive: true })
    writeFileSync(join(lib, 'package.json'), JSON.stringify({ name: 'reqwest-dispatcher', main: 'dist/index.js' }))
    if (local) cpSync(join(pkgDir, 'index.node'), join(lib, 'index.node'))
    if (prebuilt !== 'none') {
      const platformDir = join(app, 'node_modules', '@reqwest-dispatcher', currentPlatform())
      mkdirSync(platformDir, { recursive: true })
      writeFileSync(join(platformDir, 'package.json'), JSON.stringify({ name: `@reqwest-dispatcher/${currentPlatform()}`, main: 'index.node' }))
      if (prebuilt === 'good') cpSync(join(pkgDir, 'index.node'), join(platformDir, 'index.node'))
      else writeFileSync(join(platformDir, 'index.node'), 'not a shared object')
    }
    const script = `
      const { Agent } = require('reqwest-dispatcher')
      console.error('imported')
      const agent = new Agent()
      console.log(JSON.stringify(Object.keys(require.cache).filter((f) => f.endsWith('.node')).map((f) => require('node:path').relative(process.cwd(), f))))
      agent.close()`
    // undici comes from this repository's node_modules, as a peer dependency would.
    const env = { ...process.env, NODE_PATH: join(pkgDir, 'node_modules') + delimiter + join(pkgDir, '..', '..', 'node_modules') }
    return spawnSync(process.execPath, ['-e', script], { cwd: app, env, encoding: 'utf8' })
  }

  it('loads the platform package when it is installed', () => {
    const run = installAndLoad('prebuilt', { local: false, prebuilt: 'good' })
    expect(run.stderr).toBe('imported\n')
    expect(JSON.parse(run.stdout)).toEqual([join('node_modules', '@reqwest-dispatcher', currentPlatform(), 'index.node')])
  })

  it('prefers the platform package to a local build', () => {
    const run = installAndLoad('both', { local: true, prebuilt: 'good' })
    expect(JSON.parse(run.stdout)).toEqual([join('node_modules', '@reqwest-dispatcher', currentPlatform(), 'index.node')])
  })

  it('falls back to the local build (index.node, built from source) without a platform package', () => {
    const run = installAndLoad('local', { local: true, prebuilt: 'none' })
    expect(JSON.parse(run.stdout)).toEqual([join('node_modules', 'reqwest-dispatcher', 'index.node')])
  })

  it('fails at the first Agent, not at import, with what was tried and what to do when neither exists', () => {
    const run = installAndLoad('none', { local: false, prebuilt: 'none' })
    expect(run.status).not.toBe(0)
    const [imported, ...rest] = run.stderr.split('\n')
    expect(imported).toBe('imported')
    const message = rest.join('\n')
    expect(message).toContain(`no native addon could be loaded for ${currentPlatform()} (Node ${process.version})`)
    expect(message).toContain(`prebuilt package @reqwest-dispatcher/${currentPlatform()}: not installed`)
    expect(message).toContain(`local build ${join(work, 'none', 'node_modules', 'reqwest-dispatcher', 'index.node')}: not found`)
    expect(message).toContain('--omit=optional')
    expect(message).toContain('https://rustup.rs')
    expect(message).toContain('npm run pack:source')
  })

  it('names the loader error of a platform package that is installed but cannot load, then uses the local build', () => {
    const run = installAndLoad('broken', { local: true, prebuilt: 'broken' })
    expect(JSON.parse(run.stdout)).toEqual([join('node_modules', 'reqwest-dispatcher', 'index.node')])
    const failed = installAndLoad('broken-only', { local: false, prebuilt: 'broken' })
    expect(failed.stderr).toMatch(
      new RegExp(`prebuilt package @reqwest-dispatcher/${currentPlatform()}: failed to load: .*(invalid ELF header|too short|not a mach-o|not a valid Win32)`, 'i')
    )
  })
})
