import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256Hex, sha256OfStream } from '../../../src/evidence/hashing.js';
import { LocalEvidenceStore } from '../../../src/evidence/local-store.js';
import { ArtifactExistsError } from '../../../src/evidence/store.js';
import { createRegistry } from '../../../src/observability/metrics.js';

let root: string;
let store: LocalEvidenceStore;
const registry = createRegistry();

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'amber-local-store-'));
  store = new LocalEvidenceStore({ root, registry });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('local evidence store', () => {
  it('writes an artifact, returns its digest and leaves it read-only', async () => {
    const stored = await store.put('c1', 'logs/app.log', 'hello\n', {
      collectedBy: 'operator/logs',
      node: 'n1',
    });
    expect(stored).toMatchObject({ name: 'logs/app.log', size: 6, sha256: sha256Hex('hello\n') });
    expect(stored.uri).toBe(`file://${root}/c1/logs/app.log`);
    expect(statSync(join(root, 'c1/logs/app.log')).mode & 0o777).toBe(0o444);
    expect(await readFile(join(root, 'c1/logs/app.log'), 'utf8')).toBe('hello\n');
  });

  it('streams a body it never holds whole, digesting in the same pass', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const body = Readable.from(
      (function* () {
        for (let i = 0; i < 20; i++) yield chunk;
      })(),
    );
    const stored = await store.put('c1', 'big.bin', body);
    expect(stored.size).toBe(20 * chunk.length);
    expect(stored.sha256).toBe((await sha256OfStream(await store.get('c1', 'big.bin'))).sha256);
  });

  it('never overwrites: a second put of the same name is refused and the first stays', async () => {
    await store.put('c1', 'a.txt', 'first');
    await expect(store.put('c1', 'a.txt', 'second')).rejects.toBeInstanceOf(ArtifactExistsError);
    expect(await readFile(join(root, 'c1/a.txt'), 'utf8')).toBe('first');
  });

  it('lets exactly one of two racing writers publish a name', async () => {
    const results = await Promise.allSettled(
      ['one', 'two', 'three'].map((body) => store.put('c1', 'race.txt', Readable.from([body]))),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results)
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ArtifactExistsError);
  });

  it('leaves no partial file when the body fails mid-stream', async () => {
    const body = new Readable({
      read() {
        this.push(Buffer.alloc(1000));
        this.destroy(new Error('collector died'));
      },
    });
    await expect(store.put('c1', 'broken.bin', body)).rejects.toThrow(/collector died/);
    expect(await store.list('c1')).toEqual([]);
    expect(readdirSync(join(root, 'c1/.amber/tmp'))).toEqual([]);
    // The name is still free: a retry can write it.
    await store.put('c1', 'broken.bin', 'retry');
  });

  it('lists artifacts with their recorded digest and metadata, hiding its bookkeeping', async () => {
    await store.put('c1', 'b.txt', 'B', { collectedBy: 'x' });
    await store.put('c1', 'a/a.txt', 'A');
    const list = await store.list('c1');
    expect(list.map((a) => a.name)).toEqual(['a/a.txt', 'b.txt']);
    expect(list[1]).toMatchObject({ sha256: sha256Hex('B'), size: 1, metadata: { collectedBy: 'x' } });
    expect(await store.list('nothing-here')).toEqual([]);
  });

  it('refuses names that would escape the case directory', async () => {
    await expect(store.put('c1', '../c2/x', 'x')).rejects.toThrow(/invalid artifact name/);
    await expect(store.put('../etc', 'x', 'x')).rejects.toThrow(/invalid case id/);
  });

  it.each<[string, (dir: string) => void, { what: string; taints?: string }]>([
    [
      'a name no artifact takes',
      (dir) => writeFileSync(join(dir, 'containers', 'bad name!'), 'x'),
      { what: 'containers/bad name!' },
    ],
    [
      'a digest record that is not JSON',
      (dir) => {
        chmodSync(join(dir, '.amber/digests/containers/a.txt.json'), 0o644);
        writeFileSync(join(dir, '.amber/digests/containers/a.txt.json'), '{not json');
      },
      { what: '.amber/digests/containers/a.txt.json', taints: 'containers/a.txt' },
    ],
    [
      'a digest record of the wrong shape',
      (dir) => {
        chmodSync(join(dir, '.amber/digests/containers/a.txt.json'), 0o644);
        writeFileSync(join(dir, '.amber/digests/containers/a.txt.json'), '{"sha256":"nope"}');
      },
      { what: '.amber/digests/containers/a.txt.json', taints: 'containers/a.txt' },
    ],
    [
      'a digest record that is a directory',
      (dir) => {
        rmSync(join(dir, '.amber/digests/containers/a.txt.json'));
        mkdirSync(join(dir, '.amber/digests/containers/a.txt.json'));
      },
      { what: '.amber/digests/containers/a.txt.json', taints: 'containers/a.txt' },
    ],
    [
      'a name with a terminal escape sequence',
      (dir) => writeFileSync(join(dir, 'containers', 'x\u001b[2J\nfake.txt'), 'x'),
      { what: 'containers/x\\x1b[2J\\x0afake.txt' },
    ],
    [
      'a symlink among the artifacts',
      (dir) => symlinkSync('/etc/hostname', join(dir, 'containers', 'link')),
      { what: 'containers/link' },
    ],
  ])('%s is a problem of the inventory, never a throw', async (_what, plant, problem) => {
    await store.put('c1', 'containers/a.txt', 'A');
    await store.put('c1', 'b.txt', 'B');
    plant(join(root, 'c1'));
    const inv = await store.inventory('c1');
    expect(inv.problems).toEqual([expect.objectContaining(problem)]);
    // The artifacts are still all there, with the digest of their bytes.
    expect(inv.artifacts.map((a) => [a.name, a.sha256])).toEqual([
      ['b.txt', sha256Hex('B')],
      ['containers/a.txt', sha256Hex('A')],
    ]);
    expect((await store.list('c1')).map((a) => a.name)).toEqual(['b.txt', 'containers/a.txt']);
  });

  it('names the case location as a file URL', () => {
    expect(store.caseLocation('c1')).toBe(`file://${root}/c1/`);
  });
});
