import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RUN_ENV, describeProcesses, processesWithEnv, type ProcessInfo } from './procs.js';

/**
 * Builds (or finds in the cache) every real program the integration tests run. The first
 * build takes a while; afterwards it is a cache lookup.
 *
 * Tags this run: the test workers inherit RUN_ENV, and every program they start inherits it from
 * them. The teardown fails the run if any process so tagged is still alive at the end, after
 * killing it, so that a test that leaves a program running is found the day it is written.
 */
export default function setup(): () => Promise<void> {
  // A fresh ID even if one was inherited: only what this run started counts.
  const runId = randomUUID();
  process.env[RUN_ENV] = runId;
  if (!process.env.AMBER_SKIP_TESTENV_BUILD) {
    execFileSync('bash', [join(import.meta.dirname, '..', '..', 'scripts', 'testenv-build.sh')], {
      stdio: 'inherit',
    });
  }
  return async () => {
    const left = await leftovers(runId);
    if (left.length === 0) return;
    for (const p of left) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    console.error(
      `\nFAIL: ${left.length} process(es) started by this test run were still running at its end ` +
        `(now killed):\n${describeProcesses(left)}\n`,
    );
    process.exitCode = 1;
  };
}

/**
 * Tagged processes still alive. Workers kill what they started as they exit; a process that got
 * its SIGKILL a moment ago may still be on its way out, so only what outlives a short grace
 * period is a leftover. A leaked process lives for hours: the grace hides none.
 */
async function leftovers(runId: string): Promise<ProcessInfo[]> {
  // This process's own children (a test worker on its way out, a transpiler service) are the
  // runner's, not the tests'.
  const theTests = (p: ProcessInfo) => p.pid !== process.pid && p.ppid !== process.pid;
  let left = processesWithEnv(RUN_ENV, runId).filter(theTests);
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await sleep(100);
    left = processesWithEnv(RUN_ENV, runId).filter(theTests);
  }
  return left;
}
