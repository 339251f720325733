// Command receiver is the tests' real OTLP receiver: it accepts OTLP/HTTP (protobuf and JSON, POST /v1/traces) and
// OTLP/gRPC on 127.0.0.1, and prints every received span as one JSON line on stdout.
//
// The first stdout line is {"http":<port>,"grpc":<port>}. Port 0 (the default) lets the kernel choose; tests that
// restart a receiver on the same ports pass -http-port/-grpc-port. The receiver exits when stdin closes, so a test
// runner that dies never leaves it behind.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// receivedSpan is the JSON line printed per span. Nanosecond times are strings: they exceed 2^53.
type receivedSpan struct {
	Protocol     string            `json:"protocol"`
	Headers      map[string]string `json:"headers,omitempty"`
	Resource     map[string]any    `json:"resource"`
	Scope        scope             `json:"scope"`
	TraceID      string            `json:"traceId"`
	SpanID       string            `json:"spanId"`
	ParentSpanID string            `json:"parentSpanId"`
	Flags        uint32            `json:"flags"`
	Name         string            `json:"name"`
	Kind         string            `json:"kind"`
	StartUnixNs  string            `json:"startTimeUnixNano"`
	EndUnixNs    string            `json:"endTimeUnixNano"`
	Attributes   map[string]any    `json:"attributes"`
	Status       status            `json:"status"`
}

type scope struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type status struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

var (
	outMu sync.Mutex
	out   = json.NewEncoder(os.Stdout)
)

func emit(v any) {
	outMu.Lock()
	defer outMu.Unlock()
	if err := out.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "receiver: write:", err)
	}
}

func anyValue(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		arr := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			arr = append(arr, anyValue(e))
		}
		return arr
	case *commonpb.AnyValue_KvlistValue:
		return attrs(x.KvlistValue.GetValues())
	default:
		return nil
	}
}

func attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return m
}

func report(protocol string, headers map[string]string, req *collectortrace.ExportTraceServiceRequest) {
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			sc := scope{Name: ss.GetScope().GetName(), Version: ss.GetScope().GetVersion()}
			for _, s := range ss.GetSpans() {
				emit(receivedSpan{
					Protocol:     protocol,
					Headers:      headers,
					Resource:     res,
					Scope:        sc,
					TraceID:      hex.EncodeToString(s.GetTraceId()),
					SpanID:       hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Flags:        s.GetFlags(),
					Name:         s.GetName(),
					Kind:         s.GetKind().String(),
					StartUnixNs:  fmt.Sprint(s.GetStartTimeUnixNano()),
					EndUnixNs:    fmt.Sprint(s.GetEndTimeUnixNano()),
					Attributes:   attrs(s.GetAttributes()),
					Status:       status{Code: s.GetStatus().GetCode().String(), Message: s.GetStatus().GetMessage()},
				})
			}
		}
	}
}

// hexIDsToBase64 rewrites OTLP/JSON's hex trace/span ids into the base64 that protojson expects for bytes fields.
func hexIDsToBase64(v any) error {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch k {
			case "traceId", "spanId", "parentSpanId":
				if s, ok := e.(string); ok {
					b, err := hex.DecodeString(s)
					if err != nil {
						return fmt.Errorf("%s: %w", k, err)
					}
					x[k] = base64.StdEncoding.EncodeToString(b)
					continue
				}
			}
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordedHeaders keeps the headers a test may set through OTEL_EXPORTER_OTLP_HEADERS (x-* only, lowercased).
func recordedHeaders(get func(string) []string, keys []string) map[string]string {
	m := map[string]string{}
	for _, k := range keys {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-") {
			if vs := get(k); len(vs) > 0 {
				m[lk] = strings.Join(vs, ",")
			}
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func handleHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	headers := recordedHeaders(func(k string) []string { return r.Header.Values(k) }, keys)
	req := &collectortrace.ExportTraceServiceRequest{}
	contentType := r.Header.Get("Content-Type")
	isJSON := strings.HasPrefix(contentType, "application/json")
	if isJSON {
		var generic any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&generic); err == nil {
			err = hexIDsToBase64(generic)
			if err == nil {
				raw, err = json.Marshal(generic)
			}
		}
		if err == nil {
			err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(raw, req)
		}
		if err != nil {
			http.Error(w, "bad OTLP/JSON: "+err.Error(), http.StatusBadRequest)
			return
		}
		report("http/json", headers, req)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	if err := proto.Unmarshal(raw, req); err != nil {
		http.Error(w, "bad OTLP/protobuf: "+err.Error(), http.StatusBadRequest)
		return
	}
	report("http/protobuf", headers, req)
	resp, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

type traceServer struct {
	collectortrace.UnimplementedTraceServiceServer
}

func (traceServer) Export(ctx context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	var headers map[string]string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		keys := make([]string, 0, len(md))
		for k := range md {
			keys = append(keys, k)
		}
		headers = recordedHeaders(md.Get, keys)
	}
	report("grpc", headers, req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func main() {
	httpPort := flag.Int("http-port", 0, "OTLP/HTTP port on 127.0.0.1 (0: any free port)")
	grpcPort := flag.Int("grpc-port", 0, "OTLP/gRPC port on 127.0.0.1 (0: any free port)")
	flag.Parse()

	httpLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *httpPort))
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver: http listen:", err)
		os.Exit(1)
	}
	grpcLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *grpcPort))
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver: grpc listen:", err)
		os.Exit(1)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", handleHTTP)
	go func() { _ = http.Serve(httpLn, mux) }()

	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, traceServer{})
	go func() { _ = gs.Serve(grpcLn) }()

	emit(map[string]int{
		"http": httpLn.Addr().(*net.TCPAddr).Port,
		"grpc": grpcLn.Addr().(*net.TCPAddr).Port,
	})

	// Exit when the parent closes stdin (or dies): tests never leak receivers.
	_, _ = io.Copy(io.Discard, os.Stdin)
	gs.Stop()
	os.Exit(0)
}
