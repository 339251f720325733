/**
 * The OpenSSL HTTP probe without a kernel: records as the BPF side writes them (hand-made) turned into spans,
 * exactly; the HTTP/1 head parser's edge cases; the record layout against the built object's BTF; and whether the
 * manifest applies to a process by its libssl.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import * as Http1 from "../../src/instrumentations/internal/Http1.ts"
import * as OpenSsl from "../../src/instrumentations/OpenSslHttp.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { FakeKernel } from "../../src/kernel/BpfTest.ts"
import * as Binary from "../../src/probe/Binary.ts"
import * as Manifest from "../../src/probe/Manifest.ts"
import * as Probe from "../../src/probe/Probe.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans } from "../../src/probe/ProbeTest.ts"
import * as Ids from "../../src/probe/Ids.ts"

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN = "00f067aa0ba902b7"
const PARENT = "a3ce929d0e0e4736"

/** A record as bpf/openssl_http.bpf.c submits it: the request's and the response's first bytes, cut at capture. */
const record = (o: {
  readonly side: "client" | "server"
  readonly request: string
  readonly response: string
  readonly parentSpanId?: string
}) =>
  OpenSsl.Record.encode({
    startNs: 1_000_000n,
    endNs: 1_250_000n,
    traceId: Ids.fromHex(TRACE),
    spanId: Ids.fromHex(SPAN),
    parentSpanId: Ids.fromHex(o.parentSpanId ?? "0000000000000000"),
    pid: 4242,
    tid: 4243,
    requestSeen: Buffer.byteLength(o.request),
    requestLen: 0,
    responseLen: 0,
    flags: 1,
    side: OpenSsl.Side[o.side],
    parent: o.parentSpanId === undefined ? 0 : 2,
    request: o.request,
    response: o.response
  })

const spansOf = (bytes: Uint8Array) => Effect.map(OpenSsl.OpenSslHttp.signals(bytes), (s) => ProbeTest.capturedSignals(s).spans)

const head = {
  pid: 4242,
  probe: "openssl_http",
  traceId: TRACE,
  spanId: SPAN,
  traceFlags: 1,
  startMonoNs: 1_000_000n,
  endMonoNs: 1_250_000n
}

const curlGet = (path: string) =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n`

describe("OpenSslHttp spans", () => {
  it.effect("a client exchange: a CLIENT span named by the method, url.full from the Host header", () =>
    Effect.gen(function*() {
      const spans = yield* spansOf(record({
        side: "client",
        request: curlGet("/items?id=7"),
        response: "HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.7\r\nDate: Thu, 26 Nov 2026"
      }))
      assert.deepStrictEqual(spans, [{
        ...head,
        name: "GET",
        kind: "client",
        attributes: {
          "http.request.method": "GET",
          "server.address": "127.0.0.1",
          "server.port": 8443,
          "url.full": "https://127.0.0.1:8443/items?id=7",
          "http.response.status_code": 200,
          "network.protocol.version": "1.1"
        },
        status: { code: "unset" }
      }])
    }))

  it.effect("a server exchange: a SERVER span with url.path/query/scheme and user_agent.original, child of the incoming traceparent", () =>
    Effect.gen(function*() {
      const spans = yield* spansOf(record({
        side: "server",
        parentSpanId: PARENT,
        request: `GET /search?q=x&sig=s3cr3t HTTP/1.1\r\nhost: example.test\r\nuser-agent: probe-test/1\r\n` +
          `traceparent: 00-${TRACE}-${PARENT}-01\r\n\r\n`,
        response: "HTTP/1.1 200 OK\r\n"
      }))
      assert.deepStrictEqual(spans, [{
        ...head,
        parentSpanId: PARENT,
        parentIsRemote: true,
        name: "GET",
        kind: "server",
        attributes: {
          "http.request.method": "GET",
          "server.address": "example.test",
          "url.path": "/search",
          "url.query": "q=x&sig=REDACTED",
          "url.scheme": "https",
          "user_agent.original": "probe-test/1",
          "http.response.status_code": 200,
          "network.protocol.version": "1.1"
        },
        status: { code: "unset" }
      }])
    }))

  it.effect("error status: a client's 404 and a server's 500 are errors, a server's 404 is not", () =>
    Effect.gen(function*() {
      const client404 = yield* spansOf(record({ side: "client", request: curlGet("/missing"), response: "HTTP/1.1 404 Not Found\r\n" }))
      const server404 = yield* spansOf(record({ side: "server", request: curlGet("/missing"), response: "HTTP/1.1 404 Not Found\r\n" }))
      const server500 = yield* spansOf(record({ side: "server", request: curlGet("/fail"), response: "HTTP/1.1 500 Internal Server Error\r\n" }))
      assert.deepStrictEqual(
        [client404[0]!.status, client404[0]!.attributes["error.type"]],
        [{ code: "error", message: "HTTP 404" }, "404"]
      )
      assert.deepStrictEqual([server404[0]!.status, server404[0]!.attributes["error.type"]], [{ code: "unset" }, undefined])
      assert.deepStrictEqual(server500[0]!.attributes, {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": 8443,
        "url.path": "/fail",
        "url.scheme": "https",
        "user_agent.original": "curl/7.88.1",
        "http.response.status_code": 500,
        "network.protocol.version": "1.1",
        "error.type": "500"
      })
      assert.deepStrictEqual(server500[0]!.status, { code: "error", message: "HTTP 500" })
    }))

  it.effect("each exchange is also one recording into the HTTP duration histogram of its side, low-cardinality", () =>
    Effect.gen(function*() {
      const server = yield* OpenSsl.OpenSslHttp.signals(
        record({ side: "server", request: curlGet("/fail"), response: "HTTP/1.1 500 Internal Server Error\r\n" })
      )
      const client = yield* OpenSsl.OpenSslHttp.signals(
        record({ side: "client", request: curlGet("/items?id=7"), response: "HTTP/1.1 200 OK\r\n" })
      )
      const durationOf = (s: typeof server) => Number(s.spans[0]!.endMonoNs - s.spans[0]!.startMonoNs) / 1e9
      assert.deepStrictEqual(server.measurements.map((m) => [m.instrument.name, m.value, m.pid, m.attributes]), [
        ["http.server.request.duration", durationOf(server), server.spans[0]!.pid, {
          "http.request.method": "GET",
          "url.scheme": "https",
          "http.response.status_code": 500,
          "network.protocol.version": "1.1",
          "error.type": "500"
        }]
      ])
      assert.deepStrictEqual(client.measurements.map((m) => [m.instrument.name, m.attributes]), [
        ["http.client.request.duration", {
          "http.request.method": "GET",
          "server.address": "127.0.0.1",
          "server.port": 8443,
          "http.response.status_code": 200
        }]
      ])
    }))

  it.effect("an unknown method is _OTHER with the original, and the span is named HTTP", () =>
    Effect.gen(function*() {
      const spans = yield* spansOf(record({
        side: "client",
        request: "PROPFIND /dav/ HTTP/1.1\r\nHost: files.test\r\n\r\n",
        response: "HTTP/1.1 207 Multi-Status\r\n"
      }))
      assert.strictEqual(spans[0]!.name, "HTTP")
      assert.deepStrictEqual(spans[0]!.attributes, {
        "http.request.method": "_OTHER",
        "http.request.method_original": "PROPFIND",
        "server.address": "files.test",
        "server.port": 443,
        "url.full": "https://files.test/dav/",
        "http.response.status_code": 207,
        "network.protocol.version": "1.1"
      })
    }))

  it.effect("an absolute-form target: its authority is the server, its credentials are not exported", () =>
    Effect.gen(function*() {
      const spans = yield* spansOf(record({
        side: "client",
        request: "GET https://user:pw@api.test:8443/v1?X-Goog-Signature=abc HTTP/1.1\r\nHost: api.test:8443\r\n\r\n",
        response: "HTTP/1.1 204 No Content\r\n"
      }))
      assert.deepStrictEqual(spans[0]!.attributes, {
        "http.request.method": "GET",
        "server.address": "api.test",
        "server.port": 8443,
        "url.full": "https://api.test:8443/v1?X-Goog-Signature=REDACTED",
        "http.response.status_code": 204,
        "network.protocol.version": "1.1"
      })
    }))

  it.effect("a head cut by the capture: the cut header line is left out, the rest is used", () =>
    Effect.gen(function*() {
      // Host first, then a header cut in the middle of its value.
      const spans = yield* spansOf(record({
        side: "server",
        request: "GET /a HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUser-Agent: cut-in-the-mid",
        response: "HTTP/1.1 200 OK\r\n"
      }))
      assert.deepStrictEqual(spans[0]!.attributes, {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": 9000,
        "url.path": "/a",
        "url.scheme": "https",
        "http.response.status_code": 200,
        "network.protocol.version": "1.1"
      })
    }))

  it.effect("an oversized request line: no truncated URL is exported, the method and the status still are", () =>
    Effect.gen(function*() {
      const long = `/${"x".repeat(700)}`
      const bytes = record({ side: "client", request: curlGet(long), response: "HTTP/1.1 414 URI Too Long\r\n" })
      // The capture holds the first 512 bytes only.
      assert.strictEqual(OpenSsl.Record.decode(bytes).requestLen, OpenSsl.REQUEST_CAPTURE)
      const spans = yield* spansOf(bytes)
      assert.deepStrictEqual(spans[0]!.attributes, {
        "http.request.method": "GET",
        "http.response.status_code": 414,
        "network.protocol.version": "1.1",
        "error.type": "414"
      })
    }))

  it.effect("a body after the head and a pipelined second request are not read: the span is the first request's", () =>
    Effect.gen(function*() {
      const request = "POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 21\r\n\r\n" +
        "Host: evil.test\r\n\r\nxx" + "GET /second HTTP/1.1\r\nHost: b.test\r\n\r\n"
      const spans = yield* spansOf(record({ side: "server", request, response: "HTTP/1.1 201 Created\r\n" }))
      assert.deepStrictEqual(spans[0]!.attributes, {
        "http.request.method": "POST",
        "server.address": "a.test",
        "url.path": "/upload",
        "url.scheme": "https",
        "http.response.status_code": 201,
        "network.protocol.version": "1.1"
      })
    }))

  it.effect("bytes beyond the named attributes are never exported: credentials, cookies, other headers, the body", () =>
    Effect.gen(function*() {
      const request = "POST /login?next=%2F HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nAuthorization: Bearer tok-SECRET\r\n" +
        "Cookie: session=SECRET\r\nX-Api-Key: SECRET\r\nContent-Type: application/json\r\n\r\n{\"password\":\"SECRET\"}"
      for (const side of ["client", "server"] as const) {
        const spans = yield* spansOf(record({ side, request, response: "HTTP/1.1 302 Found\r\nSet-Cookie: s=SECRET\r\n" }))
        assert.strictEqual(spans.length, 1)
        assert.notInclude(JSON.stringify(spans, (_, v) => typeof v === "bigint" ? String(v) : v), "SECRET", side)
      }
    }))

  it.effect("records that are not HTTP/1 after all are skipped", () =>
    Effect.gen(function*() {
      const notHttp = [
        "HELLO there\r\n\r\n", // a token and a space, but no request line
        "GET /a/b c HTTP/1.1\r\n\r\n", // a space inside the target
        "GET / SMTP/1.0\r\n\r\n",
        "\u0016\u0003\u0001\u0002\u0000"
      ]
      for (const request of notHttp) {
        assert.deepStrictEqual(yield* spansOf(record({ side: "client", request, response: "HTTP/1.1 200 OK\r\n" })), [], request)
      }
    }))

  it.effect("a status line the capture cut (or garbled) leaves the status out; the request's version stays", () =>
    Effect.gen(function*() {
      const spans = yield* spansOf(record({ side: "client", request: curlGet("/"), response: "HTTP/1.1 2" }))
      assert.deepStrictEqual(spans[0]!.attributes, {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": 8443,
        "url.full": "https://127.0.0.1:8443/",
        "network.protocol.version": "1.1"
      })
      assert.deepStrictEqual(spans[0]!.status, { code: "unset" })
    }))
})

describe("Http1 heads", () => {
  it("parses a request head: method, target, version, headers in order with lower-case names", () => {
    assert.deepStrictEqual(Http1.parseRequestHead("PUT /k?v=1 HTTP/1.0\r\nHost: h:1\r\nX-A:  b \r\n\r\nbody"), {
      method: "PUT",
      target: "/k?v=1",
      version: "1.0",
      headers: [["host", "h:1"], ["x-a", "b"]],
      complete: true
    })
  })

  it("a head split before its end: complete false, the last (partial) line left out", () => {
    assert.deepStrictEqual(Http1.parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nAcc"), {
      method: "GET",
      target: "/",
      version: "1.1",
      headers: [["host", "a"]],
      complete: false
    })
    // Cut inside the request line: only the method is known.
    assert.deepStrictEqual(Http1.parseRequestHead("DELETE /items/12"), {
      method: "DELETE",
      target: undefined,
      version: undefined,
      headers: [],
      complete: false
    })
  })

  it("a malformed header line ends the headers", () => {
    assert.deepStrictEqual(Http1.parseRequestHead("GET / HTTP/1.1\r\nA: 1\r\nnot a header\r\nB: 2\r\n\r\n")?.headers, [[
      "a",
      "1"
    ]])
  })

  it("status lines", () => {
    assert.deepStrictEqual(Http1.parseStatusLine("HTTP/1.1 503 Service Unavailable\r\n"), { version: "1.1", status: 503 })
    assert.deepStrictEqual(Http1.parseStatusLine("HTTP/1.0 200"), { version: "1.0", status: 200 })
    assert.strictEqual(Http1.parseStatusLine("HTTP/1.1 20"), undefined)
    assert.strictEqual(Http1.parseStatusLine("SSH-2.0-OpenSSH"), undefined)
  })

  it("URLs: url.full from Host and target, redaction of the sensitive query parameters", () => {
    assert.strictEqual(Http1.urlFull("https", "h:8443", "/p?a=1&Signature=x"), "https://h:8443/p?a=1&Signature=REDACTED")
    assert.strictEqual(Http1.urlFull("https", undefined, "/p"), undefined)
    assert.strictEqual(Http1.urlFull("https", "ignored", "http://u:p@h/x"), "http://h/x")
    assert.strictEqual(Http1.urlFull("https", "h", "*"), "https://h")
    assert.deepStrictEqual(Http1.splitTarget("/a?b=c?d"), { path: "/a", query: "b=c?d" })
    assert.strictEqual(Http1.redactQuery("AWSAccessKeyId=k&x=1&sig"), "AWSAccessKeyId=REDACTED&x=1&sig")
  })
})

describe("OpenSslHttp layout and manifest", () => {
  it.effect("the record and per-target layouts match the C structs of the built object's BTF", () =>
    Effect.gen(function*() {
      const btf = Option.getOrThrow(yield* BpfLive.readBtf(Probe.objectFile("openssl_http")).pipe(Effect.orDie))
      for (const layout of [OpenSsl.Record, OpenSsl.Target]) {
        const struct = btf.structs[layout.struct!]!
        assert.deepStrictEqual(Binary.check(layout, struct), [], layout.struct)
        assert.strictEqual(layout.size, struct.size)
      }
      assert.strictEqual(btf.mapValues["ps_targets"], OpenSsl.Target.struct)
    }))

  const libssl = (version: string | undefined) =>
    ProbeTest.target({
      language: "native",
      exe: "/usr/bin/curl",
      libraries: [{
        name: "libssl.so.3",
        ...(version === undefined ? {} : { version }),
        symbols: { SSL_write: 0x35980, SSL_read: 0x35430, SSL_write_ex: 0x35a10, SSL_read_ex: 0x354c0, SSL_free: 0x3b350 }
      }]
    })

  it("applies to a process mapping OpenSSL 3's libssl, Go or not", () => {
    const applies = Manifest.check("openssl_http", OpenSsl.manifest, libssl("3.0.0"))
    assert.strictEqual(applies._tag, "Applies")
    assert.deepStrictEqual(applies._tag === "Applies" ? applies.symbols : [], [
      "SSL_write",
      "SSL_read",
      "SSL_write_ex",
      "SSL_read_ex",
      "SSL_free"
    ])
  })

  it("an OpenSSL outside 3.x, or a libssl without a version, is not applicable, with the reason", () => {
    assert.deepStrictEqual(Manifest.check("openssl_http", OpenSsl.manifest, libssl("4.0.0")), {
      _tag: "NotApplicable",
      probe: "openssl_http",
      reason: "libssl.so.3 4.0.0 is outside the supported range >=3.0.0 <4"
    })
    assert.deepStrictEqual(Manifest.check("openssl_http", OpenSsl.manifest, libssl(undefined)), {
      _tag: "NotApplicable",
      probe: "openssl_http",
      reason: "libssl.so.3 exposes no version (no version text, no symbol versions): cannot check the supported " +
        "range >=3.0.0 <4"
    })
    assert.deepStrictEqual(Manifest.check("openssl_http", OpenSsl.manifest, ProbeTest.target({ language: "native" })), {
      _tag: "NotApplicable",
      probe: "openssl_http",
      reason: "shared library libssl.so.3 is not mapped by the process"
    })
  })
})

describe("OpenSslHttp on the fake kernel", () => {
  const run = <A, E>(self: Effect.Effect<A, E, any>) =>
    self.pipe(
      Effect.provide(OpenSsl.OpenSslHttp.layer.pipe(Layer.provideMerge(ProbeTest.layer))),
      Effect.scoped
    ) as Effect.Effect<A, E>

  it.effect("attaches entry and return probes on the process's libssl, then turns its records into spans", () =>
    run(Effect.gen(function*() {
      const kernel = yield* FakeKernel
      const probe = yield* OpenSsl.OpenSslHttp.tag
      const scope = yield* Scope.make()
      const lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
      yield* probe.attacher.attach(ProbeTest.target({
        pid: 4242,
        language: "native",
        exe: "/usr/bin/curl",
        libraries: [{ name: "libssl.so.3", version: "3.0.0", symbols: { SSL_write: 0x35980, SSL_read: 0x35430 } }]
      })).pipe(Scope.provide(scope))
      // The _ex variants and SSL_free are optional: this libssl lacks them, the probe still applies.
      assert.deepStrictEqual((yield* kernel.liveLinks).map((l) => [l.program, l.binary, l.offsets, l.pid, l.retprobe]), [
        ["uprobe_SSL_write", lib, [0x35980], 4242, undefined],
        ["uretprobe_SSL_write", lib, [0x35980], 4242, true],
        ["uprobe_SSL_read", lib, [0x35430], 4242, undefined],
        ["uretprobe_SSL_read", lib, [0x35430], 4242, true]
      ])
      assert.deepStrictEqual(
        [...(yield* kernel.map("openssl_http", "ps_targets")).values()],
        [OpenSsl.Target.encode({ enabled: 1 })]
      )

      yield* kernel.push("openssl_http", [
        record({ side: "client", request: "SSH-2.0-OpenSSH_9.2 x\r\n", response: "HTTP/1.1 200 OK\r\n" }),
        record({ side: "client", request: curlGet("/hello"), response: "HTTP/1.1 200 OK\r\n" })
      ])
      yield* Effect.forkChild(probe.runner.run)
      const [span] = yield* (yield* CapturedSpans).take(1)
      assert.deepStrictEqual([span!.kind, span!.attributes["url.full"]], ["client", "https://127.0.0.1:8443/hello"])
      const stats = yield* probe.runner.stats
      assert.deepStrictEqual([stats.records, stats.skipped, stats.decodeErrors], [1, 1, 0])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* kernel.liveLinks, [])
    })))
})
