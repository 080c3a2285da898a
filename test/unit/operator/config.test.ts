import { describe, expect, it } from 'vitest';
import { OperatorConfig, collectionConfig, configFromEnv } from '../../../src/operator/config.js';

const parse = (env: Record<string, string>) => OperatorConfig.parse(configFromEnv(env));

describe('operator configuration from the environment', () => {
  it('turns the flat settings into the collection pipeline settings', () => {
    const cfg = parse({
      AMBER_S3_BUCKET: 'evidence',
      AMBER_S3_ENDPOINT: 'http://minio:9000',
      AMBER_S3_PATH_STYLE: 'true',
      AMBER_COLLECTOR_IMAGE: 'amber:1.0',
    });
    expect(collectionConfig(cfg)).toMatchObject({
      mode: 'job',
      namespace: 'amber-system',
      image: 'amber:1.0',
      evidence: { bucket: 'evidence', endpoint: 'http://minio:9000', forcePathStyle: true },
    });
  });

  it('lets collection Jobs use workload identity instead of a credentials Secret', () => {
    expect(collectionConfig(parse({ AMBER_S3_CREDENTIALS_SECRET: 'none' }))?.s3CredentialsSecret).toBeNull();
    expect(collectionConfig(parse({ AMBER_S3_CREDENTIALS_SECRET: 's3-creds' }))?.s3CredentialsSecret).toBe(
      's3-creds',
    );
    expect(collectionConfig(parse({}))).not.toHaveProperty('s3CredentialsSecret');
  });

  it('contains only when collection is off', () => {
    expect(collectionConfig(parse({ AMBER_COLLECTION_MODE: 'off' }))).toBeUndefined();
  });

  it('refuses a short intake token and an unknown collection mode, saying which', () => {
    expect(() => parse({ AMBER_INTAKE_TOKEN: 'short' })).toThrow(/at least 16 characters/);
    expect(() => parse({ AMBER_COLLECTION_MODE: 'exec' })).toThrow(/collectionMode/);
  });

  it('reads the global blast-radius limits', () => {
    expect(
      parse({
        AMBER_MAX_OPEN_CASES: '5',
        AMBER_MAX_CORDONED_NODES: '1',
        AMBER_MAX_CORDONED_NODES_PERCENT: '10',
      }),
    ).toMatchObject({
      maxOpenCases: 5,
      maxCordonedNodes: 1,
      maxCordonedNodesPercent: 10,
    });
  });

  it("protects Falco's and Falcosidekick's namespaces unless told otherwise", () => {
    expect(parse({}).protectedNamespaces).toEqual(['falco', 'falcosidekick']);
    expect(parse({ AMBER_PROTECTED_NAMESPACES: 'security, falco' }).protectedNamespaces).toEqual([
      'security',
      'falco',
    ]);
    expect(parse({ AMBER_PROTECTED_NAMESPACES: 'none' }).protectedNamespaces).toEqual([]);
  });
});
