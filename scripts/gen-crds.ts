// Writes crds/*.yaml and the chart's copy (charts/amber/files/crds/) from the zod schemas in
// src/api (run: npm run gen:crds). A unit test fails when either drifts from the schemas.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CRD_DIRS, renderCrds } from '../src/api/render.js';

const root = join(import.meta.dirname, '..');
for (const dir of CRD_DIRS) {
  mkdirSync(join(root, dir), { recursive: true });
  for (const [file, text] of Object.entries(renderCrds())) {
    writeFileSync(join(root, dir, file), text);
    console.log(`wrote ${dir}/${file}`);
  }
}
