import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exitFailed, exitOk, exitUsage } from '../../../src/cmd/exit.js';
import { runReport } from '../../../src/cmd/report.js';
import { renderHtml } from '../../../src/report/html.js';
import { loadReport } from '../../../src/report/load.js';
import { renderMarkdown } from '../../../src/report/markdown.js';
import type { ReportModel } from '../../../src/report/model.js';
import { IMG_FILE, SCRIPT_NAME, keyPair, sealFixtureCase } from './fixtures.js';

const keys = keyPair();
let root: string;
let caseDir: string;

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), 'amber-report-'));
  caseDir = join(root, 'case-x');
  await sealFixtureCase(root, 'case-x', keys.privatePem);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const load = async (publicKeyPem = keys.publicPem) => (await loadReport(caseDir, { publicKeyPem })).model;
const container = (m: ReportModel) => m.containers[0]!;
const value = <T>(p: { collected: true; value: T } | { collected: false; why: string }): T => {
  if (!p.collected) throw new Error(`not collected: ${p.why}`);
  return p.value;
};

describe('amber report: what a sealed case says', () => {
  it('opens with the verdict of verify', async () => {
    const m = await load();
    expect(m.verdict.ok).toBe(true);
    expect(m.verdict.headline).toMatch(
      /^VERIFIED: signature valid .* all 9 artifacts match their signed digests/,
    );
    expect(m.target).toMatchObject({
      namespace: 'shop',
      pod: 'web',
      node: 'node-1',
      policy: 'shop/contain-critical',
    });
  });

  it('gives the image digests from the pod as the orchestrator read it', async () => {
    expect(value((await load()).images)).toEqual([
      expect.objectContaining({
        container: 'main',
        imageID: `registry.example/shop/web@sha256:${'ab'.repeat(32)}`,
      }),
    ]);
  });

  it('lists the volume snapshots the manifest records, with handle, size and time', async () => {
    const m = await load();
    expect(m.volumeSnapshots.map((r) => [r.volume, r.phase, r.snapshotHandle])).toEqual([
      ['data', 'Ready', 'snap-7f3a'],
      ['cache', 'Skipped', undefined],
    ]);
    expect(renderHtml(m)).toMatch(/<h3 id="volume-snapshots">[\s\S]*snap-7f3a[\s\S]*1Gi/);
    expect(renderMarkdown(m)).toContain('### Volume snapshots');
  });

  it('measures alert → contained → collected → sealed', async () => {
    const m = await load();
    expect(m.durations.map((d) => [d.label, d.seconds])).toEqual([
      ['alert → contained', 1.877],
      ['contained → collected', 7],
      ['collected → sealed', 1],
      ['alert → sealed', 9.877],
    ]);
  });

  it('points at what stands out in the process tree', async () => {
    const rows = value(container(await load()).processes);
    const notes = new Map(rows.map((r) => [r.pid, r.notes.join('; ')]));
    expect(rows.map((r) => [r.pid, r.depth])).toEqual([
      [100, 0],
      [120, 1],
      [130, 2],
      [140, 0],
    ]);
    expect(notes.get(100)).toBe('');
    expect(notes.get(120)).toMatch(
      /shell; unusual parent: a shell started by the container's main process nginx/,
    );
    expect(notes.get(130)).toMatch(/runs from a memfd \(fileless\); holds memfd fd 3/);
    expect(notes.get(140)).toMatch(/shell; parent outside the container/);
  });

  it('splits listening from established sockets, with remote addresses and owners', async () => {
    const s = value(container(await load()).sockets);
    expect(s.listening).toEqual([expect.objectContaining({ local: '0.0.0.0:8080', owners: 'nginx (100)' })]);
    expect(s.established).toEqual([expect.objectContaining({ remote: '203.0.113.9:4444' })]);
    expect(s.other).toEqual([expect.objectContaining({ local: '[::1]:9000', state: 'TIME_WAIT' })]);
  });

  it('lists suspicious places first in the filesystem diff', async () => {
    const f = value(container(await load()).filesystem);
    expect(f.rows.map((r) => [r.kind, r.path])).toEqual([
      ['changed', '/etc/ld.so.preload'],
      ['added', '/etc/cron.d/backdoor'],
      ['added', IMG_FILE],
      ['added', '/root/.bash_history'],
      ['deleted', '/usr/bin/ps'],
      ['added', '/app/cache/1'],
    ]);
  });

  it('lists every gap with its reason, from both reports, new record kinds included', async () => {
    const gaps = (await load()).gaps.map((g) => `${g.kind} ${g.what}: ${g.reason}`);
    expect(gaps).toEqual([
      `failed memory: EPERM reading /proc/130/mem of ${SCRIPT_NAME}`,
      'failed checkpoint: kubelet checkpoint API disabled',
      'skipped filesystem/writable-layer.tar: larger than the 20Gi cap',
      'failed logs of main (current): kubelet unreachable',
    ]);
  });

  it('says "not collected" for a part the case does not hold, and goes on', async () => {
    rmSync(root, { recursive: true, force: true });
    root = mkdtempSync(join(tmpdir(), 'amber-report-'));
    caseDir = join(root, 'case-x');
    const { caseFiles } = await import('./fixtures.js');
    const saved = { ...caseFiles };
    caseFiles['containers/0123456789ab/processes.json'] = '{"processes": [ truncated';
    delete caseFiles['containers/0123456789ab/network.json'];
    try {
      await sealFixtureCase(root, 'case-x', keys.privatePem);
    } finally {
      Object.assign(caseFiles, saved);
    }
    const c = container(await load());
    expect(c.sockets).toEqual({
      collected: false,
      why: 'not collected: no containers/0123456789ab/network.json in the case',
    });
    expect(c.processes.collected).toBe(false);
    expect(c.filesystem.collected).toBe(true);
    const html = renderHtml(await load());
    expect(html).toContain('not collected: no containers/0123456789ab/network.json in the case');
  });

  it('has an artifact table with digests and what collected each', async () => {
    const a = (await load()).artifacts.find((x) => x.name === 'orchestrator/pod.yaml');
    expect(a).toMatchObject({ status: 'ok', collectedBy: 'test/orchestrator', retention: 'none recorded' });
    expect(a?.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('amber report on evidence that does not verify', () => {
  it('says NOT VERIFIED first and does not show a tampered artifact', async () => {
    const path = join(caseDir, 'containers/0123456789ab/processes.json');
    chmodSync(path, 0o644);
    writeFileSync(path, readFileSync(path, 'utf8').replace('curl evil', 'ls -la   '));
    chmodSync(path, 0o444);
    const m = await load();
    expect(m.verdict.ok).toBe(false);
    expect(m.verdict.headline).toMatch(/^NOT VERIFIED/);
    expect(m.verdict.problems.join('\n')).toMatch(/processes\.json: SHA-256 is/);
    expect(container(m).processes).toEqual({
      collected: false,
      why: expect.stringMatching(/^not shown: .*processes\.json does not match its signed digest/),
    });
    expect(renderHtml(m)).not.toContain('ls -la');
  });

  it('shows nothing of the content under a key that did not sign it', async () => {
    const m = await load(keyPair().publicPem);
    expect(m.verdict.ok).toBe(false);
    expect(container(m).processes).toMatchObject({ collected: false });
    expect(m.target).toEqual({});
  });
});

describe('amber report: the suspect controls names, not the page', () => {
  it('renders hostile process and file names as text in HTML, under a CSP that allows no script', async () => {
    const html = renderHtml(await load());
    expect(html).not.toMatch(/<script|<img|onerror=alert\(2\)>/i);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt; --steal');
    expect(html).toContain('/tmp/&quot;&gt;&lt;img src=x onerror=alert(2)&gt;');
    const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/
      .exec(html)?.[1]
      ?.replaceAll('&#39;', "'");
    expect(csp).toMatch(/default-src 'none'/);
    expect(csp).toMatch(/script-src 'none'/);
    expect(csp).not.toMatch(/unsafe-inline/);
    // No reference to anything outside the file.
    expect(html).not.toMatch(/<[^>]*\b(src|href)=/i);
  });

  it('escapes them in Markdown too: no raw HTML, no broken table, no link', async () => {
    const text = renderMarkdown(await load());
    expect(text).not.toMatch(/(?<!\\)</); // every < is escaped: no raw HTML at all
    expect(text).toContain('\\<script\\>alert\\(1\\)\\</script\\>');
    // No cell was split by a | in a name: every row of a table has its header's cells.
    const cells = (l: string) => l.split(/(?<!\\)\|/).length;
    const tables = text.split(/\n(?!\|)/).map((block) => block.split('\n').filter((l) => l.startsWith('|')));
    const hostile = tables.filter((t) => t.some((l) => l.includes('img src')));
    expect(hostile.length).toBeGreaterThanOrEqual(2); // the file diff and the volume snapshots
    for (const t of hostile) for (const row of t) expect(cells(row)).toBe(cells(t[0]!));
  });

  it('shows control and bidirectional-override characters instead of obeying them', async () => {
    const { html } = await import('../../../src/report/text.js');
    expect(html('invoice\u202Egpj.exe\nline2')).toBe('invoice\\u202egpj.exe\\u000aline2');
  });
});

describe('amber report exit codes', () => {
  const io = () => {
    const out = new PassThrough();
    const err = new PassThrough();
    let text = '';
    out.on('data', (d) => (text += String(d)));
    err.on('data', (d) => (text += String(d)));
    return { io: { stdout: out, stderr: err }, text: () => text };
  };

  it('0 when the case verified, writing the HTML and Markdown files it names', async () => {
    const keyFile = join(root, 'key.pem');
    writeFileSync(keyFile, keys.publicPem);
    const o = io();
    const out = join(root, 'out');
    expect(await runReport(caseDir, { publicKey: keyFile, out }, o.io)).toBe(exitOk);
    expect(o.text()).toContain(`${out}.html`);
    expect(readFileSync(`${out}.html`, 'utf8')).toContain('VERIFIED');
    expect(readFileSync(`${out}.md`, 'utf8')).toContain('## Gaps');
  });

  it('1 when it did not verify (the report is written all the same)', async () => {
    const keyFile = join(root, 'other.pem');
    writeFileSync(keyFile, keyPair().publicPem);
    const out = join(root, 'out');
    expect(await runReport(caseDir, { publicKey: keyFile, out }, io().io)).toBe(exitFailed);
    expect(readFileSync(`${out}.html`, 'utf8')).toContain('NOT VERIFIED');
  });

  it('2 when the key cannot be read, writing nothing', async () => {
    const o = io();
    expect(
      await runReport(caseDir, { publicKey: join(root, 'none.pem'), out: join(root, 'out') }, o.io),
    ).toBe(exitUsage);
    expect(o.text()).toMatch(/cannot report on/);
  });
});
