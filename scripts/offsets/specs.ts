/**
 * What the offsets table covers: one entry per module. Adding a module is one entry here: its path, the first
 * release to cover, and a program whose code reaches the types its probes read (the linker keeps a type's DWARF only
 * when reachable code uses it). Which fields are recorded comes from the probes' manifests (`fields`), see fields.ts.
 */

/** Go toolchains the Go probes support (GoContext.goVersions ">=1.25 <1.28"): the newest patch of each line. */
export const supportedGo = ["1.25.9", "1.26.8", "1.27.3"] as const

/** Go toolchains of the standard library's rows (older lines too: `probescope inspect` reports them). */
export const stdGo = ["1.22.12", "1.24.13", ...supportedGo] as const

export interface ModuleSpec {
  /** Module path; "std" for the standard library (its versions are Go versions). */
  readonly module: string
  /** First release covered; releases before it are "not covered". */
  readonly from: string
  /** Releases built: "lines" — the newest patch of each minor line plus `from`; "all" — every release. */
  readonly pick: "lines" | "all"
  /** main.go of the generated program, for a release of the module. */
  readonly program: (version: string) => string
}

const grpc: ModuleSpec = {
  module: "google.golang.org/grpc",
  from: "v1.60.0",
  pick: "lines",
  // A server and a client call (unary and stream) over loopback: handleStream, newClientStream, the HTTP/2
  // transport, status errors and genproto's Status all get linked.
  program: () => `package main

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	s := grpc.NewServer()
	go s.Serve(ln)
	cc, err := grpc.Dial(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err == nil {
		_ = cc.Invoke(context.Background(), "/x.Y/Z", nil, nil)
		_, _ = cc.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, "/x.Y/W")
	}
	println(status.Error(codes.NotFound, "x").Error())
}
`
}

const goRedis: ModuleSpec = {
  module: "github.com/redis/go-redis/v9",
  from: "v9.0.0",
  pick: "lines",
  program: () => `package main

import (
	"context"

	"github.com/redis/go-redis/v9"
)

func main() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DB: 1})
	_ = rdb.Get(ctx, "k").Err()
	_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "a"); return nil })
	_, _ = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Get(ctx, "b"); return nil })
}
`
}

const kafkaGo: ModuleSpec = {
  module: "github.com/segmentio/kafka-go",
  from: "v0.4.42",
  pick: "all",
  program: () => `package main

import (
	"context"

	"github.com/segmentio/kafka-go"
)

func main() {
	ctx := context.Background()
	w := &kafka.Writer{Addr: kafka.TCP("127.0.0.1:1"), Topic: "t"}
	_ = w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("v")})
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "t", GroupID: "g"})
	_, _ = r.FetchMessage(ctx)
	_, _ = r.ReadMessage(ctx)
	_ = r.CommitMessages(ctx)
}
`
}

const otel: ModuleSpec = {
  module: "go.opentelemetry.io/otel",
  from: "v1.30.0",
  pick: "lines",
  program: () => `package main

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

func main() {
	ctx, span := otel.Tracer("x").Start(context.Background(), "y", trace.WithSpanKind(trace.SpanKindServer))
	span.SetAttributes(attribute.String("k", "v"))
	span.SetStatus(codes.Error, "e")
	span.End()
	println(trace.SpanContextFromContext(ctx).IsValid())
}
`
}

/** The standard library: net/http server and client, database/sql with a stub driver, runtime maps. */
const std: ModuleSpec = {
  module: "std",
  from: "1.22.0",
  pick: "all",
  program: () => `package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/http"
)

type drv struct{}

func (drv) Open(string) (driver.Conn, error) { return nil, errors.New("no") }

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	})}
	go srv.Serve(ln)
	if resp, err := http.Get("http://" + ln.Addr().String() + "/x"); err == nil {
		resp.Body.Close()
	}
	_ = srv.Shutdown(context.Background())
	m := map[string]int{"a": 1}
	m["b"] = 2
	sql.Register("stub", drv{})
	db, _ := sql.Open("stub", "dsn")
	_, _ = db.Query("q")
	_, _ = db.Exec("e")
	if st, err := db.Prepare("p"); err == nil {
		_, _ = st.Query()
		_, _ = st.Exec()
	}
	if tx, err := db.Begin(); err == nil {
		_ = tx.Commit()
		_ = tx.Rollback()
	}
	fmt.Println(len(m))
}
`
}

/** Every covered module. */
export const specs: ReadonlyArray<ModuleSpec> = [std, grpc, goRedis, kafkaGo, otel]
