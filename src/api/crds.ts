import { crdFor } from './crd.js';
import {
  CASE_NAME_TOO_LONG_MESSAGE,
  FORENSIC_CASE,
  ForensicCaseSpec,
  ForensicCaseStatus,
} from './forensiccase.js';
import { RESPONSE_POLICY, ResponsePolicySpec, ResponsePolicyStatus } from './responsepolicy.js';

/** Every CRD Amber owns, keyed by the file it is written to in crds/. */
export function allCrds(): Record<string, Record<string, unknown>> {
  return {
    'forensiccases.yaml': crdFor(
      FORENSIC_CASE,
      ForensicCaseSpec,
      ForensicCaseStatus,
      [
        { name: 'Namespace', type: 'string', jsonPath: '.spec.target.namespace' },
        { name: 'Pod', type: 'string', jsonPath: '.spec.target.pod' },
        { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
        // Why a case is Failed, SealedIncomplete, Tampered, ... without a describe.
        { name: 'Reason', type: 'string', jsonPath: '.status.reason' },
        { name: 'Node', type: 'string', jsonPath: '.status.node' },
        { name: 'Alerts', type: 'integer', jsonPath: '.status.alerts.count', priority: 1 },
        { name: 'Message', type: 'string', jsonPath: '.status.message', priority: 1 },
        { name: 'Opened-For', type: 'string', jsonPath: '.spec.reason', priority: 1 },
      ],
      [{ rule: 'self.metadata.name.size() <= 63', message: CASE_NAME_TOO_LONG_MESSAGE }],
    ),
    'responsepolicies.yaml': crdFor(RESPONSE_POLICY, ResponsePolicySpec, ResponsePolicyStatus, [
      { name: 'Priority', type: 'integer', jsonPath: '.spec.priority' },
      { name: 'DryRun', type: 'boolean', jsonPath: '.spec.dryRun' },
      { name: 'InForce', type: 'string', jsonPath: '.status.conditions[?(@.type=="InForce")].status' },
      { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="InForce")].reason' },
    ]),
  };
}
