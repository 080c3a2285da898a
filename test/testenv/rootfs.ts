import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { cacheDir } from './binaries.js';

/** The host's static busybox (Debian's busybox-static), the whole userland of a test image. */
export const busyboxPath = '/bin/busybox';

/**
 * The base image layer shared read-only by every test container: busybox with one symlink per
 * applet and the few files a Linux userland expects. Built once per busybox version and cached,
 * like a pulled image layer. Safe when two test workers build it at the same time: each builds
 * in a private directory and renames it into place; the loser throws its copy away.
 */
export function baseLayer(): string {
  const bb = statSync(busyboxPath);
  const dir = join(cacheDir, `runc-base-${bb.size}-${Math.floor(bb.mtimeMs)}`);
  if (existsSync(join(dir, '.done'))) return dir;

  const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
  mkdirSync(join(tmp, 'bin'), { recursive: true });
  copyFileSync(busyboxPath, join(tmp, 'bin/busybox'));
  chmodSync(join(tmp, 'bin/busybox'), 0o755);
  const applets = execFileSync(busyboxPath, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const applet of applets) {
    if (applet !== 'busybox') symlinkSync('busybox', join(tmp, 'bin', applet));
  }
  for (const d of ['etc', 'root', 'proc', 'sys', 'dev', 'usr/bin', 'var/spool/cron/crontabs', 'home']) {
    mkdirSync(join(tmp, d), { recursive: true });
  }
  for (const d of ['tmp', 'var/tmp']) {
    mkdirSync(join(tmp, d), { recursive: true });
    chmodSync(join(tmp, d), 0o1777);
  }
  writeFileSync(
    join(tmp, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
  );
  writeFileSync(join(tmp, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  writeFileSync(join(tmp, 'etc/hosts'), '127.0.0.1 localhost\n::1 localhost\n');
  writeFileSync(join(tmp, 'etc/resolv.conf'), 'nameserver 127.0.0.1\n');
  writeFileSync(join(tmp, 'etc/os-release'), 'NAME="amber-test-busybox"\n');
  writeFileSync(join(tmp, '.done'), '');
  try {
    renameSync(tmp, dir);
  } catch {
    // Another worker won the race; its layer is identical.
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

/**
 * Compiles a small C program statically (the test image has no libc) and returns its path in
 * the cache. Used for what busybox cannot do, e.g. holding a memfd.
 */
export function staticProgram(name: string, source: string): string {
  const hash = execFileSync('sha256sum', { input: source, encoding: 'utf8' }).slice(0, 16);
  const dir = join(cacheDir, 'runc-programs');
  const out = join(dir, `${name}-${hash}`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  const src = `${out}.${randomBytes(4).toString('hex')}.c`;
  writeFileSync(src, source);
  try {
    execFileSync('gcc', ['-static', '-O1', '-o', `${src}.bin`, src], { stdio: 'pipe' });
    renameSync(`${src}.bin`, out);
  } finally {
    rmSync(src, { force: true });
  }
  return out;
}
