import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A program the test environment started. Its output goes to a log file (shown when it fails
 * to start), and it is killed when the test process exits, even after a failed test.
 */
export class ManagedProcess {
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logFile: string,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        live.delete(this);
        resolve(code);
      }),
    );
    live.add(this);
  }

  static start(
    name: string,
    command: string,
    args: string[],
    opts: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string },
  ): ManagedProcess {
    const log = createWriteStream(opts.logFile, { flags: 'a' });
    const child = spawn(command, args, {
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: false,
    });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    return new ManagedProcess(name, child, opts.logFile);
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Polls `ready` until it returns true; fails early, with the log's tail, if the program dies. */
  async waitUntil(ready: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running)
        throw new Error(`${this.name} exited (${this.exitCode}) while starting:\n${this.logTail()}`);
      if (await ready().catch(() => false)) return;
      await sleep(100);
    }
    throw new Error(`${this.name} not ready after ${timeoutMs} ms:\n${this.logTail()}`);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Simulates a crash: no chance to clean up. */
  async kill(): Promise<void> {
    await this.stop('SIGKILL', 0);
  }
}

const live = new Set<ManagedProcess>();
process.once('exit', () => {
  for (const p of live) p.child.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const p of live) p.child.kill('SIGKILL');
    process.exit(130);
  });
}
