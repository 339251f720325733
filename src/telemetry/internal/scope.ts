/**
 * The instrumentation scope of a probe's telemetry (`probescope/<probe>` and the probescope version), one object per
 * probe and version: the OpenTelemetry exporters group spans and log records by the scope object's identity, so a
 * fresh object per item would put every item in a ScopeSpans (ScopeLogs) of its own.
 */
export interface Scope {
  readonly name: string
  readonly version: string
}

const scopes = new Map<string, Scope>()

export const scopeOf = (probe: string, version: string): Scope => {
  const key = `${probe}\u0000${version}`
  let scope = scopes.get(key)
  if (scope === undefined) {
    scope = { name: `probescope/${probe}`, version }
    scopes.set(key, scope)
  }
  return scope
}
