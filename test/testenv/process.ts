import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeProcesses, groupMembers } from './procs.js';

/**
 * A program the test environment started. Its output goes to a log file (shown when it fails
 * to start), and it is killed when the test process exits, even after a failed test.
 *
 * Each program runs in a process group of its own and every signal goes to the whole group: a
 * wrapper (npx, a shell) that starts the real program cannot take a "kill" for it and leave the
 * program running. stop() and kill() return only once no process of the group is left.
 */
export class ManagedProcess {
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined;
  /** The child's PID, which is also its process group ID. */
  readonly pid: number;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logFile: string,
  ) {
    if (child.pid === undefined) throw new Error(`${name} did not start`);
    this.pid = child.pid;
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
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
      // Its own session and process group, whose ID is the child's PID.
      detached: true,
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

  /**
   * Sends `signal` to the program's group, SIGKILL after `graceMs`; then SIGKILL to whatever
   * of the group outlived its leader. Resolves once every process of the group is gone.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
    if (this.running) {
      signalGroup(this.pid, signal);
      const timer = setTimeout(() => signalGroup(this.pid, 'SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    signalGroup(this.pid, 'SIGKILL');
    await groupGone(this.name, this.pid);
    live.delete(this);
  }

  /** Simulates a crash: SIGKILL to every process of the group, no chance to clean up. */
  async kill(): Promise<void> {
    await this.stop('SIGKILL', 0);
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Waits until no live process is left in the group. A SIGKILLed process is gone within
 * milliseconds; the deadline only turns a process that cannot die (stuck in the kernel) into
 * a loud failure instead of a hang.
 */
async function groupGone(name: string, pgid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      process.kill(-pgid, 0);
    } catch {
      return; // ESRCH: not even a zombie left
    }
    const left = groupMembers(pgid); // zombies have exited: they do not count
    if (left.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(
        `${name}: processes of group ${pgid} still running after SIGKILL:\n${describeProcesses(left)}`,
      );
    await sleep(20);
  }
}

const live = new Set<ManagedProcess>();
const killAll = (): void => {
  for (const p of live) signalGroup(p.pid, 'SIGKILL');
};
process.once('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAll();
    process.exit(130);
  });
}
