import { CASE_NAME_MAX, CASE_NAME_TOO_LONG_MESSAGE, type ForensicCase } from '../api/forensiccase.js';

/**
 * Protected unless configured otherwise: the namespaces Falco's and Falcosidekick's Helm charts
 * are installed in by their documentation (`falcosidekick` is a subchart of `falco`, or its own
 * release). An attacker who could get the detector or its forwarder contained would blind the
 * responder (e.g. with a refused API request that names a Falco pod, ADR 0011).
 */
export const DEFAULT_PROTECTED_NAMESPACES: readonly string[] = ['falco', 'falcosidekick'];

export interface SafetyConfig {
  /** Amber's own namespace: never contained, so an attacker cannot blind the responder. */
  operatorNamespace: string;
  /** kube-system is protected unless an administrator opts in. */
  allowKubeSystem: boolean;
  /** Further namespaces no case may touch (the operator's default: DEFAULT_PROTECTED_NAMESPACES). */
  protectedNamespaces: string[];
}

/** Why a case must not be acted on (a terminal refusal), or undefined when it may. */
export function refusal(
  kase: ForensicCase,
  cfg: SafetyConfig,
): { reason: string; message: string } | undefined {
  // The CRD refuses such names; a case created before that rule must not fail silently.
  if (kase.metadata.name.length > CASE_NAME_MAX)
    return { reason: 'InvalidSpec', message: CASE_NAME_TOO_LONG_MESSAGE };
  const ns = kase.spec.target.namespace;
  if (ns === cfg.operatorNamespace)
    return { reason: 'ProtectedNamespace', message: `namespace ${ns} is Amber's own and is never contained` };
  if (ns === 'kube-system' && !cfg.allowKubeSystem)
    return {
      reason: 'ProtectedNamespace',
      message: 'namespace kube-system is protected (opt in with --allow-kube-system)',
    };
  if (cfg.protectedNamespaces.includes(ns))
    return { reason: 'ProtectedNamespace', message: `namespace ${ns} is protected by configuration` };
  const store = kase.spec.evidence.store;
  if (kase.spec.collection.enabled && store.type === 's3' && !store.bucket && store.endpoint)
    return { reason: 'InvalidSpec', message: 'spec.evidence.store.bucket is required for an s3 store' };
  if (store.type === 'local' && store.path && !store.path.startsWith('/'))
    return { reason: 'InvalidSpec', message: 'spec.evidence.store.path must be an absolute path' };
  return undefined;
}
