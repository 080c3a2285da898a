import { z } from 'zod';
import { NamespaceName, ObjectName } from '../api/common.js';
import { FALCO_PRIORITIES, type FalcoPriority } from '../api/responsepolicy.js';
import { IntakeError } from './errors.js';
import { parseJsonExact } from './json.js';

/**
 * A Falco event as Falco's http_output and Falcosidekick's webhook output send it
 * (docs/falcosidekick.md). Tolerant of what real senders do: null field values, bracket keys
 * (proc.aname[2]), numbers and strings mixed, optional source/tags/hostname/uuid, and int64
 * nanosecond timestamps above 2^53, which are kept exact as bigint.
 */

/**
 * Output-field values: Falco renders <NA> fields as null and integer fields as int64. Strings
 * have no length limit of their own (the body limit bounds them): refusing an alert because the
 * attacker made its command line long would let the attacker silence it. Matching reads at most
 * MATCH_CAP characters of a value (wildcard.ts).
 */
export const FieldValue = z.custom<string | number | bigint | boolean | null>(isFieldValue, {
  message: 'must be a string, a finite number, a boolean or null',
});
export type FieldValue = z.infer<typeof FieldValue>;

// One typeof test instead of a five-way union: this runs for every field of every alert.
function isFieldValue(v: unknown): boolean {
  return (
    v === null ||
    (typeof v === 'number' && Number.isFinite(v)) ||
    typeof v === 'bigint' ||
    typeof v === 'boolean' ||
    typeof v === 'string'
  );
}

const PRIORITY_BY_NAME = new Map<string, FalcoPriority>([
  ...FALCO_PRIORITIES.map((p) => [p.toLowerCase(), p] as const),
  // Falcosidekick accepts `info`, as Falco's own config does.
  ['info', 'Informational'],
]);

/** RFC 3339 with optional fraction (Falco sends nanoseconds) and Z or a numeric offset. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$/;

const optionalText = (max = Infinity) =>
  z
    .string()
    .max(max)
    .nullish()
    .transform((v) => v ?? undefined);

export const FalcoEvent = z.object({
  uuid: optionalText(64),
  // Unbounded for the same reason as field values; it is stored truncated.
  output: optionalText(),
  priority: z
    .string()
    .max(32)
    .transform((p, ctx) => {
      const known = PRIORITY_BY_NAME.get(p.toLowerCase());
      if (!known)
        ctx.addIssue({
          code: 'custom',
          message: `unknown priority "${p}", expected one of ${FALCO_PRIORITIES.join(', ')}`,
        });
      return known ?? 'Debug';
    }),
  rule: z.string().min(1).max(1024),
  time: z
    .string()
    .max(64)
    .regex(RFC3339, 'must be an RFC 3339 time, e.g. 2021-01-14T23:39:44.834631763Z')
    .refine(isValidTime, 'is not a real date and time'),
  output_fields: z
    .record(z.string().max(256), FieldValue)
    .nullish()
    .transform((v) => v ?? {})
    .refine((v) => Object.keys(v).length <= 512, 'at most 512 output fields'),
  source: optionalText(64),
  tags: z
    .array(z.string().max(256))
    .max(128)
    .nullish()
    .transform((v) => v ?? []),
  hostname: optionalText(253),
});
export type FalcoEvent = z.infer<typeof FalcoEvent>;

/** The pod an alert is about, when it names one. */
export interface AlertTarget {
  namespace: string;
  pod: string;
}

/** A validated alert, ready for matching and recording. */
export interface Alert {
  rule: string;
  priority: FalcoPriority;
  /** Falco's time, as sent (nanosecond precision). */
  time: string;
  /** The same instant in nanoseconds since the epoch, for ordering. */
  timeNs: bigint;
  source: string;
  tags: string[];
  hostname?: string;
  uuid?: string;
  output?: string;
  fields: Record<string, FieldValue>;
  target?: AlertTarget;
  /** Why there is no target, when there is none. */
  noTargetReason?: string;
  /**
   * Set when the target is the object of an audited API request (a k8s_audit alert), which
   * Falco names whether or not the API server allowed the request.
   */
  auditRequest?: AuditRequest;
}

/** The audited request behind a k8s_audit alert's target. */
export interface AuditRequest {
  /** The API server's response code (`ka.response.code`), when the rule's output carries it. */
  responseCode?: number;
  /** The request's verb (`ka.verb`), lower case, when the rule's output carries it. */
  verb?: string;
  /** The target's subresource (`ka.target.subresource`): exec, attach, status, ... */
  subresource?: string;
  /** The request URI (`ka.uri`) asked for a server-side dry run: nothing was changed. */
  dryRun?: boolean;
}

/** Event sources of Kubernetes audit alerts: Falco's k8saudit plugins (EKS, GKE, AKS, …) say `k8s_audit`. */
export const AUDIT_SOURCES: readonly string[] = ['k8s_audit', 'k8saudit'];

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses a request body into a FalcoEvent. Throws IntakeError (4xx) saying what is wrong; never
 * anything else. `__proto__` keys are refused; of duplicate keys the last wins, as in
 * Falcosidekick's own (Go) decoder, so both read the same event.
 */
export function parseFalcoBody(body: Buffer | string): FalcoEvent {
  let text: string;
  try {
    text = typeof body === 'string' ? body : utf8.decode(body);
  } catch {
    throw new IntakeError('invalid-utf8', 400, 'the body is not valid UTF-8');
  }
  if (text.trim() === '')
    throw new IntakeError('empty-body', 400, 'the body is empty; send one Falco event as JSON');
  let raw: unknown;
  try {
    raw = parseJsonExact(text);
  } catch (err) {
    if (err instanceof RangeError)
      throw new IntakeError('invalid-json', 400, 'the JSON body is nested too deeply');
    throw new IntakeError(
      'invalid-json',
      400,
      `the body is not valid JSON: ${(err as Error).message}`.slice(0, 300),
    );
  }
  refuseProtoKeys(raw);
  const fast = wellFormedEvent(raw);
  if (fast) return fast;
  const parsed = FalcoEvent.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.length ? i.path.join('.') : '(body)'}: ${i.message}`)
      .join('; ');
    throw new IntakeError('invalid-event', 422, `not a Falco event: ${issues}`.slice(0, 1000));
  }
  return parsed.data;
}

/**
 * What FalcoEvent.safeParse returns for an event that passes every one of its checks, computed
 * without the schema library (which costs as much as the rest of the webhook together); undefined
 * as soon as anything is unusual, and the schema decides and words the error. Same checks, same
 * output keys in the same order; the property test in falco.test.ts holds it to the schema.
 * `raw` comes from JSON.parse (plain objects and arrays) and is not used after, so its
 * output_fields and tags are kept rather than copied.
 */
export function wellFormedEvent(raw: unknown): FalcoEvent | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  const { uuid, output, priority, rule, time, output_fields: fields, source, tags, hostname } = r;
  if (!optionalTextOk(uuid, 64) || !optionalTextOk(output, Infinity)) return undefined;
  if (typeof priority !== 'string' || priority.length > 32) return undefined;
  const known = PRIORITY_BY_NAME.get(priority.toLowerCase());
  if (!known) return undefined;
  if (typeof rule !== 'string' || rule.length < 1 || rule.length > 1024) return undefined;
  if (typeof time !== 'string' || time.length > 64 || !RFC3339.test(time)) return undefined;
  let timeNs: bigint;
  try {
    timeNs = rfc3339ToNs(time);
  } catch {
    return undefined;
  }
  if (fields !== undefined && fields !== null) {
    if (typeof fields !== 'object' || Array.isArray(fields)) return undefined;
    const keys = Object.keys(fields);
    if (keys.length > 512) return undefined;
    for (const k of keys)
      if (k.length > 256 || !isFieldValue((fields as Record<string, unknown>)[k])) return undefined;
  }
  if (!optionalTextOk(source, 64)) return undefined;
  if (tags !== undefined && tags !== null) {
    if (!Array.isArray(tags) || tags.length > 128) return undefined;
    for (const t of tags as unknown[]) if (typeof t !== 'string' || t.length > 256) return undefined;
  }
  if (!optionalTextOk(hostname, 253)) return undefined;
  const event: Record<string, unknown> = {};
  // The schema's output: an optional text key is there (maybe undefined) when the input had it.
  if ('uuid' in r) event.uuid = uuid ?? undefined;
  if ('output' in r) event.output = output ?? undefined;
  event.priority = known;
  event.rule = rule;
  event.time = time;
  event.output_fields = fields ?? {};
  if ('source' in r) event.source = source ?? undefined;
  event.tags = tags ?? [];
  if ('hostname' in r) event.hostname = hostname ?? undefined;
  timesNs.set(event, timeNs);
  return event as FalcoEvent;
}

/** evt time in nanoseconds as the fast path computed it while checking, for toAlert. */
const timesNs = new WeakMap<object, bigint>();

function optionalTextOk(v: unknown, max: number): boolean {
  return v === undefined || v === null || (typeof v === 'string' && v.length <= max);
}

/**
 * JSON.parse keeps `__proto__` an own key, but code that copies objects key by key (a schema
 * library building a record) would turn it into a prototype. No Falco field has that name.
 */
function refuseProtoKeys(raw: unknown): void {
  const fields = (raw as { output_fields?: unknown } | null)?.output_fields;
  if (
    (raw !== null && typeof raw === 'object' && Object.hasOwn(raw, '__proto__')) ||
    (fields !== null && typeof fields === 'object' && Object.hasOwn(fields, '__proto__'))
  ) {
    throw new IntakeError('invalid-event', 422, 'the key "__proto__" is not allowed');
  }
}

/** RFC 3339 to nanoseconds since the epoch, keeping all nine fractional digits. */
export function rfc3339ToNs(time: string): bigint {
  const m = /^([^.]+?)(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})$/.exec(time);
  if (!m) throw new Error(`not an RFC 3339 time: ${time}`);
  const offset = m[3] === 'Z' ? 'Z' : `${m[3]!.slice(0, 3)}:${m[3]!.slice(-2)}`;
  const ms = Date.parse(`${m[1]}${offset}`);
  if (Number.isNaN(ms)) throw new Error(`not an RFC 3339 time: ${time}`);
  const fraction = BigInt((m[2] ?? '').padEnd(9, '0'));
  return BigInt(ms) * 1_000_000n + fraction;
}

function isValidTime(time: string): boolean {
  try {
    rfc3339ToNs(time);
    return true;
  } catch {
    return false;
  }
}

function text(v: FieldValue | undefined): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/**
 * The pod an alert is about. Syscall rules carry k8s.ns.name / k8s.pod.name; k8s_audit rules
 * name the object acted on in ka.target.*, which is a pod only when ka.target.resource is pods.
 * An audit alert's target is only ever read from ka.target.*, and is marked as such.
 */
export function alertTarget(
  fields: Record<string, FieldValue>,
  source = 'syscall',
): { target?: AlertTarget; reason?: string; fromAuditRequest?: boolean } {
  const audit = AUDIT_SOURCES.includes(source);
  let namespace = audit ? undefined : text(fields['k8s.ns.name']);
  let pod = audit ? undefined : text(fields['k8s.pod.name']);
  let fromAuditRequest = false;
  if (!namespace && !pod && text(fields['ka.target.resource']) === 'pods') {
    namespace = text(fields['ka.target.namespace']);
    pod = text(fields['ka.target.name']);
    fromAuditRequest = true;
  }
  if (!namespace || !pod)
    return { reason: 'the alert names no pod (k8s.ns.name/k8s.pod.name or ka.target.* of a pod)' };
  if (!NamespaceName.safeParse(namespace).success || !ObjectName.safeParse(pod).success) {
    return { reason: `"${namespace.slice(0, 64)}/${pod.slice(0, 64)}" is not a valid namespace/pod name` };
  }
  return { target: { namespace, pod }, fromAuditRequest };
}

/** `ka.response.code`: a string ("403") from Falco's k8saudit plugin, a number from some others. */
export function responseCode(v: FieldValue | undefined): number | undefined {
  const n = typeof v === 'string' && /^[1-5][0-9]{2}$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) && n >= 100 && n <= 599 ? n : undefined;
}

function auditRequest(fields: Record<string, FieldValue>): AuditRequest {
  const text = (v: FieldValue | undefined) => (typeof v === 'string' && v ? v.toLowerCase() : undefined);
  const verb = text(fields['ka.verb']);
  const subresource = text(fields['ka.target.subresource']);
  const uri = fields['ka.uri'];
  const dryRun = typeof uri === 'string' && /[?&]dryRun=/i.test(uri);
  return {
    responseCode: responseCode(fields['ka.response.code']),
    ...(verb ? { verb } : {}),
    ...(subresource ? { subresource } : {}),
    ...(dryRun ? { dryRun } : {}),
  };
}

export function toAlert(event: FalcoEvent): Alert {
  // Falcosidekick fills an empty source with `syscalls`; Falco itself says `syscall`.
  const source = event.source ?? 'syscall';
  const { target, reason, fromAuditRequest } = alertTarget(event.output_fields, source);
  return {
    rule: event.rule,
    priority: event.priority,
    time: event.time,
    timeNs: timesNs.get(event) ?? rfc3339ToNs(event.time),
    source,
    tags: event.tags,
    hostname: event.hostname,
    uuid: event.uuid,
    output: event.output,
    fields: event.output_fields,
    target,
    noTargetReason: reason,
    ...(fromAuditRequest ? { auditRequest: auditRequest(event.output_fields) } : {}),
  };
}
