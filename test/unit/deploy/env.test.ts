import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFromEnv } from '../../../src/operator/config.js';

/**
 * The AMBER_* variables the packaging names (deploy/, the Helm chart, docs/deploy.md) and the
 * ones the operator reads must be the same set, so a renamed or forgotten variable fails here
 * instead of being silently ignored in a cluster.
 */
const root = join(import.meta.dirname, '..', '..', '..');

function packagingFiles(): string[] {
  const inDir = (dir: string) =>
    existsSync(join(root, dir))
      ? readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f))
      : [];
  return [...inDir('deploy'), ...inDir('charts/amber'), 'docs/deploy.md'].filter((f) =>
    /\.(ya?ml|tpl|md|txt)$/.test(f),
  );
}

/** AMBER_* names mentioned in packaging files, with the files that mention each. */
function namedInPackaging(): Map<string, string[]> {
  const names = new Map<string, string[]>();
  for (const file of packagingFiles()) {
    for (const [name] of readFileSync(join(root, file), 'utf8').matchAll(/\bAMBER_[A-Z0-9_]*[A-Z0-9]\b/g)) {
      const files = names.get(name) ?? [];
      if (!files.includes(file)) files.push(file);
      names.set(name, files);
    }
  }
  return names;
}

/** Every environment variable configFromEnv looks at, found by watching which keys it reads. */
function readByConfigFromEnv(): Set<string> {
  const seen = new Set<string>();
  configFromEnv(
    new Proxy({} as NodeJS.ProcessEnv, {
      get(_target, key) {
        if (typeof key === 'string') seen.add(key);
        return undefined;
      },
    }),
  );
  return seen;
}

/** `process.env.AMBER_X` read anywhere in src/ (the logger's level, the collector's defaults). */
function readElsewhereInSrc(): Set<string> {
  const names = new Set<string>();
  for (const file of readdirSync(join(root, 'src'), { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts')) continue;
    const text = readFileSync(join(root, 'src', file), 'utf8');
    for (const [, name] of text.matchAll(/process\.env\.(AMBER_[A-Z0-9_]+)/g)) names.add(name!);
  }
  return names;
}

describe('AMBER_* environment variables in deploy/, charts/amber and docs/deploy.md', () => {
  const named = namedInPackaging();
  const operatorReads = readByConfigFromEnv();
  const srcReads = readElsewhereInSrc();

  it('finds the packaging and the variables it sets', () => {
    expect(named.has('AMBER_INTAKE_TOKEN')).toBe(true);
    expect(operatorReads.has('AMBER_INTAKE_TOKEN')).toBe(true);
  });

  it('names only variables that Amber reads', () => {
    const unread = [...named]
      .filter(([name]) => !operatorReads.has(name) && !srcReads.has(name))
      .map(([name, files]) => `${name} (in ${files.join(', ')})`);
    expect(unread, 'named in packaging but read by neither configFromEnv nor process.env in src/').toEqual(
      [],
    );
  });

  it('gives each variable the operator reads a value that changes its configuration', () => {
    const base = JSON.stringify(configFromEnv({}));
    const inert = [...operatorReads]
      .filter((name) => name.startsWith('AMBER_'))
      .filter((name) => JSON.stringify(configFromEnv({ [name]: 'a-value-of-sixteen-characters' })) === base);
    expect(inert, 'read by configFromEnv but without effect').toEqual([]);
  });

  it('documents every variable the operator reads in docs/deploy.md', () => {
    const docs = readFileSync(join(root, 'docs', 'deploy.md'), 'utf8');
    const undocumented = [...operatorReads].filter(
      (name) => name.startsWith('AMBER_') && !docs.includes(name),
    );
    expect(undocumented).toEqual([]);
  });
});
