// Go's side of bench/million/bench_million.c: N goroutines that each park in
// time.Sleep until a common deadline, measured the same way (see the C
// program for the method) and printed as the same line with impl=go,
// workers = GOMAXPROCS. run.sh runs the two in turns.
//
// Usage: go_million [-n goroutines] [-d seconds]
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	n         = flag.Int64("n", 1000000, "goroutines")
	deadlineS = flag.Float64("d", 15, "seconds from the start to the common deadline")
	config    = flag.String("c", "default", "name of the configuration, for the output line")

	parked, finished int64
	deadline         time.Time
	tDone            atomic.Value
	bad              int32
)

func cpuNs() int64 {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return (u.Utime.Sec+u.Stime.Sec)*1e9 + (u.Utime.Usec+u.Stime.Usec)*1e3
}

// VmRSS and VmPTE in kB.
func statusKB() (rss, pte int64) {
	rss, pte = -1, -1
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		for _, k := range []string{"VmRSS:", "VmPTE:"} {
			if strings.HasPrefix(line, k) {
				v, _ := strconv.ParseInt(strings.Fields(line[len(k):])[0], 10, 64)
				if k == "VmRSS:" {
					rss = v
				} else {
					pte = v
				}
			}
		}
	}
	return
}

func countMaps() int64 {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return -1
	}
	return int64(bytes.Count(b, []byte{'\n'}))
}

func sleeper() {
	atomic.AddInt64(&parked, 1)
	time.Sleep(time.Until(deadline))
	if time.Now().Before(deadline) {
		atomic.StoreInt32(&bad, 1) // never early
	}
	if atomic.AddInt64(&finished, 1) == *n {
		tDone.Store(time.Now())
	}
}

func main() {
	flag.Parse()
	if *n < 1 || *deadlineS <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	rssBase, pteBase := statusKB()
	cpu0 := cpuNs()
	t0 := time.Now()
	deadline = t0.Add(time.Duration(*deadlineS * 1e9))
	for i := int64(0); i < *n; i++ {
		go sleeper()
	}
	for atomic.LoadInt64(&parked) < *n {
		time.Sleep(time.Millisecond)
	}
	tParked := time.Now()
	cpuParked := cpuNs()
	rssParked, pteParked := statusKB()
	maps := countMaps()
	rssSettled, pteSettled := rssParked, pteParked
	var prev [6]int64
	for k := 0; time.Now().Before(deadline.Add(-time.Second)); {
		time.Sleep(100 * time.Millisecond)
		rssSettled, pteSettled = statusKB()
		prev[k%6] = rssSettled
		k++
		if k >= 6 {
			old := prev[k%6]
			d := old - rssSettled
			if d < 0 {
				d = -d
			}
			if d*200 < rssSettled {
				break
			}
		}
	}
	tSettled := time.Now()
	time.Sleep(time.Until(deadline.Add(-20 * time.Millisecond)))
	cpuDeadline := cpuNs()
	for atomic.LoadInt64(&finished) < *n {
		time.Sleep(time.Millisecond)
	}
	cpuEnd := cpuNs()
	done := tDone.Load().(time.Time)
	spawn := tParked.Sub(t0).Nanoseconds()
	wake := done.Sub(deadline).Nanoseconds()
	check := "ok"
	if atomic.LoadInt32(&bad) != 0 {
		check = "FAILED"
	} else if tParked.After(deadline) {
		check = "late"
	}
	fmt.Printf("million impl=go config=%s n=%d workers=%d stack=%d idle_ns=0"+
		" rss_base_kb=%d rss_parked_kb=%d rss_settled_kb=%d"+
		" pte_base_kb=%d pte_parked_kb=%d pte_settled_kb=%d maps_parked=%d"+
		" spawn_ns=%d settle_ns=%d wake_ns=%d total_ns=%d wall_ns=%d"+
		" cpu_ns=%d cpu_spawn_ns=%d cpu_idle_ns=%d cpu_wake_ns=%d check=%s\n",
		*config, *n, runtime.GOMAXPROCS(0), 2048, rssBase, rssParked, rssSettled,
		pteBase, pteParked, pteSettled, maps, spawn, tSettled.Sub(tParked).Nanoseconds(), wake, spawn+wake, done.Sub(t0).Nanoseconds(),
		cpuEnd-cpu0, cpuParked-cpu0, cpuDeadline-cpuParked, cpuEnd-cpuDeadline, check)
	if check == "FAILED" {
		os.Exit(1)
	}
}
