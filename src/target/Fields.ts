/**
 * Standard-library struct fields read at analysis time and reported by `GoBinary.summary` (`probescope inspect`).
 * `scripts/gen-offsets.ts` records these in the offsets table, plus every field a probe's manifest names.
 */

/** Type name (as DWARF names it) → field names. */
export const knownFields: Readonly<Record<string, ReadonlyArray<string>>> = {
  "net/http.Request": [
    "Method", "URL", "Proto", "ProtoMajor", "ProtoMinor", "Header", "Body", "ContentLength", "Host", "RemoteAddr",
    "RequestURI", "TLS", "ctx", "Pattern", "Response"
  ],
  "net/url.URL": ["Scheme", "Opaque", "User", "Host", "Path", "RawPath", "RawQuery", "Fragment"],
  "net/http.Response": ["Status", "StatusCode", "Proto", "Header", "Body", "ContentLength", "Request"],
  "net/http.response": ["conn", "req", "wroteHeader", "status", "handlerHeader", "contentLength"],
  "net/http.conn": ["server", "rwc", "remoteAddr"],
  "net/http.persistConn": ["conn", "br", "bw"],
  "bufio.Writer": ["err", "buf", "n", "wr"],
  // A TCP connection's addresses, for linking client and server spans on one host (net.Conn → *TCPConn → netFD).
  "net.TCPConn": ["conn"],
  "net.conn": ["fd"],
  "net.netFD": ["pfd", "family", "sotype", "isConnected", "net", "laddr", "raddr"],
  "net.TCPAddr": ["IP", "Port", "Zone"],
  "runtime.g": ["stack", "stackguard0", "m", "sched", "goid", "parentGoid"],
  "context.valueCtx": ["Context", "key", "val"],
  "context.cancelCtx": ["Context"],
  // Maps: Go < 1.24 uses runtime.hmap; Go >= 1.24 (swiss tables) uses internal/runtime/maps.Map.
  "runtime.hmap": ["count", "flags", "B", "hash0", "buckets", "oldbuckets"],
  "internal/runtime/maps.Map": ["used", "seed", "dirPtr", "dirLen", "globalDepth", "globalShift", "clearSeq"],
  "internal/runtime/maps.table": ["used", "capacity", "growthLeft", "localDepth", "index", "groups"],
  "internal/runtime/maps.groupsReference": ["data", "lengthMask"]
}

/** Every type of `knownFields`, for a DWARF pass that keeps only these. */
export const knownTypes: ReadonlySet<string> = new Set(Object.keys(knownFields))
