import { createHash } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { z } from 'zod';
import {
  SNAPSHOTS_KEPT,
  type ForensicCase,
  type ForensicCaseStatus,
  type VolumeSnapshotRecord,
} from '../api/forensiccase.js';
import type { KubeClients } from '../cases/client.js';
import { CASE_LABEL } from '../containment/labels.js';
import { apiStatusCode, errorMessage, isNotFound, orNotFound } from '../runtime/errors.js';

/**
 * Snapshots of the suspect pod's PersistentVolumeClaims (ADR 0026). The operator asks for one
 * CSI VolumeSnapshot per claim on the pass after the pod is pinned, before the collection Job
 * is even scheduled: a disk is evidence the suspect can still change. The plan is pure and
 * table-tested (test/unit/collection/volume-snapshots.test.ts); the case reconciler gathers
 * and applies.
 *
 * Never deleted by Amber, and never owned through an ownerReference: the garbage collector
 * would delete them with the case. They carry the case's label and UID instead.
 */

export const SNAPSHOT_GROUP = 'snapshot.storage.k8s.io';
export const SNAPSHOT_VERSION = 'v1';
export const CASE_UID_ANNOTATION = 'forensics.amber.io/case-uid';
export const CLAIM_ANNOTATION = 'forensics.amber.io/claim';
export const DEFAULT_CLASS_ANNOTATION = 'snapshot.storage.kubernetes.io/is-default-class';

/**
 * Deterministic for the case (a crash between the create and the status write finds it again),
 * distinct for every (case, claim) — the case name is a fixed prefix, the claim only ever
 * hashed, so "a-b"+"c" and "a"+"b-c" differ — and not known before the case exists: the case's
 * UID is hashed in, so nobody can take the name in advance and deny the snapshot.
 */
export function snapshotName(caseName: string, caseUID: string, claim: string): string {
  const hash = createHash('sha256').update(`${caseUID}/${claim}`).digest('hex').slice(0, 10);
  return `${caseName}-${hash}`;
}

/** A claim name the API server would take (a DNS subdomain): the pod spec does not check it. */
const CLAIM_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

// ---- the objects, as far as Amber reads them (written by people and controllers: parsed) ----

const Meta = z.looseObject({
  name: z.string().optional(),
  uid: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});
const SnapshotError = z.looseObject({ message: z.string().optional() }).optional();

export const VolumeSnapshot = z.looseObject({
  metadata: Meta.optional(),
  spec: z
    .looseObject({
      source: z
        .looseObject({
          persistentVolumeClaimName: z.string().optional(),
          volumeSnapshotContentName: z.string().optional(),
        })
        .optional(),
      volumeSnapshotClassName: z.string().optional(),
    })
    .optional(),
  status: z
    .looseObject({
      boundVolumeSnapshotContentName: z.string().optional(),
      readyToUse: z.boolean().optional(),
      restoreSize: z.union([z.string(), z.number()]).optional(),
      creationTime: z.string().optional(),
      error: SnapshotError,
    })
    .optional(),
});
export type VolumeSnapshot = z.infer<typeof VolumeSnapshot>;

export const VolumeSnapshotContent = z.looseObject({
  metadata: Meta.optional(),
  spec: z
    .looseObject({
      driver: z.string().optional(),
      deletionPolicy: z.string().optional(),
      volumeSnapshotRef: z
        .looseObject({
          name: z.string().optional(),
          namespace: z.string().optional(),
          uid: z.string().optional(),
        })
        .optional(),
    })
    .optional(),
  status: z
    .looseObject({
      snapshotHandle: z.string().optional(),
      readyToUse: z.boolean().optional(),
      error: SnapshotError,
    })
    .optional(),
});
export type VolumeSnapshotContent = z.infer<typeof VolumeSnapshotContent>;

export const VolumeSnapshotClass = z.looseObject({
  metadata: Meta.optional(),
  driver: z.string(),
  deletionPolicy: z.string().optional(),
});
export type VolumeSnapshotClass = z.infer<typeof VolumeSnapshotClass>;

// ---- gathered ----

/** A claim the pod mounts, as read this pass. */
export interface ClaimWorld {
  volume: string;
  claim: string;
  /** Why it cannot be snapshotted (unbound, not CSI, no class, not the pod's own ephemeral claim). */
  problem?: string;
  /** It could not be read this pass (the API server's answer): decided on a later pass. */
  readError?: string;
  driver?: string;
  snapshotClass?: { name: string; deletionPolicy?: string };
  /** The object under the deterministic name, if there is one. */
  snapshot?: VolumeSnapshot;
  /** Its bound content, when it names one. */
  content?: VolumeSnapshotContent;
}

export interface SnapshotWorld {
  claims: ClaimWorld[];
  /** The pod mounts more claims than are snapshotted: their volume names. */
  beyondCap: string[];
  /** The snapshot API is not served (no CRDs): every claim is skipped for this reason. */
  unavailable?: string;
}

/** The claims a pod mounts, in spec order; a generic ephemeral volume's claim is `<pod>-<volume>`. */
export function podClaims(
  pod: V1Pod,
): { volume: string; claim: string; ephemeral: boolean; invalid?: string }[] {
  const seen = new Set<string>();
  const out: { volume: string; claim: string; ephemeral: boolean; invalid?: string }[] = [];
  for (const v of pod.spec?.volumes ?? []) {
    const claim =
      v.persistentVolumeClaim?.claimName ?? (v.ephemeral ? `${pod.metadata?.name}-${v.name}` : '');
    if (!claim || seen.has(claim)) continue;
    seen.add(claim);
    const entry = { volume: v.name.slice(0, 63), claim, ephemeral: !v.persistentVolumeClaim };
    // The API server takes any non-empty claimName in a pod spec; a name no claim can have is
    // recorded (cut to the status's bound), never sent in a request path.
    out.push(
      CLAIM_NAME.test(claim)
        ? entry
        : { ...entry, claim: claim.slice(0, 200), invalid: 'not a valid claim name: no claim can have it' },
    );
  }
  return out;
}

/**
 * The class for a driver: the one marked default, else the only one; several and no default is
 * a choice Amber does not make for the cluster's owner (a class's parameters can matter).
 */
export function chooseClass(
  classes: VolumeSnapshotClass[],
  driver: string,
): { name: string; deletionPolicy?: string } | string {
  const mine = classes.filter((c) => c.driver === driver && c.metadata?.name);
  const defaults = mine.filter((c) => c.metadata?.annotations?.[DEFAULT_CLASS_ANNOTATION] === 'true');
  const pick = defaults.length === 1 ? defaults[0] : mine.length === 1 ? mine[0] : undefined;
  if (pick)
    return {
      name: pick.metadata!.name!,
      ...(pick.deletionPolicy && { deletionPolicy: pick.deletionPolicy }),
    };
  if (mine.length === 0) return `no VolumeSnapshotClass for driver ${driver}`;
  return `${mine.length} VolumeSnapshotClasses for driver ${driver} and ${defaults.length ? 'several' : 'none'} marked ${DEFAULT_CLASS_ANNOTATION}`;
}

// ---- plan ----

export type SnapshotAction =
  | { kind: 'createSnapshot'; namespace: string; claim: string; body: VolumeSnapshot }
  | { kind: 'volumeSnapshots'; records: VolumeSnapshotRecord[] }
  | {
      kind: 'record';
      action: string;
      outcome: 'Succeeded' | 'Failed' | 'Skipped';
      message: string;
      event?: { type: 'Normal' | 'Warning'; reason?: string };
    };

const TERMINAL = new Set<VolumeSnapshotRecord['phase']>(['Ready', 'Failed', 'Skipped', 'Deleted']);

/** Whether a pending record has had the collection's whole timeout. */
function expired(r: VolumeSnapshotRecord, now: Date, timeoutSeconds: number): boolean {
  return r.requestedAt !== undefined && now.getTime() - Date.parse(r.requestedAt) >= timeoutSeconds * 1000;
}

/**
 * Whether a claim needs reading this pass: not yet recorded, or pending within the collection's
 * timeout. A record past it is not read again: a pod patched every second does not buy API reads.
 */
export function needsGather(
  status: ForensicCaseStatus,
  claim: string,
  now: Date,
  timeoutSeconds: number,
): boolean {
  const r = status.volumeSnapshots?.find((s) => s.claim === claim);
  return !r || (!TERMINAL.has(r.phase) && !expired(r, now, timeoutSeconds));
}

/** Whether the case wants snapshots now: asked for, not released, its pod pinned. */
export function wantsSnapshots(kase: ForensicCase, status: ForensicCaseStatus): boolean {
  const c = kase.spec.collection;
  return c.enabled && c.artifacts.includes('volumeSnapshots') && status.podUID !== undefined;
}

/** The VolumeSnapshot Amber asks for. */
export function snapshotBody(
  kase: ForensicCase,
  claim: string,
  className: string,
): VolumeSnapshot & { apiVersion: string; kind: string } {
  return {
    apiVersion: `${SNAPSHOT_GROUP}/${SNAPSHOT_VERSION}`,
    kind: 'VolumeSnapshot',
    metadata: {
      name: snapshotName(kase.metadata.name, kase.metadata.uid ?? '', claim),
      namespace: kase.spec.target.namespace,
      labels: { [CASE_LABEL]: kase.metadata.name },
      annotations: { [CASE_UID_ANNOTATION]: kase.metadata.uid ?? '', [CLAIM_ANNOTATION]: claim },
    },
    spec: { source: { persistentVolumeClaimName: claim }, volumeSnapshotClassName: className },
  };
}

/**
 * Only a snapshot of this claim, through the class Amber chose, made for this case (its UID
 * annotation, which a crash between the create and the status write leaves as the only proof),
 * is adopted. Anything else under the name is someone else's: it could come from a content
 * made by hand from any old snapshot.
 */
function isOurs(s: VolumeSnapshot, kase: ForensicCase, claim: string, className: string): boolean {
  return (
    !!kase.metadata.uid &&
    s.metadata?.annotations?.[CASE_UID_ANNOTATION] === kase.metadata.uid &&
    s.spec?.source?.persistentVolumeClaimName === claim &&
    s.spec.source.volumeSnapshotContentName === undefined &&
    s.spec.volumeSnapshotClassName === className
  );
}

/**
 * The record of a snapshot that exists and is Amber's, from the object and its content. The
 * snapshot controller retries a driver's error and clears it on success, so an error keeps the
 * record Pending (with the error) until the collection's timeout, when it is no longer read. The
 * class is what the object names now (only its source is immutable) and the deletion policy what
 * its content says: a namespace user who switched the class to one that deletes is recorded,
 * never signed as what Amber asked for.
 */
function observed(
  base: VolumeSnapshotRecord,
  s: VolumeSnapshot,
  content: VolumeSnapshotContent | undefined,
): VolumeSnapshotRecord {
  const st = s.status ?? {};
  const error = st.error?.message ?? content?.status?.error?.message;
  const contentName = st.boundVolumeSnapshotContentName;
  // The content is only believed when it points back at this very object.
  const ref = content?.spec?.volumeSnapshotRef;
  const trusted = content && ref?.uid === s.metadata?.uid && ref?.name === s.metadata?.name;
  const asked = base.volumeSnapshotClass;
  const now = s.spec?.volumeSnapshotClassName;
  const switched = asked !== undefined && now !== asked;
  const r: VolumeSnapshotRecord = {
    ...base,
    uid: s.metadata?.uid,
    phase: switched ? 'Failed' : st.readyToUse === true ? 'Ready' : 'Pending',
    ...(contentName && { contentName }),
    ...(trusted &&
      content.spec?.deletionPolicy && { deletionPolicy: content.spec.deletionPolicy.slice(0, 16) }),
    ...(trusted &&
      content.status?.snapshotHandle && { snapshotHandle: content.status.snapshotHandle.slice(0, 1024) }),
    ...(st.restoreSize !== undefined && { restoreSize: String(st.restoreSize).slice(0, 64) }),
    ...(st.creationTime && { creationTime: st.creationTime.slice(0, 64) }),
  };
  if (switched)
    r.message = `its class was changed after Amber asked for ${asked} (now ${String(now).slice(0, 253)}): not the snapshot Amber asked for`;
  else if (error) r.message = `retried by the snapshot controller: ${error}`.slice(0, 1024);
  else if (st.readyToUse !== true) r.message = 'waiting for the snapshot controller and the driver';
  else delete r.message;
  return r;
}

export function planSnapshots(
  kase: ForensicCase,
  status: ForensicCaseStatus,
  world: SnapshotWorld,
  now: string,
): SnapshotAction[] {
  const out: SnapshotAction[] = [];
  const namespace = kase.spec.target.namespace;
  const timeout = kase.spec.collection.timeoutSeconds;
  const previous = new Map((status.volumeSnapshots ?? []).map((r) => [r.claim, r]));
  const records: VolumeSnapshotRecord[] = [];
  const note = (
    r: VolumeSnapshotRecord,
    outcome: 'Succeeded' | 'Failed' | 'Skipped',
    message: string,
    warn = false,
  ) => {
    const was = previous.get(r.claim);
    if (was?.phase === r.phase && was.message === r.message) return;
    out.push({
      kind: 'record',
      action: 'SnapshotVolume',
      outcome,
      message,
      ...(warn && { event: { type: 'Warning' as const, reason: `Snapshot${r.phase}` } }),
    });
  };

  const settled = (r: VolumeSnapshotRecord) => TERMINAL.has(r.phase) || expired(r, new Date(now), timeout);
  for (const c of world.claims) {
    const was = previous.get(c.claim);
    // Not read this pass (needsGather): kept as it is, never judged on a world that was not read.
    if (was && settled(was)) {
      records.push(was);
      continue;
    }
    if (c.readError) {
      if (was) records.push(was);
      continue;
    }
    const base: VolumeSnapshotRecord = {
      volume: c.volume,
      claim: c.claim,
      phase: 'Pending',
      ...(was?.requestedAt && { requestedAt: was.requestedAt }),
      ...(c.driver && { driver: c.driver }),
    };
    const subject = `volume ${c.volume} (claim ${namespace}/${c.claim})`;
    const problem = world.unavailable ?? c.problem;
    if (problem && !was?.uid) {
      const r = { ...base, phase: 'Skipped' as const, message: problem.slice(0, 1024) };
      records.push(r);
      note(r, 'Skipped', `${subject}: not snapshotted: ${problem}`);
      continue;
    }
    const className = was?.volumeSnapshotClass ?? c.snapshotClass?.name;
    const name = snapshotName(kase.metadata.name, kase.metadata.uid ?? '', c.claim);
    const named = {
      ...base,
      name,
      ...(className && { volumeSnapshotClass: className }),
      ...((was?.deletionPolicy ?? c.snapshotClass?.deletionPolicy) && {
        deletionPolicy: was?.deletionPolicy ?? c.snapshotClass?.deletionPolicy,
      }),
    };
    const s = c.snapshot;
    if (was?.uid) {
      if (!s || s.metadata?.uid !== was.uid) {
        // What was seen of it (its content, its handle) stays: the storage may still hold it.
        const r = {
          ...named,
          ...was,
          phase: 'Deleted' as const,
          message: `VolumeSnapshot ${namespace}/${name} (UID ${was.uid}) was deleted before it was ready`,
        };
        records.push(r);
        note(r, 'Failed', `${subject}: ${r.message}`, true);
        continue;
      }
    } else if (s) {
      if (!className || !isOurs(s, kase, c.claim, className)) {
        const r = {
          ...named,
          phase: 'Failed' as const,
          message: `a VolumeSnapshot ${namespace}/${name} exists that Amber did not take for this case: it is not used`,
        };
        records.push(r);
        note(r, 'Failed', `${subject}: ${r.message}`, true);
        continue;
      }
    } else {
      out.push({
        kind: 'createSnapshot',
        namespace,
        claim: c.claim,
        body: snapshotBody(kase, c.claim, className!),
      });
      const r = { ...named, requestedAt: was?.requestedAt ?? now, message: 'asked for' };
      records.push(r);
      note(r, 'Succeeded', `${subject}: VolumeSnapshot ${name} asked for (class ${className})`);
      continue;
    }
    const r = observed(named, s, c.content);
    records.push(r);
    if (r.phase === 'Ready')
      note(r, 'Succeeded', `${subject}: VolumeSnapshot ${name} ready (${r.restoreSize ?? 'size unknown'})`);
    else if (r.phase === 'Failed')
      note(r, 'Failed', `${subject}: VolumeSnapshot ${name} failed: ${r.message}`, true);
  }
  // Recorded claims the pod no longer shows (none: volumes are immutable) stay as they were.
  for (const [claim, r] of previous)
    if (claim !== '*' && !records.some((x) => x.claim === claim)) records.push(r);
  if (world.beyondCap.length) {
    const message =
      `${world.beyondCap.length} more volumes not snapshotted (at most ${SNAPSHOTS_KEPT}): ${world.beyondCap.join(', ')}`.slice(
        0,
        1024,
      );
    const r: VolumeSnapshotRecord = { volume: '*', claim: '*', phase: 'Skipped', message };
    records.push(r);
    note(r, 'Skipped', message);
  }
  if (records.length === 0) return out; // a pod without claims: nothing to say
  // The records first: a create then writes the UID it got into its record.
  return [{ kind: 'volumeSnapshots', records }, ...out];
}

/** Snapshots still pending that the seal should wait for, until the collection's timeout. */
export function pendingSnapshots(status: ForensicCaseStatus, now: Date, timeoutSeconds: number): string[] {
  return (status.volumeSnapshots ?? [])
    .filter(
      (r) =>
        r.phase === 'Pending' &&
        r.requestedAt !== undefined &&
        now.getTime() - Date.parse(r.requestedAt) < timeoutSeconds * 1000,
    )
    .map((r) => r.name ?? r.claim);
}

// ---- gather and apply: the reads and the one write ----

const CLASSES = { group: SNAPSHOT_GROUP, version: SNAPSHOT_VERSION, plural: 'volumesnapshotclasses' };
const SNAPSHOTS = { group: SNAPSHOT_GROUP, version: SNAPSHOT_VERSION, plural: 'volumesnapshots' };
const CONTENTS = { group: SNAPSHOT_GROUP, version: SNAPSHOT_VERSION, plural: 'volumesnapshotcontents' };

/** Reads what planSnapshots needs for the pinned pod; claims already settled are not read again. */
export async function gatherSnapshots(
  clients: KubeClients,
  kase: ForensicCase,
  status: ForensicCaseStatus,
  pod: V1Pod,
  now: Date,
): Promise<SnapshotWorld> {
  const namespace = kase.spec.target.namespace;
  const timeout = kase.spec.collection.timeoutSeconds;
  const all = podClaims(pod);
  const mounted = all.slice(0, SNAPSHOTS_KEPT);
  const world: SnapshotWorld = { claims: [], beyondCap: all.slice(SNAPSHOTS_KEPT).map((c) => c.volume) };
  const open = (claim: string) => needsGather(status, claim, now, timeout);
  world.claims = mounted.map(({ volume, claim, invalid }) => ({
    volume,
    claim,
    ...(invalid && { problem: invalid }),
  }));
  if (!mounted.some((c) => !c.invalid && open(c.claim))) return world;
  let classes: VolumeSnapshotClass[];
  try {
    const list = (await clients.custom.listClusterCustomObject(CLASSES)) as { items?: unknown[] };
    classes = (list.items ?? []).flatMap((i) => {
      const c = VolumeSnapshotClass.safeParse(i);
      return c.success ? [c.data] : [];
    });
  } catch (err) {
    if (isNotFound(err))
      world.unavailable = `the ${SNAPSHOT_GROUP}/${SNAPSHOT_VERSION} API is not served here (no CSI snapshot controller)`;
    else for (const c of world.claims) c.readError = `listing VolumeSnapshotClasses: ${errorMessage(err)}`;
    return world;
  }
  // Each claim on its own, all at once: one that cannot be read is that claim's business.
  await Promise.all(
    mounted.map(async ({ claim, ephemeral, invalid }, i) => {
      const c = world.claims[i]!;
      if (invalid || !open(claim)) return;
      try {
        Object.assign(
          c,
          await readClaim(clients, namespace, claim, ephemeral ? pod.metadata?.uid : undefined, classes),
        );
        const name = snapshotName(kase.metadata.name, kase.metadata.uid ?? '', claim);
        const raw = await orNotFound(
          clients.custom.getNamespacedCustomObject({ ...SNAPSHOTS, namespace, name }),
        );
        const s = raw === undefined ? undefined : VolumeSnapshot.safeParse(raw);
        if (s) c.snapshot = s.success ? s.data : { metadata: { name } };
        const contentName = c.snapshot?.status?.boundVolumeSnapshotContentName;
        if (contentName) {
          const content = VolumeSnapshotContent.safeParse(
            await orNotFound(clients.custom.getClusterCustomObject({ ...CONTENTS, name: contentName })),
          );
          if (content.success) c.content = content.data;
        }
      } catch (err) {
        c.readError = errorMessage(err);
      }
    }),
  );
  return world;
}

/** The claim, its volume's CSI driver and the class for it, or why it cannot be snapshotted. */
async function readClaim(
  clients: KubeClients,
  namespace: string,
  claim: string,
  ephemeralOf: string | undefined,
  classes: VolumeSnapshotClass[],
): Promise<Partial<ClaimWorld>> {
  const pvc = await orNotFound(clients.core.readNamespacedPersistentVolumeClaim({ namespace, name: claim }));
  if (!pvc) return { problem: 'the claim does not exist' };
  // A generic ephemeral volume's claim is the pod's only if the pod owns it: a claim someone
  // made in advance under that name is not the pod's disk (the kubelet refuses it too).
  if (ephemeralOf && !pvc.metadata?.ownerReferences?.some((o) => o.controller && o.uid === ephemeralOf))
    return { problem: 'the ephemeral volume claim is not owned by the pod' };
  const pvName = pvc.spec?.volumeName;
  if (pvc.status?.phase !== 'Bound' || !pvName)
    return { problem: `the claim is not bound (phase ${pvc.status?.phase ?? 'unknown'})` };
  const pv = await orNotFound(clients.core.readPersistentVolume({ name: pvName }));
  if (!pv) return { problem: `its volume ${pvName} does not exist` };
  if (pv.spec?.claimRef?.uid !== pvc.metadata?.uid)
    return { problem: `its volume ${pvName} is bound to another claim` };
  const driver = pv.spec?.csi?.driver;
  if (!driver)
    return { problem: `its volume ${pvName} is not a CSI volume: no CSI snapshot of it is possible` };
  const cls = chooseClass(classes, driver);
  return typeof cls === 'string' ? { driver, problem: cls } : { driver, snapshotClass: cls };
}

/**
 * Creates the VolumeSnapshot. Never throws: a snapshot the API server refuses (a quota filled
 * by the suspect's namespace, an admission policy) is the claim's record, never the end of the
 * pass that isolates the pod and starts its collection. A 409 (a snapshot of that name appeared
 * meanwhile) is left to the next pass, which adopts it only if it is this case's.
 */
export async function createSnapshot(
  clients: KubeClients,
  action: Extract<SnapshotAction, { kind: 'createSnapshot' }>,
): Promise<{ made?: VolumeSnapshot; refused?: string }> {
  try {
    const made = await clients.custom.createNamespacedCustomObject({
      ...SNAPSHOTS,
      namespace: action.namespace,
      body: action.body,
    });
    const parsed = VolumeSnapshot.safeParse(made);
    return parsed.success ? { made: parsed.data } : {};
  } catch (err) {
    if (apiStatusCode(err) === 409) return {};
    return { refused: errorMessage(err).slice(0, 900) };
  }
}
