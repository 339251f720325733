// Command orders is the shop's order service in the probescope example: an HTTP handler that wraps its work in a
// span made by hand with the OpenTelemetry Go API (no SDK: the global no-op TracerProvider, which probescope reads
// from the outside), reserves the item over gRPC with the inventory service and announces the order on Kafka.
//
//	orders -addr 127.0.0.1:0 -inventory 127.0.0.1:PORT -kafka 127.0.0.1:PORT
//
// It prints "listening on <addr>" once listening. GET /orders/{item} answers 201 with the stock left, 409 when the
// inventory has none (gRPC NotFound), 502 when a dependency fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"probescope.example/shop/catalog"
)

var tracer = otel.Tracer("probescope.example/orders")

func main() {
	addr := flag.String("addr", "127.0.0.1:8082", "listen address (loopback only)")
	inventory := flag.String("inventory", "127.0.0.1:9090", "inventory gRPC address")
	broker := flag.String("kafka", "127.0.0.1:9092", "Kafka bootstrap address")
	flag.Parse()
	log.SetFlags(0)

	cc, err := grpc.NewClient(*inventory, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	writer := &kafka.Writer{
		Addr:         kafka.TCP(*broker),
		Topic:        catalog.Topic,
		Balancer:     &kafka.LeastBytes{},
		BatchTimeout: 5 * time.Millisecond,
		RequiredAcks: kafka.RequireOne,
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{item}", func(w http.ResponseWriter, r *http.Request) {
		item := r.PathValue("item")
		code, msg := place(r.Context(), cc, writer, item)
		w.WriteHeader(code)
		fmt.Fprintln(w, msg)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	os.Stdout.WriteString("listening on " + ln.Addr().String() + "\n")
	log.Fatal(http.Serve(ln, mux))
}

// place is one order: a manual "checkout" span around a gRPC reservation and a Kafka message.
func place(ctx context.Context, cc *grpc.ClientConn, writer *kafka.Writer, item string) (int, string) {
	ctx, span := tracer.Start(ctx, "checkout")
	defer span.End()
	span.SetAttributes(attribute.String("shop.item", item), attribute.Int("shop.quantity", 1))

	left, err := catalog.Reserve(ctx, cc, item)
	if status.Code(err) == codes.NotFound {
		span.SetStatus(otelcodes.Error, "out of stock")
		return http.StatusConflict, "out of stock: " + item
	}
	if err != nil {
		span.SetStatus(otelcodes.Error, "inventory failed")
		return http.StatusBadGateway, err.Error()
	}
	span.AddEvent("reserved")

	msg := kafka.Message{Key: []byte(item), Value: []byte(fmt.Sprintf(`{"item":%q,"left":%d}`, item, left))}
	if err := writer.WriteMessages(ctx, msg); err != nil {
		span.SetStatus(otelcodes.Error, "announce failed")
		return http.StatusBadGateway, err.Error()
	}
	return http.StatusCreated, fmt.Sprintf("ordered %s, %d left", item, left)
}
