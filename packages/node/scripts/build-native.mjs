// Builds the Rust addon (release, LTO) into packages/node/index.node through @neon-rs/cli.
// A machine without a Rust toolchain gets a message saying what to install instead of a stack trace.
import { spawn, spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const pkg = join(here, '..')
const profile = process.env.REQWEST_DISPATCHER_PROFILE === 'debug' ? 'debug' : 'release'

const probe = spawnSync('cargo', ['--version'], { encoding: 'utf8' })
if (probe.error || probe.status !== 0) {
  console.error(
    '\nreqwest-dispatcher: building the native addon needs a Rust toolchain (cargo), and none was found.\n' +
      'Install Rust from https://rustup.rs (stable), make sure `cargo` is on PATH, then run `npm run build` again.\n'
  )
  process.exit(1)
}

const args = ['build', '-p', 'reqwest-dispatcher-node', '--message-format=json-render-diagnostics']
if (profile === 'release') args.push('--release')
const cargo = spawn('cargo', args, { cwd: pkg, stdio: ['ignore', 'pipe', 'inherit'] })
const neonBin = join(pkg, 'node_modules', '.bin', 'neon')
const rootNeonBin = join(pkg, '..', '..', 'node_modules', '.bin', 'neon')
const { existsSync } = await import('node:fs')
const neon = spawn(existsSync(neonBin) ? neonBin : rootNeonBin, ['dist', '-n', 'reqwest-dispatcher-node', '-o', join(pkg, 'index.node')], {
  cwd: pkg,
  stdio: ['pipe', 'inherit', 'inherit']
})
cargo.stdout.pipe(neon.stdin)

const exited = (child) => new Promise((resolve) => child.on('close', (code) => resolve(code)))
const [cargoCode, neonCode] = await Promise.all([exited(cargo), exited(neon)])
if (cargoCode !== 0 || neonCode !== 0) {
  console.error(`reqwest-dispatcher: native build failed (cargo exit ${cargoCode}, neon exit ${neonCode})`)
  process.exit(1)
}
