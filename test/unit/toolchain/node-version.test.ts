import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// One Node for development, CI and the image: .nvmrc pins it, everything else follows it.
const root = new URL('../../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
const pinned = read('.nvmrc').trim();
const pkg = JSON.parse(read('package.json')) as { engines: { node: string }; packageManager: string };

describe('the pinned Node version', () => {
  it('is an exact version of an even (LTS) major', () => {
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    expect(Number(pinned.split('.')[0]) % 2).toBe(0);
  });

  it('is the one the tests run on (scripts/test.sh puts it first on PATH)', () => {
    // Run without the toolchain (e.g. a bare `npx vitest`), this says so instead of passing.
    expect(process.version).toBe(`v${pinned}`);
  });

  it('satisfies package.json engines, which names its major and the first good release', () => {
    // ^24.18.0: 24.9-24.17 turn a complete keep-alive response into ERR_STREAM_PREMATURE_CLOSE.
    const m = /^\^(\d+)\.(\d+)\.(\d+)$/.exec(pkg.engines.node);
    expect(m, pkg.engines.node).not.toBeNull();
    const [major, minor, patch] = pinned.split('.').map(Number);
    const [eMajor, eMinor, ePatch] = m!.slice(1).map(Number);
    expect(major).toBe(eMajor);
    expect(minor! * 1e6 + patch!).toBeGreaterThanOrEqual(eMinor! * 1e6 + ePatch!);
  });

  it("is the Dockerfile's default NODE_IMAGE", () => {
    expect(read('Dockerfile')).toMatch(
      new RegExp(`^ARG NODE_IMAGE=node:${pinned.replaceAll('.', '\\.')}-`, 'm'),
    );
  });

  it('is read, with the npm version, from one place by the scripts that install Node', () => {
    expect(pkg.packageManager).toMatch(/^npm@\d+\.\d+\.\d+$/);
    for (const script of ['scripts/node-toolchain.sh', 'scripts/build-images.sh']) {
      const text = read(script);
      expect(text, script).toContain('.nvmrc');
      expect(text, script).toContain('"packageManager"');
      expect(text, script).not.toMatch(/\b\d+\.\d+\.\d+\b/); // no version of its own
    }
  });
});
