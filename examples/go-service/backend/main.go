// Command backend is the downstream half of the probescope example service: it answers 200, 404 or 500 per route so
// instrumentation tests can assert status codes and error status, and echoes the traceparent it received.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", envOr("BACKEND_ADDR", "127.0.0.1:8081"), "listen address (loopback only)")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if id == "0" {
			http.Error(w, "no such user", http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]string{"id": id, "name": "user-" + id, "traceparent": r.Header.Get("Traceparent")})
	})
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "backend failure", http.StatusInternalServerError)
	})
	mux.HandleFunc("GET /echo", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"traceparent": r.Header.Get("Traceparent")})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })

	serve(*addr, mux)
}

func serve(addr string, h http.Handler) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	// The resolved address goes to stdout first so a driver that asked for port 0 learns the real port.
	log.SetFlags(0)
	os.Stdout.WriteString("listening on " + ln.Addr().String() + "\n")
	log.Fatal(http.Serve(ln, h))
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
