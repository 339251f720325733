/** How the tests compare a span the receiver got with the `SpanData` a probe handed to telemetry. */
import { assert } from "@effect/vitest"
import * as Ids from "../../src/probe/Ids.ts"
import type { SpanData } from "../../src/probe/Telemetry.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"
import type { ReceivedSpan } from "./Receiver.ts"

const kindName = { server: "SPAN_KIND_SERVER", client: "SPAN_KIND_CLIENT", producer: "SPAN_KIND_PRODUCER" } as const
const statusName = { unset: "STATUS_CODE_UNSET", ok: "STATUS_CODE_OK", error: "STATUS_CODE_ERROR" } as const

/**
 * `got` is `expected` as exported: same ids, name, kind, attributes and status, times moved by the clock offset, the
 * OTLP flags (low byte: W3C flags; 0x100: is-remote known; 0x200: parent is remote), the probe's scope.
 */
export const assertSpanAsSent = (
  got: ReceivedSpan,
  expected: SpanData,
  options: { readonly protocol: ReceivedSpan["protocol"]; readonly offsetNs: bigint }
) => {
  assert.strictEqual(got.protocol, options.protocol)
  assert.strictEqual(got.traceId, Ids.hex(expected.traceId))
  assert.strictEqual(got.spanId, Ids.hex(expected.spanId))
  assert.strictEqual(got.parentSpanId, Ids.hex(expected.parentSpanId ?? ""))
  assert.strictEqual(got.name, expected.name)
  assert.strictEqual(got.kind, kindName[expected.kind as keyof typeof kindName])
  assert.strictEqual(got.startTimeUnixNano, String(expected.startMonoNs + options.offsetNs))
  assert.strictEqual(got.endTimeUnixNano, String(expected.endMonoNs + options.offsetNs))
  assert.deepStrictEqual(got.attributes, expected.attributes)
  assert.strictEqual(got.status.code, statusName[expected.status.code])
  assert.strictEqual(got.status.message, expected.status.message ?? "")
  assert.strictEqual(got.flags, expected.traceFlags | 0x100 | (expected.parentIsRemote ? 0x200 : 0))
  assert.deepStrictEqual(got.scope, { name: `probescope/${expected.probe}`, version: ProcessResources.version })
}
