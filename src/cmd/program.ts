import { Command } from 'commander';
import { amberVersion } from '../observability/version.js';
import { registerCollectCommand } from './collect.js';
import { exitCodesHelp } from './exit.js';
import { registerOperatorCommand } from './operator.js';
import { registerReportCommand } from './report.js';
import { registerVerifyCommand } from './verify.js';

export interface ProgramOutput {
  writeOut?: (s: string) => void;
  writeErr?: (s: string) => void;
}

/** The `amber` command line. exitOverride is set before the subcommands, which inherit it. */
export function buildProgram(output: ProgramOutput = {}): Command {
  const program = new Command('amber')
    .description('Preserve the evidence of a container compromise before the orchestrator destroys it')
    .version(amberVersion, '-V, --version', 'print the version and exit')
    .exitOverride()
    .configureOutput(output)
    .showHelpAfterError()
    .addHelpText(
      'after',
      exitCodesHelp({
        ok: 'success (each command says what that means in its --help)',
        failed: 'a check failed: the evidence did not verify, the container was not collected, ...',
      }),
    );
  registerOperatorCommand(program);
  registerCollectCommand(program);
  registerVerifyCommand(program);
  registerReportCommand(program);
  return program;
}
