/**
 * The otel_trace tests' fixture builder: test/fixtures/go/otelapi (an HTTP server whose handler makes spans by hand
 * with the OpenTelemetry Go API, no SDK), per Go version and go.opentelemetry.io/otel release. Kept beside the
 * otel_trace tests rather than in fixtures.ts, which several helpers edit at once.
 */
import { buildGoFixture } from "./GoFixture.ts"

/** The release the fixture's go.mod pins (it needs Go 1.26: older Go builds take `otel`, e.g. "1.30.0"). */
export const PINNED = "1.47.0"

/**
 * Builds the fixture with Go `version` (test/.cache/otelapi/<version>/otelapi; `otelapi-stripped` with `stripped`,
 * `otelapi-pie` with `pie`) and returns the binary's path. `otel` (e.g. "1.30.0") builds it against that release of
 * go.opentelemetry.io/otel (and its trace module) instead, with a fresh go.mod so the release's own requirements
 * decide the rest (`otelapi-<otel>`).
 */
export const buildOtelApi = (
  version: string,
  options: { readonly stripped?: boolean; readonly pie?: boolean; readonly otel?: string } = {}
): string =>
  buildGoFixture("otelapi", version, {
    ...(options.stripped === undefined ? {} : { stripped: options.stripped }),
    ...(options.pie === undefined ? {} : { pie: options.pie }),
    ...(options.otel === undefined ? {} : {
      release: {
        tag: options.otel,
        get: [`go.opentelemetry.io/otel@v${options.otel}`, `go.opentelemetry.io/otel/trace@v${options.otel}`],
        module: "probescope.test/otelapi"
      }
    })
  })
