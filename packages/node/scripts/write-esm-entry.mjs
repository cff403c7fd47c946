// Writes dist/index.mjs: the ES module entry, re-exporting the CommonJS build so both share one module instance.
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist')
const names = Object.keys(createRequire(import.meta.url)(join(dist, 'index.js'))).filter((n) => n !== 'default')
const lines = [
  "import { createRequire } from 'node:module'",
  "const cjs = createRequire(import.meta.url)('./index.js')",
  ...names.map((n) => `export const ${n} = cjs.${n}`),
  'export default cjs',
  ''
]
writeFileSync(join(dist, 'index.mjs'), lines.join('\n'))
