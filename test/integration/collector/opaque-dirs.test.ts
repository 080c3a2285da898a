import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { opaqueDirs } from '../../../src/collector/filesystem.js';

// The real getfattr (Debian's attr) on a real file system; trusted.* needs root, as the collector has.
describe('opaqueDirs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'amber-opaque-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finds directories marked opaque, and nothing is said to be missing', async () => {
    mkdirSync(join(dir, 'upper/etc/cron.d'), { recursive: true });
    mkdirSync(join(dir, 'upper/var/plain'), { recursive: true });
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(dir, 'upper/etc/cron.d')]);
    const incomplete: string[] = [];
    const found = await opaqueDirs(join(dir, 'upper'), undefined, (why) => incomplete.push(why));
    expect([...found]).toEqual(['etc/cron.d']);
    expect(incomplete).toEqual([]);
  });

  // The attack: the suspect deletes or renames what getfattr walks. Its exit status 1 used to be
  // taken as "some file had no attribute" and the partial output as the whole answer.
  it('an unreadable path is reported as incomplete, not taken as a complete answer', async () => {
    const incomplete: string[] = [];
    const found = await opaqueDirs(join(dir, 'vanished'), undefined, (why) => incomplete.push(why));
    expect(found.size).toBe(0);
    expect(incomplete).toHaveLength(1);
    expect(incomplete[0]).toMatch(/could not read 1 path\(s\).*No such file or directory/);
  });
});
