/**
 * The bundled Go instrumentations: the go_context daemon (goroutine -> active span) and the net/http server and
 * client probes. Provide GoContext's layer together with the instruments; they reuse its `go_spans` and
 * `ps_conn_spans` maps.
 */
export * as GoContext from "./GoContext.ts"
export * as NetHttpClient from "./NetHttpClient.ts"
export * as NetHttpServer from "./NetHttpServer.ts"
