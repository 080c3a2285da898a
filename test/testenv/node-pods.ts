import { CoreV1Api, Exec, type KubeConfig, type V1Pod, type V1Status } from '@kubernetes/client-node';
import { PassThrough } from 'node:stream';
import { NODE_NAME } from './node.js';
import { waitFor } from './wait.js';

/** Pods on the real node (test/testenv/node.ts): images are imported, never pulled. */
export class NodePods {
  readonly core: CoreV1Api;

  constructor(private readonly kc: KubeConfig) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** Creates a pod on the node running `command` in `image`; resolves once it is Ready. */
  async run(
    namespace: string,
    name: string,
    image: string,
    command: string[],
    opts: {
      labels?: Record<string, string>;
      restartPolicy?: 'Always' | 'Never';
      waitFor?: 'Ready' | 'Done';
    } = {},
  ): Promise<V1Pod> {
    await this.core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name, labels: opts.labels ?? { app: name } },
        spec: {
          nodeName: NODE_NAME,
          restartPolicy: opts.restartPolicy ?? 'Always',
          terminationGracePeriodSeconds: 0,
          enableServiceLinks: false,
          automountServiceAccountToken: false,
          containers: [{ name: 'main', image, imagePullPolicy: 'Never', command }],
        },
      },
    });
    return opts.waitFor === 'Done' ? this.waitDone(namespace, name) : this.waitReady(namespace, name);
  }

  async waitReady(namespace: string, name: string, timeoutMs = 60_000): Promise<V1Pod> {
    try {
      return await waitFor(
        `pod ${namespace}/${name} Ready`,
        () => this.core.readNamespacedPod({ namespace, name }),
        (p) =>
          !!p.status?.podIP &&
          (p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false),
        timeoutMs,
      );
    } catch (err) {
      // The object's managed fields hide what matters: say what its containers are doing.
      const pod = await this.core.readNamespacedPod({ namespace, name }).catch(() => undefined);
      const log = await this.logs(namespace, name).catch(() => '');
      throw new Error(
        `pod ${namespace}/${name} not Ready after ${timeoutMs} ms: ${JSON.stringify(pod?.status?.containerStatuses)}; log: ${log.slice(-500)}`,
        { cause: err },
      );
    }
  }

  /** Waits for a restartPolicy: Never pod to finish (Succeeded or Failed). */
  waitDone(namespace: string, name: string, timeoutMs = 60_000): Promise<V1Pod> {
    return waitFor(
      `pod ${namespace}/${name} finished`,
      () => this.core.readNamespacedPod({ namespace, name }),
      (p) => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed',
      timeoutMs,
    );
  }

  /** The container's log through the API server and the kubelet (what `kubectl logs` reads). */
  logs(namespace: string, name: string, previous = false): Promise<string> {
    return this.core.readNamespacedPodLog({ namespace, name, container: 'main', previous });
  }

  /** Runs `command` in the pod's container through the API server and the kubelet (`kubectl exec`). */
  async exec(
    namespace: string,
    name: string,
    command: string[],
    timeoutMs = 30_000,
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (d: Buffer) => (out += d.toString()));
    stderr.on('data', (d: Buffer) => (err += d.toString()));
    // The status arrives on its own channel; the output is complete once the socket closes.
    const status = await new Promise<V1Status>((resolve, reject) => {
      let last: V1Status | undefined;
      const timer = setTimeout(
        () => reject(new Error(`exec ${command.join(' ')} in ${name}: not done after ${timeoutMs} ms`)),
        timeoutMs,
      );
      new Exec(this.kc)
        .exec(namespace, name, 'main', command, stdout, stderr, null, false, (s) => (last = s))
        .then((ws) =>
          ws.once('close', () => {
            clearTimeout(timer);
            if (last) resolve(last);
            else reject(new Error(`exec ${command.join(' ')} in ${name}: closed without a status`));
          }),
        )
        .catch((e: unknown) => {
          clearTimeout(timer);
          reject(e instanceof Error ? e : new Error(String(e)));
        });
    });
    return { code: exitCode(status), stdout: out, stderr: err };
  }
}

/** The exit code in an exec's final status: Success is 0, otherwise the ExitCode cause. */
function exitCode(status: V1Status): number {
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  return cause?.message ? Number(cause.message) : -1;
}
