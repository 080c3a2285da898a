import YAML from 'yaml';
import { allCrds } from './crds.js';

const HEADER = '# Generated from src/api by scripts/gen-crds.ts; do not edit by hand.\n';

/** Where the CRDs are written: for kubectl, and for the Helm chart (its templates/crds.yaml). */
export const CRD_DIRS = ['crds', 'charts/amber/files/crds'] as const;

/** The exact text of each file in crds/. */
export function renderCrds(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(allCrds()).map(([file, crd]) => [
      file,
      HEADER + YAML.stringify(crd, { aliasDuplicateObjects: false }),
    ]),
  );
}
