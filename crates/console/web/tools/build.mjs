// Builds the console's assets: esbuild bundles src/ (ESM, code-split so the
// terminal emulator loads only on the console page), writes index.html that
// names the hashed files by absolute path (/console/assets/...), and a .gz of
// every text asset (gzip level 9 by pako, a pure-JS zlib, header mtime 0), so
// the output is byte-for-byte the same on every machine and Node version.
// Layout (what the server expects): DIR/index.html, and DIR/assets/<file> served
// at /console/assets/<file>.
// Usage: node tools/build.mjs [--out DIR]   (default: ../assets)
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import pako from 'pako';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argOut = process.argv.indexOf('--out');
const out = resolve(argOut > 0 ? process.argv[argOut + 1] : join(root, '..', 'assets'));
const PUBLIC = '/console/assets/';

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: { app: 'src/main.tsx', style: 'src/styles.css' },
  bundle: true,
  splitting: true,
  format: 'esm',
  outdir: 'out',
  write: false,
  metafile: true,
  minify: true,
  sourcemap: false,
  legalComments: 'eof',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  assetNames: '[name]-[hash]',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  charset: 'utf8',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });
const files = new Map();
for (const f of result.outputFiles) files.set(relative(join(root, 'out'), f.path), Buffer.from(f.contents));

// The entry's JS and CSS, and the chunks it imports statically (preloaded).
const outputs = result.metafile.outputs;
let appJs, styleCss;
for (const [path, o] of Object.entries(outputs)) {
  const name = relative('out', path);
  if (o.entryPoint === 'src/main.tsx') appJs = name;
  if (o.entryPoint === 'src/styles.css' && name.endsWith('.css')) styleCss = name;
}
if (!appJs || !styleCss) throw new Error('esbuild did not produce the app entry or its stylesheet');
// The CSS entry point also makes an empty JS stub; drop it.
for (const name of [...files.keys()]) if (name.startsWith('style-') && name.endsWith('.js')) files.delete(name);
const preload = outputs['out/' + appJs].imports
  .filter((i) => i.kind === 'import-statement')
  .map((i) => relative('out', i.path));

const html = readFileSync(join(root, 'src/index.html'), 'utf8')
  .replace('<!--STYLES-->', `<link rel="stylesheet" href="${PUBLIC}${styleCss}">`)
  .replace(
    '<!--SCRIPTS-->',
    [
      ...preload.map((p) => `<link rel="modulepreload" href="${PUBLIC}${p}">`),
      `<script type="module" src="${PUBLIC}${appJs}"></script>`,
    ].join('\n    '),
  );
files.set('favicon.svg', readFileSync(join(root, 'src/favicon.svg')));
// Everything but the page itself lives under assets/.
for (const name of [...files.keys()]) {
  files.set('assets/' + name, files.get(name));
  files.delete(name);
}
files.set('index.html', Buffer.from(html));

const sizes = [];
for (const [name, buf] of [...files.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
  writeFileSync(join(out, name), buf);
  if (/\.(js|css|html|svg|txt|json)$/.test(name)) {
    const gz = Buffer.from(pako.gzip(buf, { level: 9 }));
    writeFileSync(join(out, name + '.gz'), gz);
    sizes.push([name, buf.length, gz.length]);
  }
}
for (const [name, raw, gz] of sizes) console.log(`${name.padEnd(34)} ${String(raw).padStart(8)} B  ${String(gz).padStart(7)} B gzipped`);
const firstLoad = [appJs, ...preload].reduce((n, f) => n + sizes.find(([x]) => x === 'assets/' + f)[2], 0);
console.log(`first-load script (gzipped): ${firstLoad} B; wrote ${readdirSync(join(out, 'assets')).length + 2} files to ${out}`);
