import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runVerify } from '../../../src/cmd/verify.js';
import { loadSigningKey } from '../../../src/evidence/keys.js';
import { LocalEvidenceStore } from '../../../src/evidence/local-store.js';
import { MANIFEST_NAME, sealCase } from '../../../src/evidence/manifest.js';
import { verifyCase } from '../../../src/evidence/verify.js';
import { createRegistry } from '../../../src/observability/metrics.js';

function keyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}
const keys = keyPair();

let root: string;
let caseDir: string;

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), 'amber-verify-local-'));
  caseDir = join(root, 'case-1');
  const store = new LocalEvidenceStore({ root, registry: createRegistry() });
  const artifacts = [
    await store.put('case-1', 'processes.json', '[{"pid":1}]', { collectedBy: 'collector/processes' }),
    await store.put('case-1', 'logs/app.log', 'line 1\nline 2\n', { collectedBy: 'operator/logs' }),
  ];
  const seal = await sealCase(
    store,
    'case-1',
    { artifacts, caseInfo: { id: 'case-1', namespace: 'shop', pod: 'web-1' }, timeline: [] },
    loadSigningKey(keys.privatePem),
  );
  expect(seal.existed).toBe(false);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const verify = (publicKeyPem = keys.publicPem) => verifyCase(caseDir, { publicKeyPem });

describe('verify on a local case', () => {
  it('verifies an intact case', async () => {
    const report = await verify();
    expect(report.manifest.problems).toEqual([]);
    expect(report.artifacts.map((a) => [a.name, a.status])).toEqual([
      ['logs/app.log', 'ok'],
      ['processes.json', 'ok'],
    ]);
    expect(report.ok).toBe(true);
  });

  it('detects a flipped byte', async () => {
    const path = join(caseDir, 'processes.json');
    chmodSync(path, 0o644);
    const bytes = readFileSync(path);
    bytes[3] = bytes[3]! ^ 0x01;
    writeFileSync(path, bytes);
    chmodSync(path, 0o444);
    const report = await verify();
    expect(report.ok).toBe(false);
    const a = report.artifacts.find((x) => x.name === 'processes.json');
    expect(a?.status).toBe('mismatch');
    expect(a?.problems.join()).toMatch(/SHA-256 is [0-9a-f]{64}, the manifest says/);
  });

  it('detects a missing artifact and an added one', async () => {
    unlinkSync(join(caseDir, 'logs/app.log'));
    writeFileSync(join(caseDir, 'planted.sh'), 'echo hi');
    const report = await verify();
    expect(report.ok).toBe(false);
    expect(report.artifacts.find((a) => a.name === 'logs/app.log')?.status).toBe('missing');
    expect(report.artifacts.find((a) => a.name === 'planted.sh')?.status).toBe('unexpected');
  });

  it('detects an edited manifest', async () => {
    const path = join(caseDir, MANIFEST_NAME);
    const env = JSON.parse(readFileSync(path, 'utf8')) as { payload: string };
    const payload = Buffer.from(env.payload, 'base64').toString().replace('"pod":"web-1"', '"pod":"web-2"');
    env.payload = Buffer.from(payload).toString('base64');
    chmodSync(path, 0o644);
    writeFileSync(path, `${JSON.stringify(env)}\n`);
    const report = await verify();
    expect(report.ok).toBe(false);
    expect(report.manifest.signatureValid).toBe(false);
    // Writable again after sealing is flagged too.
    expect(report.manifest.problems.join()).toMatch(/signature invalid/);
  });

  it('detects a wrong key', async () => {
    const report = await verify(keyPair().publicPem);
    expect(report.ok).toBe(false);
    expect(report.manifest.signatureValid).toBe(false);
    expect(report.artifacts.every((a) => a.status === 'ok')).toBe(true);
  });

  it('flags an artifact made writable after sealing', async () => {
    chmodSync(join(caseDir, 'processes.json'), 0o644);
    const report = await verify();
    expect(report.ok).toBe(false);
    expect(report.artifacts.find((a) => a.name === 'processes.json')?.problems.join()).toMatch(/writable/);
  });

  it('keeps the first manifest when sealing again', async () => {
    const store = new LocalEvidenceStore({ root, registry: createRegistry() });
    const again = await sealCase(
      store,
      'case-1',
      { artifacts: [], caseInfo: { id: 'case-1' }, timeline: [] },
      loadSigningKey(keys.privatePem),
    );
    expect(again.existed).toBe(true);
    expect((await verify()).ok).toBe(true);
  });
});

describe('amber verify CLI (local)', () => {
  async function cli(args: { publicKey: string; json?: boolean }, location = caseDir) {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    stdout.on('data', (c: Buffer) => out.push(c));
    stderr.on('data', (c: Buffer) => err.push(c));
    const code = await runVerify(location, args, { stdout, stderr });
    return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
  }

  it('prints a table and exits 0 on an intact case', async () => {
    writeFileSync(join(root, 'pub.pem'), keys.publicPem);
    const r = await cli({ publicKey: join(root, 'pub.pem') });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/processes\.json\s*│\s*ok/);
    expect(r.stdout).toContain('VERIFIED');
  });

  it('exits 1 and lists the problem when an artifact is missing', async () => {
    writeFileSync(join(root, 'pub.pem'), keys.publicPem);
    unlinkSync(join(caseDir, 'processes.json'));
    const r = await cli({ publicKey: join(root, 'pub.pem') });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/processes\.json: listed in the manifest but absent/);
    const json = await cli({ publicKey: join(root, 'pub.pem'), json: true });
    expect((JSON.parse(json.stdout) as { ok: boolean }).ok).toBe(false);
  });

  it('exits 2 when it cannot verify at all', async () => {
    const r = await cli({ publicKey: join(root, 'no-such-key.pem') });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot verify/);
  });

  it('exits 2 for a path that does not exist: a usage error, not "manifest removed"', async () => {
    writeFileSync(join(root, 'pub.pem'), keys.publicPem);
    const r = await cli({ publicKey: join(root, 'pub.pem') }, join(root, 'no-such-case'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no-such-case does not exist/);
    expect(r.stdout).toBe('');
  });

  it('exits 0 on an intact copy elsewhere, and says retention is not checkable offline', async () => {
    writeFileSync(join(root, 'pub.pem'), keys.publicPem);
    const copy = join(mkdtempSync(join(tmpdir(), 'amber-verify-copy-')), 'case-1');
    cpSync(caseDir, copy, { recursive: true });
    // A download is writable: that is not tampering in a copy.
    chmodSync(join(copy, 'processes.json'), 0o644);
    const r = await cli({ publicKey: join(root, 'pub.pem') }, copy);
    expect(r.stdout).toMatch(/retention: not checkable offline/);
    expect(r.code).toBe(0);
    const json = await cli({ publicKey: join(root, 'pub.pem'), json: true }, copy);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, retention: 'not checkable offline' });
    rmSync(dirname(copy), { recursive: true, force: true });
  });

  it('fails a copy whose bytes changed, even offline', async () => {
    writeFileSync(join(root, 'pub.pem'), keys.publicPem);
    const copy = join(mkdtempSync(join(tmpdir(), 'amber-verify-copy-')), 'case-1');
    cpSync(caseDir, copy, { recursive: true });
    chmodSync(join(copy, 'processes.json'), 0o644);
    writeFileSync(join(copy, 'processes.json'), '[{"pid":2}]');
    const r = await cli({ publicKey: join(root, 'pub.pem') }, copy);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/processes\.json: SHA-256 is/);
    rmSync(dirname(copy), { recursive: true, force: true });
  });

  it("fails a case copied under another case's name", async () => {
    writeFileSync(join(root, 'pub.pem'), keys.publicPem);
    const copy = join(root, 'case-2');
    cpSync(caseDir, copy, { recursive: true });
    const r = await cli({ publicKey: join(root, 'pub.pem') }, copy);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/the manifest seals case "case-1", not "case-2"/);
  });
});
