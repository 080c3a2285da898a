import {
  NetworkingV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1NetworkPolicy,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CASE_NAME_TOO_LONG_MESSAGE,
  RELEASE_ONE_WAY_MESSAGE,
  TARGET_IMMUTABLE_MESSAGE,
} from '../../../src/api/forensiccase.js';
import { caseNameFor } from '../../../src/intake/cases.js';
import {
  CASE_LABEL,
  NODE_HELD_LABEL,
  NODE_HOLDERS_ANNOTATION,
  QUARANTINE_LABEL,
  QUARANTINE_TAINT_KEY,
  NETWORK_QUARANTINE_LABEL,
  STANDING_POLICY_NAME,
} from '../../../src/containment/labels.js';
import { installCrds } from '../../testenv/crds.js';
import { startCluster, type Cluster } from '../../testenv/kube.js';
import { startCaseController } from '../../testenv/operator.js';
import { operatorKubeConfig } from '../../testenv/rbac.js';
import { waitFor } from '../../testenv/wait.js';
import { Workloads, type CaseView } from '../../testenv/workload.js';

/**
 * The attacks of issue 10 against a real API server, with the controller running as the
 * operator's ServiceAccount (deploy/rbac.yaml). Eight kwok nodes: with the default limits
 * (3 nodes, 20 %) Amber may hold one of them.
 */

const NODES = Array.from({ length: 8 }, (_, i) => `n${i + 1}`);
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const actions = (c: CaseView) => (c.status?.timeline ?? []).map((e) => `${e.action} ${e.outcome}`);
const condition = (c: CaseView, type: string) => c.status?.conditions?.find((x) => x.type === type);
const holdersOf = (n: V1Node) =>
  (n.metadata?.annotations?.[NODE_HOLDERS_ANNOTATION] ?? '').split(',').filter(Boolean);

describe('containment an attacker cannot steer or escape (real API server, operator ServiceAccount)', () => {
  let cluster: Cluster;
  let w: Workloads;
  let net: NetworkingV1Api;
  let operator: Awaited<ReturnType<typeof startCaseController>>;

  /**
   * A pod bound to a node. Containment reads spec.nodeName, not the pod's phase, so the test does
   * not wait for kwok to report it Running (kwok's pod updates lag by tens of seconds here).
   */
  async function pod(
    name: string,
    node: string,
    extra: Partial<NonNullable<V1Pod['spec']>> = {},
  ): Promise<V1Pod> {
    return w.core.createNamespacedPod({
      namespace: 'shop',
      body: {
        metadata: { name, labels: { app: name } },
        spec: { nodeName: node, containers: [{ name: 'main', image: 'example.invalid/app:1' }], ...extra },
      },
    });
  }

  const heldNodes = async () =>
    (await w.core.listNode()).items.filter((n) => holdersOf(n).length > 0).map((n) => n.metadata!.name!);

  /**
   * The cases whose timeline says `text`. A standing policy serves every case of its namespace:
   * all of them are woken by its change, and the one whose write lands first records the repair.
   */
  async function casesRecording(text: string): Promise<string[]> {
    const list = (await w.custom.listClusterCustomObject({
      group: 'forensics.amber.io',
      version: 'v1alpha1',
      plural: 'forensiccases',
    })) as { items: CaseView[] };
    return list.items
      .filter((c) => c.status?.timeline?.some((e) => e.message?.includes(text)))
      .map((c) => c.metadata.name);
  }

  async function events(caseName: string) {
    const list = await w.core.listNamespacedEvent({
      namespace: 'default',
      fieldSelector: `involvedObject.name=${caseName}`,
    });
    return list.items;
  }

  beforeAll(async () => {
    cluster = await startCluster({ kwok: true });
    const admin = cluster.kubeConfig();
    await installCrds(admin);
    w = new Workloads(admin);
    net = admin.makeApiClient(NetworkingV1Api);
    for (const n of NODES) await w.node(n);
    await w.namespace('shop');
    operator = await startCaseController(await operatorKubeConfig(cluster));
  });
  afterAll(async () => {
    await operator?.stop();
    await cluster?.stop();
  });

  async function releaseAll(names: string[]) {
    for (const name of names) await w.patchCaseSpec(name, { release: true });
    for (const name of names) await w.waitForPhase(name, 'Released');
    expect(await heldNodes()).toEqual([]);
  }

  it.each([
    ['no hostname (the syscall fixture has none)', undefined],
    ['one shared hostname (a k8saudit Falco reports its own host)', 'falco-0'],
  ])(
    '8 pods on 8 nodes alerted at once, %s: one node held, 7 cases contained without it',
    async (_label, hostname) => {
      const tag = hostname ? 'shared' : 'none';
      const pods = await Promise.all(NODES.map((n) => pod(`${tag}-${n}`, n)));
      const cases = pods.map((p) => `limit-${p.metadata!.name}`);
      await Promise.all(
        pods.map((p, i) =>
          w.createCase(cases[i]!, {
            target: { namespace: 'shop', pod: p.metadata!.name },
            reason: 'alert storm',
            alert: {
              rule: 'Terminal shell in container',
              priority: 'Notice',
              time: new Date().toISOString(),
              ...(hostname ? { hostname } : {}),
            },
          }),
        ),
      );
      const contained = await Promise.all(cases.map((c) => w.waitForPhase(c, 'Contained')));
      const held = contained.filter((c) => condition(c, 'NodeHeld')?.status === 'True');
      const limited = contained.filter((c) => condition(c, 'NodeHeld')?.reason === 'NodeLimitReached');
      expect(held).toHaveLength(1);
      expect(limited).toHaveLength(7);
      expect(await heldNodes()).toEqual([held[0]!.status!.node]);
      for (const c of limited) {
        expect(actions(c)).toContain('ContainNode Skipped');
        expect(condition(c, 'NodeHeld')?.message).toMatch(/node limit reached: Amber holds 1 of 8 nodes/);
        // Still isolated: the pod is labelled and its policy exists.
        const target = c.spec.target as { pod: string };
        const p = await w.core.readNamespacedPod({ namespace: 'shop', name: target.pod });
        expect(p.metadata?.labels?.[CASE_LABEL]).toBe(c.metadata.name);
      }
      // Events go out after the status write: wait for it, not race it.
      await waitFor(
        'NodeLimitReached Event',
        async () => (await events(limited[0]!.metadata.name)).map((e) => e.reason),
        (reasons) => reasons.includes('NodeLimitReached'),
      );
      await releaseAll(cases);
    },
  );

  it('root on a held node strips its hold from the Node object: the slot stays used, the next node is refused', async () => {
    await pod('strip-a', 'n3');
    await w.createCase('strip-a', { target: { namespace: 'shop', pod: 'strip-a' }, reason: 'shell' });
    const a = await w.waitForPhase('strip-a', 'Contained');
    expect(condition(a, 'NodeHeld')?.status).toBe('True');

    // The node's root (here: the admin) erases every trace of the hold on its Node: the held
    // label, the holder annotation, the cordon. Then it gets a pod on another node alerted.
    await w.core.patchNode(
      {
        name: 'n3',
        body: {
          metadata: { labels: { [NODE_HELD_LABEL]: null }, annotations: { [NODE_HOLDERS_ANNOTATION]: null } },
          spec: { unschedulable: false },
        },
      },
      mergePatch,
    );
    const stripped = Date.now();
    await pod('strip-b', 'n4');
    await w.createCase('strip-b', { target: { namespace: 'shop', pod: 'strip-b' }, reason: 'shell' });

    // The case still says it holds n3, so n4 would be a second node under a limit of one.
    const b = await w.waitForPhase('strip-b', 'Contained');
    expect(condition(b, 'NodeHeld')).toMatchObject({ status: 'False', reason: 'NodeLimitReached' });
    expect(condition(b, 'NodeHeld')?.message).toMatch(/Amber holds 1 of 8 nodes/);
    const n4 = await w.core.readNode({ name: 'n4' });
    expect(n4.spec?.unschedulable).toBeFalsy();
    expect(holdersOf(n4)).toEqual([]);

    // The held-node watch brings the case back, and it puts its hold back on n3.
    const n3 = await waitFor(
      'hold on n3 repaired',
      () => w.core.readNode({ name: 'n3' }),
      (n) =>
        n.spec?.unschedulable === true &&
        holdersOf(n).includes('strip-a') &&
        n.metadata?.labels?.[NODE_HELD_LABEL] === 'true',
    );
    console.log(`stripped node hold repaired within ${Date.now() - stripped} ms`);
    expect(n3.spec?.taints?.some((t) => t.key === QUARANTINE_TAINT_KEY)).toBe(true);
    expect(actions(await w.getCase('strip-a'))).toContain('ContainNode Succeeded');
    await releaseAll(['strip-a', 'strip-b']);
  });

  it('same-name replacement on another node: the new pod is never touched; release lets go of the old node', async () => {
    const old = await pod('web-0', 'n1');
    await w.createCase('replaced', { target: { namespace: 'shop', pod: 'web-0' }, reason: 'shell' });
    let kase = await w.waitForPhase('replaced', 'Contained');
    expect(kase.status?.node).toBe('n1');
    expect(condition(kase, 'NodeHeld')?.status).toBe('True');

    // The StatefulSet's move: the pod goes, a new one of the same name comes up elsewhere.
    await w.core.deleteNamespacedPod({ namespace: 'shop', name: 'web-0', gracePeriodSeconds: 0 });
    await waitFor(
      'old pod gone',
      () => w.core.listNamespacedPod({ namespace: 'shop', fieldSelector: 'metadata.name=web-0' }),
      (l) => l.items.length === 0,
    );
    const fresh = await pod('web-0', 'n2');
    expect(fresh.metadata?.uid).not.toBe(old.metadata?.uid);
    kase = await waitFor(
      'PodReplaced',
      () => w.getCase('replaced'),
      (c) => condition(c, 'PodReplaced')?.reason === 'PodReplaced',
    );
    expect(condition(kase, 'PodReplaced')?.message).toContain(fresh.metadata!.uid!);
    expect(actions(kase)).toContain('PodReplaced Skipped');
    // The Event for the replacement (after a PodDeleted one when a pass saw the gap between the
    // old pod and the new one). Events go out after the status write: wait for it, not race it.
    await waitFor(
      'PodReplaced Event',
      async () => (await events('replaced')).map((e) => e.reason),
      (reasons) => reasons.includes('PodReplaced'),
    );
    expect(kase.status).toMatchObject({ node: 'n1' });
    expect((kase.status as { podUID?: string }).podUID).toBe(old.metadata?.uid);

    // Give a wrong pass every chance to act, then look: nothing on the new pod or its node.
    await w.patchCaseSpec('replaced', { reason: 'shell (edited to provoke a pass)' });
    await waitFor(
      'pass seen',
      () => w.getCase('replaced'),
      (c) => c.status?.observedGeneration === 2,
    );
    const after = await w.core.readNamespacedPod({ namespace: 'shop', name: 'web-0' });
    expect(after.metadata?.labels).toEqual({ app: 'web-0' });
    expect(after.metadata?.annotations ?? {}).toEqual({});
    const n2 = await w.core.readNode({ name: 'n2' });
    expect(holdersOf(n2)).toEqual([]);
    expect(n2.spec?.unschedulable).toBeFalsy();

    await w.patchCaseSpec('replaced', { release: true });
    kase = await w.waitForPhase('replaced', 'Released');
    const n1 = await w.core.readNode({ name: 'n1' });
    expect(holdersOf(n1)).toEqual([]);
    expect(n1.spec?.unschedulable).toBeFalsy();
    expect(n1.metadata?.labels?.[NODE_HELD_LABEL]).toBeUndefined();
    expect((n1.spec?.taints ?? []).filter((t) => t.key === QUARANTINE_TAINT_KEY)).toEqual([]);
    expect(actions(kase)).toEqual(expect.arrayContaining(['ReleasePod Skipped', 'ReleaseNode Succeeded']));
    const untouched = await w.core.readNamespacedPod({ namespace: 'shop', name: 'web-0' });
    expect(untouched.metadata?.labels).toEqual({ app: 'web-0' });
    expect(untouched.metadata?.uid).toBe(fresh.metadata?.uid);
  });

  describe('isolation is repaired, not assumed', () => {
    const name = 'repair';
    const policyName = STANDING_POLICY_NAME;
    /** The standing policy as Amber wants it: deny-all for every pod with the network label. */
    const wanted = (p: V1NetworkPolicy) =>
      !p.spec?.ingress?.length &&
      !p.spec?.egress?.length &&
      p.spec?.podSelector?.matchExpressions?.[0]?.key === NETWORK_QUARANTINE_LABEL &&
      p.spec?.podSelector?.matchExpressions?.[0]?.operator === 'Exists' &&
      !p.spec?.podSelector?.matchLabels;

    beforeAll(async () => {
      await pod('db-0', 'n3');
      await w.createCase(name, {
        target: { namespace: 'shop', pod: 'db-0' },
        reason: 'shell',
        containment: { cordonNode: false, taintNode: false, labelNode: false },
      });
      await w.waitForPhase(name, 'Contained');
    });

    /** Time from the attacker's write to the repair seen by a client polling every 5 ms. */
    async function repaired<T>(
      what: string,
      attack: () => Promise<unknown>,
      get: () => Promise<T>,
      ok: (v: T) => boolean,
    ) {
      await attack();
      const start = performance.now();
      for (;;) {
        const v = await get().catch(() => undefined);
        if (v !== undefined && ok(v)) break;
        if (performance.now() - start > 30_000) throw new Error(`${what} not repaired`);
        await sleep(5);
      }
      const ms = performance.now() - start;
      console.log(`repair time, ${what}: ${ms.toFixed(0)} ms`);
      return ms;
    }

    const readPod = () => w.core.readNamespacedPod({ namespace: 'shop', name: 'db-0' });
    const readPolicy = () => net.readNamespacedNetworkPolicy({ namespace: 'shop', name: policyName });

    it('a removed case label is put back, with a timeline entry and an Event', async () => {
      await repaired(
        'label removed',
        () =>
          w.core.patchNamespacedPod(
            { namespace: 'shop', name: 'db-0', body: { metadata: { labels: { [CASE_LABEL]: null } } } },
            mergePatch,
          ),
        readPod,
        (p) => p.metadata?.labels?.[CASE_LABEL] === name,
      );
      const kase = await waitFor(
        'recorded',
        () => w.getCase(name),
        (c) => c.status?.timeline?.some((e) => e.message?.includes('was removed')) ?? false,
      );
      expect(kase.status?.timeline?.at(-1)).toMatchObject({ action: 'LabelPod', outcome: 'Succeeded' });
      await waitFor(
        'Event',
        () => events(name),
        (l) => l.some((e) => e.reason === 'LabelPod' && e.type === 'Warning'),
      );
    });

    it('a case label changed to another real case (that pinned another pod) is put back', async () => {
      await pod('decoy', 'n4');
      await w.createCase('decoy-case', {
        target: { namespace: 'shop', pod: 'decoy' },
        reason: 'decoy',
        containment: { cordonNode: false, taintNode: false, labelNode: false },
      });
      await w.waitForPhase('decoy-case', 'Contained');
      await repaired(
        'label changed to another case',
        () =>
          w.core.patchNamespacedPod(
            {
              namespace: 'shop',
              name: 'db-0',
              body: { metadata: { labels: { [CASE_LABEL]: 'decoy-case' } } },
            },
            mergePatch,
          ),
        readPod,
        (p) => p.metadata?.labels?.[CASE_LABEL] === name,
      );
      const kase = await waitFor(
        'recorded',
        () => w.getCase(name),
        (c) => c.status?.timeline?.some((e) => e.message?.includes('changed to "decoy-case"')) ?? false,
      );
      expect(condition(kase, 'Contained')?.status).toBe('True');
      // The decoy case did not adopt the pod.
      const decoy = await w.getCase('decoy-case');
      expect(actions(decoy).filter((a) => a.startsWith('LabelPod'))).toEqual(['LabelPod Succeeded']);
    });

    it('the network label alone removed (what the standing policy selects) is put back', async () => {
      // A pod whose ServiceAccount may patch pods can take the label off itself: it is out of
      // isolation only until the watch brings its case back.
      await repaired(
        'network label removed',
        () =>
          w.core.patchNamespacedPod(
            {
              namespace: 'shop',
              name: 'db-0',
              body: { metadata: { labels: { [NETWORK_QUARANTINE_LABEL]: null } } },
            },
            mergePatch,
          ),
        readPod,
        (p) => p.metadata?.labels?.[NETWORK_QUARANTINE_LABEL] === name,
      );
      await waitFor(
        'recorded',
        () => w.getCase(name),
        (c) =>
          c.status?.timeline?.some((e) => e.message?.includes(`${NETWORK_QUARANTINE_LABEL} was removed`)) ??
          false,
      );
    });

    it('an edited NetworkPolicy (allow all ingress, selector emptied) is put back', async () => {
      await repaired(
        'policy edited',
        async () => {
          const p = await readPolicy();
          p.spec!.ingress = [{}];
          p.spec!.podSelector = { matchLabels: { [CASE_LABEL]: 'nobody' } };
          await net.replaceNamespacedNetworkPolicy({ namespace: 'shop', name: policyName, body: p });
        },
        readPolicy,
        wanted,
      );
      const [by] = await waitFor(
        'recorded',
        () => casesRecording('(repaired: it was edited)'),
        (names) => names.length > 0,
      );
      await waitFor(
        'Event',
        () => events(by!),
        (l) => l.some((e) => e.reason === 'IsolateNetwork' && e.message?.includes('edited')),
      );
    });

    it('a NetworkPolicy stripped of Amber’s label (out of the watch) is put back', async () => {
      await repaired(
        'policy label removed',
        () =>
          net.patchNamespacedNetworkPolicy(
            {
              namespace: 'shop',
              name: policyName,
              body: { metadata: { labels: { 'app.kubernetes.io/managed-by': null } } },
            },
            mergePatch,
          ),
        readPolicy,
        (p) => p.metadata?.labels?.['app.kubernetes.io/managed-by'] === 'amber',
      );
    });

    it('a deleted NetworkPolicy is put back', async () => {
      await repaired(
        'policy deleted',
        () => net.deleteNamespacedNetworkPolicy({ namespace: 'shop', name: policyName }),
        readPolicy,
        wanted,
      );
      await waitFor(
        'recorded',
        () => casesRecording('(repaired: it was deleted)'),
        (names) => names.length > 0,
      );
    });
  });

  it('a policy named like the standing one, planted before Amber (allow all), is replaced before the pod counts as isolated', async () => {
    await w.namespace('planted');
    await net.createNamespacedNetworkPolicy({
      namespace: 'planted',
      body: {
        metadata: { name: STANDING_POLICY_NAME },
        spec: {
          podSelector: { matchExpressions: [{ key: NETWORK_QUARANTINE_LABEL, operator: 'Exists' }] },
          policyTypes: ['Ingress', 'Egress'],
          ingress: [{}],
          egress: [{}],
        },
      },
    });
    await w.core.createNamespacedPod({
      namespace: 'planted',
      body: {
        metadata: { name: 'victim', labels: { app: 'victim' } },
        spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'busybox' }] },
      },
    });
    await w.createCase('planted', {
      target: { namespace: 'planted', pod: 'victim' },
      reason: 'shell',
      containment: { cordonNode: false, taintNode: false, labelNode: false },
    });
    const kase = await w.waitForPhase('planted', 'Contained');
    const policy = await net.readNamespacedNetworkPolicy({
      namespace: 'planted',
      name: STANDING_POLICY_NAME,
    });
    expect(policy.spec?.ingress ?? []).toEqual([]);
    expect(policy.spec?.egress ?? []).toEqual([]);
    expect(policy.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('amber');
    expect(condition(kase, 'NetworkIsolated')?.status).toBe('True');
    await releaseAll(['planted']);
  });

  it('a hostNetwork pod: network isolation recorded as not effective, never Succeeded', async () => {
    await pod('hostnet', 'n5', { hostNetwork: true });
    await w.createCase('hostnet', {
      target: { namespace: 'shop', pod: 'hostnet' },
      reason: 'shell',
      containment: { cordonNode: false, taintNode: false, labelNode: false },
    });
    const kase = await w.waitForPhase('hostnet', 'Contained');
    expect(condition(kase, 'NetworkIsolated')).toMatchObject({ status: 'False', reason: 'HostNetwork' });
    expect(actions(kase)).toContain('IsolateNetwork Failed');
    expect(actions(kase)).not.toContain('IsolateNetwork Succeeded');
    expect(condition(kase, 'Contained')?.message).toMatch(/not effective/);
    await waitFor(
      'Event',
      () => events('hostnet'),
      (l) => l.some((e) => e.reason === 'NetworkIsolationNotEffective' && e.type === 'Warning'),
    );
  });

  it('a pod with a long name (the case name the intake makes for it is a label value) is contained', async () => {
    // The attack of the review: `<ns>-<pod>` past 54 characters made a case name no label could
    // hold, so the policy and the pod labels were refused (422) and the pod stayed on the network.
    const long = 'payment-gateway-worker-7d9f8b6c5d-x2x4z-with-a-very-long-suffix';
    await pod(long, 'n7');
    const name = caseNameFor({ namespace: 'shop', pod: long });
    expect(name.length).toBeLessThanOrEqual(63);
    await w.createCase(name, {
      target: { namespace: 'shop', pod: long },
      reason: 'shell',
      containment: { cordonNode: false, taintNode: false, labelNode: false },
    });
    await w.waitForPhase(name, 'Contained');
    const p = await w.core.readNamespacedPod({ namespace: 'shop', name: long });
    expect(p.metadata?.labels?.[CASE_LABEL]).toBe(name);
    expect(p.metadata?.labels?.[NETWORK_QUARANTINE_LABEL]).toBe(name);
    const policy = await net.readNamespacedNetworkPolicy({ namespace: 'shop', name: STANDING_POLICY_NAME });
    expect(policy.spec?.podSelector?.matchExpressions?.[0]?.key).toBe(NETWORK_QUARANTINE_LABEL);
    await releaseAll([name]);
  });

  describe('the spec cannot be bent (CEL rules in the CRD)', () => {
    it('refuses a case name longer than a label value, with a clear message', async () => {
      const err = await w
        .createCase('x'.repeat(64), { target: { namespace: 'shop', pod: 'web-0' }, reason: 'shell' })
        .catch((e: unknown) => e);
      expect((err as { code?: number }).code).toBe(422);
      expect(String((err as { body?: unknown }).body)).toContain(CASE_NAME_TOO_LONG_MESSAGE.slice(0, 40));
    });

    it('refuses setting spec.release back to false', async () => {
      await pod('flip', 'n6');
      await w.createCase('flip', {
        target: { namespace: 'shop', pod: 'flip' },
        reason: 'shell',
        containment: { cordonNode: false, taintNode: false, labelNode: false },
      });
      await w.waitForPhase('flip', 'Contained');
      await w.patchCaseSpec('flip', { release: true });
      await w.waitForPhase('flip', 'Released');
      const err = await w.patchCaseSpec('flip', { release: false }).catch((e: unknown) => e);
      expect((err as { code?: number }).code).toBe(422);
      expect(String((err as { body?: unknown }).body)).toContain(RELEASE_ONE_WAY_MESSAGE.slice(0, 40));
      expect((await w.getCase('flip')).spec.release).toBe(true);
    });

    it('refuses editing spec.target', async () => {
      await w.createCase('pinned-target', {
        target: { namespace: 'shop', pod: 'flip' },
        reason: 'shell',
        containment: { cordonNode: false, taintNode: false, labelNode: false },
      });
      const err = await w
        .patchCaseSpec('pinned-target', { target: { namespace: 'shop', pod: 'someone-else' } })
        .catch((e: unknown) => e);
      expect((err as { code?: number }).code).toBe(422);
      expect(String((err as { body?: unknown }).body)).toContain(TARGET_IMMUTABLE_MESSAGE.slice(0, 40));
      expect((await w.getCase('pinned-target')).spec.target).toMatchObject({ pod: 'flip' });
    });
  });

  it('a quarantine label an attacker writes on an innocent pod detaches nothing and contains nothing', async () => {
    const innocent = await pod('innocent', 'n7');
    // Names the contained db-0 case; that case pinned another UID, so nothing happens to either.
    await w.core.patchNamespacedPod(
      {
        namespace: 'shop',
        name: 'innocent',
        body: { metadata: { labels: { [CASE_LABEL]: 'repair', [QUARANTINE_LABEL]: 'true' } } },
      },
      mergePatch,
    );
    await w.patchCaseSpec('repair', { reason: 'provoke a pass' });
    await waitFor(
      'pass seen',
      () => w.getCase('repair'),
      (c) => c.status?.observedGeneration === 2,
    );
    const db = await w.core.readNamespacedPod({ namespace: 'shop', name: 'db-0' });
    expect(db.metadata?.labels?.[CASE_LABEL]).toBe('repair');
    const after = await w.core.readNamespacedPod({ namespace: 'shop', name: 'innocent' });
    expect(after.metadata?.labels).toEqual({
      app: 'innocent',
      [CASE_LABEL]: 'repair',
      [QUARANTINE_LABEL]: 'true',
    });
    expect(after.metadata?.uid).toBe(innocent.metadata?.uid);
    expect(holdersOf(await w.core.readNode({ name: 'n7' }))).toEqual([]);
  });
});
