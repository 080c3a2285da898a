import { isIP } from 'node:net';
import {
  AuthenticationV1Api,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type V1Job,
} from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import { GAPS_KEPT, type ForensicCase } from '../api/forensiccase.js';
import type { KubeClients } from '../cases/client.js';
import type { CaseEvents } from '../cases/events.js';
import type { StatusBuilder } from '../cases/status.js';
import { collectContainer } from '../collector/collect.js';
import { loadSigningKey, type SigningKey } from '../evidence/keys.js';
import {
  MANIFEST_NAME,
  judgeStoredManifest,
  sealCase,
  type ManifestJudgement,
  type Statement,
} from '../evidence/manifest.js';
import { AMBER_VERSION } from '../evidence/tool.js';
import type { EvidenceStore, StoredArtifact } from '../evidence/store.js';
import type { Logger } from '../observability/logger.js';
import type { ReconcileResult } from '../runtime/controller.js';
import { errorMessage, isConflict, isNotFound, orNotFound } from '../runtime/errors.js';
import type { CollectionConfig } from './config.js';
import { requestCheckpoint } from './checkpoint.js';
import type { CheckpointRequest } from '../collector/checkpoint.js';
import {
  collectionTargets,
  containerPrefix,
  decideCollection,
  jobOutcome,
  parseSummary,
  type ContainerProgress,
} from './decide.js';
import {
  CREDENTIALS_EXPIRE_ANNOTATION,
  credentialSeconds,
  credentialsValidUntil,
  JobCredentialsMinter,
  JobScopeError,
} from './credentials.js';
import {
  collectRequest,
  collectionJob,
  collectionJobName,
  jobCredentialsSecretName,
  labelValue,
  type CollectionPod,
  type CollectionTarget,
} from './job.js';
import { CASE_LABEL } from '../containment/labels.js';
import { collectionMetrics, type CollectionMetrics } from './metrics.js';
import { collectOrchestratorView, ORCHESTRATOR_PREFIX } from './orchestrator.js';
import { pendingSnapshots } from './volume-snapshots.js';
import {
  accountForCase,
  ContainerReport,
  custodySteps,
  OrchestratorReport,
  reportName,
  type WantedContainer,
} from './seal.js';
import { COLLECTED, collectionState, SEALED } from './state.js';
import { StoreConfigError, StoreFactory, resolveStore, type ResolvedStore } from './store.js';

/** At most this many artifacts are listed in status; the manifest lists them all. */
export const STATUS_ARTIFACTS_LIMIT = 200;
const SIGNING_KEY_RETRY_MS = 30_000;
/** A collector report lists every artifact; a hostile one is not read past this. */
const MAX_REPORT_BYTES = 64 * 1024 * 1024;

export interface CollectionPipelineDeps {
  clients: KubeClients;
  events: CaseEvents;
  config: CollectionConfig;
  registry: Registry;
  logger: Logger;
  now?: () => Date;
}

type Case = ForensicCase;
/** The reconciler's crash hook: called after each change to the world (tests crash there). */
type Step = (name: string) => void | Promise<void>;

/** What the collector's report.json holds that the operator reads back. */
const StoredReport = z.object({
  collected: z.array(z.unknown()),
  failed: z.array(z.object({ what: z.string(), reason: z.string() })),
});

/**
 * The step between "pod contained" and "evidence sealed" (ADR 0006): collect each running
 * container from its node (a Job, or the operator itself in inline mode) and the orchestrator's
 * view, then seal every artifact of the case with a signed manifest. Level-triggered like the
 * reconciler that calls it: each pass looks at the store, the Jobs and the status, and does only
 * what is missing; the store refusing to overwrite makes every write safe to repeat.
 */
export class CollectionPipeline {
  private readonly stores: StoreFactory;
  private readonly minter = new JobCredentialsMinter();
  private identity: Promise<string> | undefined;
  private readonly rbac: RbacAuthorizationV1Api;
  private readonly metrics: CollectionMetrics;
  private readonly now: () => Date;

  constructor(private readonly deps: CollectionPipelineDeps) {
    this.stores = new StoreFactory(deps.config, deps.registry, deps.logger);
    this.rbac = deps.clients.kc.makeApiClient(RbacAuthorizationV1Api);
    this.metrics = collectionMetrics(deps.registry);
    this.now = deps.now ?? (() => new Date());
  }

  close(): void {
    this.stores.close();
    this.minter.close();
  }

  /**
   * Called on every pass of a contained case that is not being released. Moves the case from
   * Contained to Collecting to Sealed; returns when to look again while collectors run.
   */
  async advance(
    kase: Case,
    status: StatusBuilder,
    log: Logger,
    step: Step = () => {},
  ): Promise<ReconcileResult> {
    if (!kase.spec.collection.enabled) return;
    const state = collectionState(status.status.conditions);
    switch (state.kind) {
      case 'sealed':
        return this.afterSeal(kase, status, log);
      case 'failed':
      case 'tampered':
        return; // terminal: nothing more is done with this case's evidence
      default:
    }

    let resolved: ResolvedStore;
    try {
      resolved = resolveStore(kase, this.deps.config);
      if (resolved.type === 'local' && this.deps.config.mode === 'job')
        throw new StoreConfigError(
          'UnsupportedStore',
          'a local evidence store works only with inline collection: a Job on another node cannot write to it',
        );
    } catch (err) {
      if (!(err instanceof StoreConfigError)) throw err;
      this.fail(kase, status, err.reason, err.message);
      return;
    }
    const store = this.stores.open(resolved);

    if (state.kind === 'idle') {
      status.setCondition(
        'EvidenceCollected',
        'False',
        COLLECTED.inProgress,
        `collecting (${this.deps.config.mode} mode)`,
      );
      void this.deps.events.emit(
        kase.metadata,
        'Normal',
        'CollectionStarted',
        `collecting evidence (${this.deps.config.mode} mode)`,
      );
    }
    if (state.kind === 'idle' || state.kind === 'collecting') {
      let next: ReconcileResult;
      try {
        next = await this.collect(kase, status, store, resolved, log, step);
      } catch (err) {
        if (!(err instanceof JobScopeError)) throw err;
        this.fail(kase, status, 'InvalidEvidenceScope', err.message);
        return;
      }
      if (next) return next;
    }
    const now = collectionState(status.status.conditions);
    if (now.kind !== 'collected' && now.kind !== 'sealPending') return;
    return this.seal(kase, status, store, resolved, log, step);
  }

  private async collect(
    kase: Case,
    status: StatusBuilder,
    store: EvidenceStore,
    resolved: ResolvedStore,
    log: Logger,
    step: Step,
  ): Promise<ReconcileResult> {
    const { clients, config } = this.deps;
    const { namespace, pod: podName } = kase.spec.target;
    const caseId = kase.metadata.name;
    const read = await orNotFound(clients.core.readNamespacedPod({ namespace, name: podName }));
    // A pod of the same name created since containment is another pod: not the suspect.
    const pod =
      read && (!status.status.podUID || read.metadata?.uid === status.status.podUID) ? read : undefined;
    const node = pod?.spec?.nodeName ?? status.status.node;
    const { targets, gaps } = pod
      ? collectionTargets(pod, kase.spec.target.containers)
      : {
          targets: [],
          gaps: [
            {
              what: `pod ${namespace}/${podName}`,
              reason: 'deleted before its containers could be collected',
            },
          ],
        };
    if (pod && !node) gaps.push({ what: `pod ${namespace}/${podName}`, reason: 'not scheduled on a node' });

    let listed: Map<string, StoredArtifact> | undefined;
    const storedNow = async () => (listed ??= new Map((await store.list(caseId)).map((a) => [a.name, a])));
    const progress: ContainerProgress[] = [];
    // The pinned UID: the collector takes this pod's kubelet log directory, not a namesake's.
    const uid = status.status.podUID ?? pod?.metadata?.uid;
    const where: CollectionPod = { namespace, name: podName, node: node ?? '', ...(uid && { uid }) };
    // Connections opened before containment meet the policy only once the node forgets them.
    if (kase.spec.containment.isolateNetwork && pod && !pod.spec?.hostNetwork)
      where.cutConnections = (pod.status?.podIPs ?? []).map((p) => p.ip).filter((ip) => isIP(ip) !== 0);
    if (node) {
      if (config.mode === 'job' && resolved.type === 's3') {
        for (const t of targets)
          progress.push(await this.viaJob(kase, status, where, t, resolved, store, storedNow, step));
      } else {
        for (const t of targets) {
          progress.push(await this.inline(kase, status, where, t, store, await storedNow(), log));
          listed = undefined; // the collector added artifacts
        }
      }
    }

    if (kase.spec.collection.artifacts.includes('orchestrator') && !status.recorded('CollectOrchestrator')) {
      const view = await collectOrchestratorView({
        caseId,
        namespace,
        podName,
        pod,
        node,
        store,
        clients,
        rbac: this.rbac,
        log,
        maxLogBytes: Math.max(1, kase.spec.collection.maxFileMiB) * 1024 * 1024,
        timeoutMs: config.apiTimeoutMs,
        alerts: { triggering: kase.spec.alert, received: kase.status?.alerts },
      });
      listed = undefined;
      const gapText = view.gaps.map((g) => `${g.what}: ${g.reason}`).join('; ');
      status.record(
        'CollectOrchestrator',
        'Succeeded',
        `${view.artifacts.length} artifacts${gapText ? `; gaps: ${gapText}` : ''}`,
      );
      await step('orchestrator');
    }

    const decision = decideCollection(progress, gaps);
    if (decision.state === 'collected') this.countOutcomes(progress, gaps.length);
    if (decision.state === 'running') {
      status.setCondition(
        'EvidenceCollected',
        'False',
        'InProgress',
        `waiting for the collector of ${decision.waitingFor.join(', ')}`,
      );
      return { requeueAfterMs: config.pollMs };
    }
    const artifacts = [...(await storedNow()).values()].filter((a) => a.name !== MANIFEST_NAME);
    if (artifacts.length === 0) {
      this.fail(kase, status, 'NothingCollected', `nothing could be stored: ${decision.message}`);
      return;
    }
    status.setCondition(
      'EvidenceCollected',
      decision.complete ? 'True' : 'False',
      decision.complete ? COLLECTED.collected : COLLECTED.incomplete,
      decision.message,
    );
    // The seal names the reason of every container it finds no report for from here.
    if (decision.missing.length > 0) status.status.gaps = decision.missing.slice(0, GAPS_KEPT);
    const summary = `${artifacts.length} artifacts${artifacts.length > STATUS_ARTIFACTS_LIMIT ? ` (status lists ${STATUS_ARTIFACTS_LIMIT})` : ''}; ${decision.message}`;
    status.record('CollectEvidence', decision.complete ? 'Succeeded' : 'Failed', summary);
    void this.deps.events.emit(
      kase.metadata,
      decision.complete ? 'Normal' : 'Warning',
      decision.complete ? 'EvidenceCollected' : 'EvidenceIncomplete',
      summary,
    );
    log.info({ artifacts: artifacts.length, complete: decision.complete }, 'evidence collected');
    await step('collected');
    return;
  }

  /** The collectors' outcomes in the operator's metrics: the Jobs' own processes are never scraped. */
  private countOutcomes(progress: ContainerProgress[], outOfReach: number): void {
    for (const p of progress) {
      this.metrics.containers.inc({ outcome: p.state === 'reported' ? 'reported' : 'missing' });
      if (p.state === 'reported') this.metrics.collectorFailures.inc(p.failed);
    }
    if (outOfReach > 0) this.metrics.containers.inc({ outcome: 'missing' }, outOfReach);
  }

  /** One container through its Job: created if missing, then read. The store has the final word. */
  private async viaJob(
    kase: Case,
    status: StatusBuilder,
    pod: CollectionPod,
    target: CollectionTarget,
    store: Extract<ResolvedStore, { type: 's3' }>,
    evidence: EvidenceStore,
    storedNow: () => Promise<Map<string, StoredArtifact>>,
    step: Step,
  ): Promise<ContainerProgress> {
    const { clients, config } = this.deps;
    const identity = { name: kase.metadata.name, uid: kase.metadata.uid ?? '' };
    const name = collectionJobName(identity, target.name);
    let job = await orNotFound(clients.batch.readNamespacedJob({ namespace: config.namespace, name }));
    if (!job) {
      // The checkpoint first, so the Job is told which archive is this container's (ADR 0023).
      const checkpoint = await this.checkpoint(kase, status, pod, target);
      const body = collectionJob({
        kase: identity,
        namespace: config.namespace,
        pod,
        target,
        collection: kase.spec.collection,
        store,
        image: config.image,
        imagePullSecrets: config.imagePullSecrets,
        command: config.command,
        collectorDeadline: config.collectorDeadline,
        ...(config.snapshotterRoots && { snapshotterRoots: config.snapshotterRoots }),
        ...(checkpoint && { checkpoint }),
        ...(config.podLogsDir && { podLogsRoot: config.podLogsDir }),
      });
      try {
        job = await clients.batch.createNamespacedJob({ namespace: config.namespace, body });
        this.metrics.jobsCreated.inc();
        void this.deps.events.emit(
          kase.metadata,
          'Normal',
          'CollectionJobCreated',
          `Job ${config.namespace}/${name} collects container ${target.name} on node ${pod.node}`,
        );
        await step('job');
      } catch (err) {
        if (!isConflict(err)) throw err;
        job = await clients.batch.readNamespacedJob({ namespace: config.namespace, name }); // a previous pass made it
      }
    }
    if (!job.metadata?.ownerReferences?.some((o) => o.uid === kase.metadata.uid))
      return {
        container: target.name,
        state: 'missing',
        reason: `Job ${config.namespace}/${name} exists but belongs to something else`,
      };
    if (job.spec?.suspend) {
      await this.startJob(kase, job, target, store, step);
      return { container: target.name, state: 'running' };
    }
    const outcome = jobOutcome(job);
    if (outcome.state === 'running') return { container: target.name, state: 'running' };

    const report = (await storedNow()).get(`${containerPrefix(target.id)}/report.json`);
    if (report) return this.reported(target.name, evidence, kase.metadata.name, report);
    const message = await this.terminationMessage(job);
    const summary = parseSummary(message);
    const why = [
      outcome.state === 'failed'
        ? `Job ${name} failed (${outcome.reason}: ${outcome.message})`
        : `Job ${name} succeeded`,
      summary?.fatal
        ? `collector: ${summary.fatal}`
        : message?.trim()
          ? `termination message: ${message.trim().slice(0, 300)}`
          : 'its pod left no termination message',
      'and the store holds no report.json for the container',
    ];
    return { container: target.name, state: 'missing', reason: why.join('; ') };
  }

  /**
   * A suspended Job gets its credentials, then runs: the Secret is minted now (so its lifetime
   * counts from the Job's start, as activeDeadlineSeconds does), owned by the Job (deleted with
   * it), and holds nothing but write access to this container's prefix (ADR 0009). A Secret
   * left by a pass that crashed before resuming the Job is used as it is.
   */
  private async startJob(
    kase: Case,
    job: V1Job,
    target: CollectionTarget,
    store: Extract<ResolvedStore, { type: 's3' }>,
    step: Step,
  ): Promise<void> {
    const { clients, config } = this.deps;
    const name = job.metadata!.name!;
    const deadline = job.spec?.activeDeadlineSeconds ?? kase.spec.collection.timeoutSeconds;
    const seconds = credentialSeconds(deadline, config.jobCredentials.maxSeconds);
    const creds = await this.minter.mint(
      {
        region: store.region,
        roleArn: config.jobCredentials.roleArn,
        ...((config.jobCredentials.stsEndpoint ?? store.endpoint) && {
          endpoint: config.jobCredentials.stsEndpoint ?? store.endpoint,
        }),
        ...(config.evidence.credentials && { credentials: config.evidence.credentials }),
      },
      {
        bucket: store.bucket,
        prefix: store.prefix,
        caseId: kase.metadata.name,
        containerPrefix: containerPrefix(target.id),
        legalHold: store.retention.legalHold,
        lockMode: store.retention.mode,
        retentionDays: kase.spec.evidence.retention.days,
      },
      name,
      seconds,
      this.now(),
    );
    try {
      await clients.core.createNamespacedSecret({
        namespace: config.namespace,
        body: {
          metadata: {
            name: jobCredentialsSecretName(name),
            namespace: config.namespace,
            labels: job.metadata?.labels ?? {},
            ownerReferences: [
              { apiVersion: 'batch/v1', kind: 'Job', name, uid: job.metadata!.uid!, controller: true },
            ],
          },
          type: 'Opaque',
          stringData: {
            AWS_ACCESS_KEY_ID: creds.accessKeyId,
            AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
            AWS_SESSION_TOKEN: creds.sessionToken,
          },
        },
      });
      await step('job-credentials');
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
    // The expiry goes on the Job in the same patch that lets it run: the seal waits for it.
    const expiresAt = creds.expiration ?? new Date(this.now().getTime() + seconds * 1000);
    await clients.batch.patchNamespacedJob(
      {
        namespace: config.namespace,
        name,
        body: {
          metadata: { annotations: { [CREDENTIALS_EXPIRE_ANNOTATION]: expiresAt.toISOString() } },
          spec: { suspend: false },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await step('job-started');
  }

  private async terminationMessage(job: V1Job): Promise<string | undefined> {
    const pods = await this.deps.clients.core.listNamespacedPod({
      namespace: job.metadata!.namespace!,
      labelSelector: `batch.kubernetes.io/job-name=${job.metadata!.name!}`,
    });
    for (const p of pods.items) {
      const msg = p.status?.containerStatuses?.find((c) => c.name === 'collector')?.state?.terminated
        ?.message;
      if (msg) return msg;
    }
    return undefined;
  }

  /**
   * When the case asks for a checkpoint: the kubelet asked to checkpoint the container now,
   * before its collection starts (ADR 0023), and its answer recorded on the case's timeline
   * (the sealed record the node cannot touch). A refusal is a gap; the collection goes on.
   */
  private async checkpoint(
    kase: Case,
    status: StatusBuilder,
    pod: CollectionPod,
    target: CollectionTarget,
  ): Promise<{ request: CheckpointRequest; checkpointsRoot: string } | undefined> {
    if (!kase.spec.collection.artifacts.includes('checkpoint')) return undefined;
    const { clients, config } = this.deps;
    const node = await orNotFound(clients.core.readNode({ name: pod.node }));
    // A token that can only checkpoint, alive 10 minutes (TokenRequest's floor): the node may
    // be the attacker's and keep whatever it is sent (ADR 0023).
    const token = async () => {
      const answer = await clients.core.createNamespacedServiceAccountToken({
        name: config.checkpoint.serviceAccount,
        namespace: config.namespace,
        body: { spec: { audiences: [], expirationSeconds: 600 } },
      });
      if (!answer.status?.token) throw new Error('the TokenRequest answered no token');
      return answer.status.token;
    };
    const outcome = await requestCheckpoint(
      token,
      node,
      { namespace: pod.namespace, pod: pod.name, container: target.name },
      config.checkpoint,
    );
    const { request } = outcome;
    if ('archive' in request)
      status.record(
        'CheckpointContainer',
        'Succeeded',
        `kubelet of ${pod.node} checkpointed container ${target.name} in ${outcome.ms} ms: ${request.archive}`,
      );
    else
      status.record(
        'CheckpointContainer',
        'Failed',
        `container ${target.name} on ${pod.node}: ${request.refused}`,
        { type: 'Warning', reason: 'CheckpointRefused' },
      );
    return { request, checkpointsRoot: config.checkpoint.checkpointsDir };
  }

  /** One container collected by this process, unless a previous pass already left its report. */
  private async inline(
    kase: Case,
    status: StatusBuilder,
    pod: CollectionPod,
    target: CollectionTarget,
    store: EvidenceStore,
    stored: Map<string, StoredArtifact>,
    log: Logger,
  ): Promise<ContainerProgress> {
    const existing = stored.get(`${containerPrefix(target.id)}/report.json`);
    if (existing) return this.reported(target.name, store, kase.metadata.name, existing);
    const { inline } = this.deps.config;
    const checkpoint = await this.checkpoint(kase, status, pod, target);
    const req = collectRequest(
      { name: kase.metadata.name, uid: kase.metadata.uid ?? '' },
      pod,
      target,
      kase.spec.collection,
      checkpoint,
      this.deps.config.podLogsDir,
    );
    const root = req.runtime && req.runtime !== 'auto' ? inline.runtimeRoots[req.runtime] : undefined;
    const started = process.hrtime.bigint();
    const result = await collectContainer(
      {
        ...req,
        procRoot: inline.procRoot,
        hostRoot: inline.hostRoot,
        hostReferencePid: inline.hostReferencePid,
        terminationMessagePath: null,
        ...(root && { runtimeRoot: root }),
        ...(this.deps.config.snapshotterRoots && { snapshotterRoots: this.deps.config.snapshotterRoots }),
      },
      store,
      { registry: this.deps.registry, logger: log },
    );
    this.metrics.inlineSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    if (!result.reportArtifact) {
      const fatal =
        result.report.failed.find((f) => f.what === 'container')?.reason ??
        parseSummary(result.summary)?.fatal ??
        'no report stored';
      return { container: target.name, state: 'missing', reason: `collector: ${fatal}` };
    }
    if (!result.ok) {
      // The report is stored but the container was never found: nothing of it was read.
      const fatal = result.report.failed.find((f) => f.what === 'container')?.reason ?? 'not collected';
      return {
        container: target.name,
        state: 'missing',
        reason: `collector: ${fatal} (see ${result.reportArtifact.name})`,
      };
    }
    return {
      container: target.name,
      state: 'reported',
      collected: result.report.collected.length,
      failed: result.report.failed.length,
    };
  }

  private async reported(
    container: string,
    store: EvidenceStore,
    caseId: string,
    report: StoredArtifact,
  ): Promise<ContainerProgress> {
    // Written on the suspect's node: anything may be in it, and nothing in it may stop the case.
    const parsed = await readJson(store, caseId, report.name, StoredReport);
    if ('unreadable' in parsed)
      return {
        container,
        state: 'missing',
        reason: `${report.name} is not a collector report: ${parsed.unreadable}`,
      };
    // The collector stores its report even when it could not find the container at all.
    const notFound = parsed.failed.find((f) => f.what === 'container');
    if (notFound)
      return { container, state: 'missing', reason: `collector: ${notFound.reason} (see ${report.name})` };
    return {
      container,
      state: 'reported',
      collected: parsed.collected.length,
      failed: parsed.failed.length,
    };
  }

  /**
   * Signs the manifest over what the case's collectors account for (ADR 0009). A manifest in
   * the store already stands only if it is this operator's seal of this case (an earlier pass
   * that crashed before writing status); any other manifest means someone else wrote where
   * only the operator writes, and the case is marked tampered and never sealed.
   */
  private async seal(
    kase: Case,
    status: StatusBuilder,
    store: EvidenceStore,
    resolved: ResolvedStore,
    log: Logger,
    step: Step,
  ): Promise<ReconcileResult> {
    let key: SigningKey;
    try {
      key = await this.signingKey(kase);
    } catch (err) {
      const message = `cannot seal: ${errorMessage(err)}`;
      if (status.condition('EvidenceSealed')?.message !== message) {
        status.record('SealEvidence', 'Failed', message);
        void this.deps.events.emit(kase.metadata, 'Warning', SEALED.signingKeyUnavailable, message);
      }
      status.setCondition('EvidenceSealed', 'False', SEALED.signingKeyUnavailable, message);
      return { requeueAfterMs: SIGNING_KEY_RETRY_MS };
    }
    const caseId = kase.metadata.name;
    const caseUid = kase.metadata.uid;
    if (this.deps.config.mode === 'job' && resolved.type === 's3') {
      const wait = await this.credentialsWait(kase, status);
      if (wait) return wait;
    }
    // The manifest says what each snapshot is: give a pending one the collection's time.
    const pending = pendingSnapshots(status.status, this.now(), kase.spec.collection.timeoutSeconds);
    if (pending.length) {
      status.setCondition(
        'EvidenceSealed',
        'Unknown',
        SEALED.waitingForSnapshots,
        `waiting for volume snapshots to be ready: ${pending.join(', ')}`,
      );
      return { requeueAfterMs: this.deps.config.pollMs };
    }
    const { artifacts: listing, problems } = await store.inventory(caseId);
    if (listing.some((a) => a.name === MANIFEST_NAME)) {
      const found = await judgeStoredManifest(store, caseId, key, caseUid);
      return this.adoptOrReject(kase, status, found, log);
    }

    const wanted = wantedContainers(kase, status);
    const reports = new Map<string, ContainerReport | { unreadable: string }>();
    const names = new Set(listing.map((a) => a.name));
    const tainted = new Map(problems.flatMap((p) => (p.taints ? [[p.taints, p.reason] as const] : [])));
    for (const c of wanted) {
      const prefix = containerPrefix(c.id);
      const name = reportName(prefix);
      if (tainted.has(name))
        reports.set(prefix, { unreadable: `touched after it was stored: ${tainted.get(name)}` });
      else if (names.has(name)) reports.set(prefix, await readJson(store, caseId, name, ContainerReport));
    }
    const orchestratorReport = `${ORCHESTRATOR_PREFIX}/report.json`;
    const orchestrator = kase.spec.collection.artifacts.includes('orchestrator')
      ? names.has(orchestratorReport)
        ? await readJson(store, caseId, orchestratorReport, OrchestratorReport)
        : ('absent' as const)
      : undefined;
    const accounting = accountForCase({
      listing,
      problems,
      wanted,
      reports,
      ...(orchestrator !== undefined && { orchestrator }),
      knownGaps: status.status.gaps ?? [],
    });

    const sealedAt = this.now();
    const { target, alert, reason, policyRef } = kase.spec;
    const containers = status.status.containers ?? [];
    const sealed = await sealCase(
      store,
      caseId,
      {
        artifacts: accounting.sealed,
        caseInfo: {
          id: caseId,
          uid: caseUid,
          namespace: target.namespace,
          pod: target.pod,
          podUID: status.status.podUID,
          node: status.status.node,
          reason,
          containers,
          ...(status.status.volumeSnapshots?.length && { volumeSnapshots: status.status.volumeSnapshots }),
          ...(policyRef && { policyRef }),
          ...(alert && {
            alert: { rule: alert.rule, priority: alert.priority, time: alert.time, source: alert.source },
          }),
        },
        store:
          resolved.type === 's3'
            ? { kind: 's3', bucket: resolved.bucket, prefix: resolved.prefix }
            : { kind: 'local', root: resolved.root },
        ...(resolved.type === 's3' && {
          retention: {
            mode: resolved.retention.mode,
            period: resolved.retention.period,
            legalHold: resolved.retention.legalHold,
          },
        }),
        completeness: {
          complete: accounting.complete,
          gaps: accounting.gaps,
          unreadable: accounting.unreadable,
        },
        findings: accounting.findings,
        custody: custodySteps({
          operator: await this.operatorIdentity(),
          version: AMBER_VERSION,
          ...(this.deps.config.mode === 'job'
            ? { collectorImage: this.deps.config.image }
            : { inline: true }),
          timeline: status.status.timeline ?? [],
          reports: wanted.flatMap((c) => {
            const r = reports.get(containerPrefix(c.id));
            return r && !('unreadable' in r)
              ? [{ container: c.name, report: r, ...(status.status.node && { node: status.status.node }) }]
              : [];
          }),
          sealedAt: sealedAt.toISOString(),
        }),
        timeline: status.status.timeline ?? [],
      },
      key,
      sealedAt,
      { ...(caseUid && { caseUid }) },
    );
    await step('seal');
    if (sealed.existed) return this.adoptOrReject(kase, status, sealed, log);
    this.recordSeal(kase, status, sealed, sealed.statement, log, false);
    return;
  }

  /**
   * The seal signs nothing while a credential that a collection Job took to a node can still
   * write under the case (ADR 0009): whatever the node writes before it expires is in the
   * listing the seal accounts for, and nothing can be written after. Waiting shows as
   * EvidenceSealed=Unknown; the case is looked at again when the last credential expires.
   */
  private async credentialsWait(kase: Case, status: StatusBuilder): Promise<ReconcileResult> {
    const { config, clients } = this.deps;
    if (!config.jobCredentials.sealAfterExpiry) return;
    const jobs = await clients.batch.listNamespacedJob({
      namespace: config.namespace,
      labelSelector: `${CASE_LABEL}=${labelValue(kase.metadata.name)}`,
    });
    const until = credentialsValidUntil(
      jobs.items
        .filter((j) => j.metadata?.ownerReferences?.some((o) => o.uid === kase.metadata.uid))
        .map((j) => ({
          suspended: j.spec?.suspend === true,
          ...(j.metadata?.annotations?.[CREDENTIALS_EXPIRE_ANNOTATION] && {
            expiresAt: j.metadata.annotations[CREDENTIALS_EXPIRE_ANNOTATION],
          }),
          ...((j.status?.startTime ?? j.metadata?.creationTimestamp) && {
            startedAt: new Date(j.status?.startTime ?? j.metadata!.creationTimestamp!).toISOString(),
          }),
        })),
      config.jobCredentials.maxSeconds,
    );
    const now = this.now().getTime();
    if (until === undefined || until < now) return;
    const message = Number.isFinite(until)
      ? `not sealed before ${new Date(until).toISOString()}: the collection Job's credentials can write under the case until then`
      : "not sealed: a collection Job ran and its credentials' expiry cannot be told";
    status.setCondition('EvidenceSealed', 'Unknown', SEALED.waitingForCredentials, message);
    // One second past the expiry, so the clock of the store has passed it too.
    return { requeueAfterMs: Number.isFinite(until) ? until - now + 1_000 : SIGNING_KEY_RETRY_MS };
  }

  /** A manifest found in the store: this operator's seal of this case, or tampering. */
  private adoptOrReject(
    kase: Case,
    status: StatusBuilder,
    found: { uri: string; sha256: string; versionId?: string; judgement: ManifestJudgement },
    log: Logger,
  ): ReconcileResult {
    if (found.judgement.ours) {
      this.recordSeal(kase, status, found, found.judgement.statement, log, true);
      return;
    }
    const { reason, message: why } = found.judgement;
    const message = `a manifest this operator did not write is in the store: ${found.uri} (sha256 ${found.sha256.slice(0, 16)}...): ${why}`;
    status.setCondition('EvidenceTampered', 'True', reason, message);
    status.setCondition('EvidenceSealed', 'False', SEALED.tampered, 'never sealed: see EvidenceTampered');
    status.record('SealEvidence', 'Failed', message);
    void this.deps.events.emit(kase.metadata, 'Warning', 'EvidenceTampered', message);
    log.error({ manifest: found.uri, reason }, 'evidence tampered with: case not sealed');
    return;
  }

  private recordSeal(
    kase: Case,
    status: StatusBuilder,
    sealed: { uri: string; sha256: string; versionId?: string },
    statement: Statement,
    log: Logger,
    earlier: boolean,
  ): void {
    const p = statement.predicate;
    status.status.manifest = {
      uri: sealed.uri,
      sha256: sealed.sha256,
      ...(sealed.versionId && { versionId: sealed.versionId }),
    };
    status.status.artifacts = p.artifacts.slice(0, STATUS_ARTIFACTS_LIMIT).map((a) => ({
      name: a.name,
      uri: a.uri,
      size: a.size,
      sha256: a.sha256,
      ...(a.retainUntil && { retainUntil: a.retainUntil }),
    }));
    const gaps = p.completeness?.gaps ?? [];
    const findings = p.findings ?? [];
    if (gaps.length > 0) status.status.gaps = gaps.slice(0, GAPS_KEPT);
    else delete status.status.gaps;
    if (findings.length > 0) status.status.findings = findings.slice(0, GAPS_KEPT);
    else delete status.status.findings;
    const complete = p.completeness?.complete ?? false;
    // The seal's accounting is the final word on completeness: the phase follows it.
    if (!complete && status.isTrue('EvidenceCollected'))
      status.setCondition(
        'EvidenceCollected',
        'False',
        COLLECTED.incomplete,
        `${gaps.length} gaps: ${gaps
          .slice(0, 5)
          .map((g) => `${g.what}: ${g.reason}`)
          .join('; ')}`,
      );
    const message = [
      `manifest ${sealed.uri} (sha256 ${sealed.sha256.slice(0, 16)}...) signs ${p.artifacts.length} artifacts`,
      complete ? 'complete' : `incomplete: ${gaps.length} gaps`,
      ...(findings.length > 0
        ? [`${findings.length} unaccounted objects recorded as findings, not signed`]
        : []),
      ...(earlier ? ['sealed by an earlier pass'] : []),
    ].join('; ');
    status.setCondition('EvidenceSealed', 'True', SEALED.sealed, message);
    status.record('SealEvidence', 'Succeeded', message);
    void this.deps.events.emit(kase.metadata, 'Normal', 'EvidenceSealed', message);
    if (findings.length > 0)
      void this.deps.events.emit(
        kase.metadata,
        'Warning',
        'UnaccountedObjects',
        `${findings.length} objects under the case that no collector accounts for: ${findings
          .slice(0, 5)
          .map((f) => f.what)
          .join(', ')}`,
      );
    const created = kase.metadata.creationTimestamp ? Date.parse(kase.metadata.creationTimestamp) : NaN;
    if (!earlier && !Number.isNaN(created))
      this.metrics.timeToSealed.observe(Math.max(0, (this.now().getTime() - created) / 1000));
    log.info(
      { manifest: sealed.uri, artifacts: p.artifacts.length, complete, findings: findings.length, earlier },
      'evidence sealed',
    );
  }

  /** Who the operator is to the API server (its ServiceAccount), for the chain of custody. */
  private operatorIdentity(): Promise<string> {
    this.identity ??= this.deps.clients.kc
      .makeApiClient(AuthenticationV1Api)
      .createSelfSubjectReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
      })
      .then(
        (r) => r.status?.userInfo?.username ?? 'unknown (the API server named no user)',
        (err: unknown) => {
          this.identity = undefined; // ask again next time
          return `unknown (SelfSubjectReview failed: ${errorMessage(err)})`;
        },
      );
    return this.identity;
  }

  private async signingKey(kase: Case): Promise<SigningKey> {
    const ref = kase.spec.evidence.signingKeyRef ?? {
      namespace: this.deps.config.namespace,
      ...this.deps.config.signingKeySecret,
    };
    let secret;
    try {
      secret = await this.deps.clients.core.readNamespacedSecret({
        namespace: ref.namespace,
        name: ref.name,
      });
    } catch (err) {
      throw new Error(
        `signing key Secret ${ref.namespace}/${ref.name}: ${isNotFound(err) ? 'not found' : errorMessage(err)}`,
        { cause: err },
      );
    }
    const data = secret.data?.[ref.key];
    if (!data) throw new Error(`signing key Secret ${ref.namespace}/${ref.name} has no key "${ref.key}"`);
    return loadSigningKey(Buffer.from(data, 'base64'));
  }

  /** Once sealed (as recorded by an earlier pass): delete the pod if the case asks, once. */
  private async afterSeal(kase: Case, status: StatusBuilder, log: Logger): Promise<ReconcileResult> {
    if (
      !kase.spec.containment.deletePodAfterSeal ||
      status.status.timeline?.some((e) => e.action === 'DeletePod')
    )
      return;
    const { namespace, pod } = kase.spec.target;
    try {
      // Only the suspect itself: a pod of the same name created since is another pod.
      await this.deps.clients.core.deleteNamespacedPod({
        namespace,
        name: pod,
        body: status.status.podUID ? { preconditions: { uid: status.status.podUID } } : {},
      });
      status.record(
        'DeletePod',
        'Succeeded',
        `pod ${namespace}/${pod} deleted after its evidence was sealed`,
      );
      void this.deps.events.emit(
        kase.metadata,
        'Normal',
        'DeletePod',
        `pod ${namespace}/${pod} deleted after its evidence was sealed`,
      );
      log.info('pod deleted after seal, as the case asks');
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw err;
      status.record('DeletePod', 'Skipped', `pod ${namespace}/${pod} was already gone or replaced`);
    }
    return;
  }

  private fail(kase: Case, status: StatusBuilder, reason: string, message: string): void {
    if (status.condition('EvidenceCollected')?.reason === reason) return;
    status.setCondition('EvidenceCollected', 'False', reason, message);
    status.record('CollectEvidence', 'Failed', message);
    void this.deps.events.emit(kase.metadata, 'Warning', reason, message);
  }
}

/** The containers the case wanted, with the IDs the pod's status gave them at containment. */
function wantedContainers(kase: Case, status: StatusBuilder): WantedContainer[] {
  const only = kase.spec.target.containers;
  return (status.status.containers ?? [])
    .filter((c) => only.length === 0 || only.includes(c.name))
    .map((c) => ({ name: c.name, id: c.id }));
}

/** A small JSON artifact read back and parsed; what is wrong with it otherwise. */
async function readJson<T>(
  store: EvidenceStore,
  caseId: string,
  name: string,
  schema: z.ZodType<T>,
): Promise<T | { unreadable: string }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of await store.get(caseId, name)) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    size += buf.length;
    if (size > MAX_REPORT_BYTES) return { unreadable: `larger than ${MAX_REPORT_BYTES} bytes` };
    chunks.push(buf);
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    return { unreadable: `not JSON: ${errorMessage(err)}` };
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? parsed.data : { unreadable: parsed.error.message.slice(0, 300) };
}
