/**
 * The bundled instrumentations. Go: the go_context daemon (goroutine and context.Context -> active span), the
 * net/http server and client probes (spans and HTTP duration metrics), grpc (server and client), database_sql and
 * go_redis (database client spans and db.client.operation.duration), kafka_go (producer and consumer spans), otel_trace
 * (spans made by hand with the OpenTelemetry Go API) and go_panic (panics as log records, recovered handler panics as
 * failed server spans); they reuse go_context's maps (and go_panic nethttp_server's), which their layers bring along.
 * Any language: openssl_http (HTTP/1 over TLS through libssl.so.3's uprobes: spans), tcp_metrics (TCP connection
 * metrics from tracepoints) and tcp_context (trace context carried in a TCP option between hosts, a sock_ops program).
 */
export * as DatabaseSql from "./DatabaseSql.ts"
export * as GoContext from "./GoContext.ts"
export * as GoPanic from "./GoPanic.ts"
export * as GoRedis from "./GoRedis.ts"
export * as Grpc from "./Grpc.ts"
export * as KafkaGo from "./KafkaGo.ts"
export * as NetHttpClient from "./NetHttpClient.ts"
export * as NetHttpServer from "./NetHttpServer.ts"
export * as OpenSslHttp from "./OpenSslHttp.ts"
export * as OtelTrace from "./OtelTrace.ts"
export * as TcpContext from "./TcpContext.ts"
export * as TcpMetrics from "./TcpMetrics.ts"
