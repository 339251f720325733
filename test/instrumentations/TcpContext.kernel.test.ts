/**
 * tcp_context on the real kernel (root), without Go: two "hosts" (NetnsFixture: two network namespaces on a veth
 * pair, one cgroup each) and two independent loads of go_context + tcp_context, one per side's cgroup, each with its
 * own ps_conn_spans — as two agents on two hosts would have. The test publishes a client span in the client side's
 * map (what the net/http client probe does before writing a request), a small Python client in the client namespace
 * sends a request from that connection, and the server side's map must then hold exactly that span under the key the
 * server probe looks up; once the server answers, the entry is gone. Also: no context published, no option; an
 * unsampled context keeps its flag; IPv6 keys; no room for the option beside TCP-MD5 (counted, nothing carried); and
 * closing the probe's scope leaves nothing attached to the cgroups.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as path from "node:path"
import * as fs from "node:fs"
import * as os from "node:os"
import { Context, Effect, Exit, Layer, Option, Scope } from "effect"
import { beforeAll } from "vitest"
import * as TcpContext from "../../src/instrumentations/TcpContext.ts"
import type { BpfObject } from "../../src/kernel/Bpf.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { spawnProc } from "../e2e/harness.ts"
import { makePair, type Pair, type Side } from "./NetnsFixture.ts"

const root = path.resolve(import.meta.dirname, "../..")

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
}, 120_000)

/** TCP-MD5 (RFC 2385) with one peer: struct tcp_md5sig is a sockaddr_storage, flags, prefix, key length, ifindex, key. */
const MD5 = `
import socket, struct
def md5(sock, peer):
    addr = (struct.pack("<H", socket.AF_INET) + struct.pack(">H", 0) + socket.inet_aton(peer)).ljust(128, b"\\0")
    key = b"tcp-context-test"
    sock.setsockopt(socket.IPPROTO_TCP, 14, addr + struct.pack("<BBHi", 0, 0, len(key), 0) + key.ljust(80, b"\\0"))
`

/**
 * A server that accepts one connection, prints the request, answers once the file argv[3] exists, then closes.
 * argv[4], when given, is the client's address: the connection is then signed with TCP-MD5.
 */
const SERVER = `${MD5}
import os, sys, time
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
if len(sys.argv) > 4: md5(s, sys.argv[4])
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
print("got", c.recv(1000).decode().strip(), flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.02)
c.sendall(b"answer\\n")
c.recv(1000)
c.close()
print("done", flush=True)
`

/** A client bound to a known port (so the test knows the connection's key before it is made); argv[5]: TCP-MD5. */
const CLIENT = `${MD5}
import sys
c = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
if len(sys.argv) > 5: md5(c, sys.argv[3])
c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
c.bind((sys.argv[1], int(sys.argv[2])))
c.connect((sys.argv[3], int(sys.argv[4])))
c.sendall(b"request\\n")
print("reply", c.recv(1000).decode().strip(), flush=True)
c.close()
`

/** The 16 bytes of an IPv6 address written in full or with one "::". */
const ip6Bytes = (ip: string): Array<number> => {
  const [head, tail] = ip.split("::") as [string, string | undefined]
  const words = (s: string | undefined) => s === undefined || s === "" ? [] : s.split(":").map((w) => parseInt(w, 16))
  const h = words(head)
  const t = words(tail)
  const all = [...h, ...Array(8 - h.length - t.length).fill(0), ...t]
  return all.flatMap((w) => [w >> 8, w & 0xff])
}

/** `struct ps_conn_key` (go_context.h): IPv4 as v4-mapped IPv6, ports in host order (little-endian here). */
const connKey = (client: string, clientPort: number, server: string, serverPort: number): Uint8Array => {
  const k = new Uint8Array(40)
  const put = (at: number, ip: string) => {
    if (ip.includes(":")) return void k.set(ip6Bytes(ip), at)
    k[at + 10] = 0xff
    k[at + 11] = 0xff
    ip.split(".").forEach((b, i) => void (k[at + 12 + i] = Number(b)))
  }
  put(0, client)
  put(16, server)
  const v = new DataView(k.buffer)
  v.setUint16(32, clientPort, true)
  v.setUint16(34, serverPort, true)
  return k
}

/** `struct ps_span_ctx`: trace id, span id, flags, padding. */
const spanCtx = (traceId: string, spanId: string, flags: number): Uint8Array => {
  const v = new Uint8Array(32)
  v.set(Buffer.from(traceId, "hex"), 0)
  v.set(Buffer.from(spanId, "hex"), 16)
  v[24] = flags
  return v
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

/** One side's go_context + tcp_context, loaded on their own (not shared with the other side's). */
const loadSide = (side: Side) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      TcpContext.TcpContext.layerWith({ cgroup: side.cgroup }).pipe(Layer.provide(BpfLive.layer))
    )
    // The layer builds go_context too (tcp_context reuses its ps_conn_spans): built here, so this side's alone.
    return { object: (yield* Context.get(context, TcpContext.TcpContext.tag).loader.load).object }
  })

/** A counter of tcp_context_stats, summed over CPUs. */
const stat = (object: BpfObject, i: number) =>
  Effect.map(object.lookup("tcp_context_stats", new Uint8Array(new Uint32Array([i]).buffer)), (v) => {
    if (Option.isNone(v)) return 0
    const view = new DataView(v.value.buffer, v.value.byteOffset, v.value.byteLength)
    let total = 0
    for (let o = 0; o + 8 <= v.value.byteLength; o += 8) total += Number(view.getBigUint64(o, true))
    return total
  })

/** Programs attached to a cgroup directory (bpftool). */
const attachedTo = (cgroup: string): ReadonlyArray<unknown> =>
  JSON.parse(execFileSync("bpftool", ["-j", "cgroup", "show", cgroup], { encoding: "utf8" }).trim() || "[]")

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
const SPAN = "00f067aa0ba902b7"

let nextPort = 20000 + (process.pid % 1000) * 20

type Loaded = Effect.Success<ReturnType<typeof loadSide>>

/**
 * One exchange between the two sides: the server listens, the client (bound to a known port) sends a request; with
 * `publish`, the client side's map has that span under the connection first (and loses it once answered, as the
 * client probe does). Returns the server side's ps_conn_spans entry for the connection while the request is
 * unanswered, and after the answer.
 */
const exchange = (
  pair: Pair,
  sides: { client: Loaded; server: Loaded },
  publish: Uint8Array | undefined,
  options: { readonly md5?: boolean; readonly ipv6?: boolean } = {}
) =>
  Effect.scoped(Effect.gen(function*() {
    const serverPort = nextPort++
    const clientPort = nextPort++
    const ips = options.ipv6 === true ?
      { client: pair.client.ip6, server: pair.server.ip6 } :
      { client: pair.client.ip, server: pair.server.ip }
    const key = connKey(ips.client, clientPort, ips.server, serverPort)
    if (publish !== undefined) yield* sides.client.object.update("ps_conn_spans", key, publish)
    // Two maps, as on two hosts: what the client side publishes is not in the server side's.
    const before = yield* sides.server.object.lookup("ps_conn_spans", key)
    const go = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "tcp-context-")), "answer")
    const run = (argv: ReadonlyArray<string>) => spawnProc(argv[0]!, argv.slice(1))
    const md5 = options.md5 === true
    const server = yield* run(pair.server.run([
      "python3", "-c", SERVER, ips.server, String(serverPort), go, ...(md5 ? [ips.client] : [])
    ]))
    yield* server.line("stdout", /^listening$/m, "10 seconds")
    const client = yield* run(pair.client.run([
      "python3", "-c", CLIENT, ips.client, String(clientPort), ips.server, String(serverPort),
      ...(md5 ? ["md5"] : [])
    ]))
    yield* server.line("stdout", /^got request$/m, "10 seconds")
    const during = yield* sides.server.object.lookup("ps_conn_spans", key)
    fs.writeFileSync(go, "")
    yield* client.line("stdout", /^reply answer$/m, "10 seconds")
    yield* server.line("stdout", /^done$/m, "10 seconds")
    if (publish !== undefined) yield* sides.client.object.delete("ps_conn_spans", key)
    const after = yield* sides.server.object.lookup("ps_conn_spans", key)
    const clientSide = yield* sides.client.object.lookup("ps_conn_spans", key)
    return {
      before: Option.map(before, hex),
      during: Option.map(during, hex),
      after: Option.map(after, hex),
      clientSide: Option.map(clientSide, hex)
    }
  }))

const stats = (side: Loaded) =>
  Effect.all({
    written: stat(side.object, TcpContext.Stat.written),
    received: stat(side.object, TcpContext.Stat.received),
    noSpace: stat(side.object, TcpContext.Stat.noSpace),
    cleared: stat(side.object, TcpContext.Stat.cleared)
  })

describe("tcp_context on the real kernel", () => {
  it.live("carries a published span to the other side's map, removed once answered; nothing without one", () =>
    Effect.scoped(Effect.gen(function*() {
      const pair = yield* makePair
      const client = yield* loadSide(pair.client)
      const server = yield* loadSide(pair.server)
      const sides = { client, server }

      const sampled = yield* exchange(pair, sides, spanCtx(TRACE, SPAN, 1))
      assert.deepStrictEqual(sampled, {
        before: Option.none(),
        during: Option.some(hex(spanCtx(TRACE, SPAN, 1))),
        after: Option.none(),
        clientSide: Option.none()
      })
      // The client side wrote the option on its data segment(s) and parsed none; the server side the reverse.
      const afterSampled = { client: yield* stats(client), server: yield* stats(server) }
      assert.isAtLeast(afterSampled.client.written, 1)
      assert.deepStrictEqual({ ...afterSampled.client, written: 0 }, { written: 0, received: 0, noSpace: 0, cleared: 0 })
      assert.deepStrictEqual(afterSampled.server, { written: 0, received: 1, noSpace: 0, cleared: 1 })

      // Not sampled: the flag travels too (the ExID's low bit).
      const unsampled = yield* exchange(pair, sides, spanCtx(TRACE, "1111222233334444", 0))
      assert.deepStrictEqual(unsampled.during, Option.some(hex(spanCtx(TRACE, "1111222233334444", 0))))
      assert.deepStrictEqual(unsampled.after, Option.none())

      // Nothing published: no option, nothing on the server side.
      const before = yield* stats(client)
      const none = yield* exchange(pair, sides, undefined)
      assert.deepStrictEqual(none, { before: Option.none(), during: Option.none(), after: Option.none(), clientSide: Option.none() })
      assert.deepStrictEqual(yield* stats(client), before)
      assert.strictEqual((yield* stats(server)).received, 2)

      // IPv6: the key is the addresses as they are (no mapping).
      const v6 = yield* exchange(pair, sides, spanCtx(TRACE, "5555666677778888", 1), { ipv6: true })
      assert.deepStrictEqual(v6, {
        before: Option.none(),
        during: Option.some(hex(spanCtx(TRACE, "5555666677778888", 1))),
        after: Option.none(),
        clientSide: Option.none()
      })
    })), 60_000)

  it.live("no room beside TCP-MD5 and timestamps: the segment goes without the option, counted; nothing carried", () =>
    Effect.scoped(Effect.gen(function*() {
      const pair = yield* makePair
      const client = yield* loadSide(pair.client)
      const server = yield* loadSide(pair.server)
      const r = yield* exchange(pair, { client, server }, spanCtx(TRACE, SPAN, 1), { md5: true })
      assert.deepStrictEqual(r, { before: Option.none(), during: Option.none(), after: Option.none(), clientSide: Option.none() })
      const c = yield* stats(client)
      assert.strictEqual(c.written, 0)
      assert.isAtLeast(c.noSpace, 1)
      assert.deepStrictEqual(yield* stats(server), { written: 0, received: 0, noSpace: 0, cleared: 0 })
    })), 60_000)

  it.live("attached once to its cgroup at load, and detached when the probe's scope closes", () =>
    Effect.scoped(Effect.gen(function*() {
      const pair = yield* makePair
      assert.deepStrictEqual(attachedTo(pair.client.cgroup), [])
      const scope = yield* Scope.make()
      yield* loadSide(pair.client).pipe(Scope.provide(scope))
      const attached = attachedTo(pair.client.cgroup) as ReadonlyArray<{ attach_type: string; name: string }>
      assert.deepStrictEqual(attached.map((a) => [a.attach_type, a.name]), [["cgroup_sock_ops", "tcp_context"]])
      assert.deepStrictEqual(attachedTo(pair.server.cgroup), [])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(attachedTo(pair.client.cgroup), [])
    })), 60_000)
})
