/** A real Disallowed K8s User event aimed at a pod (test/fixtures/falco/SOURCE.md says how). */
export function aimAtPod(body: Buffer | string, namespace = 'shop', pod = 'web-0'): string {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  const aimed = text
    .replace(/"ka\.target\.name":"[^"]*"/, `"ka.target.name":"${pod}","ka.target.namespace":"${namespace}"`)
    .replace(/"ka\.target\.resource":"[^"]*"/, '"ka.target.resource":"pods"');
  if (aimed === text) throw new Error('not an audit event with ka.target.*');
  return aimed;
}
