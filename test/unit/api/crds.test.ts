import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { toStructural } from '../../../src/api/crd.js';
import { renderCrds } from '../../../src/api/render.js';

describe('CRDs in crds/', () => {
  it.each(Object.entries(renderCrds()))('%s matches the zod schemas (run npm run gen:crds)', (file, text) => {
    expect(readFileSync(join(import.meta.dirname, '..', '..', '..', 'crds', file), 'utf8')).toBe(text);
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
