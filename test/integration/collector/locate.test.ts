import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { locateContainer } from '../../../src/collector/locate.js';
import { runCollect, type CollectCliOptions } from '../../../src/cmd/collect.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { startContainer, type TestContainer } from '../../testenv/runc.js';

/**
 * One real runc container, described by the state files each runtime would write for it under
 * a host root of the test's own: containerd's init.pid, CRI-O's pidfile, Docker's runc state.
 */
describe('locating a container through each runtime state layout', () => {
  let c: TestContainer;
  let hostRoot: string;

  beforeAll(async () => {
    c = await startContainer({ command: ['/bin/sh', '-c', 'touch /ready; exec sleep 600'] });
    await c.waitForFile('/ready');
    hostRoot = mkdtempSync(join(tmpdir(), 'amber-hostroot-'));
    const put = (rel: string, content: string): void => {
      mkdirSync(join(hostRoot, rel, '..'), { recursive: true });
      writeFileSync(join(hostRoot, rel), content);
    };
    put(`run/containerd/io.containerd.runtime.v2.task/k8s.io/${c.id}/init.pid`, `${c.pid}\n`);
    put(`run/containers/storage/overlay-containers/${c.id}/userdata/pidfile`, `${c.pid}`);
    put(
      `run/docker/runtime-runc/moby/${c.id}/state.json`,
      JSON.stringify({ id: c.id, init_process_pid: c.pid }),
    );
    const stale = 'f'.repeat(64);
    put(`run/containerd/io.containerd.runtime.v2.task/k8s.io/${stale}/init.pid`, '4194303\n');
  });

  afterAll(async () => {
    await c?.stop();
    if (hostRoot) rmSync(hostRoot, { recursive: true, force: true });
  });

  for (const [runtime, file] of [
    ['containerd', 'init.pid'],
    ['cri-o', 'userdata/pidfile'],
    ['docker', 'state.json'],
  ] as const) {
    it(`finds it as ${runtime} from its short ID`, async () => {
      const found = await locateContainer({
        containerId: c.id.slice(0, 12),
        runtime,
        procRoot: '/proc',
        hostRoot,
      });
      expect(found).toMatchObject({ id: c.id, runtime, initPid: c.pid });
      expect(found.via.endsWith(file)).toBe(true);
    });
  }

  it('says a container whose init PID is gone is not running', async () => {
    await expect(
      locateContainer({ containerId: 'f'.repeat(12), runtime: 'containerd', procRoot: '/proc', hostRoot }),
    ).rejects.toThrow(/is not running: init PID 4194303/);
  });

  it('exits 1 from the CLI for an unknown container and 2 for a missing store', async () => {
    const storeDir = mkdtempSync(join(tmpdir(), 'amber-evidence-'));
    const cli: CollectCliOptions = {
      containerId: 'abcdefabcdef',
      runtime: 'containerd',
      case: 'cli-missing',
      storeDir,
      region: 'us-east-1',
      pathStyle: false,
      retentionMode: 'COMPLIANCE',
      retentionPeriod: '90d',
      legalHold: false,
      fullRootfs: false,
      memory: true,
      procRoot: '/proc',
      hostRoot,
      hostPid: String(process.pid),
      terminationMessagePath: join(storeDir, 'term'),
    };
    try {
      expect(await runCollect(cli, silentLogger)).toBe(1);
      expect(await runCollect({ ...cli, storeDir: undefined, bucket: undefined }, silentLogger)).toBe(2);
    } finally {
      rmSync(storeDir, { recursive: true, force: true });
    }
  });
});
