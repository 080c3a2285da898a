import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CATEGORY, toStructural } from '../../../src/api/crd.js';
import { allCrds } from '../../../src/api/crds.js';
import { CRD_DIRS, renderCrds } from '../../../src/api/render.js';

const root = join(import.meta.dirname, '..', '..', '..');

describe('CRDs in crds/ and in the chart', () => {
  const cases = CRD_DIRS.flatMap((dir) =>
    Object.entries(renderCrds()).map(([file, text]) => [dir, file, text]),
  );
  it.each(cases)('%s/%s matches the zod schemas (run npm run gen:crds)', (dir, file, text) => {
    expect(readFileSync(join(root, dir, file), 'utf8')).toBe(text);
  });
});

type Schema = { description?: string; properties?: Record<string, Schema>; items?: Schema };

/** Every field path under `schema` that has no description (kubectl explain would show nothing). */
function undescribed(schema: Schema, path: string): string[] {
  const missing: string[] = [];
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    const at = `${path}.${name}`;
    if (!child.description?.trim()) missing.push(at);
    missing.push(...undescribed(child, at));
  }
  if (schema.items) missing.push(...undescribed(schema.items, `${path}[]`));
  return missing;
}

describe.each(Object.entries(allCrds()))('%s', (_file, crd) => {
  const spec = (crd as { spec: { names: { categories: string[] }; versions: Version[] } }).spec;
  type Version = {
    schema: { openAPIV3Schema: Schema };
    additionalPrinterColumns: { name: string; jsonPath: string }[];
  };
  const [version] = spec.versions;

  it('describes the kind and every field, nested ones and list items included', () => {
    const schema = version!.schema.openAPIV3Schema;
    expect(schema.description).toBeTruthy();
    expect(undescribed(schema, '')).toEqual([]);
  });

  it(`is in the ${CATEGORY} category`, () => {
    expect(spec.names.categories).toEqual([CATEGORY]);
  });

  it('has a Reason printer column', () => {
    expect(version!.additionalPrinterColumns.map((c) => c.name)).toContain('Reason');
  });
});

describe('undescribed', () => {
  it('finds a field without a description, however deep (the check can fail)', () => {
    const schema = toStructural(
      z.object({
        a: z.string().describe('A'),
        b: z.array(z.object({ c: z.number().describe('C'), d: z.boolean() })).describe('B'),
      }),
    );
    expect(undescribed(schema, '')).toEqual(['.b[].d']);
  });
});

describe('toStructural', () => {
  it('turns nullable into nullable: true and drops what Kubernetes rejects', () => {
    const schema = toStructural(
      z
        .object({
          n: z.number().int().nullable().optional(),
          m: z.record(z.string(), z.string()),
          k: z.literal('x'),
        })
        .strict(),
    );
    expect(schema).toEqual({
      type: 'object',
      properties: {
        n: { type: 'integer', nullable: true },
        m: { type: 'object', additionalProperties: { type: 'string' } },
        k: { type: 'string', enum: ['x'] },
      },
      required: ['m', 'k'],
    });
  });

  it('refuses unions a structural schema cannot express', () => {
    expect(() => toStructural(z.object({ u: z.union([z.string(), z.number()]) }))).toThrow(/unions/);
  });
});
