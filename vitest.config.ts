import { defineConfig } from 'vitest/config';

// Two projects: `unit` is pure logic and needs nothing; `integration` runs against the real
// programs built by scripts/testenv-build.sh (its global setup builds them, cached).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // A timeout catches a hang, never slowness: property tests take seconds on a loaded
          // 2-core machine (a 5 s default failed one once).
          testTimeout: 60_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/testenv/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // 2 cores: each file starts its own apiserver/minio; keep two at a time at most.
          maxWorkers: 2,
          pool: 'forks',
          // After the unit tests (a project with its own worker limit needs its own group).
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
