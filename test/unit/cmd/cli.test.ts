import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { exitFailed, exitOk, exitUsage, runProgram } from '../../../src/cmd/exit.js';
import { buildProgram } from '../../../src/cmd/program.js';
import {
  collectionConfig,
  OperatorConfig,
  operatorSettings,
  resolveOperatorConfig,
} from '../../../src/operator/config.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** Runs `amber <args>` in-process, capturing what commander and the actions print. */
async function amber(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const program = buildProgram({ writeOut: (s) => (out += s), writeErr: (s) => (err += s) });
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
    err += String(s);
    return true;
  });
  const stdout = vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    out += String(s);
    return true;
  });
  try {
    const code = await runProgram(program, ['node', 'amber', ...args]);
    return { code, out, err };
  } finally {
    stderr.mockRestore();
    stdout.mockRestore();
    process.exitCode = undefined;
  }
}

afterEach(() => {
  process.exitCode = undefined;
});

describe('amber --version', () => {
  it("prints package.json's version and exits 0", async () => {
    for (const flag of ['--version', '-V']) {
      const r = await amber(flag);
      expect(r).toMatchObject({ code: exitOk });
      expect(r.out.trim()).toBe(pkg.version);
    }
  });
});

describe('exit codes', () => {
  const commands = ['operator', 'collect', 'verify'];

  it.each([
    ['no command at all', []],
    ['an unknown command', ['investigate']],
    ['an unknown top-level option', ['--frobnicate']],
    ['an unknown option of operator', ['operator', '--frobnicate']],
    ['an unknown option of collect', ['collect', '--frobnicate']],
    ['an unknown option of verify', ['verify', '/tmp/x/case-1', '--public-key', 'k.pem', '--frobnicate']],
    ['a missing required option (verify --public-key)', ['verify', '/tmp/x/case-1']],
    ['a missing argument (verify <location>)', ['verify', '--public-key', 'k.pem']],
    ['a missing required option (collect --case)', ['collect', '--container-id', 'abc']],
    [
      'an invalid choice (collect --runtime)',
      ['collect', '--container-id', 'a', '--case', 'c', '--runtime', 'lxc'],
    ],
    ['an option without its value', ['operator', '--workers']],
    ['too many arguments', ['verify', '/tmp/x/case-1', 'extra', '--public-key', 'k.pem']],
  ])('exits 2 on %s', async (_what, args) => {
    expect((await amber(...args)).code).toBe(exitUsage);
  });

  it('exits 2 on an invalid operator configuration, saying which setting, before starting anything', async () => {
    const r = await amber('operator', '--intake-token', 'short', '--workers', '0');
    expect(r.code).toBe(exitUsage);
    expect(r.err).toMatch(/intakeToken: the intake token must have at least 16 characters/);
    expect(r.err).toMatch(/workers:/);
  });

  it('exits 2 when verify cannot read its key (it could not verify: not a failed check)', async () => {
    const r = await amber('verify', '/tmp/amber-no-such-dir/case-1', '--public-key', '/nonexistent/key.pem');
    expect(r.code).toBe(exitUsage);
    expect(r.err).toMatch(/cannot verify/);
  });

  it('exits 2 when collect has no evidence store', async () => {
    const r = await amber('collect', '--container-id', 'abc', '--case', 'case-1');
    expect(r.code).toBe(exitUsage);
    expect(r.err).toMatch(/no evidence store/);
  });

  it('exits 0 on --help, and every command documents its exit codes there', async () => {
    for (const args of [[], ...commands.map((c) => [c])]) {
      const r = await amber(...args, '--help');
      expect(r.code, args.join(' ')).toBe(exitOk);
      expect(r.out, args.join(' ')).toMatch(
        new RegExp(`Exit codes:\\n  ${exitOk}  .+\\n  ${exitFailed}  .+\\n  ${exitUsage}  .+`),
      );
    }
  });
});

describe('operator settings: one table gives flags and environment variables', () => {
  it('covers every configuration key exactly once', () => {
    const keys = operatorSettings.map((s) => s.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect([...keys].sort()).toEqual(Object.keys(OperatorConfig.shape).sort());
  });

  it("lists each setting's flag and variables in `amber operator --help`", async () => {
    const help = (await amber('operator', '--help')).out.replace(/\s+/g, ' ');
    for (const s of operatorSettings) {
      expect(help).toContain(`--${s.flag}`);
      for (const env of s.env) expect(help).toContain(env);
    }
  });

  it('reads every setting from its variable and from its flag, the flag winning', () => {
    const env = { AMBER_WORKERS: '4', AMBER_S3_BUCKET: 'from-env', AMBER_PROTECTED_NAMESPACES: 'a,b' };
    expect(resolveOperatorConfig({}, env).data).toMatchObject({
      workers: 4,
      s3Bucket: 'from-env',
      protectedNamespaces: ['a', 'b'],
    });
    expect(
      resolveOperatorConfig({ workers: '8', s3Bucket: 'from-flag', protectedNamespaces: 'none' }, env).data,
    ).toMatchObject({ workers: 8, s3Bucket: 'from-flag', protectedNamespaces: [] });
  });

  it('passes snapshotter roots to the collection, and refuses a relative one', () => {
    const roots =
      '/var/lib/rancher/k3s/agent/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots,/srv/layers';
    const cfg = resolveOperatorConfig({}, { AMBER_SNAPSHOTTER_ROOTS: roots }).data;
    expect(cfg && collectionConfig(cfg)?.snapshotterRoots).toEqual(roots.split(','));
    expect(resolveOperatorConfig({ snapshotterRoots: 'layers' }, {}).success).toBe(false);
  });

  it('turns boolean settings on and off from either side; --no-x beats x=true in the environment', () => {
    const leader = (flags: Record<string, unknown>, env: Record<string, string>) =>
      resolveOperatorConfig(flags, env).data?.leaderElection;
    expect(leader({}, {})).toBe(true);
    expect(leader({}, { AMBER_LEADER_ELECTION: 'false' })).toBe(false);
    expect(leader({ leaderElection: false }, { AMBER_LEADER_ELECTION: 'true' })).toBe(false);
    expect(leader({ leaderElection: true }, { AMBER_LEADER_ELECTION: 'false' })).toBe(true);
    expect(resolveOperatorConfig({}, { AMBER_S3_PATH_STYLE: '1' }).data?.s3PathStyle).toBe(true);
  });

  it('refuses a variable that is not a boolean, naming the setting', () => {
    const r = resolveOperatorConfig({}, { AMBER_ALLOW_KUBE_SYSTEM: 'maybe' });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['allowKubeSystem']);
  });

  it('gives every flag of the table to commander with the attribute the table reads back', async () => {
    // Parse real argv through commander: a flag whose attribute name the table gets wrong would
    // be dropped silently and the configuration would keep its default.
    const program = buildProgram();
    const operator = program.commands.find((c) => c.name() === 'operator')!;
    operator.action(() => undefined);
    await runProgram(program, [
      'node',
      'amber',
      'operator',
      '--max-cordoned-nodes-percent',
      '7',
      '--s3-credentials-secret',
      'none',
      '--no-leader-election',
      '--allow-kube-system',
      '--s3-path-style',
      '--log-level',
      'debug',
    ]);
    expect(resolveOperatorConfig(operator.opts(), {}).data).toMatchObject({
      maxCordonedNodesPercent: 7,
      s3CredentialsSecret: 'none',
      leaderElection: false,
      allowKubeSystem: true,
      s3PathStyle: true,
      logLevel: 'debug',
    });
  });
});
