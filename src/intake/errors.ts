/**
 * An error the webhook answers with its own status and a stable code (docs/falcosidekick.md
 * lists them). Everything the intake rejects on purpose is one of these.
 */
export class IntakeError extends Error {
  constructor(
    readonly code: string,
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'IntakeError';
  }
}

/** The in-memory queue toward the API server is full: the alert was not accepted (HTTP 503). */
export class QueueFullError extends IntakeError {
  constructor(message: string) {
    super('queue-full', 503, message);
    this.name = 'QueueFullError';
  }
}
