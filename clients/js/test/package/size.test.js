// The size budget of the browser entry: minified with esbuild, then gzipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('../..', import.meta.url));
const BUDGET = 12 * 1024;

export async function measure(entry) {
  const out = await build({
    entryPoints: [`${root}/${entry}`], bundle: true, minify: true, format: 'esm', write: false,
    // The React entry's peer dependency is the application's, not ours.
    external: ['react'], logLevel: 'silent',
  });
  const code = out.outputFiles[0].contents;
  return { minified: code.length, gzipped: gzipSync(code, { level: 9 }).length };
}

test('the browser entry is at most 12 KiB minified and gzipped, and the README says how much', async () => {
  const sizes = {};
  for (const entry of ['herald.js', 'react.js']) sizes[entry] = await measure(entry);
  const { gzipped, minified } = sizes['herald.js'];
  console.log(`herald.js: ${minified} bytes minified, ${gzipped} bytes gzipped (budget ${BUDGET}); react.js: ${sizes['react.js'].gzipped} bytes gzipped`);
  assert.ok(gzipped <= BUDGET, `herald.js is ${gzipped} bytes minified+gzipped, over the budget of ${BUDGET}`);
  // The README's figure, e.g. "6.1 KiB minified and gzipped", stays within 0.2 KiB of the truth.
  const readme = readFileSync(`${root}/README.md`, 'utf8');
  const stated = Number(readme.match(/([\d.]+) KiB minified and gzipped/)?.[1]);
  assert.ok(Math.abs(stated - gzipped / 1024) <= 0.2,
    `README.md says ${stated} KiB; the measurement is ${(gzipped / 1024).toFixed(1)} KiB: update it`);
});
