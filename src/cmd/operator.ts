import type { Command } from 'commander';
import { createLogger } from '../observability/logger.js';
import { OperatorConfig, configFromEnv } from '../operator/config.js';
import { runOperator } from '../operator/operator.js';

export function registerOperatorCommand(program: Command): void {
  program
    .command('operator')
    .description('run the controller, the Falcosidekick webhook and the metrics endpoint')
    .option('--kubeconfig <path>', 'kubeconfig (default: in-cluster or $KUBECONFIG)')
    .option('--namespace <ns>', "Amber's own namespace (protected; holds the leader Lease and Events)")
    .option('--metrics-port <port>', 'port of /metrics, /healthz, /readyz')
    .option('--intake-port <port>', 'port of the Falcosidekick webhook')
    .option('--no-leader-election', 'act at once (a single replica)')
    .option('--allow-kube-system', 'allow cases in kube-system')
    .option('--workers <n>', 'concurrent reconciles')
    .action(async (flags: Record<string, unknown>) => {
      const parsed = OperatorConfig.safeParse({ ...configFromEnv(process.env), ...defined(flags) });
      if (!parsed.success) {
        console.error(
          `amber operator: invalid configuration:\n${parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}`,
        );
        process.exit(2);
      }
      const logger = createLogger({ component: 'operator' });
      const op = await runOperator(parsed.data, logger);
      const stop = (signal: string) => {
        logger.info({ signal }, 'stopping');
        op.stop().then(
          () => process.exit(0),
          (err: unknown) => {
            logger.fatal({ err }, 'unclean stop');
            process.exit(1);
          },
        );
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
}

function defined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
