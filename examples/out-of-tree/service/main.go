// A tiny service for the out-of-tree probe example: GET /items/{key} looks the key up in an in-memory Cache, so
// every request runs main.(*Cache).Get on the goroutine serving it (the custom probe's span is a child of the
// net/http server span). GET /health answers without touching the cache.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
)

// Cache is a mutex-guarded map; Get is what the example probe traces.
type Cache struct {
	mu    sync.Mutex
	items map[string]string
}

// Get returns the value of key and whether it was there. noinline: inlined into the handler it would have no
// symbol to attach to.
//
//go:noinline
func (c *Cache) Get(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.items[key]
	return v, ok
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	cache := &Cache{items: map[string]string{"alpha": "1", "beta": "2", "gamma": "3"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{key}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := cache.Get(r.PathValue("key"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, v)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Handler: mux}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The address on stdout, for whoever started the service (the kernel test reads it).
	fmt.Printf("listening on %s pid %d\n", ln.Addr(), os.Getpid())
	log.Fatal(srv.Serve(ln))
}
