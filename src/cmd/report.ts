import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { parseCaseLocation } from '../evidence/location.js';
import { renderHtml } from '../report/html.js';
import { loadReport } from '../report/load.js';
import { renderMarkdown } from '../report/markdown.js';
import { exitCodesHelp, exitFailed, exitOk, exitUsage } from './exit.js';
import type { VerifyIo } from './verify.js';

export interface ReportCliOptions {
  publicKey: string;
  out?: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
}

/** `amber report <location>`: verify a sealed case, then write it up as HTML and Markdown. */
export function registerReportCommand(program: Command): void {
  program
    .command('report <location>')
    .description(
      'verify a sealed case, then write what it holds for an investigator: a self-contained HTML file ' +
        'and its Markdown twin (verdict, target, alerts, timeline, processes, sockets, filesystem changes, ' +
        'exposure, gaps, artifacts)',
    )
    .requiredOption('--public-key <file>', 'PEM public key that signed the manifest (Ed25519 or ECDSA P-256)')
    .option('--out <path>', 'output path without extension (default: ./<case>-report); writes .html and .md')
    .option('--endpoint <url>', 'S3 endpoint (MinIO, on-premises S3); AWS when omitted')
    .option('--region <region>', 'S3 region', process.env.AWS_REGION ?? 'us-east-1')
    .option('--path-style', 'path-style S3 addressing (MinIO needs it)', false)
    .addHelpText(
      'after',
      '\nLocation: s3://bucket/prefix/<case> or a local directory /dir/<case>, as for `amber verify`.\n' +
        'The report is written even when verification fails; its first line then says NOT VERIFIED and\n' +
        'it shows only content that matches the signed digests.\n' +
        exitCodesHelp({
          ok: 'report written; the case verified',
          failed: 'report written; the case did NOT verify (see its first section)',
          usage:
            'usage error, or could not read the case (unreadable key, store unreachable); nothing written',
        }),
    )
    .action(async (location: string, options: ReportCliOptions) => {
      process.exitCode = await runReport(location, options, {
        stdout: process.stdout,
        stderr: process.stderr,
      });
    });
}

export async function runReport(location: string, options: ReportCliOptions, io: VerifyIo): Promise<number> {
  let written: { html: string; markdown: string };
  let ok: boolean;
  try {
    const caseId = parseCaseLocation(location).caseId;
    const publicKeyPem = await readFile(options.publicKey);
    const { model, verify } = await loadReport(location, {
      publicKeyPem,
      s3: {
        region: options.region ?? 'us-east-1',
        forcePathStyle: options.pathStyle ?? false,
        ...(options.endpoint && { endpoint: options.endpoint }),
      },
    });
    const base = resolve(options.out ?? `${caseId}-report`);
    written = { html: `${base}.html`, markdown: `${base}.md` };
    await writeFile(written.html, renderHtml(model));
    await writeFile(written.markdown, renderMarkdown(model));
    ok = verify.ok;
  } catch (err) {
    io.stderr.write(`amber report: cannot report on ${location}: ${(err as Error).message}\n`);
    return exitUsage;
  }
  io.stdout.write(`${written.html}\n${written.markdown}\n`);
  if (!ok) io.stderr.write(`amber report: the case did NOT verify; the report says what failed\n`);
  return ok ? exitOk : exitFailed;
}
