import { pino, type Logger } from 'pino';

export type { Logger };

/** One structured logger for the process; components take a child with their own bindings. */
export function createLogger(bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level: process.env.AMBER_LOG_LEVEL ?? 'info',
    base: { app: 'amber', ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A logger that drops everything: for tests and benchmarks that do not read logs. */
export const silentLogger: Logger = pino({ level: 'silent' });
