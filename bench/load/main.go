// Load generator for bench/overhead.ts and bench/footprint.ts: n GET requests over c keep-alive connections, then one
// JSON line with throughput and latency percentiles. A separate process, so the agent's Node process is not the load's
// bottleneck. -url takes a comma-separated list: worker w sends to URL w mod len (footprint.ts spreads its load over
// ten processes that way), so c should be a multiple of the number of URLs for an even spread.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
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
	url := flag.String("url", "", "URL to GET, or several separated by commas (worker w uses URL w mod len)")
	n := flag.Int("n", 3000, "requests")
	c := flag.Int("c", 1, "connections (one worker each)")
	rate := flag.Float64("rate", 0, "requests per second over all connections (0: as fast as they go)")
	expect := flag.String("expect", "", "a response body must contain this, or the request counts as an error")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "load: -url is required")
		os.Exit(2)
	}
	urls := strings.Split(*url, ",")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *c, MaxConnsPerHost: *c}}
	latencies := make([]time.Duration, *n)
	var next, errors, done int64 = -1, 0, 0
	// SIGINT ends the run early and still prints the totals of what was sent (the reliability suite's open-ended load).
	var stopped atomic.Bool
	interrupts := make(chan os.Signal, 1)
	signal.Notify(interrupts, os.Interrupt)
	go func() {
		<-interrupts
		stopped.Store(true)
	}()
	var wg sync.WaitGroup
	start := time.Now()
	// Paced load (the reliability suite's steady traffic): request i is not sent before start + i/rate.
	pace := func(i int64) {
		if *rate > 0 {
			if wait := time.Until(start.Add(time.Duration(float64(i) / *rate * float64(time.Second)))); wait > 0 {
				time.Sleep(wait)
			}
		}
	}
	for w := 0; w < *c; w++ {
		wg.Add(1)
		target := urls[w%len(urls)]
		go func() {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1)
				if i >= int64(*n) || stopped.Load() {
					return
				}
				pace(i)
				t0 := time.Now()
				resp, err := client.Get(target)
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != http.StatusOK || !strings.Contains(string(body), *expect)) {
						atomic.AddInt64(&errors, 1)
					}
				}
				if err != nil {
					atomic.AddInt64(&errors, 1)
				}
				latencies[i] = time.Since(t0)
				atomic.AddInt64(&done, 1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Requests are numbered in order; an early stop leaves a tail that never ran.
	if int(done) < len(latencies) {
		kept := latencies[:0]
		for _, l := range latencies {
			if l > 0 {
				kept = append(kept, l)
			}
		}
		latencies = kept
	}
	if len(latencies) == 0 {
		latencies = []time.Duration{0}
	}
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Nanoseconds()) / 1000
	}
	_ = json.NewEncoder(os.Stdout).Encode(result{
		Requests: int(done),
		Errors:   errors,
		Seconds:  elapsed.Seconds(),
		Rps:      float64(done) / elapsed.Seconds(),
		P50us:    pct(0.50),
		P90us:    pct(0.90),
		P99us:    pct(0.99),
		MaxUs:    pct(1),
	})
}
