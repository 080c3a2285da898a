// Writes crds/*.yaml from the zod schemas in src/api (run: npm run gen:crds).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderCrds } from '../src/api/render.js';

for (const [file, text] of Object.entries(renderCrds())) {
  writeFileSync(join(import.meta.dirname, '..', 'crds', file), text);
  console.log(`wrote crds/${file}`);
}
