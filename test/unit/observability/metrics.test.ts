import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Phase } from '../../../src/api/forensiccase.js';
import { caseMetrics } from '../../../src/cases/metrics.js';
import { createRegistry, processMetrics } from '../../../src/observability/metrics.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** The sample lines of the exposition text, as Prometheus reads them. */
async function samples(registry: ReturnType<typeof createRegistry>): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}

const named = (lines: string[], name: string) => lines.filter((l) => l.split(/[{ ]/)[0] === name);

describe('metric names', () => {
  it("keeps the default process and Node.js metrics' standard names", async () => {
    const lines = await samples(createRegistry(true));
    expect(named(lines, 'process_cpu_seconds_total')).toHaveLength(1);
    expect(named(lines, 'process_resident_memory_bytes')).toHaveLength(1);
    expect(lines.some((l) => l.startsWith('nodejs_heap_size_used_bytes '))).toBe(true);
    expect(lines.filter((l) => l.startsWith('amber_'))).toEqual([]);
    expect(lines.filter((l) => /process_process|nodejs_nodejs/.test(l))).toEqual([]);
  });

  it('gives every metric a name Prometheus accepts', async () => {
    const registry = createRegistry(true);
    processMetrics(registry, { isLeader: () => true });
    caseMetrics(registry);
    for (const line of await samples(registry)) expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*[{ ]/);
  });
});

describe('amber_leader and amber_build_info', () => {
  it('says 1 while leading and 0 otherwise, read at scrape time', async () => {
    const registry = createRegistry();
    let leading = false;
    processMetrics(registry, { isLeader: () => leading });
    expect(named(await samples(registry), 'amber_leader')).toEqual(['amber_leader 0']);
    leading = true;
    expect(named(await samples(registry), 'amber_leader')).toEqual(['amber_leader 1']);
  });

  it("carries package.json's version and the Node.js version, with the value 1", async () => {
    const registry = createRegistry();
    processMetrics(registry, { isLeader: () => false });
    expect(named(await samples(registry), 'amber_build_info')).toEqual([
      `amber_build_info{version="${pkg.version}",node_version="${process.versions.node}"} 1`,
    ]);
  });
});

describe('amber_cases across replicas', () => {
  const phases: (Phase | undefined)[] = ['Contained', 'Contained', 'Sealed', undefined];

  it('is exported by the leader only, so a sum over replicas counts each case once', async () => {
    const leader = createRegistry();
    const follower = createRegistry();
    caseMetrics(
      leader,
      () => phases,
      () => true,
    );
    caseMetrics(
      follower,
      () => phases,
      () => false,
    );
    const sum = (lines: string[], phase: string) =>
      named(lines, 'amber_cases')
        .filter((l) => l.includes(`phase="${phase}"`))
        .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
    const all = [...(await samples(leader)), ...(await samples(follower))];
    expect(sum(all, 'Contained')).toBe(2);
    expect(sum(all, 'Sealed')).toBe(1);
    expect(sum(all, 'Pending')).toBe(1);
    expect(named(await samples(follower), 'amber_cases')).toEqual([]);
  });

  it('drops its values when the replica stops leading', async () => {
    const registry = createRegistry();
    let leading = true;
    caseMetrics(
      registry,
      () => phases,
      () => leading,
    );
    expect(named(await samples(registry), 'amber_cases')).toContain('amber_cases{phase="Contained"} 2');
    leading = false;
    expect(named(await samples(registry), 'amber_cases')).toEqual([]);
  });
});
