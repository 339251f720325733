/**
 * Fake Go targets and records built exactly as the BPF programs lay them out (through the probes' own layouts), and
 * the example service built per Go version.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { buildGoFixture, newestSource } from "./GoFixture.ts"
import * as NetHttpClient from "../../src/instrumentations/NetHttpClient.ts"
import * as NetHttpServer from "../../src/instrumentations/NetHttpServer.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import * as Ids from "../../src/probe/Ids.ts"

/** Struct offsets of Go 1.26 amd64 (read from the example service's DWARF). */
export const go126Fields = {
  "net/http.Request.Method": 0,
  "net/http.Request.URL": 16,
  "net/http.Request.ProtoMajor": 40,
  "net/http.Request.ProtoMinor": 48,
  "net/http.Request.Header": 56,
  "net/http.Request.Host": 128,
  "net/http.Request.RemoteAddr": 176,
  "net/http.Request.TLS": 208,
  "net/http.Request.Pattern": 232,
  "net/url.URL.Scheme": 0,
  "net/url.URL.Host": 40,
  "net/url.URL.Path": 56,
  "net/url.URL.RawQuery": 88,
  "net/http.response.status": 120,
  "net/http.Response.StatusCode": 16,
  "net/http.response.conn": 0,
  "net/http.conn.rwc": 16,
  "net/http.persistConn.conn": 80,
  "net.TCPConn.conn": 0,
  "net.conn.fd": 0,
  "net.netFD.family": 56,
  "net.netFD.sotype": 64,
  "net.netFD.laddr": 96,
  "net.netFD.raddr": 112,
  "net.TCPAddr.IP": 0,
  "net.TCPAddr.Port": 24
}

export const functions = {
  "runtime.newproc1": { entryOffset: 0x5ab6a, returnOffsets: [0x5afe6] },
  "net/http.serverHandler.ServeHTTP": { entryOffset: 0x280e0a, returnOffsets: [0x280e93] },
  "net/http.(*Transport).roundTrip": { entryOffset: 0x2714d2, returnOffsets: [0x271718, 0x271816] },
  "net/http.(*persistConn).roundTrip": { entryOffset: 0x275a6a, returnOffsets: [0x276187] },
  "net/http.Header.writeSubset": { entryOffset: 0x2506f2, returnOffsets: [0x250ba0] }
}

export const goTarget = (pid: number, goVersion = "1.26.8") =>
  ProbeTest.target({ pid, goVersion, functions, fields: go126Fields })

type ServerRecord = NetHttpServer.Record
type ClientRecord = NetHttpClient.Record

const head = {
  startNs: 1_000_000n,
  endNs: 1_250_000n,
  traceId: Ids.fromHex("0af7651916cd43dd8448eb211c80319c"),
  spanId: Ids.fromHex("b7ad6b7169203331"),
  parentSpanId: Ids.fromHex("0000000000000000"),
  pid: 4242,
  flags: 1,
  parent: 0,
  status: 200
}

/** A server record as bytes; lengths are set from the strings by the layout's encoder. */
export const serverRecord = (over: Partial<ServerRecord> = {}): Uint8Array =>
  NetHttpServer.Record.encode({
    ...head,
    protoMajor: 1,
    protoMinor: 1,
    tls: false,
    methodLen: 0,
    pathLen: 0,
    hostLen: 0,
    remoteLen: 0,
    patternLen: 0,
    schemeLen: 0,
    linked: false,
    method: "GET",
    path: "/users/7",
    host: "127.0.0.1:8080",
    remote: "127.0.0.1:51234",
    pattern: "GET /users/{id}",
    scheme: "",
    ...over
  })

/** A client record as bytes. */
export const clientRecord = (over: Partial<ClientRecord> = {}): Uint8Array =>
  NetHttpClient.Record.encode({
    ...head,
    spanId: Ids.fromHex("1111111111111111"),
    parentSpanId: Ids.fromHex("b7ad6b7169203331"),
    parent: 1,
    hasError: false,
    methodLen: 0,
    schemeLen: 0,
    hostLen: 0,
    pathLen: 0,
    queryLen: 0,
    propagated: false,
    linked: false,
    localPort: 0,
    method: "GET",
    scheme: "http",
    host: "127.0.0.1:8081",
    path: "/users/7",
    query: "",
    ...over
  })

const repoRoot = path.resolve(import.meta.dirname, "../..")
const exampleDir = path.join(repoRoot, "examples", "go-service")
/** Where `buildExample` caches its binaries, one folder per Go version. */
export const exampleCacheDir = path.join(repoRoot, "test", ".cache", "go-service")

/**
 * Builds test/fixtures/go/panics (an HTTP server whose handlers panic) with Go `version` into
 * `test/.cache/panics/<version>/panics` (`panics-stripped` with `stripped`: no .symtab, no DWARF), reused while newer
 * than its sources, and returns the binary's path.
 */
export const buildPanics = (version: string, options: { readonly stripped?: boolean } = {}): string =>
  buildGoFixture("panics", version, options)

/**
 * Builds test/fixtures/go/dbsql (an HTTP server whose handlers use database/sql through pgx and modernc sqlite) with
 * Go `version` into `test/.cache/dbsql/<version>/dbsql` (`dbsql-stripped` with `stripped`, `dbsql-pie` a
 * position-independent build with `pie`), reused while newer than its sources, and returns the binary's path.
 */
export const buildDbsql = (
  version: string,
  options: { readonly stripped?: boolean; readonly pie?: boolean } = {}
): string => buildGoFixture("dbsql", version, options)

/**
 * Builds the example service (`frontend`, `backend`) with Go `version` (fetched through GOTOOLCHAIN when it is not
 * the local one) into `test/.cache/go-service/<version>/` and returns that folder. A build newer than every source is
 * reused, so several test files (and reruns) pay for each toolchain once.
 */
export const buildExample = (version: string): string => {
  const out = path.join(exampleCacheDir, version)
  const programs = ["frontend", "backend"]
  const built = programs.map((p) => path.join(out, p))
  const sources = newestSource(exampleDir)
  if (built.every((b) => fs.existsSync(b) && fs.statSync(b).mtimeMs > sources)) return out
  // Build into a private folder and rename each binary: a concurrent reader never sees a half-written file.
  const tmp = `${out}.${process.pid}.tmp`
  fs.mkdirSync(tmp, { recursive: true })
  try {
    execFileSync("go", ["build", "-o", `${tmp}/`, ...programs.map((p) => `./${p}`)], {
      cwd: exampleDir,
      env: { ...process.env, GOTOOLCHAIN: `go${version}`, GOFLAGS: "-mod=mod" },
      stdio: ["ignore", "ignore", "pipe"],
      timeout: 600_000
    })
    fs.mkdirSync(out, { recursive: true })
    for (const p of programs) fs.renameSync(path.join(tmp, p), path.join(out, p))
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
  return out
}

/**
 * Builds test/fixtures/go/grpc (a gRPC server and an HTTP-fronted gRPC client in one binary) with Go `version` into
 * `test/.cache/grpc/<version>/grpc` (`grpc-stripped` with `stripped`), reused while newer than its sources. `grpc`
 * builds a copy of the fixture requiring that grpc-go release instead of the pinned one (`grpc-<release>`).
 */
export const buildGrpc = (
  version: string,
  options: { readonly stripped?: boolean; readonly grpc?: string } = {}
): string => {
  const fixture = path.join(repoRoot, "test", "fixtures", "go", "grpc")
  const release = options.grpc === undefined ? "" : `-${options.grpc}`
  const name = `grpc${release}${options.stripped === true ? "-stripped" : ""}`
  const out = path.join(repoRoot, "test", ".cache", "grpc", version, name)
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs > newestSource(fixture)) return out
  fs.mkdirSync(path.dirname(out), { recursive: true })
  const env = { ...process.env, GOTOOLCHAIN: `go${version}`, GOFLAGS: "-mod=mod" }
  const run = (args: ReadonlyArray<string>, cwd: string) =>
    execFileSync("go", args, { cwd, env, stdio: ["ignore", "ignore", "pipe"], timeout: 600_000 })
  let src = fixture
  if (options.grpc !== undefined) {
    src = path.join(repoRoot, "test", ".cache", "grpc", `src-${options.grpc}.${process.pid}`)
    fs.rmSync(src, { recursive: true, force: true })
    fs.mkdirSync(src, { recursive: true })
    fs.copyFileSync(path.join(fixture, "main.go"), path.join(src, "main.go"))
    // A fresh go.mod: its other requirements resolve from that release's own (older releases build with Go 1.25).
    fs.writeFileSync(
      path.join(src, "go.mod"),
      `module probescope.test/grpc\n\ngo 1.25\n\nrequire google.golang.org/grpc ${options.grpc}\n`
    )
    run(["mod", "tidy"], src)
  }
  const tmp = `${out}.${process.pid}.tmp`
  try {
    run(["build", ...(options.stripped === true ? ["-ldflags=-s -w"] : []), "-o", tmp, "."], src)
  } finally {
    if (src !== fixture) fs.rmSync(src, { recursive: true, force: true })
  }
  fs.renameSync(tmp, out)
  return out
}
