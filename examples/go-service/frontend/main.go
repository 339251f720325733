// Command frontend is the upstream half of the probescope example service. It routes with Go 1.22 ServeMux patterns
// and calls backend over HTTP for some routes, so one request yields a server span with client spans under it and a
// backend server span in the same trace (through an injected traceparent, or the same-host connection map when the
// kernel forbids writing user memory).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

var client = &http.Client{Timeout: 5 * time.Second}

func main() {
	addr := flag.String("addr", envOr("FRONTEND_ADDR", "127.0.0.1:8080"), "listen address (loopback only)")
	backend := flag.String("backend", envOr("BACKEND_URL", "http://127.0.0.1:8081"), "backend base URL")
	orders := flag.String("orders", envOr("ORDERS_URL", "http://127.0.0.1:8082"), "the shop's orders service base URL")
	flag.Parse()
	b := *backend

	mux := http.NewServeMux()
	// Server span only: a plain 200 with a route pattern.
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	// One client call on the serving goroutine: backend answers 200, or 404 for id 0.
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		status, body, err := get(b + "/users/" + r.PathValue("id"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(status)
		w.Write(body)
	})
	// Fan-out: client calls from goroutines the handler starts (context crosses goroutines via runtime.newproc1).
	mux.HandleFunc("GET /fanout", func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		results := make([]int, 3)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, _, err := get(fmt.Sprintf("%s/users/%d", b, i+1))
				if err != nil {
					status = 0
				}
				results[i] = status
			}()
		}
		wg.Wait()
		writeJSON(w, map[string]any{"statuses": results})
	})
	// The backend fails: a client span with status 500 under a server span with status 502.
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		status, _, err := get(b + "/fail")
		if err != nil || status >= 500 {
			http.Error(w, "upstream failed", http.StatusBadGateway)
			return
		}
		w.WriteHeader(status)
	})
	// A server error without any client call.
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	// A handler that panics: net/http recovers it and closes the connection. probescope's go_panic reports the panic
	// as log records in the request's trace and ends the request's span with status ERROR.
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		panic(errors.New("inventory unavailable"))
	})
	// Echo: what traceparent this service received, and what the backend received from us.
	mux.HandleFunc("GET /echo", func(w http.ResponseWriter, r *http.Request) {
		_, body, err := get(b + "/echo")
		downstream := map[string]string{}
		if err == nil {
			_ = json.Unmarshal(body, &downstream)
		}
		writeJSON(w, map[string]string{"received": r.Header.Get("Traceparent"), "backend": downstream["traceparent"]})
	})
	// A transport error: nothing listens on port 1.
	mux.HandleFunc("GET /unreachable", func(w http.ResponseWriter, r *http.Request) {
		_, _, err := get("http://127.0.0.1:1/nowhere")
		http.Error(w, fmt.Sprint(err), http.StatusBadGateway)
	})
	// The shop (examples/go-service/shop): orders reserves over gRPC with inventory (Redis, then SQL) and announces
	// the order on Kafka, inside a span it makes by hand with the OpenTelemetry Go API.
	mux.HandleFunc("GET /checkout/{item}", func(w http.ResponseWriter, r *http.Request) {
		status, body, err := get(*orders + "/orders/" + r.PathValue("item"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(status)
		w.Write(body)
	})
	// Anything else is a 404 from ServeMux (no pattern).

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	os.Stdout.WriteString("listening on " + ln.Addr().String() + "\n")
	log.Fatal(http.Serve(ln, mux))
}

func get(url string) (int, []byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
