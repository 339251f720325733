// A tiny Go program for the custom-probe example: calls main.work in a loop.
package main

import (
	"fmt"
	"os"
	"time"
)

//go:noinline
func work(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += i * i
	}
	return s
}

func main() {
	fmt.Printf("pid %d\n", os.Getpid())
	total := 0
	for i := 0; ; i++ {
		total += work(1000 + (i%10)*100)
		time.Sleep(200 * time.Millisecond)
		if total < 0 {
			fmt.Println(total)
		}
	}
}
