// Command receiver is the tests' real OTLP receiver: it accepts OTLP/HTTP (protobuf and JSON, POST /v1/traces and
// /v1/metrics) and OTLP/gRPC (TraceService, MetricsService) on 127.0.0.1, and prints every received span as one JSON
// line on stdout, and every metric data point as one JSON line with "signal":"metric" (span lines have no "signal").
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

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
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
	// OTLP's dropped counts: what the sender could not keep.
	DroppedAttributes uint32 `json:"droppedAttributesCount"`
	DroppedEvents     uint32 `json:"droppedEventsCount"`
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
					Protocol:          protocol,
					Headers:           headers,
					Resource:          res,
					Scope:             sc,
					TraceID:           hex.EncodeToString(s.GetTraceId()),
					SpanID:            hex.EncodeToString(s.GetSpanId()),
					ParentSpanID:      hex.EncodeToString(s.GetParentSpanId()),
					Flags:             s.GetFlags(),
					Name:              s.GetName(),
					Kind:              s.GetKind().String(),
					StartUnixNs:       fmt.Sprint(s.GetStartTimeUnixNano()),
					EndUnixNs:         fmt.Sprint(s.GetEndTimeUnixNano()),
					Attributes:        attrs(s.GetAttributes()),
					Status:            status{Code: s.GetStatus().GetCode().String(), Message: s.GetStatus().GetMessage()},
					DroppedAttributes: s.GetDroppedAttributesCount(),
					DroppedEvents:     s.GetDroppedEventsCount(),
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

// receivedPoint is the JSON line printed per metric data point. Only the fields of the point's type are set.
type receivedPoint struct {
	Signal         string            `json:"signal"`
	Protocol       string            `json:"protocol"`
	Headers        map[string]string `json:"headers,omitempty"`
	Resource       map[string]any    `json:"resource"`
	Scope          scope             `json:"scope"`
	Name           string            `json:"name"`
	Description    string            `json:"description"`
	Unit           string            `json:"unit"`
	Type           string            `json:"type"`
	Temporality    string            `json:"temporality,omitempty"`
	StartUnixNs    string            `json:"startTimeUnixNano"`
	TimeUnixNs     string            `json:"timeUnixNano"`
	Attributes     map[string]any    `json:"attributes"`
	Count          *uint64           `json:"count,omitempty"`
	Sum            *float64          `json:"sum,omitempty"`
	Min            *float64          `json:"min,omitempty"`
	Max            *float64          `json:"max,omitempty"`
	BucketCounts   []uint64          `json:"bucketCounts,omitempty"`
	ExplicitBounds []float64         `json:"explicitBounds,omitempty"`
	Value          *float64          `json:"value,omitempty"`
}

func numberValue(p *metricspb.NumberDataPoint) *float64 {
	var v float64
	switch x := p.GetValue().(type) {
	case *metricspb.NumberDataPoint_AsDouble:
		v = x.AsDouble
	case *metricspb.NumberDataPoint_AsInt:
		v = float64(x.AsInt)
	}
	return &v
}

func reportMetrics(protocol string, headers map[string]string, req *collectormetrics.ExportMetricsServiceRequest) {
	for _, rm := range req.GetResourceMetrics() {
		res := attrs(rm.GetResource().GetAttributes())
		for _, sm := range rm.GetScopeMetrics() {
			sc := scope{Name: sm.GetScope().GetName(), Version: sm.GetScope().GetVersion()}
			for _, m := range sm.GetMetrics() {
				base := receivedPoint{
					Signal: "metric", Protocol: protocol, Headers: headers, Resource: res, Scope: sc,
					Name: m.GetName(), Description: m.GetDescription(), Unit: m.GetUnit(),
				}
				switch d := m.GetData().(type) {
				case *metricspb.Metric_Histogram:
					for _, p := range d.Histogram.GetDataPoints() {
						pt := base
						pt.Type = "histogram"
						pt.Temporality = d.Histogram.GetAggregationTemporality().String()
						pt.StartUnixNs = fmt.Sprint(p.GetStartTimeUnixNano())
						pt.TimeUnixNs = fmt.Sprint(p.GetTimeUnixNano())
						pt.Attributes = attrs(p.GetAttributes())
						count := p.GetCount()
						pt.Count = &count
						if p.Sum != nil {
							sum := p.GetSum()
							pt.Sum = &sum
						}
						if p.Min != nil {
							min := p.GetMin()
							pt.Min = &min
						}
						if p.Max != nil {
							max := p.GetMax()
							pt.Max = &max
						}
						pt.BucketCounts = p.GetBucketCounts()
						pt.ExplicitBounds = p.GetExplicitBounds()
						emit(pt)
					}
				case *metricspb.Metric_Sum:
					for _, p := range d.Sum.GetDataPoints() {
						pt := base
						pt.Type = "sum"
						pt.Temporality = d.Sum.GetAggregationTemporality().String()
						pt.StartUnixNs = fmt.Sprint(p.GetStartTimeUnixNano())
						pt.TimeUnixNs = fmt.Sprint(p.GetTimeUnixNano())
						pt.Attributes = attrs(p.GetAttributes())
						pt.Value = numberValue(p)
						emit(pt)
					}
				case *metricspb.Metric_Gauge:
					for _, p := range d.Gauge.GetDataPoints() {
						pt := base
						pt.Type = "gauge"
						pt.StartUnixNs = fmt.Sprint(p.GetStartTimeUnixNano())
						pt.TimeUnixNs = fmt.Sprint(p.GetTimeUnixNano())
						pt.Attributes = attrs(p.GetAttributes())
						pt.Value = numberValue(p)
						emit(pt)
					}
				default:
					fmt.Fprintf(os.Stderr, "receiver: metric %s: unsupported data type %T\n", m.GetName(), d)
				}
			}
		}
	}
}

// signal is one OTLP/HTTP path: the request and response messages and how a decoded request is printed.
type signal struct {
	newRequest  func() proto.Message
	newResponse func() proto.Message
	report      func(protocol string, headers map[string]string, req proto.Message)
}

var tracesSignal = signal{
	newRequest:  func() proto.Message { return &collectortrace.ExportTraceServiceRequest{} },
	newResponse: func() proto.Message { return &collectortrace.ExportTraceServiceResponse{} },
	report: func(p string, h map[string]string, req proto.Message) {
		report(p, h, req.(*collectortrace.ExportTraceServiceRequest))
	},
}

var metricsSignal = signal{
	newRequest:  func() proto.Message { return &collectormetrics.ExportMetricsServiceRequest{} },
	newResponse: func() proto.Message { return &collectormetrics.ExportMetricsServiceResponse{} },
	report: func(p string, h map[string]string, req proto.Message) {
		reportMetrics(p, h, req.(*collectormetrics.ExportMetricsServiceRequest))
	},
}

func handleHTTP(sig signal) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { handleSignal(sig, w, r) }
}

func handleSignal(sig signal, w http.ResponseWriter, r *http.Request) {
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
	req := sig.newRequest()
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
		sig.report("http/json", headers, req)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	if err := proto.Unmarshal(raw, req); err != nil {
		http.Error(w, "bad OTLP/protobuf: "+err.Error(), http.StatusBadRequest)
		return
	}
	sig.report("http/protobuf", headers, req)
	resp, _ := proto.Marshal(sig.newResponse())
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

type traceServer struct {
	collectortrace.UnimplementedTraceServiceServer
}

func grpcHeaders(ctx context.Context) map[string]string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil
	}
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return recordedHeaders(md.Get, keys)
}

func (traceServer) Export(ctx context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	report("grpc", grpcHeaders(ctx), req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

type metricsServer struct {
	collectormetrics.UnimplementedMetricsServiceServer
}

func (metricsServer) Export(ctx context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	reportMetrics("grpc", grpcHeaders(ctx), req)
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
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
	mux.HandleFunc("/v1/traces", handleHTTP(tracesSignal))
	mux.HandleFunc("/v1/metrics", handleHTTP(metricsSignal))
	go func() { _ = http.Serve(httpLn, mux) }()

	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, traceServer{})
	collectormetrics.RegisterMetricsServiceServer(gs, metricsServer{})
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
