import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Versions must match scripts/testenv-build.sh (which reads the same variables). */
export const versions = {
  kube: process.env.KUBE_VERSION ?? 'v1.34.4',
  kwok: process.env.KWOK_VERSION ?? 'v0.8.0',
  minio: process.env.MINIO_VERSION ?? 'v0.0.0-20260212201848-7aac2a2c5b7c',
  falcosidekick: process.env.FALCOSIDEKICK_VERSION ?? '2.32.0',
  helm: process.env.HELM_VERSION ?? 'v3.22.0',
};

export const cacheDir =
  process.env.AMBER_TESTENV_CACHE ??
  join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'amber-testenv');

export function binary(component: keyof typeof versions, name: string = component): string {
  const path = join(cacheDir, `${component}-${versions[component]}`, name);
  if (!existsSync(path)) {
    throw new Error(
      `${name} is not built (expected ${path}); run: bash scripts/testenv-build.sh ${component}`,
    );
  }
  return path;
}
