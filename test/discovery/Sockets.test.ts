import { assert, describe, it } from "@effect/vitest"
import * as Sockets from "../../src/discovery/Sockets.ts"

// Lines as the kernel prints them (6.x): header, a listener on 127.0.0.1:8080, an established connection, a
// listener on 0.0.0.0:22.
const tcp = [
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 48211 1 " +
  "0000000000000000 100 0 0 10 0",
  "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 48377 1 " +
  "0000000000000000 20 4 30 10 -1",
  "   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20187 1 " +
  "0000000000000000 100 0 0 10 0",
  ""
].join("\n")

const tcp6 = [
  "  sl  local_address                         remote_address                        st tx_queue rx_queue tr " +
  "tm->when retrnsmt   uid  timeout inode",
  "   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 " +
  "00:00000000 00000000  1000        0 51234 1 0000000000000000 100 0 0 10 0",
  "   1: 0000000000000000FFFF00000100007F:1F91 0000000000000000FFFF00000100007F:D0A4 06 00000000:00000000 " +
  "03:00000F9A 00000000     0        0 0 3 0000000000000000",
  ""
].join("\n")

describe("Sockets", () => {
  it("parseListening: only LISTEN rows, with the port in decimal and the inode", () => {
    assert.deepStrictEqual(Sockets.parseListening(tcp), [{ port: 8080, inode: 48211 }, { port: 22, inode: 20187 }])
    assert.deepStrictEqual(Sockets.parseListening(tcp6), [{ port: 8081, inode: 51234 }])
  })

  it("parseListening: nothing from an empty table or garbage", () => {
    assert.deepStrictEqual(Sockets.parseListening(""), [])
    assert.deepStrictEqual(Sockets.parseListening("   0: zz:1F90 00000000:0000 0A a b c d e 1\n"), [])
  })

  it("socketInode: an fd link to a socket names its inode; other links none", () => {
    assert.strictEqual(Sockets.socketInode("socket:[48211]"), 48211)
    assert.strictEqual(Sockets.socketInode("pipe:[48211]"), undefined)
    assert.strictEqual(Sockets.socketInode("/dev/null"), undefined)
  })
})
