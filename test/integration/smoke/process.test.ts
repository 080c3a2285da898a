import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ManagedProcess } from '../../testenv/process.js';
import { RUN_ENV, processInfo, processesWithEnv } from '../../testenv/procs.js';
import { startContainer } from '../../testenv/runc.js';

/**
 * The test environment's own promise: a program it kills is gone, with everything the program
 * started, even when what the test holds is a wrapper (like npx in front of node); and every
 * process the suite starts carries the run's tag that its final leftover check looks for.
 */
describe('processes the test environment starts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'amber-process-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A shell that starts `inner` in the background and then runs a program of its own. */
  const wrapper = (inner: string, tag: string) =>
    ManagedProcess.start('wrapper', '/bin/sh', ['-c', `${inner} & exec sleep 301`], {
      logFile: join(dir, `${tag}.log`),
      env: { AMBER_TEST_PROCESS: tag },
    });
  const tagged = (tag: string) => processesWithEnv('AMBER_TEST_PROCESS', tag);

  it('kill() leaves no process of a wrapper and what it started', async () => {
    const tag = randomUUID();
    const p = wrapper('sleep 300', tag);
    await p.waitUntil(async () => tagged(tag).length === 2);
    expect(tagged(tag).map((x) => x.pgid)).toEqual([p.pid, p.pid]);
    await p.kill();
    expect(tagged(tag)).toEqual([]);
    expect(processInfo(p.pid)).toBeUndefined();
  });

  it('stop() also ends what ignores SIGTERM and outlives its parent', async () => {
    const tag = randomUUID();
    // An ignored signal stays ignored across exec: this sleep does not die of SIGTERM.
    const p = wrapper(`sh -c 'trap "" TERM; exec sleep 300'`, tag);
    await p.waitUntil(async () => tagged(tag).length === 2);
    await p.stop('SIGTERM', 60_000);
    expect(tagged(tag)).toEqual([]);
  });

  it('tags every program with the run ID, containers included', async () => {
    const run = process.env[RUN_ENV];
    expect(run, 'the global setup tags the run').toMatch(/^[0-9a-f-]{36}$/);
    const tag = randomUUID();
    const p = wrapper('sleep 300', tag);
    const c = await startContainer({ command: ['/bin/sh', '-c', 'touch /ready; exec sleep 600'] });
    try {
      await c.waitForFile('/ready');
      await p.waitUntil(async () => tagged(tag).length === 2);
      const pids = processesWithEnv(RUN_ENV, run!).map((x) => x.pid);
      expect(pids).toEqual(expect.arrayContaining([...tagged(tag).map((x) => x.pid), c.pid]));
    } finally {
      await c.stop();
      await p.kill();
    }
  });
});
