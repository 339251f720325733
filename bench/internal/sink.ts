/**
 * A local OTLP sink for the benchmarks: OTLP/HTTP (protobuf and JSON) and OTLP/gRPC endpoints on loopback, in a child
 * process of its own so its CPU is not counted as the measured process's, that count the spans they receive (trace
 * requests only: `/v1/traces` or the gRPC trace service; metrics and logs are answered and not counted).
 *
 * The sink runs at the idle scheduling policy (SCHED_IDLE, through util-linux's `chrt`): it stands in for a
 * collector, which users run on another host or at least outside the traced service's budget, and its own work (a
 * JSON request is parsed whole to count its spans: a few milliseconds per batch) would otherwise land in the target's
 * latency as if the agent had spent it. Nice 19 was not enough: the kernel's EEVDF scheduler lets a running task of
 * any weight finish its slice (~1.4 ms here) before a request's thread that wakes gets the CPU, which is why the agent
 * gives way with the same policy (docs/benchmarks.md, "Giving way with SCHED_IDLE"). `BENCH_SINK_POLICY=other`
 * keeps the usual policy at `BENCH_SINK_NICE` (-20 to 19, default 19). A bench that fills the host on purpose starts
 * it at the usual policy and a high priority (`start`'s `nice`), so that the stand-in for a remote collector is not
 * starved by this host's load.
 *
 *   const sink = await Sink.start()   // sink.httpUrl, sink.grpcUrl, await sink.spans(), sink.stop()
 */
import { fork } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as http2 from "node:http2"
import type { AddressInfo } from "node:net"
import * as os from "node:os"

/** Calls `f` with each length-delimited `field` of a protobuf message. */
const eachField = (b: Uint8Array, field: number, f: (sub: Uint8Array) => void) => {
  let at = 0
  const varint = () => {
    let v = 0
    let scale = 1
    while (true) {
      const byte = b[at++]!
      v += (byte & 0x7f) * scale
      scale *= 128
      if (byte < 0x80) return v
    }
  }
  while (at < b.length) {
    const key = varint()
    const wire = key & 7
    if (wire === 0) varint()
    else if (wire === 1) at += 8
    else if (wire === 5) at += 4
    else {
      const len = varint()
      if (key >>> 3 === field) f(b.subarray(at, at + len))
      at += len
    }
  }
}

/** ExportTraceServiceRequest: resource_spans (1) → scope_spans (2) → spans (2). */
const countProtobuf = (body: Uint8Array) => {
  let n = 0
  eachField(body, 1, (rs) => eachField(rs, 2, (ss) => eachField(ss, 2, () => void n++)))
  return n
}

const countJson = (body: Buffer) => {
  let n = 0
  for (const rs of JSON.parse(body.toString("utf8")).resourceSpans) for (const ss of rs.scopeSpans) n += ss.spans.length
  return n
}

/** The child's side. */
const serve = (nice: number) => {
  // Nice is per thread on Linux: every thread the child has (V8's and libuv's helpers included) is set.
  for (const tid of fs.readdirSync("/proc/self/task")) {
    try {
      os.setPriority(Number(tid), nice)
    } catch (e) {
      // A thread that ended since the listing (ESRCH) needs no priority; anything else is the bench's failure.
      if ((e as { info?: { code?: string } }).info?.code !== "ESRCH") throw e
    }
  }
  let spans = 0
  const httpServer = http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      if (req.url?.endsWith("/v1/traces")) {
        const body = Buffer.concat(chunks)
        spans += req.headers["content-type"] === "application/json" ? countJson(body) : countProtobuf(body)
      }
      res.writeHead(200, { "content-type": req.headers["content-type"] ?? "application/x-protobuf" }).end()
    })
  })
  const grpcServer = http2.createServer()
  grpcServer.on("stream", (stream, headers) => {
    const chunks: Array<Buffer> = []
    stream.on("data", (c: Buffer) => chunks.push(c))
    stream.on("end", () => {
      if (String(headers[":path"]).includes("TraceService")) spans += countProtobuf(Buffer.concat(chunks).subarray(5))
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true })
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }))
      stream.end(Buffer.alloc(5))
    })
  })
  process.on("message", (m) => {
    if (m === "count") process.send!({ spans })
  })
  process.on("disconnect", () => process.exit(0))
  httpServer.listen(0, "127.0.0.1", () =>
    grpcServer.listen(0, "127.0.0.1", () =>
      process.send!({
        http: (httpServer.address() as AddressInfo).port,
        grpc: (grpcServer.address() as AddressInfo).port
      })))
}

export interface Sink {
  /** OTLP/HTTP base URL (append `/v1/traces`, or give it as OTEL_EXPORTER_OTLP_ENDPOINT). */
  readonly httpUrl: string
  readonly grpcUrl: string
  /** Spans counted so far. */
  readonly spans: () => Promise<number>
  readonly stop: () => void
}

/** `options.nice`: the usual policy at this nice value (a bench that fills the host), not the idle policy. */
export const start = async (options: { readonly nice?: number } = {}): Promise<Sink> => {
  const nice = Number(process.env["BENCH_SINK_NICE"] ?? options.nice ?? 19)
  if (!Number.isInteger(nice) || nice < -20 || nice > 19) {
    throw new Error(`BENCH_SINK_NICE=${process.env["BENCH_SINK_NICE"]}: expected a whole number from -20 to 19`)
  }
  const policy = process.env["BENCH_SINK_POLICY"] ?? (options.nice === undefined ? "idle" : "other")
  if (policy !== "idle" && policy !== "other") {
    throw new Error(`BENCH_SINK_POLICY=${policy}: expected idle or other`)
  }
  // `chrt --idle 0 node …`: the policy is set before node starts, so every thread it makes inherits it.
  const idle = policy === "idle"
    ? { execPath: "chrt", execArgv: ["--idle", "0", process.execPath, ...process.execArgv] }
    : {}
  const child = fork(import.meta.filename, ["sink", String(nice)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    ...idle
  })
  const ports = await new Promise<{ http: number; grpc: number }>((resolve, reject) => {
    child.once("message", resolve as (m: unknown) => void)
    child.once("exit", (code) => reject(new Error(`the OTLP sink exited (${code}) before listening`)))
  })
  return {
    httpUrl: `http://127.0.0.1:${ports.http}`,
    grpcUrl: `http://127.0.0.1:${ports.grpc}`,
    spans: () =>
      new Promise<number>((resolve) => {
        child.once("message", (m: any) => resolve(m.spans))
        child.send("count")
      }),
    stop: () => void child.kill()
  }
}

if (process.argv[2] === "sink") serve(Number(process.argv[3] ?? 19))
