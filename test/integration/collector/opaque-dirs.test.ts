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
    const found = await opaqueDirs(join(dir, 'upper'), 'trusted.overlay.opaque', undefined, (why) =>
      incomplete.push(why),
    );
    expect([...found]).toEqual(['etc/cron.d']);
    expect(incomplete).toEqual([]);
  });

  // The attack: a process in the container may set user.* attributes on its own directories,
  // never trusted.*. With the overlay reading trusted.overlay.opaque, a user.overlay.opaque the
  // suspect set would make the diff call the image's files below it deleted when they are not.
  it('counts only the attribute the mount reads (trusted, or user with userxattr)', async () => {
    mkdirSync(join(dir, 'forged/usr/bin'), { recursive: true });
    execFileSync('setfattr', ['-n', 'user.overlay.opaque', '-v', 'y', join(dir, 'forged/usr/bin')]);
    expect([...(await opaqueDirs(join(dir, 'forged'), 'trusted.overlay.opaque'))]).toEqual([]);
    expect([...(await opaqueDirs(join(dir, 'forged'), 'user.overlay.opaque'))]).toEqual(['usr/bin']);
  });

  // The attack: the suspect deletes or renames what getfattr walks. Its exit status 1 used to be
  // taken as "some file had no attribute" and the partial output as the whole answer.
  it('an unreadable path is reported as incomplete, not taken as a complete answer', async () => {
    const incomplete: string[] = [];
    const found = await opaqueDirs(join(dir, 'vanished'), 'trusted.overlay.opaque', undefined, (why) =>
      incomplete.push(why),
    );
    expect(found.size).toBe(0);
    expect(incomplete).toHaveLength(1);
    expect(incomplete[0]).toMatch(/could not read 1 path\(s\).*No such file or directory/);
  });
});
