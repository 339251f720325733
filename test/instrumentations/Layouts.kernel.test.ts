/**
 * Every built-in probe (and the example probe) loaded into the real kernel (root) from its built object: each layout
 * it decodes records with or writes per-target values with is checked against that object's BTF at load, and agrees.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { WorkProbe } from "../../examples/custom-probe/WorkProbe.ts"
import { GoContext } from "../../src/instrumentations/GoContext.ts"
import { GoPanic } from "../../src/instrumentations/GoPanic.ts"
import { NetHttpClient } from "../../src/instrumentations/NetHttpClient.ts"
import { NetHttpServer } from "../../src/instrumentations/NetHttpServer.ts"
import { OpenSslHttp } from "../../src/instrumentations/OpenSslHttp.ts"
import { TcpMetrics } from "../../src/instrumentations/TcpMetrics.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"

const kernel = Layer.mergeAll(BpfLive.layer, TracingConfig.layer())

describe("built-in probes' layouts", () => {
  it.effect("match the BTF of the objects they load, and every one is checked", () =>
    Effect.gen(function*() {
      const checked = yield* Effect.gen(function*() {
        const probes = [
          yield* GoContext.tag,
          yield* NetHttpServer.tag,
          yield* NetHttpClient.tag,
          yield* GoPanic.tag,
          yield* OpenSslHttp.tag,
          yield* TcpMetrics.tag,
          yield* WorkProbe.tag
        ]
        const loaded = yield* Effect.forEach(probes, (p) => p.loader.load)
        return Object.fromEntries(probes.map((p, i) => [p.name, loaded[i]!.layouts]))
      }).pipe(
        Effect.provide(Layer.mergeAll(
          NetHttpServer.layer,
          NetHttpClient.layer,
          GoPanic.layer,
          OpenSslHttp.layer,
          TcpMetrics.layer,
          WorkProbe.layer,
          GoContext.layer
        )),
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
        go_panic: [
          { role: "record", struct: "go_panic_record", checked: true },
          { role: "perTarget", struct: "go_panic_target", checked: true }
        ],
        openssl_http: [
          { role: "record", struct: "openssl_http_record", checked: true },
          { role: "perTarget", struct: "openssl_http_target", checked: true }
        ],
        tcp_metrics: [
          { role: "record", struct: "tcp_metrics_record", checked: true },
          { role: "perTarget", struct: "tcp_metrics_target", checked: true }
        ],
        "example/work": [{ role: "record", struct: "work_record", checked: true }]
      })
    }))
})
