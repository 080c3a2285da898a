import { CommanderError, type Command } from 'commander';

/**
 * The exit status of every command. A script tells "the evidence failed a check" (1) from "the
 * command was used wrongly or could not run" (2): the two used to share 1.
 */
export const exitOk = 0;
export const exitFailed = 1;
export const exitUsage = 2;

/** An "Exit codes" section for a command's --help. */
export function exitCodesHelp(codes: { ok: string; failed: string; usage?: string }): string {
  return [
    '',
    'Exit codes:',
    `  ${exitOk}  ${codes.ok}`,
    `  ${exitFailed}  ${codes.failed}`,
    `  ${exitUsage}  ${codes.usage ?? 'usage error (unknown option, missing argument, invalid value)'}`,
  ].join('\n');
}

/**
 * Parses argv and returns the exit status instead of letting commander call process.exit: help and
 * --version are 0, every usage error commander detects is 2, an action's own status (set on
 * process.exitCode or returned through `status`) is kept.
 */
export async function runProgram(program: Command, argv: readonly string[]): Promise<number> {
  process.exitCode = undefined;
  try {
    await program.parseAsync(argv as string[]);
    return typeof process.exitCode === 'number' ? process.exitCode : exitOk;
  } catch (err) {
    // Help and --version end with 0; every other error commander raises (unknown option or
    // command, missing argument, invalid choice, no command at all, a command's own .error()) is
    // a usage error.
    if (err instanceof CommanderError) return err.exitCode === 0 ? exitOk : exitUsage;
    throw err;
  }
}
