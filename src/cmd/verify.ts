import { readFile } from 'node:fs/promises';
import { formatBytes } from '../report/model.js';
import type { Writable } from 'node:stream';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { verifyCase, type VerifyReport } from '../evidence/verify.js';
import { exitCodesHelp, exitFailed, exitOk, exitUsage } from './exit.js';

export interface VerifyCliOptions {
  publicKey: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  json?: boolean;
}

export interface VerifyIo {
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean };
}

/** Exit codes: 0 verified, 1 a check failed, 2 usage error or could not verify (bad key, store unreachable, ...). */
export const exitVerified = exitOk;
export { exitFailed };
export const exitError = exitUsage;

/** `amber verify <location>`: checks a sealed case offline and exits non-zero on any failure. */
export function registerVerifyCommand(program: Command): void {
  program
    .command('verify <location>')
    .description(
      'prove a sealed case unchanged: manifest signature, every artifact digest (recomputed), ' +
        'nothing added or missing, Object Lock retention still in force (S3)',
    )
    .requiredOption('--public-key <file>', 'PEM public key that signed the manifest (Ed25519 or ECDSA P-256)')
    .option('--endpoint <url>', 'S3 endpoint (MinIO, on-premises S3); AWS when omitted')
    .option('--region <region>', 'S3 region', process.env.AWS_REGION ?? 'us-east-1')
    .option('--path-style', 'path-style S3 addressing (MinIO needs it)', false)
    .option('--json', 'print the report as JSON instead of a table', false)
    .addHelpText(
      'after',
      '\nLocation: s3://bucket/prefix/<case> or a local directory /dir/<case>.\n' +
        'The manifest must name this case, and (on S3) this very location: a relocated copy fails.\n' +
        'A directory holding a download of an S3 case is checked for signature and digests;\n' +
        'its retention is reported as not checkable offline.\n' +
        'S3 credentials come from the usual AWS environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...).\n' +
        exitCodesHelp({
          ok: 'verified: the case is intact',
          failed: 'a check failed (signature, digest, missing or extra artifact, retention)',
          usage: 'usage error, or could not verify (unreadable key, store unreachable, no such case)',
        }),
    )
    .action(async (location: string, options: VerifyCliOptions) => {
      process.exitCode = await runVerify(location, options, {
        stdout: process.stdout,
        stderr: process.stderr,
      });
    });
}

export async function runVerify(location: string, options: VerifyCliOptions, io: VerifyIo): Promise<number> {
  let report: VerifyReport;
  try {
    const publicKeyPem = await readFile(options.publicKey);
    const progress = progressPrinter(io.stderr);
    report = await verifyCase(location, {
      publicKeyPem,
      s3: {
        region: options.region ?? 'us-east-1',
        forcePathStyle: options.pathStyle ?? false,
        ...(options.endpoint && { endpoint: options.endpoint }),
      },
      onProgress: progress,
    });
    progress.done();
  } catch (err) {
    io.stderr.write(`amber verify: cannot verify ${location}: ${(err as Error).message}\n`);
    return exitError;
  }
  io.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));
  return report.ok ? exitVerified : exitFailed;
}

/** A human-readable report: the case, the manifest's state, one row per artifact, then every problem. */
export function renderReport(report: VerifyReport): string {
  const lines: string[] = [];
  lines.push(`case:      ${report.caseId} (${report.location})`);
  const c = report.manifest.case;
  if (c?.namespace || c?.pod)
    lines.push(`target:    ${c.namespace ?? '?'}/${c.pod ?? '?'}${c.node ? ` on ${c.node}` : ''}`);
  if (report.manifest.sealedAt) lines.push(`sealed at: ${report.manifest.sealedAt}`);
  const sig = !report.manifest.found
    ? 'MISSING'
    : report.manifest.signatureValid
      ? `valid (key ${report.manifest.keyid?.slice(0, 16)})`
      : 'INVALID';
  lines.push(`manifest:  signature ${sig}`);
  if (report.manifest.sealedLocation) lines.push(`sealed at location: ${report.manifest.sealedLocation}`);
  if (report.manifest.complete !== undefined)
    lines.push(
      `collection: ${report.manifest.complete ? 'complete' : `INCOMPLETE (${report.manifest.gaps?.length ?? 0} gaps listed in the manifest)`}`,
    );
  lines.push(
    `retention: ${
      report.retention === 'not checkable offline'
        ? "not checkable offline (a copy in a directory holds the bytes, not the store's Object Lock)"
        : report.retention
    }`,
  );

  const table = new Table({
    head: ['artifact', 'status', 'size', 'sha-256', 'retained until'],
    style: { head: [], border: [] },
  });
  for (const a of report.artifacts) {
    table.push([
      a.name,
      a.status === 'ok' ? 'ok' : a.status.toUpperCase(),
      a.size === undefined ? '-' : formatBytes(a.size),
      (a.actualSha256 ?? a.expectedSha256 ?? '-').slice(0, 16),
      a.retainUntil
        ? `${a.retainUntil}${a.retentionMode ? ` ${a.retentionMode}` : ''}${a.legalHold ? ' +hold' : ''}`
        : '-',
    ]);
  }
  lines.push(table.toString());

  const problems = [
    ...report.manifest.problems.map((p) => `manifest: ${p}`),
    ...report.artifacts.flatMap((a) => a.problems.map((p) => `${a.name}: ${p}`)),
  ];
  const gaps = report.manifest.gaps ?? [];
  if (gaps.length > 0)
    lines.push('', 'not collected (as sealed):', ...gaps.map((g) => `  - ${g.what}: ${g.reason}`));
  const findings = report.manifest.findings ?? [];
  if (findings.length > 0)
    lines.push(
      '',
      'findings (objects under the case that nothing accounted for; not evidence):',
      ...findings.map((f) => `  - ${f.what}: ${f.reason}`),
    );
  if (problems.length > 0) {
    lines.push('', 'problems:', ...problems.map((p) => `  - ${p}`));
  }
  lines.push(
    '',
    report.ok ? 'VERIFIED: the case is intact.' : `FAILED: ${problems.length} problem(s) found.`,
  );
  return `${lines.join('\n')}\n`;
}

/** Progress for long downloads only (16 MiB and up), at most once a second; rewrites its line on a TTY. */
function progressPrinter(stderr: VerifyIo['stderr']) {
  const minSize = 16 * 1024 * 1024;
  let last = 0;
  let open = false;
  const print = (p: { name: string; bytes: number; total: number }) => {
    if (p.total < minSize) return;
    const now = Date.now();
    const finished = p.bytes >= p.total;
    if (!finished && now - last < 1000) return;
    last = now;
    const text = `verifying ${p.name}: ${formatBytes(p.bytes)} / ${formatBytes(p.total)}`;
    if (stderr.isTTY) {
      stderr.write(`\r\x1b[K${text}`);
      open = !finished;
      if (finished) stderr.write('\n');
    } else {
      stderr.write(`${text}\n`);
    }
  };
  return Object.assign(print, {
    done: () => {
      if (open) stderr.write('\n');
    },
  });
}
