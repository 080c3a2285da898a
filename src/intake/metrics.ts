import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The intake's metrics, registered on the Registry it is given. */
export interface IntakeMetrics {
  received: Counter;
  matched: Counter<'policy'>;
  deduplicated: Counter;
  rejected: Counter<'reason'>;
  notActed: Counter<'reason'>;
  queueDepth: Gauge;
  logBytes: Gauge;
  logLimitBytes: Gauge;
  webhookDuration: Histogram<'status'>;
  earlyIsolation: Counter<'outcome'>;
}

export function createIntakeMetrics(registry: Registry): IntakeMetrics {
  const registers = [registry];
  return {
    received: new Counter({
      name: 'amber_alerts_received_total',
      help: 'Falco alerts that passed authentication and parsing.',
      registers,
    }),
    matched: new Counter({
      name: 'amber_alerts_matched_total',
      help: 'Alerts matched by a ResponsePolicy, by the policy that won.',
      labelNames: ['policy'],
      registers,
    }),
    deduplicated: new Counter({
      name: 'amber_alerts_deduplicated_total',
      help: 'Alerts attached to a case that was already open for their pod.',
      registers,
    }),
    rejected: new Counter({
      name: 'amber_alerts_rejected_total',
      help: 'Webhook requests refused (4xx/503), by reason.',
      labelNames: ['reason'],
      registers,
    }),
    notActed: new Counter({
      name: 'amber_alerts_not_acted_total',
      help: 'Accepted alerts that opened no case or a degraded one, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    queueDepth: new Gauge({
      name: 'amber_intake_queue_depth',
      help: 'Accepted alerts not yet written to the API server.',
      registers,
    }),
    logBytes: new Gauge({
      name: 'amber_intake_log_bytes',
      help: 'Bytes of the write-ahead log on disk (alerts answered 202 and not yet known to be on the API server).',
      registers,
    }),
    logLimitBytes: new Gauge({
      name: 'amber_intake_log_limit_bytes',
      help: 'Size past which the intake refuses alerts with 503 log-full (amber_alerts_rejected_total{reason="log-full"}).',
      registers,
    }),
    webhookDuration: new Histogram({
      name: 'amber_webhook_duration_seconds',
      help: 'Time to answer a webhook request.',
      labelNames: ['status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
    earlyIsolation: new Counter({
      name: 'amber_intake_early_isolations_total',
      help: 'Pods of opening alerts the intake isolated itself (labelled), or left to the case reconciler, by outcome.',
      labelNames: ['outcome'],
      registers,
    }),
  };
}
