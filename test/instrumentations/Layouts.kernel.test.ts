/**
 * Every built-in probe (and the example probe) loaded into the real kernel (root) from its built object: each layout
 * it decodes records with or writes per-target values with is checked against that object's BTF at load, and agrees.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { WorkProbe } from "../../examples/custom-probe/WorkProbe.ts"
import { GoContext } from "../../src/instrumentations/GoContext.ts"
import { NetHttpClient } from "../../src/instrumentations/NetHttpClient.ts"
import { NetHttpServer } from "../../src/instrumentations/NetHttpServer.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"

const kernel = Layer.mergeAll(BpfLive.layer, TracingConfig.layer())

describe("built-in probes' layouts", () => {
  it.effect("match the BTF of the objects they load, and every one is checked", () =>
    Effect.gen(function*() {
      const checked = yield* Effect.gen(function*() {
        const probes = [yield* GoContext.tag, yield* NetHttpServer.tag, yield* NetHttpClient.tag, yield* WorkProbe.tag]
        return Object.fromEntries(probes.map((p) => [p.name, p.loaded.layouts]))
      }).pipe(
        Effect.provide(Layer.mergeAll(NetHttpServer.layer, NetHttpClient.layer, WorkProbe.layer, GoContext.layer)),
        Effect.provide(kernel)
      )
      assert.deepStrictEqual(checked, {
        go_context: [],
        nethttp_server: [
          { role: "record", struct: "nethttp_server_record", checked: true },
          { role: "perTarget", struct: "nethttp_server_offsets", checked: true }
        ],
        nethttp_client: [
          { role: "record", struct: "nethttp_client_record", checked: true },
          { role: "perTarget", struct: "nethttp_client_offsets", checked: true }
        ],
        "example/work": [{ role: "record", struct: "work_record", checked: true }]
      })
    }))
})
