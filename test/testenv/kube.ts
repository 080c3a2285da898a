import type { KubeConfig } from '@kubernetes/client-node';
import { PooledKubeConfig } from '../../src/kube/config.js';
import { readFileSync, mkdtempSync, rmSync, mkdirSync, writeFileSync, readdirSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { binary, versions } from './binaries.js';
import { freePort } from './ports.js';
import { ManagedProcess } from './process.js';
import { TestPki } from './pki.js';

export interface ClusterOptions {
  /** kube-controller-manager: turns Deployments, ReplicaSets and Jobs into Pods. */
  controllerManager?: boolean;
  /** kwok: keeps Nodes annotated `kwok.x-k8s.io/node: fake` Ready and runs their Pods. */
  kwok?: boolean;
  /**
   * A real kubelet will join (test/testenv/node.ts): the Node authorizer, and the client
   * certificate the API server shows kubelets for logs, exec and checkpoints.
   */
  realNode?: boolean;
  /**
   * Write an audit log of every write request (create, update, patch, delete) at Metadata level
   * to `auditLogPath`: benchmarks count API writes per verb and object from it.
   */
  auditLog?: boolean;
}

/**
 * A real control plane for one test file, started like controller-runtime's envtest:
 * etcd + kube-apiserver (+ kube-controller-manager, kwok), in a temp dir on free ports.
 */
export class Cluster {
  private etcd?: ManagedProcess;
  private apiserver?: ManagedProcess;
  private readonly others: ManagedProcess[] = [];
  readonly server: string;
  readonly kubeconfigPath: string;
  private readonly admin: { cert: string; key: string };
  private realNode = false;
  private auditLog = false;
  /** The audit log (JSON lines) when started with `auditLog`. */
  readonly auditLogPath: string;

  private constructor(
    readonly dir: string,
    readonly pki: TestPki,
    private readonly ports: { etcd: number; etcdPeer: number; api: number },
    private readonly sa: { privateKey: string; publicKey: string },
  ) {
    this.server = `https://127.0.0.1:${ports.api}`;
    this.admin = pki.issue('admin', { cn: 'amber-test-admin', org: ['system:masters'] });
    this.kubeconfigPath = join(dir, 'admin.kubeconfig');
    this.auditLogPath = join(dir, 'audit.log');
    // exportConfig inlines the certificates: a kubeconfig any client (kubectl, kwok) reads.
    writeFileSync(this.kubeconfigPath, this.configFor(this.admin).exportConfig());
  }

  static async start(opts: ClusterOptions = {}): Promise<Cluster> {
    const dir = mkdtempSync(join(tmpdir(), 'amber-cluster-'));
    const pki = new TestPki(dir);
    const ports = { etcd: await freePort(), etcdPeer: await freePort(), api: await freePort() };
    const cluster = new Cluster(dir, pki, ports, pki.serviceAccountKeys());
    cluster.realNode = opts.realNode ?? false;
    cluster.auditLog = opts.auditLog ?? false;
    try {
      await cluster.startEtcd();
      await cluster.startApiServer();
      if (opts.controllerManager) await cluster.startControllerManager();
      if (opts.kwok) await cluster.startKwok();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** An admin (system:masters) client configuration. */
  kubeConfig(): KubeConfig {
    return this.configFor(this.admin);
  }

  /** A client configuration for a user with only the rights RBAC grants it. */
  userKubeConfig(user: string, groups: string[] = []): KubeConfig {
    const name = `user-${user.replace(/[^a-z0-9-]/gi, '_')}`;
    return this.configFor(this.pki.issue(name, { cn: user, org: groups }));
  }

  /** A kubeconfig file's content for a certificate issued by `pki` (a kubelet's node identity). */
  kubeConfigFile(id: { cert: string; key: string }): string {
    return this.configFor(id).exportConfig();
  }

  private configFor(id: { cert: string; key: string }): KubeConfig {
    const kc = new PooledKubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'test', server: this.server, caData: b64(this.pki.caCert), skipTLSVerify: false }],
      users: [{ name: 'user', certData: b64(id.cert), keyData: b64(id.key) }],
      contexts: [{ name: 'test', cluster: 'test', user: 'user' }],
      currentContext: 'test',
    });
    return kc;
  }

  private async startEtcd(): Promise<void> {
    const data = join(this.dir, 'etcd');
    mkdirSync(data, { recursive: true });
    const url = `http://127.0.0.1:${this.ports.etcd}`;
    this.etcd = ManagedProcess.start(
      'etcd',
      process.env.AMBER_ETCD ?? binary('etcd'),
      [
        '--data-dir',
        data,
        '--listen-client-urls',
        url,
        '--advertise-client-urls',
        url,
        '--listen-peer-urls',
        `http://127.0.0.1:${this.ports.etcdPeer}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${this.ports.etcdPeer}`,
        '--initial-cluster',
        `default=http://127.0.0.1:${this.ports.etcdPeer}`,
        '--unsafe-no-fsync',
      ],
      { logFile: join(this.dir, 'etcd.log') },
    );
    await this.etcd.waitUntil(async () => (await fetch(`${url}/health`)).ok);
  }

  async startApiServer(): Promise<void> {
    const serving = this.pki.issue('apiserver', { cn: 'kube-apiserver' }, ['127.0.0.1', 'localhost']);
    const kubeletAccess = this.realNode ? this.kubeletAccessFlags() : ['--authorization-mode=RBAC'];
    const audit = this.auditLog ? this.auditFlags() : [];
    this.apiserver = ManagedProcess.start(
      'kube-apiserver',
      binary('kube', 'kube-apiserver'),
      [
        `--etcd-servers=http://127.0.0.1:${this.ports.etcd}`,
        `--secure-port=${this.ports.api}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--tls-cert-file=${serving.cert}`,
        `--tls-private-key-file=${serving.key}`,
        `--client-ca-file=${this.pki.caCert}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--allow-privileged=true',
        ...kubeletAccess,
        ...audit,
        '--disable-admission-plugins=ServiceAccount',
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${this.sa.publicKey}`,
        `--service-account-signing-key-file=${this.sa.privateKey}`,
        `--cert-dir=${join(this.dir, 'apiserver-certs')}`,
        '--enable-priority-and-fairness=false',
        '--profiling=false',
        '--v=1',
      ],
      { logFile: join(this.dir, 'kube-apiserver.log') },
    );
    await this.apiserver.waitUntil(() => this.healthy('/readyz'), 90_000);
  }

  private auditFlags(): string[] {
    const policy = join(this.dir, 'audit-policy.yaml');
    writeFileSync(
      policy,
      [
        'apiVersion: audit.k8s.io/v1',
        'kind: Policy',
        'omitStages: [RequestReceived]',
        'rules:',
        '  - level: Metadata',
        '    verbs: [create, update, patch, delete, deletecollection]',
        '  - level: None',
        '',
      ].join('\n'),
    );
    return [
      `--audit-policy-file=${policy}`,
      `--audit-log-path=${this.auditLogPath}`,
      '--audit-log-format=json',
      '--audit-log-mode=blocking',
    ];
  }

  private kubeletAccessFlags(): string[] {
    // The kubelet authorizes this user with a SubjectAccessReview: system:masters may do anything.
    const client = this.pki.issue('apiserver-kubelet-client', {
      cn: 'kube-apiserver-kubelet-client',
      org: ['system:masters'],
    });
    return [
      '--authorization-mode=Node,RBAC',
      `--kubelet-client-certificate=${client.cert}`,
      `--kubelet-client-key=${client.key}`,
      `--kubelet-certificate-authority=${this.pki.caCert}`,
      '--kubelet-preferred-address-types=InternalIP',
    ];
  }

  /** Stops the API server only (etcd keeps the data): for watch/relist and outage tests. */
  async stopApiServer(): Promise<void> {
    await this.apiserver?.stop();
  }

  private async startControllerManager(): Promise<void> {
    const p = ManagedProcess.start(
      'kube-controller-manager',
      binary('kube', 'kube-controller-manager'),
      [
        `--kubeconfig=${this.kubeconfigPath}`,
        '--leader-elect=false',
        `--service-account-private-key-file=${this.sa.privateKey}`,
        `--root-ca-file=${this.pki.caCert}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${await freePort()}`,
        '--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-persistentvolume-binder,-attachdetach',
        '--concurrent-replicaset-syncs=10',
        '--concurrent-job-syncs=10',
        '--v=1',
      ],
      { logFile: join(this.dir, 'kube-controller-manager.log') },
    );
    this.others.push(p);
    await p.waitUntil(
      async () =>
        /Started controller|Starting controller|informers synced|Caches are synced/i.test(p.logTail(500)),
      60_000,
    );
  }

  private async startKwok(): Promise<void> {
    const stages = join(dirname(binary('kwok')), 'stages');
    const p = ManagedProcess.start(
      'kwok',
      binary('kwok'),
      [
        `--kubeconfig=${this.kubeconfigPath}`,
        '--manage-all-nodes=false',
        '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
        '--cidr=10.0.1.0/24',
        '--node-ip=127.0.0.1',
        `--server-address=127.0.0.1:${await freePort()}`,
        ...readdirSync(stages).map((f) => `--config=${join(stages, f)}`),
      ],
      { logFile: join(this.dir, 'kwok.log') },
    );
    this.others.push(p);
    await p.waitUntil(async () => /Starting|started|Watching/i.test(p.logTail(200)), 30_000);
  }

  private healthy(path: string): Promise<boolean> {
    return new Promise((resolve) => {
      const req = request(
        `${this.server}${path}`,
        {
          ca: readFileSync(this.pki.caCert),
          cert: readFileSync(this.admin.cert),
          key: readFileSync(this.admin.key),
          timeout: 2000,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        },
      );
      req.on('error', () => resolve(false));
      req.end();
    });
  }

  async stop(): Promise<void> {
    for (const p of this.others.reverse()) await p.stop();
    await this.apiserver?.stop();
    await this.etcd?.stop();
    if (!process.env.AMBER_KEEP_TESTENV) rmSync(this.dir, { recursive: true, force: true });
  }
}

export function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  return Cluster.start(opts);
}

export const kubeVersion = versions.kube;

function b64(path: string): string {
  return readFileSync(path).toString('base64');
}
