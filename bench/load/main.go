// Load generator for bench/overhead.ts: n GET requests over c keep-alive connections, then one JSON line with
// throughput and latency percentiles. A separate process, so the agent's Node process is not the load's bottleneck.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Requests int     `json:"requests"`
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"`
	Rps      float64 `json:"rps"`
	P50us    float64 `json:"p50us"`
	P90us    float64 `json:"p90us"`
	P99us    float64 `json:"p99us"`
	MaxUs    float64 `json:"maxus"`
}

func main() {
	url := flag.String("url", "", "URL to GET")
	n := flag.Int("n", 3000, "requests")
	c := flag.Int("c", 1, "connections (one worker each)")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "load: -url is required")
		os.Exit(2)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *c, MaxConnsPerHost: *c}}
	latencies := make([]time.Duration, *n)
	var next, errors int64 = -1, 0
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1)
				if i >= int64(*n) {
					return
				}
				t0 := time.Now()
				resp, err := client.Get(*url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						atomic.AddInt64(&errors, 1)
					}
				}
				if err != nil {
					atomic.AddInt64(&errors, 1)
				}
				latencies[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Nanoseconds()) / 1000
	}
	_ = json.NewEncoder(os.Stdout).Encode(result{
		Requests: *n,
		Errors:   errors,
		Seconds:  elapsed.Seconds(),
		Rps:      float64(*n) / elapsed.Seconds(),
		P50us:    pct(0.50),
		P90us:    pct(0.90),
		P99us:    pct(0.99),
		MaxUs:    pct(1),
	})
}
