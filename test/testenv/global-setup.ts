import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * Builds (or finds in the cache) every real program the integration tests run. The first
 * build takes a while; afterwards it is a cache lookup.
 */
export default function setup(): void {
  if (process.env.AMBER_SKIP_TESTENV_BUILD) return;
  execFileSync('bash', [join(import.meta.dirname, '..', '..', 'scripts', 'testenv-build.sh')], {
    stdio: 'inherit',
  });
}
