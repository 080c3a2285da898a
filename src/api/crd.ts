import { z } from 'zod';
import { GROUP, VERSION } from './common.js';

type JsonSchema = Record<string, unknown>;

export interface CrdNames {
  kind: string;
  plural: string;
  singular: string;
  shortNames: readonly string[];
  /** What `kubectl explain <kind>` says about the kind. */
  description: string;
}

/** `kubectl get amber` lists every kind Amber owns. */
export const CATEGORY = 'amber';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'date' | 'boolean' | 'number';
  jsonPath: string;
  priority?: number;
}

/**
 * Builds a CustomResourceDefinition from the zod schemas of a resource's spec and status, so
 * the API server validates exactly what the operator parses (one source of truth).
 */
export function crdFor(
  names: CrdNames,
  spec: z.ZodType,
  status: z.ZodType | undefined,
  columns: PrinterColumn[],
  /** CEL rules on the whole object (the only place metadata.name can be checked). */
  rootValidations: { rule: string; message: string }[] = [],
): JsonSchema {
  const properties: JsonSchema = { spec: toStructural(spec) };
  if (status) properties.status = toStructural(status);
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${names.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Cluster',
      names: {
        kind: names.kind,
        listKind: `${names.kind}List`,
        plural: names.plural,
        singular: names.singular,
        shortNames: [...names.shortNames],
        categories: [CATEGORY],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: status ? { status: {} } : undefined,
          additionalPrinterColumns: [
            ...columns,
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              description: names.description,
              type: 'object',
              required: ['spec'],
              properties,
              ...(rootValidations.length ? { 'x-kubernetes-validations': rootValidations } : {}),
            },
          },
        },
      ],
    },
  };
}

/** zod's JSON Schema, reduced to the structural subset Kubernetes accepts. */
export function toStructural(schema: z.ZodType): JsonSchema {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'throw' }) as JsonSchema;
  delete json.$schema;
  return clean(json);
}

function clean(node: JsonSchema): JsonSchema {
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) {
    switch (key) {
      case 'type':
        if (Array.isArray(value))
          throw new Error(`unions cannot be expressed in a structural CRD schema: ${JSON.stringify(value)}`);
        out.type = value;
        continue;
      case 'propertyNames':
        continue; // always string keys in Kubernetes
      case 'const':
        out.enum = [value];
        continue;
      case 'additionalProperties':
        // Kubernetes prunes unknown fields itself; `false` is not allowed beside properties.
        if (value === false) continue;
        out.additionalProperties = clean(value as JsonSchema);
        continue;
      case 'properties':
        out.properties = Object.fromEntries(
          Object.entries(value as Record<string, JsonSchema>).map(([k, v]) => [k, clean(v)]),
        );
        continue;
      case 'items':
        out.items = clean(value as JsonSchema);
        continue;
      case 'anyOf': {
        // zod renders `.nullable()` as anyOf [T, {type: null}]: structural schemas say nullable.
        const variants = (value as JsonSchema[]).filter((v) => v.type !== 'null');
        if (variants.length !== 1)
          throw new Error(`unions cannot be expressed in a structural CRD schema: ${JSON.stringify(value)}`);
        Object.assign(out, clean(variants[0]!), { nullable: true });
        continue;
      }
      case 'maximum':
      case 'minimum':
        // zod's .int() adds ±MAX_SAFE_INTEGER bounds: noise in a CRD.
        if (Math.abs(value as number) === Number.MAX_SAFE_INTEGER) continue;
        out[key] = value;
        continue;
      case 'format':
        // Kubernetes knows a few formats and ignores the rest; zod's regex-backed ones stay as patterns.
        if (value === 'uri') continue;
        out[key] = value;
        continue;
      default:
        out[key] = value;
    }
  }
  return out;
}
