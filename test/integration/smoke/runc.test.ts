import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContainer, type TestContainer } from '../../testenv/runc.js';

describe('runc test container', () => {
  let c: TestContainer;
  beforeAll(async () => {
    c = await startContainer({
      command: ['/bin/sh', '-c', 'echo hello > /tmp/written; touch /ready; exec sleep 600'],
      files: { '/etc/app.conf': 'from the image\n' },
    });
    await c.waitForFile('/ready');
  });
  afterAll(async () => c?.stop());

  it('runs an init process with a 64-hex ID on an overlay root whose upper dir the host sees in mountinfo', () => {
    expect(c.id).toMatch(/^[0-9a-f]{64}$/);
    expect(readFileSync(`/proc/${c.pid}/cmdline`, 'utf8').split('\0')[0]).toBe('sleep');
    const mountinfo = readFileSync(`/proc/${c.pid}/mountinfo`, 'utf8');
    const root = mountinfo.split('\n').find((l) => l.split(' ')[4] === '/' && l.includes(' - overlay '));
    expect(root).toContain(`upperdir=${c.upperDir}`);
    expect(readFileSync(`${c.upperDir}/tmp/written`, 'utf8')).toBe('hello\n');
    expect(readFileSync(`${c.rootfs}/etc/app.conf`, 'utf8')).toBe('from the image\n');
  });

  it('puts the container in a cgroup named after its ID and its own PID namespace', () => {
    expect(readFileSync(`/proc/${c.pid}/cgroup`, 'utf8')).toContain(c.id);
    expect(readFileSync(`/proc/${c.pid}/status`, 'utf8')).toMatch(/NSpid:\s+\d+\s+1\n/);
  });
});
