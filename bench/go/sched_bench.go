// Go's equivalents of bench_sched.c, run by bench/sched.sh in the same run.
//
//	yield_switch_ns      two goroutines calling runtime.Gosched (GOMAXPROCS=1)
//	yield_alone_ns       runtime.Gosched with nothing else runnable
//	spawn_to_finish_ns   go f() until it has run (sync.WaitGroup), GOMAXPROCS=1
//	wake_same_worker_ns  unbuffered channel ping-pong, GOMAXPROCS=1 (one-way)
//	wake_cross_worker_ns GOMAXPROCS=2: A sends to B on an unbuffered channel and
//	                     keeps running (spins until B has run): ready to B running
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func perOp(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / float64(n) }

func yieldSwitch(n int) float64 {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		for i := 0; i < n; i++ {
			runtime.Gosched()
		}
		wg.Done()
	}()
	runtime.Gosched()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		runtime.Gosched()
	}
	d := time.Since(t0)
	wg.Wait()
	return perOp(d, 2*n)
}

func yieldAlone(n int) float64 {
	t0 := time.Now()
	for i := 0; i < n; i++ {
		runtime.Gosched()
	}
	return perOp(time.Since(t0), n)
}

func spawn(n int) float64 {
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { wg.Done() }()
		if i&31 == 31 {
			runtime.Gosched()
		}
	}
	wg.Wait()
	return perOp(time.Since(t0), n)
}

func pingPong(n int) float64 {
	a, b := make(chan struct{}), make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			<-a
			b <- struct{}{}
		}
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		a <- struct{}{}
		<-b
	}
	return perOp(time.Since(t0), 2*n)
}

func crossWake(n int) float64 {
	ch := make(chan struct{})
	var ack int64
	go func() {
		for i := int64(1); i <= int64(n); i++ {
			<-ch
			atomic.StoreInt64(&ack, i)
		}
	}()
	time.Sleep(time.Millisecond)
	var total time.Duration
	for i := int64(1); i <= int64(n); i++ {
		t0 := time.Now()
		ch <- struct{}{}
		for atomic.LoadInt64(&ack) != i {
		}
		total += time.Since(t0)
	}
	return perOp(total, n)
}

func main() {
	n := 2000000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	runtime.GOMAXPROCS(1)
	fmt.Printf("go yield_switch_ns %.1f\n", yieldSwitch(n))
	fmt.Printf("go yield_alone_ns %.1f\n", yieldAlone(n))
	fmt.Printf("go spawn_to_finish_ns %.1f\n", spawn(n))
	fmt.Printf("go wake_same_worker_ns %.1f\n", pingPong(n/2))
	runtime.GOMAXPROCS(2)
	fmt.Printf("go wake_cross_worker_ns %.1f\n", crossWake(n/200))
}
