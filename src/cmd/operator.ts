import { CommanderError, Option, type Command } from 'commander';
import { createLogger } from '../observability/logger.js';
import { operatorSettings, resolveOperatorConfig } from '../operator/config.js';
import { runOperator } from '../operator/operator.js';
import { exitCodesHelp, exitFailed, exitOk, exitUsage } from './exit.js';

/** One commander option per operator setting; boolean settings get --x and --no-x. */
export function operatorOptions(): Option[] {
  return operatorSettings.flatMap((s) => {
    const env = ` [env: ${s.env.join(', ')}]`;
    if (s.value) return [new Option(`--${s.flag} <${s.value}>`, s.help + env)];
    return [
      new Option(`--${s.flag}`, s.help + env),
      // Hidden from help (the positive one documents both); without a default so an unset flag
      // leaves the environment's value in place.
      new Option(`--no-${s.flag}`).hideHelp(),
    ];
  });
}

export function registerOperatorCommand(program: Command): void {
  const command = program
    .command('operator')
    .description('run the controller, the Falcosidekick webhook and the metrics endpoint')
    .addHelpText(
      'after',
      '\nEvery option can also be set by the environment variable shown; a flag wins over it.\n' +
        exitCodesHelp({
          ok: 'stopped cleanly (SIGTERM, SIGINT)',
          failed: 'stopped on a fatal error (leadership lost, an unclean stop); Kubernetes restarts it',
          usage: 'usage error or invalid configuration (nothing was started)',
        }),
    );
  for (const option of operatorOptions()) command.addOption(option);
  command.action(async (flags: Record<string, unknown>) => {
    const parsed = resolveOperatorConfig(flags, process.env);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n');
      process.stderr.write(`amber operator: invalid configuration:\n${issues}\n`);
      throw new CommanderError(exitUsage, 'amber.invalidConfiguration', 'invalid configuration');
    }
    const cfg = parsed.data;
    const logger = createLogger({ component: 'operator' });
    logger.level = cfg.logLevel;
    const op = await runOperator(cfg, logger);
    const stop = (signal: string) => {
      logger.info({ signal }, 'stopping');
      op.stop().then(
        () => process.exit(exitOk),
        (err: unknown) => {
          logger.fatal({ err }, 'unclean stop');
          process.exit(exitFailed);
        },
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
