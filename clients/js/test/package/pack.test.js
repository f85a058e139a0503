// `npm pack` makes a tarball that installs into an empty project, where every
// entry imports, with nothing but the package's own files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: 'pipe' });

test('the packed tarball installs into an empty project and every entry imports from it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-client-pack-'));
  try {
    const [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', dir], root));
    const files = packed.files.map(f => f.path).sort();
    assert.deepEqual(files, ['README.md', 'herald.d.ts', 'herald.js', 'miniprogram.d.ts', 'miniprogram.js',
      'package.json', 'react.d.ts', 'react.js']);
    const app = join(dir, 'app');
    execFileSync('mkdir', [app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    // React is the application's (a peer dependency); the same version as
    // the lockfile's, from the cache `npm ci` filled.
    const react = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).devDependencies.react;
    npm(['install', '--no-audit', '--no-fund', '--prefer-offline', join(dir, packed.filename), `react@${react}`], app);
    writeFileSync(join(app, 'check.js'), `
      import { createClient } from 'herald-client';
      import { createClient as mini } from 'herald-client/miniprogram';
      import { useInbox } from 'herald-client/react';
      const c = createClient({ url: 'http://127.0.0.1:1', getToken: () => 'x' });
      const m = mini({ url: 'http://127.0.0.1:1', getToken: () => 'x', wx: { request() {}, connectSocket() {} } });
      console.log(JSON.stringify([typeof createClient, typeof mini, typeof useInbox, c.state, m.state]));
    `);
    const out = execFileSync(process.execPath, ['check.js'], { cwd: app, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), ['function', 'function', 'function', 'closed', 'closed']);
    const installed = JSON.parse(readFileSync(join(app, 'node_modules/herald-client/package.json'), 'utf8'));
    assert.equal(installed.dependencies, undefined, 'no runtime dependencies');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
