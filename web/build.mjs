// Builds the UI bundle into dist/ (committed, embedded by the binary): one minified ES module
// and one stylesheet, each also pre-compressed with gzip, plus index.html. dist/.source-hash
// records what it was built from; build.rs rebuilds when the sources no longer match it.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync, constants } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

/** The same hash build.rs computes: sorted relative paths, each `path\0contents\0`. */
export function sourceHash() {
  const files = ['index.html', 'build.mjs', 'package-lock.json'];
  const walk = (d) => {
    for (const e of readdirSync(join(here, d)).sort()) {
      const p = join(d, e);
      if (statSync(join(here, p)).isDirectory()) walk(p);
      else files.push(p.split(sep).join('/'));
    }
  };
  walk('src');
  files.sort();
  const h = createHash('sha256');
  for (const f of files) {
    h.update(f);
    h.update('\0');
    h.update(readFileSync(join(here, f)));
    h.update('\0');
  }
  return h.digest('hex');
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'assets'), { recursive: true });
await build({
  entryPoints: { app: join(here, 'src/main.js') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  outdir: join(dist, 'assets'),
  legalComments: 'none',
  logLevel: 'warning',
});
copyFileSync(join(here, 'index.html'), join(dist, 'index.html'));
let raw = 0;
let gz = 0;
for (const f of ['app.js', 'app.css']) {
  const p = join(dist, 'assets', f);
  const data = readFileSync(p);
  const z = gzipSync(data, { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(`${p}.gz`, z);
  raw += data.length;
  gz += z.length;
}
writeFileSync(join(dist, '.source-hash'), `${sourceHash()}\n`);
console.log(`ui bundle: ${raw} bytes, ${gz} gzipped (${relative(process.cwd(), dist)})`);
