// Go's side of bench/sync/bench_sync.c: the same scenarios, the same
// output line (impl=go, workers = GOMAXPROCS), run by bench/sync/run.sh in
// turns with the netpoll program.
//
//	mutex_uncontended  sync.Mutex: Lock; counter++; Unlock, n times (ns per pair)
//	mutex_contended    two goroutines (run with -w 2), each n pairs on one
//	                   sync.Mutex; ns = wall time / (2n)
//	chan_pingpong      two goroutines, two unbuffered chan int64: ns per round trip
//	chan_buffered      chan int64 of capacity 128, one producer, one consumer:
//	                   per_s = elements per second
//	select4            4 unbuffered chan int64 fed round-robin by a producer; the
//	                   consumer's select has 4 receive cases: ns per select
//	select4_buffered   the same with capacity 128 on each channel
//
// Each scenario runs once with n/10 to warm up, then measured with n.
// Usage: go_sync SCENARIO [-w GOMAXPROCS] [-n iterations]
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	mu      sync.Mutex
	counter int64
	bad     bool
	tids    int
)

func mutexUncontended(n int) float64 {
	counter = 0
	t0 := time.Now()
	for i := 0; i < n; i++ {
		mu.Lock()
		counter++
		mu.Unlock()
	}
	d := time.Since(t0)
	if counter != int64(n) {
		bad = true
	}
	return float64(d.Nanoseconds()) / float64(n)
}

// startBarrier: both goroutines wait until both run (as bench_sync.c's
// tasks do); after 200 ms, yield so that with one P the other can run.
func startBarrier(ready *int32, parties int32) {
	atomic.AddInt32(ready, 1)
	giveUp := time.Now().Add(200 * time.Millisecond)
	for k := 0; atomic.LoadInt32(ready) < parties; k++ {
		if k&1023 == 1023 && time.Now().After(giveUp) {
			runtime.Gosched()
		}
	}
}

func mutexContended(n int) float64 {
	counter = 0
	var ready int32
	var wg sync.WaitGroup
	var t0, t1 [2]time.Time
	var tid [4]int
	wg.Add(2)
	for me := 0; me < 2; me++ {
		go func(me int) {
			startBarrier(&ready, 2)
			tid[me] = syscall.Gettid()
			s := time.Now()
			for i := 0; i < n; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			t1[me] = time.Now()
			t0[me] = s
			tid[2+me] = syscall.Gettid()
			wg.Done()
		}(me)
	}
	wg.Wait()
	if counter != 2*int64(n) {
		bad = true
	}
	start, end := t0[0], t1[0]
	if t0[1].Before(start) {
		start = t0[1]
	}
	if t1[1].After(end) {
		end = t1[1]
	}
	seen := map[int]bool{}
	for _, t := range tid {
		seen[t] = true
	}
	tids = len(seen)
	return float64(end.Sub(start).Nanoseconds()) / float64(2*n)
}

func chanPingPong(n int) float64 {
	ping, pong := make(chan int64), make(chan int64)
	done := make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			v := <-ping
			pong <- v + 1
		}
		close(done)
	}()
	var v int64
	t0 := time.Now()
	for i := 0; i < n; i++ {
		ping <- v
		v = <-pong
	}
	d := time.Since(t0)
	<-done
	if v != int64(n) {
		bad = true
	}
	return float64(d.Nanoseconds()) / float64(n)
}

func produce(chs []chan int64, n int, wg *sync.WaitGroup) {
	k := 0
	for i := 0; i < n; i++ {
		chs[k] <- int64(i)
		if k++; k == len(chs) {
			k = 0
		}
	}
	wg.Done()
}

func checkSum(sum int64, n int) {
	if sum != int64(n)*int64(n-1)/2 {
		bad = true
	}
}

func chanBuffered(n int) float64 {
	ch := make(chan int64, 128)
	var wg sync.WaitGroup
	wg.Add(1)
	var sum int64
	t0 := time.Now()
	go produce([]chan int64{ch}, n, &wg)
	for i := 0; i < n; i++ {
		sum += <-ch
	}
	d := time.Since(t0)
	wg.Wait()
	checkSum(sum, n)
	return float64(d.Nanoseconds()) / float64(n)
}

func select4(n int, capacity int) float64 {
	chs := make([]chan int64, 4)
	for i := range chs {
		chs[i] = make(chan int64, capacity)
	}
	c0, c1, c2, c3 := chs[0], chs[1], chs[2], chs[3]
	var wg sync.WaitGroup
	wg.Add(1)
	var sum, v int64
	t0 := time.Now()
	go produce(chs, n, &wg)
	for i := 0; i < n; i++ {
		select {
		case v = <-c0:
		case v = <-c1:
		case v = <-c2:
		case v = <-c3:
		}
		sum += v
	}
	d := time.Since(t0)
	wg.Wait()
	checkSum(sum, n)
	return float64(d.Nanoseconds()) / float64(n)
}

func runOnce(scenario string, n int) float64 {
	switch scenario {
	case "mutex_uncontended":
		return mutexUncontended(n)
	case "mutex_contended":
		return mutexContended(n)
	case "chan_pingpong":
		return chanPingPong(n)
	case "chan_buffered":
		return chanBuffered(n)
	case "select4":
		return select4(n, 0)
	case "select4_buffered":
		return select4(n, 128)
	}
	return -1
}

func defaultIters(s string) int {
	switch s {
	case "mutex_uncontended":
		return 20000000
	case "mutex_contended":
		return 2000000
	case "chan_buffered":
		return 5000000
	}
	return 1000000
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go_sync SCENARIO [-w GOMAXPROCS] [-n iterations]\n"+
		"scenarios: mutex_uncontended mutex_contended chan_pingpong chan_buffered select4 select4_buffered")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	scenario := os.Args[1]
	workers, n := 1, defaultIters(scenario)
	for i := 2; i < len(os.Args); i++ {
		if i+1 >= len(os.Args) {
			usage()
		}
		v, err := strconv.Atoi(os.Args[i+1])
		if err != nil || v < 1 {
			usage()
		}
		switch os.Args[i] {
		case "-w":
			workers = v
		case "-n":
			n = v
		default:
			usage()
		}
		i++
	}
	runtime.GOMAXPROCS(workers)
	warm := n / 10
	if warm < 1 {
		warm = 1
	}
	if runOnce(scenario, warm) < 0 {
		usage()
	}
	bad = false
	// As bench_sync.c: CPU time and involuntary context switches of the
	// measured run, to tell runs that other processes disturbed.
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	w0 := time.Now()
	ns := runOnce(scenario, n)
	wall := time.Since(w0)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
	fmt.Printf("sync %s impl=go workers=%d n=%d ns=%.2f", scenario, workers, n, ns)
	if scenario == "chan_buffered" {
		fmt.Printf(" per_s=%.0f", 1e9/ns)
	}
	if scenario == "mutex_contended" {
		fmt.Printf(" tids=%d", tids)
	}
	fmt.Printf(" wall_ns=%d cpu_ns=%d nivcsw=%d", wall.Nanoseconds(), cpu, ru1.Nivcsw-ru0.Nivcsw)
	check := "ok"
	if bad {
		check = "FAILED"
	}
	fmt.Printf(" check=%s\n", check)
	if bad {
		os.Exit(1)
	}
}
